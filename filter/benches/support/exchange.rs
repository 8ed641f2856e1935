//! The `tools/call` exchanges of `make bench`, set up for the glue's fake host: shared by
//! the criterion bench (`benches/exchange.rs`, native) and the V8 run
//! (`examples/exchange_v8.rs`, the same code compiled to wasm and run by Node's V8). The
//! 1 KB JSON answer by default; the 64 KB JSON and the 100-event SSE answers of `make bench`
//! on request ([`Reply`]).

use base64::Engine as _;
use mcptrail::filter::Root;
use mcptrail::host::fake::FakeHost;
use mcptrail::host::Headers;
use mcptrail::testkit::exchange::Exchange;
use mcptrail::testkit::jwt::{self as testkit, AUD, ISS, NOW};
use mcptrail::testkit::workload;
use serde_json::{json, Value};

/// Which answer the server gives (`make bench`'s workloads).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reply {
    /// `json_reply(1024)`, `application/json`.
    Json1k,
    /// `json_reply(64 * 1024)`, `application/json`.
    Json64k,
    /// `sse_reply(100)`, `text/event-stream`.
    Sse100,
}

/// The request and answer of one exchange.
pub struct Traffic {
    bearer: String,
    request: String,
    reply: String,
    content_type: &'static str,
    content_length: String,
}

impl Traffic {
    /// The traffic with the 1 KB answer, and the depths of `make bench` to drive it through.
    pub fn new() -> (Traffic, Vec<workload::Depth>) {
        Traffic::with(Reply::Json1k)
    }

    /// The traffic with the given answer, and the depths of `make bench`.
    pub fn with(kind: Reply) -> (Traffic, Vec<workload::Depth>) {
        let mut claims = testkit::claims("alice");
        // Every 100th call moves the fake clock 10 s: the token must outlive millions of calls.
        claims["exp"] = json!(NOW + 10 * 365 * 86_400);
        let hmac_key = base64::engine::general_purpose::STANDARD.encode([7u8; 32]);
        let traffic = Traffic {
            bearer: format!("Bearer {}", testkit::sign("RS256", &claims)),
            request: workload::request(),
            reply: String::new(),
            content_type: "application/json",
            content_length: String::new(),
        };
        let (reply, content_type) = match kind {
            Reply::Json1k => (workload::json_reply(1024), "application/json"),
            Reply::Json64k => (workload::json_reply(64 * 1024), "application/json"),
            Reply::Sse100 => (workload::sse_reply(100), "text/event-stream"),
        };
        // Envoy's direct responses (what `make bench` answers with) carry a length.
        let traffic = Traffic {
            content_length: reply.len().to_string(),
            reply,
            content_type,
            ..traffic
        };
        (
            traffic,
            workload::ladder(ISS, AUD, &testkit::jwks(), &hmac_key),
        )
    }
}

/// A configured root and its host, driving exchanges; every 100th ships a batch.
pub struct Rig {
    pub host: FakeHost,
    root: Root,
    n: u32,
}

impl Rig {
    pub fn new(name: &str, config: &Value) -> Rig {
        let host = FakeHost::default();
        host.now.set(NOW as u64 * 1000);
        host.properties
            .borrow_mut()
            .insert("source.address".into(), b"127.0.0.1:50000".to_vec());
        let mut root = Root::default();
        assert!(
            root.configure(&host, config.to_string().as_bytes()),
            "{name}: {:?}",
            host.logs.borrow()
        );
        Rig { host, root, n: 0 }
    }

    pub fn exchange(&mut self, t: &Traffic) {
        let headers = [
            ("authorization", t.bearer.as_str()),
            ("content-type", "application/json"),
            ("accept", "application/json, text/event-stream"),
            ("x-request-id", "3f0c2a8e-5b1d-4c7a-9e2f-8d6b4a1c0e9f"),
            (":authority", "mcp.example.com"),
        ];
        let chunks: [&[u8]; 1] = [t.reply.as_bytes()];
        let ex = Exchange {
            headers: &headers,
            body: &t.request,
            response_headers: &[
                ("content-type", t.content_type),
                ("content-length", t.content_length.as_str()),
            ],
            chunks: &chunks,
            ..Exchange::default()
        };
        let done = self.host.exchange(&self.root, &ex);
        assert!(!done.answered_locally, "{:?}", self.host.responses.borrow());
        self.n += 1;
        if self.n % 100 == 0 {
            // Ship and acknowledge the batch, as the root's tick does under load.
            let host = &self.host;
            host.advance(10_000);
            self.root.on_tick(host);
            let calls = host.calls.borrow().len() as u32;
            host.set_header(Headers::CallResponse, ":status", "200");
            self.root.on_http_call_response(host, calls, 1, 0);
            host.calls.borrow_mut().clear();
        }
    }
}
