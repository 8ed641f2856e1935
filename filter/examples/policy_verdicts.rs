//! The filter's policy verdict on request bodies, as a filter of stdin: one base64 body per
//! line in, one JSON line out: `{"forwarded": bool, "calls": [[method, tool], ...]}`, where
//! `calls` is the filter's own reading of a forwarded body (the reading its decision used).
//! Each body goes through the glue (a recording fake host, the body in two chunks, as Envoy
//! may deliver it) under a policy that denies `delete_*` to everyone. Used by the
//! differential check against the official Python MCP SDK (`scripts/policy-differential.py`,
//! `make policy-diff`).

use std::io::{BufRead as _, Write as _};

use base64::Engine as _;
use mcptrail::glue::fake::FakeHost;
use mcptrail::glue::Root;
use mcptrail::host::{Action, Body, Headers};
use serde_json::{json, Value};

const CONFIG: &str = r#"{"audit":{"cluster":"audit"},"mcp":{"paths":["/mcp"]},"policy":{"rules":[{"tools":["delete_*"],"action":"deny"}]}}"#;

fn verdict(host: &FakeHost, root: &Root, body: &[u8]) -> bool {
    host.clear_headers(Headers::Request);
    host.set_header(Headers::Request, ":path", "/mcp");
    host.set_header(Headers::Request, ":method", "POST");
    host.set_header(Headers::Request, "content-type", "application/json");
    let replies = host.responses.borrow().len();
    let Some(mut s) = root.new_stream(1) else {
        return false;
    };
    let mut action = s.on_request_headers(host, body.is_empty());
    if action == Action::Continue && !body.is_empty() {
        let (a, _) = body.split_at(body.len() / 2);
        host.set_body(Body::Request, a);
        action = s.on_request_body(host, a.len(), false);
        if action == Action::Pause {
            // Envoy buffers while paused: the last callback sees the whole body.
            host.set_body(Body::Request, body);
            action = s.on_request_body(host, body.len(), true);
        }
    }
    s.on_log(host);
    action == Action::Continue && host.responses.borrow().len() == replies
}

fn main() {
    let host = FakeHost::default();
    let mut root = Root::default();
    if !root.configure(&host, CONFIG.as_bytes()) {
        eprintln!("policy_verdicts: configuration refused");
        std::process::exit(2);
    }
    let stdin = std::io::stdin();
    let mut stdout = std::io::BufWriter::new(std::io::stdout());
    for (n, line) in stdin.lock().lines().enumerate() {
        let Ok(line) = line else { break };
        let Ok(body) = base64::engine::general_purpose::STANDARD.decode(line.trim()) else {
            eprintln!("policy_verdicts: line {n} is not base64");
            std::process::exit(2);
        };
        let forwarded = verdict(&host, &root, &body);
        let calls: Vec<Value> = if forwarded {
            mcptrail::jsonrpc::decode_body(&body)
                .map(|items| {
                    items
                        .iter()
                        .map(|m| match m {
                            Ok(m) => json!([m.method, m.tool()]),
                            Err(_) => Value::Null,
                        })
                        .collect()
                })
                .unwrap_or_default()
        } else {
            Vec::new()
        };
        let _ = writeln!(stdout, "{}", json!({"forwarded": forwarded, "calls": calls}));
        if n % 256 == 0 {
            // Keep the fake's logs and replies from growing without end.
            host.responses.borrow_mut().clear();
            host.logs.borrow_mut().clear();
            host.calls.borrow_mut().clear();
        }
    }
}
