#[cfg(all(target_arch = "wasm32", target_os = "unknown"))]
use wasm_bindgen_test::wasm_bindgen_test as test;

use serde_json::Value;

use super::fake::FakeHost;
use super::*;

const CONFIG: &str = r#"{"audit":{"cluster":"audit_collector","authority":"collector","headers":{"x-api-key":"k"},"flush_interval_ms":500,"batch_max_records":10,"max_retries":2},"mcp":{"paths":["/mcp"]}}"#;

fn root(host: &FakeHost, config: &str) -> Root {
    let mut r = Root::default();
    assert!(r.configure(host, config.as_bytes()));
    r
}

fn post(host: &FakeHost, root: &Root, body: &str, status: Option<&str>) {
    host.clear_headers(Headers::Request);
    host.clear_headers(Headers::Response);
    host.set_header(Headers::Request, ":path", "/mcp");
    host.set_header(Headers::Request, ":method", "POST");
    host.set_header(Headers::Request, "x-request-id", "req-1");
    host.set_header(Headers::Request, "mcp-session-id", "sess-1");
    host.properties
        .borrow_mut()
        .insert("source.address".into(), b"127.0.0.1:5000".to_vec());
    let mut s = root.new_stream().unwrap();
    assert_eq!(s.on_request_headers(host, false), Action::Continue);
    // Deliver the body in two chunks, as Envoy may.
    let (a, b) = body.as_bytes().split_at(body.len() / 2);
    host.set_body(Body::Request, a);
    assert_eq!(s.on_request_body(host, a.len(), false), Action::Continue);
    host.set_body(Body::Request, b);
    assert_eq!(s.on_request_body(host, b.len(), true), Action::Continue);
    host.advance(12);
    if let Some(st) = status {
        host.set_header(Headers::Response, ":status", st);
        s.on_response_headers(host, false);
        s.on_response_body(host, 40, true);
    }
    s.on_log(host);
}

fn shipped(host: &FakeHost) -> Vec<Value> {
    host.calls
        .borrow()
        .iter()
        .flat_map(|c| {
            String::from_utf8(c.body.clone())
                .unwrap()
                .lines()
                .map(|l| serde_json::from_str::<Value>(l).unwrap())
                .collect::<Vec<_>>()
        })
        .collect()
}

#[test]
fn bad_config_is_rejected_with_the_key() {
    let host = FakeHost::default();
    let mut r = Root::default();
    assert!(!r.configure(&host, br#"{"audit":{"cluster":"c","timeout_ms":"soon"}}"#));
    assert!(host.logged("audit.timeout_ms"), "{:?}", host.logs.borrow());
    assert!(r.new_stream().is_none());
}

#[test]
fn command_record_per_request_shipped_on_tick() {
    let host = FakeHost::default();
    host.now.set(1_795_514_400_000);
    let mut r = root(&host, CONFIG);
    assert_eq!(host.tick_ms.get(), 500);
    post(
        &host,
        &r,
        r#"{"jsonrpc":"2.0","id":7,"method":"tools/call","params":{"name":"echo","arguments":{"text":"hi"}}}"#,
        Some("200"),
    );
    assert!(
        host.calls.borrow().is_empty(),
        "shipping waits for the tick"
    );
    r.on_tick(&host);
    let calls = host.calls.borrow().clone();
    assert_eq!(calls.len(), 1);
    let c = &calls[0];
    assert_eq!(c.cluster, "audit_collector");
    let h = |k: &str| {
        c.headers
            .iter()
            .find(|(n, _)| n == k)
            .map(|(_, v)| v.clone())
    };
    assert_eq!(h(":authority").as_deref(), Some("collector"));
    assert_eq!(h(":path").as_deref(), Some("/ingest"));
    assert_eq!(h(":method").as_deref(), Some("POST"));
    assert_eq!(h("x-api-key").as_deref(), Some("k"));
    assert_eq!(h("content-type").as_deref(), Some("application/x-ndjson"));
    let recs = shipped(&host);
    assert_eq!(recs.len(), 1);
    let rec = &recs[0];
    assert_eq!(rec["v"], 1);
    assert_eq!(rec["kind"], "command");
    assert_eq!(rec["ts"], "2026-11-24T10:00:00.012Z");
    assert_eq!(rec["mcp"]["method"], "tools/call");
    assert_eq!(rec["mcp"]["id"], 7);
    assert_eq!(rec["mcp"]["tool"], "echo");
    assert_eq!(rec["mcp"]["arguments"]["text"], "hi");
    assert_eq!(rec["session"], "sess-1");
    assert_eq!(rec["request_id"], "req-1");
    assert_eq!(rec["identity"], Value::Null);
    assert_eq!(rec["source"]["address"], "127.0.0.1:5000");
    assert_eq!(rec["outcome"]["status"], "ok");
    assert_eq!(rec["outcome"]["http_status"], 200);
    assert_eq!(rec["outcome"]["duration_ms"], 12);
    assert_eq!(rec["chain"]["seq"], 1);
    assert_eq!(rec["id"].as_str().unwrap().len(), 36);
}

#[test]
fn batch_notification_and_garbage() {
    let host = FakeHost::default();
    let mut r = root(&host, CONFIG);
    post(
        &host,
        &r,
        r#"[{"jsonrpc":"2.0","id":1,"method":"ping"},{"jsonrpc":"2.0","method":"notifications/initialized"},{"nope":1}]"#,
        Some("200"),
    );
    post(&host, &r, "{not json", Some("400"));
    r.on_tick(&host);
    let recs = shipped(&host);
    let kinds: Vec<&str> = recs.iter().map(|r| r["kind"].as_str().unwrap()).collect();
    assert_eq!(
        kinds,
        ["command", "notification", "decode.error", "decode.error"]
    );
    assert!(recs[3]["reason"]
        .as_str()
        .unwrap()
        .contains("not valid JSON"));
    assert_eq!(recs[3]["outcome"]["status"], "error");
}

#[test]
fn out_of_scope_paths_and_gets_pass_untouched() {
    let host = FakeHost::default();
    let mut r = root(&host, CONFIG);
    host.set_header(Headers::Request, ":path", "/health");
    host.set_header(Headers::Request, ":method", "POST");
    let mut s = r.new_stream().unwrap();
    assert_eq!(s.on_request_headers(&host, false), Action::Continue);
    host.set_body(
        Body::Request,
        br#"{"jsonrpc":"2.0","id":1,"method":"ping"}"#,
    );
    s.on_request_body(&host, 10, true);
    s.on_log(&host);
    r.on_tick(&host);
    assert!(host.calls.borrow().is_empty());
}

#[test]
fn oversized_body_gives_decode_error() {
    let host = FakeHost::default();
    let mut r = root(
        &host,
        r#"{"audit":{"cluster":"c"},"mcp":{"max_body_bytes":16}}"#,
    );
    post(
        &host,
        &r,
        r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{}}"#,
        Some("200"),
    );
    r.on_tick(&host);
    let recs = shipped(&host);
    assert_eq!(recs[0]["kind"], "decode.error");
    assert!(recs[0]["reason"]
        .as_str()
        .unwrap()
        .contains("max_body_bytes"));
}

#[test]
fn upstream_failure_and_abort_outcomes() {
    let host = FakeHost::default();
    let mut r = root(&host, CONFIG);
    post(
        &host,
        &r,
        r#"{"jsonrpc":"2.0","id":1,"method":"ping"}"#,
        Some("503"),
    );
    post(
        &host,
        &r,
        r#"{"jsonrpc":"2.0","id":2,"method":"ping"}"#,
        None,
    );
    r.on_tick(&host);
    let recs = shipped(&host);
    assert_eq!(recs[0]["outcome"]["status"], "upstream_error");
    assert_eq!(recs[1]["outcome"]["status"], "aborted");
}

#[test]
fn failed_batches_are_retried_then_reported_dropped() {
    let host = FakeHost::default();
    let mut r = root(&host, CONFIG);
    post(
        &host,
        &r,
        r#"{"jsonrpc":"2.0","id":1,"method":"ping"}"#,
        Some("200"),
    );
    r.on_tick(&host);
    assert_eq!(host.calls.borrow().len(), 1);
    // Transport failure (no headers), then a 500.
    r.on_http_call_response(&host, 1, 0);
    host.advance(10_000);
    r.on_tick(&host);
    assert_eq!(host.calls.borrow().len(), 2);
    assert_eq!(host.calls.borrow()[0].body, host.calls.borrow()[1].body);
    host.set_header(Headers::CallResponse, ":status", "500");
    r.on_http_call_response(&host, 2, 1);
    host.advance(10_000);
    r.on_tick(&host);
    r.on_http_call_response(&host, 3, 1);
    assert!(host.logged("HTTP 500"));
    // max_retries is 2: the third failure gives the batch up; an audit.dropped takes its place.
    host.advance(10_000);
    r.on_tick(&host);
    let last = host.calls.borrow().last().unwrap().body.clone();
    let v: Value = serde_json::from_slice(last.strip_suffix(b"\n").unwrap()).unwrap();
    assert_eq!(v["kind"], "audit.dropped");
    assert_eq!(v["dropped"]["count"], 1);
    assert_eq!(v["dropped"]["reason"], "retries_exhausted");
    host.set_header(Headers::CallResponse, ":status", "200");
    r.on_http_call_response(&host, 4, 1);
    let stats = r.shared().unwrap().outbox.borrow().stats();
    assert_eq!(stats.shipped, 1);
    assert_eq!(stats.dropped_retries_exhausted, 1);
}

#[test]
fn refused_callout_is_retried_later() {
    let host = FakeHost::default();
    let mut r = root(&host, CONFIG);
    post(
        &host,
        &r,
        r#"{"jsonrpc":"2.0","id":1,"method":"ping"}"#,
        Some("200"),
    );
    host.fail_calls.set(true);
    r.on_tick(&host);
    assert!(host.logged("audit callout to cluster `audit_collector` failed"));
    host.fail_calls.set(false);
    host.advance(1_000);
    r.on_tick(&host);
    assert_eq!(host.calls.borrow().len(), 1);
}

#[test]
fn reject_mode_answers_503_when_full() {
    let host = FakeHost::default();
    let r = root(
        &host,
        r#"{"audit":{"cluster":"c","batch_max_records":1,"buffer_max_records":1,"on_buffer_full":"reject"}}"#,
    );
    post(
        &host,
        &r,
        r#"{"jsonrpc":"2.0","id":1,"method":"ping"}"#,
        Some("200"),
    );
    host.set_header(Headers::Request, ":path", "/mcp");
    let mut s = r.new_stream().unwrap();
    assert_eq!(s.on_request_headers(&host, false), Action::Pause);
    assert_eq!(host.responses.borrow()[0].0, 503);
    s.on_log(&host);
    assert_eq!(r.shared().unwrap().outbox.borrow().depth(), 1);
}
