//! Masking through the glue: records never hold a masked value; with `responses` the
//! client's answers are rewritten (JSON whole, SSE event by event, a secret split across
//! chunks still caught); with `requests` the server gets masked arguments; bodies beyond
//! `masking.max_bytes` are passed (said so) or refused.

#[cfg(all(target_arch = "wasm32", target_os = "unknown"))]
use wasm_bindgen_test::wasm_bindgen_test as test;

use serde_json::Value;

use super::*;
use crate::host::fake::FakeHost;
use crate::testkit::exchange::Exchange;

const SECRET_MAIL: &str = "alice@example.com";
const CALL: &str = r#"{"jsonrpc":"2.0","id":9,"method":"tools/call","params":{"name":"lookup","arguments":{"Password":"hunter2","note":"mail alice@example.com"}}}"#;

fn cfg(masking: &str) -> String {
    format!(r#"{{"audit":{{"cluster":"c"}},"masking":{masking}}}"#)
}

const JSON: &[(&str, &str)] = &[
    ("content-type", "application/json"),
    ("content-length", "1"),
];
const SSE: &[(&str, &str)] = &[("content-type", "text/event-stream")];

/// The call, with a `content-length` the filter must drop when it rewrites the body.
fn call<'a>(response_headers: &'a [(&'a str, &'a str)], chunks: &'a [&'a [u8]]) -> Exchange<'a> {
    Exchange {
        headers: &[("content-length", "1")],
        body: CALL,
        response_headers,
        chunks,
        ..Exchange::default()
    }
}

fn utf8(bytes: &[u8]) -> String {
    String::from_utf8(bytes.to_vec()).unwrap()
}

fn root(host: &FakeHost, config: &str) -> Root {
    let mut r = Root::default();
    assert!(
        r.configure(host, config.as_bytes()),
        "{:?}",
        host.logs.borrow()
    );
    r
}

#[test]
fn records_are_masked_and_the_server_gets_what_the_client_sent() {
    let host = FakeHost::default();
    let mut r = root(
        &host,
        &cfg(r#"{"fields":["password"],"detectors":["email"]}"#),
    );
    let reply =
        r#"{"jsonrpc":"2.0","id":9,"error":{"code":-32000,"message":"no user alice@example.com"}}"#;
    let done = host.exchange(&r, &call(JSON, &[reply.as_bytes()]));
    assert!(
        host.rewritten.borrow().is_empty(),
        "nothing rewritten without requests/responses"
    );
    assert_eq!(
        done.client_saw,
        reply.as_bytes(),
        "the client's answer is untouched"
    );
    let recs = host.flush(&mut r);
    let line = recs[0].to_string();
    assert!(
        !line.contains("hunter2") && !line.contains(SECRET_MAIL),
        "{line}"
    );
    assert_eq!(recs[0]["mcp"]["arguments"]["Password"], "[REDACTED]");
    assert_eq!(recs[0]["mcp"]["arguments"]["note"], "mail [REDACTED]");
    let masked: Vec<&str> = recs[0]["masked"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    assert_eq!(
        masked,
        [
            "/params/arguments/Password",
            "/params/arguments/note",
            "/error/message"
        ]
    );
}

#[test]
fn json_answers_are_masked_for_the_client_when_asked() {
    let host = FakeHost::default();
    let mut r = root(
        &host,
        &cfg(r#"{"detectors":["email","credit_card"],"responses":true}"#),
    );
    let text =
        serde_json::to_string(r#"{"owner":"alice@example.com","card":"4111 1111 1111 1111"}"#)
            .unwrap();
    let reply = format!(
        r#"{{"jsonrpc":"2.0","id":9,"result":{{"content":[{{"type":"text","text":{text}}}]}}}}"#
    );
    let (a, b) = reply.split_at(reply.len() / 2);
    let done = host.exchange(&r, &call(JSON, &[a.as_bytes(), b.as_bytes()]));
    assert_eq!(
        host.header(Headers::Request, "accept-encoding").as_deref(),
        Some("identity")
    );
    assert!(
        host.header(Headers::Response, "content-length").is_none(),
        "length changes"
    );
    let saw = utf8(&done.client_saw);
    assert!(!saw.contains(SECRET_MAIL) && !saw.contains("4111"), "{saw}");
    let v: Value = serde_json::from_str(&saw).unwrap();
    assert_eq!(v["id"], 9, "still a valid reply");
    let recs = host.flush(&mut r);
    assert!(recs[0]["masked"]
        .as_array()
        .unwrap()
        .iter()
        .any(|p| p == "/result/content/0/text/owner"));
}

#[test]
fn sse_answers_are_masked_event_by_event_even_split_inside_a_secret() {
    let host = FakeHost::default();
    let mut r = root(
        &host,
        &cfg(r#"{"fields":["token"],"detectors":["email"],"responses":true}"#),
    );
    let events = concat!(
        "id: 1\ndata: {\"jsonrpc\":\"2.0\",\"method\":\"notifications/message\",\"params\":{\"level\":\"info\",\"data\":\"hello bob@example.org\"}}\n\n",
        "id: 2\ndata: {\"jsonrpc\":\"2.0\",\"id\":9,\"result\":{\"content\":[],\"structuredContent\":{\"token\":\"s3cr3t\",\"who\":\"alice@example.com\"}}}\n\n",
    );
    // Split inside the e-mail address and inside the token.
    let cut1 = events.find("bob@").unwrap() + 2;
    let cut2 = events.find("s3cr").unwrap() + 3;
    let e = events.as_bytes();
    let done = host.exchange(&r, &call(SSE, &[&e[..cut1], &e[cut1..cut2], &e[cut2..]]));
    let saw = utf8(&done.client_saw);
    for secret in ["bob@example.org", "s3cr3t", SECRET_MAIL] {
        assert!(!saw.contains(secret), "{secret} reached the client: {saw}");
    }
    assert_eq!(
        saw.matches("\n\n").count(),
        2,
        "both events delivered: {saw}"
    );
    assert!(saw.contains("id: 2"));
    let recs = host.flush(&mut r);
    assert_eq!(recs[0]["outcome"]["status"], "ok");
}

#[test]
fn requests_are_masked_before_the_server_when_asked() {
    let host = FakeHost::default();
    let r = root(&host, &cfg(r#"{"fields":["password"],"requests":true}"#));
    let done = host.exchange(
        &r,
        &call(
            JSON,
            &[br#"{"jsonrpc":"2.0","id":9,"result":{"content":[]}}"#],
        ),
    );
    assert_eq!(done.request, Action::Continue);
    assert!(host.header(Headers::Request, "content-length").is_none());
    let sent = host.rewritten.borrow()[0].clone();
    let v: Value = serde_json::from_slice(&sent).unwrap();
    assert_eq!(v["params"]["arguments"]["Password"], "[REDACTED]");
    assert_eq!(v["params"]["name"], "lookup");
}

#[test]
fn bodies_beyond_the_bound_are_passed_with_a_record_or_refused() {
    let host = FakeHost::default();
    let mut r = root(&host, &cfg(r#"{"fields":["password"],"max_bytes":64}"#));
    host.exchange(
        &r,
        &call(
            JSON,
            &[br#"{"jsonrpc":"2.0","id":9,"result":{"content":[]}}"#],
        ),
    );
    let recs = host.flush(&mut r);
    assert_eq!(recs[0]["kind"], "command");
    assert!(
        recs[0]["mcp"]["arguments"].is_null(),
        "never recorded unmasked"
    );
    assert!(!recs[0].to_string().contains("hunter2"));
    assert_eq!(recs[1]["kind"], "decode.error");
    assert!(recs[1]["reason"]
        .as_str()
        .unwrap()
        .contains("masking.max_bytes"));

    let host = FakeHost::default();
    let mut r = root(
        &host,
        &cfg(r#"{"fields":["password"],"max_bytes":64,"on_too_large":"block"}"#),
    );
    let done = host.exchange(&r, &call(JSON, &[]));
    assert!(done.answered_locally);
    assert_eq!(host.responses.borrow()[0].0, 413);
    let recs = host.flush(&mut r);
    assert_eq!(recs[0]["kind"], "decode.error");
    assert_eq!(recs[0]["outcome"]["status"], "denied");
    assert!(!recs[0].to_string().contains("hunter2"));
}

#[test]
fn result_previews_are_masked_whole_then_cut() {
    let host = FakeHost::default();
    let config = r#"{"audit":{"cluster":"c"},"mcp":{"result_preview_bytes":60},"masking":{"detectors":["email"]}}"#;
    let mut r = root(&host, config);
    let reply = r#"{"jsonrpc":"2.0","id":9,"result":{"content":[{"type":"text","text":"owner alice@example.com, since 2019, plan gold, seats 40, renewal pending"}]}}"#;
    let sse = format!("id: 1\ndata: {reply}\n\n");
    for (headers, answer) in [(JSON, reply), (SSE, sse.as_str())] {
        let done = host.exchange(&r, &call(headers, &[answer.as_bytes()]));
        assert!(
            utf8(&done.client_saw).contains(SECRET_MAIL),
            "only the record is masked"
        );
        let recs = host.flush(&mut r);
        let preview = recs[0]["outcome"]["result_preview"].as_str().unwrap();
        assert!(
            preview.starts_with(r#"{"content":[{"text":"owner [REDACTED], since"#),
            "{preview}"
        );
        assert!(
            preview.ends_with('…') && preview.len() <= 60 + '…'.len_utf8(),
            "{preview}"
        );
        assert!(recs[0]["masked"]
            .as_array()
            .unwrap()
            .iter()
            .any(|p| p == "/result/content/0/text"));
    }
    // Off by default: no preview, and answers are only classified.
    let host = FakeHost::default();
    let mut r = root(&host, &cfg(r#"{"detectors":["email"]}"#));
    host.exchange(
        &r,
        &call(
            JSON,
            &[br#"{"jsonrpc":"2.0","id":9,"result":{"content":[]}}"#],
        ),
    );
    assert!(host.flush(&mut r)[0]["outcome"]
        .get("result_preview")
        .is_none());
}
