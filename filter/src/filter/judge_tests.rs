//! Refusing what cannot be judged: under a rule that may deny, a body the filter cannot read
//! completely and unambiguously never goes upstream; without one it passes, recorded.

#[cfg(all(target_arch = "wasm32", target_os = "unknown"))]
use wasm_bindgen_test::wasm_bindgen_test as test;

use serde_json::Value;

use super::*;
use crate::host::fake::FakeHost;
use crate::testkit::exchange::{Done, Exchange};

const DENY: &str = r#"{"audit":{"cluster":"audit"},"mcp":{"paths":["/mcp"]},"policy":{"rules":[{"tools":["delete_*"],"action":"deny"}]}}"#;
const OPEN: &str = r#"{"audit":{"cluster":"audit"},"mcp":{"paths":["/mcp"]}}"#;

fn root(host: &FakeHost, config: &str) -> Root {
    let mut r = Root::default();
    assert!(r.configure(host, config.as_bytes()));
    r
}

fn call(body: &[u8], headers: &[(&str, &str)], host: &FakeHost, r: &Root) -> Done {
    // The exchange harness takes text; a body that is not UTF-8 is driven by hand.
    match std::str::from_utf8(body) {
        Ok(text) => host.exchange(
            r,
            &Exchange {
                headers,
                body: text,
                ..Exchange::default()
            },
        ),
        Err(_) => {
            let forwarded = host.forwards(r, body, body.len() / 2);
            Done {
                request: if forwarded {
                    Action::Continue
                } else {
                    Action::Pause
                },
                answered_locally: !forwarded,
                client_saw: Vec::new(),
            }
        }
    }
}

/// The last local reply: status and JSON body.
fn last_reply(host: &FakeHost) -> (u32, Value) {
    let (status, _, body) = host.responses.borrow().last().cloned().unwrap();
    (status, serde_json::from_slice(&body).unwrap())
}

fn records(host: &FakeHost, r: &mut Root) -> Vec<Value> {
    host.flush(r)
}

/// Bodies a lenient server may read as a call to `delete_records`, or that the filter
/// cannot read unambiguously, with the JSON-RPC code of their refusal and the id it names.
fn unjudgeable() -> Vec<(Vec<u8>, i64, Value)> {
    let deep = format!(
        r#"{{"jsonrpc":"2.0","id":3,"method":"tools/call","params":{{"name":"delete_records","arguments":{{"a":{}1{}}}}}}}"#,
        "[".repeat(200),
        "]".repeat(200)
    );
    let mut non_utf8 = br#"{"jsonrpc":"2.0","id":4,"method":"tools/call","params":{"name":"delete_records","arguments":{"s":""#.to_vec();
    non_utf8.extend_from_slice(b"\xff\xfe\"}}}");
    let v = |s: &str| s.as_bytes().to_vec();
    vec![
        (v(r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"delete_records","arguments":{},"_meta":{"n":1e400}}}"#), -32700, Value::from(1)),
        (v(r#"{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"delete_records","arguments":{"s":"\ud800"}}}"#), -32700, Value::from(2)),
        // The error answer's id is read leniently (no decision reads it).
        (v(&deep), -32700, Value::from(3)),
        (non_utf8, -32700, Value::from(4)),
        (v(r#"{"jsonrpc":"2.0","id":5,"method":"tools/call","params":{"name":"read_records","name":"delete_records"}}"#), -32700, Value::from(5)),
        (v(r#"{"jsonrpc":"2.0","id":6,"method":"tools/list","method":"tools/call","params":{"name":"delete_records"}}"#), -32700, Value::from(6)),
        (v(r#"{"jsonrpc":"2.0","id":7,"method":"tools/call","params":{"name":"read_records","Name":"delete_records"}}"#), -32600, Value::from(7)),
        (v(r#"{"jsonrpc":"2.0","id":8,"method":"tools/list","Method":"tools/call","params":{"name":"delete_records"}}"#), -32600, Value::from(8)),
        (v(r#"{"jsonrpc":"2.0","id":9,"method":"tools/call","params":{"name":["delete_records"]}}"#), -32602, Value::from(9)),
        (v(r#"{"jsonrpc":"2.0","id":10,"method":"tools/call","params":{"arguments":{}}}"#), -32602, Value::from(10)),
        (v("\u{feff}{\"jsonrpc\":\"2.0\",\"id\":11,\"method\":\"tools/call\",\"params\":{\"name\":\"delete_records\"}}"), -32700, Value::Null),
        (v(r#"{"jsonrpc":"2.0","id":12,"method":"tools/call","params":{"name":"delete_records"}} {}"#), -32700, Value::Null),
        (v(r#"[{"jsonrpc":"2.0","id":13,"method":"tools/list"},7]"#), -32600, Value::Null),
        (v(r#"{"jsonrpc":"2.0","#), -32700, Value::Null),
        (v(r#"{"id":14,"method":"tools/call","params":{"name":"delete_records"}}"#), -32600, Value::from(14)),
    ]
}

#[test]
fn unjudgeable_bodies_are_refused_under_a_rule_that_may_deny() {
    let host = FakeHost::default();
    let mut r = root(&host, DENY);
    let cases = unjudgeable();
    for (body, code, id) in &cases {
        let shown = String::from_utf8_lossy(body);
        let done = call(body, &[], &host, &r);
        assert!(done.answered_locally, "{shown}");
        assert_eq!(done.request, Action::Pause, "{shown}");
        let (status, reply) = last_reply(&host);
        assert_eq!(status, 400, "{shown}");
        assert_eq!(reply["error"]["code"], *code, "{shown}: {reply}");
        assert_eq!(reply["id"], *id, "{shown}: {reply}");
    }
    let recs = records(&host, &mut r);
    assert_eq!(recs.len(), cases.len());
    for rec in &recs {
        assert_eq!(rec["kind"], "decode.error", "{rec}");
        assert_eq!(rec["outcome"]["status"], "denied", "{rec}");
        assert_eq!(rec["outcome"]["http_status"], 400, "{rec}");
        let reason = rec["reason"].as_str().unwrap();
        assert!(reason.contains("policy could not be evaluated"), "{reason}");
    }
    // A plain allowed call still goes through.
    let done = call(
        br#"{"jsonrpc":"2.0","id":20,"method":"tools/call","params":{"name":"read_records","arguments":{}}}"#,
        &[],
        &host,
        &r,
    );
    assert_eq!(done.request, Action::Continue);
    assert!(!done.answered_locally);
}

#[test]
fn without_deny_rules_unjudgeable_bodies_pass_recorded() {
    let host = FakeHost::default();
    let mut r = root(&host, OPEN);
    let cases = unjudgeable();
    for (body, _, _) in &cases {
        let done = call(body, &[], &host, &r);
        assert_eq!(done.request, Action::Continue);
        assert!(!done.answered_locally);
    }
    // One decode.error each, but for the two calls without a string name: valid JSON-RPC,
    // recorded as commands naming no tool (the batch's valid element gets its own record).
    let recs = records(&host, &mut r);
    let errors: Vec<&Value> = recs
        .iter()
        .filter(|r| r["kind"] == "decode.error")
        .collect();
    assert_eq!(errors.len(), cases.len() - 2, "{recs:?}");
    for rec in errors {
        assert_ne!(rec["outcome"]["status"], "denied", "{rec}");
    }
}

#[test]
fn a_body_the_host_cannot_hand_over_is_refused_not_read_as_empty() {
    let host = FakeHost::default();
    let mut r = root(&host, DENY);
    host.fail_body.set(true);
    let body =
        r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"delete_records"}}"#;
    let done = call(body.as_bytes(), &[], &host, &r);
    assert!(done.answered_locally);
    let (status, reply) = last_reply(&host);
    assert_eq!(
        (status, reply["error"]["code"].clone()),
        (400, (-32700).into())
    );
    let rec = &records(&host, &mut r)[0];
    assert_eq!(rec["kind"], "decode.error");
    assert!(rec["reason"]
        .as_str()
        .unwrap()
        .contains("could not be read"));
    // Nothing can deny: passed, and the record says the body was not read.
    let host = FakeHost::default();
    let mut r = root(&host, OPEN);
    host.fail_body.set(true);
    let done = call(body.as_bytes(), &[], &host, &r);
    assert_eq!(done.request, Action::Continue);
    let rec = &records(&host, &mut r)[0];
    assert_eq!(rec["kind"], "decode.error");
    assert!(rec["reason"]
        .as_str()
        .unwrap()
        .contains("could not be read"));
}

#[test]
fn an_encoded_body_is_refused_at_the_headers() {
    let host = FakeHost::default();
    let mut r = root(&host, DENY);
    let done = call(b"gzipped bytes", &[("content-encoding", "gzip")], &host, &r);
    assert!(done.answered_locally);
    assert_eq!(last_reply(&host).0, 415);
    let rec = &records(&host, &mut r)[0];
    assert_eq!(rec["kind"], "decode.error");
    assert_eq!(rec["outcome"]["status"], "denied");
    // `identity` is no encoding.
    let body = r#"{"jsonrpc":"2.0","id":1,"method":"tools/list"}"#;
    let done = call(
        body.as_bytes(),
        &[("content-encoding", "identity")],
        &host,
        &r,
    );
    assert_eq!(done.request, Action::Continue);
}

#[test]
fn standard_headers_must_agree_with_the_body() {
    let host = FakeHost::default();
    let r = root(&host, DENY);
    let read = r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"read_records","arguments":{"region":"us-west1","n":3,"deep":{"on":true}},"_meta":{"io.modelcontextprotocol/protocolVersion":"2026-07-28"}}}"#;
    let refused: &[&[(&str, &str)]] = &[
        &[("mcp-method", "tools/list")],
        &[("mcp-method", "tools/call"), ("mcp-name", "echo")],
        // Mcp-Method without Mcp-Name for a call that names a tool.
        &[("mcp-method", "tools/call")],
        &[("mcp-method", "tools/call"), ("mcp-name", "=?base64?!!?=")],
        &[
            ("mcp-method", "tools/call"),
            ("mcp-name", "read_records"),
            ("mcp-protocol-version", "2025-11-25"),
        ],
        // The version header alone disagreeing with the body's `_meta` version.
        &[("mcp-protocol-version", "2025-11-25")],
        &[
            ("mcp-method", "tools/call"),
            ("mcp-name", "read_records"),
            ("mcp-param-region", "eu-west1"),
        ],
    ];
    for headers in refused {
        let done = call(read.as_bytes(), headers, &host, &r);
        assert!(done.answered_locally, "{headers:?}");
        let (status, reply) = last_reply(&host);
        assert_eq!(status, 400);
        assert_eq!(reply["error"]["code"], -32020, "{headers:?}");
        assert_eq!(reply["id"], 1);
    }
    let agreeing: &[&[(&str, &str)]] = &[
        &[],
        &[("mcp-method", "tools/call"), ("mcp-name", "read_records")],
        // base64 of "read_records", as clients encode values that are not plain tokens.
        &[
            ("mcp-method", "tools/call"),
            ("mcp-name", "=?base64?cmVhZF9yZWNvcmRz?="),
            ("mcp-protocol-version", "2026-07-28"),
            ("mcp-param-region", "us-west1"),
            ("mcp-param-n", "3"),
            ("mcp-param-on", "true"),
        ],
    ];
    for headers in agreeing {
        let done = call(read.as_bytes(), headers, &host, &r);
        assert_eq!(done.request, Action::Continue, "{headers:?}");
        assert!(!done.answered_locally, "{headers:?}");
    }
}

#[test]
fn no_randomness_fails_the_configuration() {
    let host = FakeHost::default();
    host.no_random.set(true);
    let mut r = Root::default();
    assert!(!r.configure(&host, OPEN.as_bytes()));
    assert!(host.logged("no randomness"), "{:?}", host.logs.borrow());
    assert!(r.new_stream(1).is_none());
}

#[test]
fn tools_list_on_a_resumed_get_stream_is_filtered() {
    let host = FakeHost::default();
    let r = root(&host, DENY);
    let event = b"id: 7\ndata: {\"jsonrpc\":\"2.0\",\"id\":4,\"result\":{\"tools\":[{\"name\":\"read_records\",\"inputSchema\":{}},{\"name\":\"delete_records\",\"inputSchema\":{}}]}}\n\n";
    let chunks: &[&[u8]] = &[event];
    let done = host.exchange(
        &r,
        &Exchange {
            method: "GET",
            headers: &[("last-event-id", "6"), ("mcp-session-id", "s1")],
            response_headers: &[("content-type", "text/event-stream")],
            chunks,
            ..Exchange::default()
        },
    );
    let saw = String::from_utf8(done.client_saw).unwrap();
    assert!(saw.contains("read_records"), "{saw}");
    assert!(!saw.contains("delete_records"), "{saw}");
}
