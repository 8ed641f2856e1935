//! Criterion micro-benches for the filter's hot paths (native; the wasm cost in V8 is
//! measured through Envoy by `make bench`).

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]
use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use mcptrail::auth::{Authenticator, Outcome};
use mcptrail::config::Config;
use mcptrail::mask::Detector;
use mcptrail::testkit::jwt::TEST_CACHE_KEY;
use mcptrail::testkit::jwt::{self as testkit, NOW};
use serde_json::{json, Value};

fn verify(c: &mut Criterion) {
    let rs = testkit::sign("RS256", &testkit::claims("alice"));
    let es = testkit::sign("ES256", &testkit::claims("alice"));
    let now_ms = NOW as u64 * 1000;
    for (name, tok) in [("rs256", &rs), ("es256", &es)] {
        let cold = testkit::auth_settings(0);
        let mut a = Authenticator::new(&cold, TEST_CACHE_KEY);
        c.bench_function(&format!("jwt_verify_{name}_cold"), |b| {
            b.iter(|| {
                assert!(matches!(
                    a.authenticate(&cold, tok, now_ms, false),
                    Outcome::Verified(_)
                ))
            })
        });
        let cached = testkit::auth_settings(1024);
        let mut a = Authenticator::new(&cached, TEST_CACHE_KEY);
        c.bench_function(&format!("jwt_verify_{name}_cached"), |b| {
            b.iter(|| {
                assert!(matches!(
                    a.authenticate(&cached, tok, now_ms, false),
                    Outcome::Verified(_)
                ))
            })
        });
    }
}

/// A `tools/call` result as servers send them: the records as JSON text in
/// `content[0].text` and again as `structuredContent`, a few holding secrets.
fn tool_result(target_bytes: usize) -> Value {
    let mut rows = Vec::new();
    let mut i = 0u32;
    loop {
        let mut row = json!({
            "id": 10_000 + i,
            "name": format!("Customer {i}"),
            "email": format!("customer{i}@example.com"),
            "created_at": "2024-01-15T10:30:45.123Z",
            "plan": "pro",
            "version": "1.12.3",
            "note": format!("Order #{} shipped; tracking 1Z999AA1{:08}, see https://shop.example.com/orders/{i}", 40_000 + i, i),
            "login": { "ip": format!("10.0.{}.{}", i % 250, (i * 7) % 250), "agent": "Mozilla/5.0 (X11; Linux x86_64)" },
        });
        if i % 5 == 0 {
            row["payment"] =
                json!({"card": "4111 1111 1111 1111", "holder": format!("Customer {i}")});
        }
        if i % 7 == 0 {
            row["support"] = json!(format!(
                "call +1 415 555 {:04} or use token Bearer abc{i}def456ghi",
                i % 10_000
            ));
        }
        rows.push(row);
        i += 1;
        let msg = json!({"jsonrpc": "2.0", "id": 7, "result": {
            "content": [{"type": "text", "text": Value::Array(rows.clone()).to_string()}],
            "structuredContent": {"rows": rows.clone()}, "isError": false}});
        if msg.to_string().len() >= target_bytes {
            return msg;
        }
    }
}

fn mask(c: &mut Criterion) {
    let detectors: Vec<&str> = Detector::ALL.iter().map(|d| d.name()).collect();
    let cfg = json!({"audit": {"cluster": "c"}, "masking": {
        "fields": ["password", "secret", "token", "api_key", "authorization"],
        "detectors": detectors,
        "patterns": [{"name": "employee_id", "regex": "EMP-[0-9]{6}"}]}});
    let masker = Config::parse(cfg.to_string().as_bytes()).unwrap().masking;
    let mut group = c.benchmark_group("mask");
    for (name, size) in [("tool_result_1k", 1024), ("tool_result_64k", 64 * 1024)] {
        let msg = tool_result(size);
        let bytes = msg.to_string().len();
        let mut probe = msg.clone();
        assert!(!masker.mask_message(&mut probe).is_empty());
        assert!(!probe.to_string().contains("4111 1111"));
        eprintln!("mask/{name}: {bytes} bytes");
        group.throughput(Throughput::Bytes(bytes as u64));
        group.bench_function(name, |b| {
            b.iter_batched(
                || msg.clone(),
                // Return the value too: its drop is not masking's cost.
                |mut v| {
                    let masked = masker.mask_message(&mut v);
                    (v, masked)
                },
                BatchSize::SmallInput,
            )
        });
    }
    group.finish();
}

/// JSON-RPC decoding of a 1 KB `tools/call` (the request path) and classification of a
/// 1 KB reply without building it (the answer path).
fn decode(c: &mut Criterion) {
    let call =
        json!({"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": {"name": "lookup",
        "arguments": {"query": "x".repeat(900), "limit": 10}}})
        .to_string();
    let reply = json!({"jsonrpc": "2.0", "id": 1, "result": {"content": [{"type": "text", "text": "y".repeat(900)}]}})
        .to_string();
    let mut group = c.benchmark_group("jsonrpc");
    group.throughput(Throughput::Bytes(call.len() as u64));
    group.bench_function("decode_request_1k", |b| {
        b.iter(|| mcptrail::mcp::jsonrpc::decode_body(call.as_bytes()).unwrap())
    });
    group.throughput(Throughput::Bytes(reply.len() as u64));
    group.bench_function("peek_reply_1k", |b| {
        b.iter(|| mcptrail::mcp::jsonrpc::peek_body(&reply).unwrap())
    });
    group.finish();
}

/// The SSE parser over a stream of 100 progress events and a result, fed in 1 KB chunks.
fn sse(c: &mut Criterion) {
    let mut stream = String::new();
    for i in 0..100 {
        stream.push_str(&format!(
            "id: {i}\ndata: {}\n\n",
            json!({"jsonrpc": "2.0", "method": "notifications/progress", "params": {"progressToken": 1, "progress": i}})
        ));
    }
    let mut group = c.benchmark_group("sse");
    group.throughput(Throughput::Bytes(stream.len() as u64));
    group.bench_function("parse_100_events_1k_chunks", |b| {
        b.iter(|| {
            let mut p = mcptrail::mcp::sse::Parser::new(1 << 20);
            let mut out = Vec::new();
            for chunk in stream.as_bytes().chunks(1024) {
                p.feed(chunk, &mut out);
            }
            out.len()
        })
    });
    group.finish();
}

/// Building a command record's line: serialisation, then the chain (SHA-256 link + HMAC).
fn record(c: &mut Criterion) {
    use mcptrail::audit::chain::Chain;
    use mcptrail::audit::record::{Kind, Mcp, Outcome as RecOutcome, Record, Status};
    let mut r = Record::new(
        Kind::Command,
        "2026-11-24T10:00:00.123Z".into(),
        "0b6f1a9e-33c1-4d2a-9f10-5c6d7e8f9a0b".into(),
    );
    r.session = Some("sess-1".into());
    r.mcp = Some(Mcp {
        method: Some("tools/call".into()),
        id: Some(json!(7)),
        tool: Some("query_db".into()),
        arguments: Some(json!({"sql": "select * from customers where id = 7", "limit": 10})),
        ..Mcp::default()
    });
    r.outcome = Some(RecOutcome {
        status: Status::Ok,
        http_status: Some(200),
        is_error: false,
        error: None,
        duration_ms: Some(12),
        response_bytes: Some(1024),
        notifications: 0,
        server_requests: 0,
        result_preview: None,
    });
    let mut group = c.benchmark_group("record");
    for (name, key) in [
        ("serialise_and_chain", None),
        (
            "serialise_chain_and_mac",
            Some(b"secret-key-for-demo-only".to_vec()),
        ),
    ] {
        let mut chain = Chain::new("00c0ffee00c0ffee".into(), key);
        group.bench_function(name, |b| {
            b.iter(|| {
                let json = serde_json::to_string(&r).unwrap();
                chain.seal(json)
            })
        });
    }
    group.finish();
}

criterion_group!(benches, verify, mask, decode, sse, record);
criterion_main!(benches);
