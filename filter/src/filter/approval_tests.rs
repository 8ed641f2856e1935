//! Calls under a `review` rule: the check callout, and every answer of the approval service
//! (or its absence) mapped to what the client gets and what the trail says. Never fails open.

#[cfg(all(target_arch = "wasm32", target_os = "unknown"))]
use wasm_bindgen_test::wasm_bindgen_test as test;

use serde_json::{json, Value};

use super::approval::{arguments_sha256, URL_ELICITATION_REQUIRED};
use super::*;
use crate::host::fake::FakeHost;
use crate::testkit::jwt::*;

const CALL: &str = r#"{"jsonrpc":"2.0","id":7,"method":"tools/call","params":{"name":"delete_user","arguments":{"user":"u1","password":"hunter2"}}}"#;
const SAFE: &str = r#"{"jsonrpc":"2.0","id":8,"method":"tools/call","params":{"name":"read_user","arguments":{"user":"u1"}}}"#;

fn config(providers: &str) -> String {
    format!(
        r#"{{"audit":{{"cluster":"audit"}},"mcp":{{"paths":["/mcp"]}},
        "auth":{{"mode":"required","jwks_wait_ms":2000,"providers":[{providers}]}},
        "masking":{{"fields":["password"]}},
        "policy":{{"rules":[{{"tools":["delete_*"],"action":"review"}}]}},
        "approvals":{{"cluster":"approvals","path":"/v1/check","headers":{{"x-api-key":"k1"}},"timeout_ms":1500}}}}"#
    )
}

fn inline_keys() -> String {
    format!(
        r#"{{"issuer":"{ISS}","audiences":["{AUD}"],"jwks":{}}}"#,
        jwks()
    )
}

fn setup(config: &str) -> (FakeHost, Root) {
    let host = FakeHost::default();
    host.now.set(NOW as u64 * 1000);
    let mut r = Root {
        context_id: 1,
        ..Root::default()
    };
    assert!(r.configure(&host, config.as_bytes()), "{config}");
    (host, r)
}

/// Sends `body` as alice through a new stream; returns it and its last request action.
fn send(host: &FakeHost, r: &Root, id: u32, body: &str) -> (Stream, Action) {
    host.clear_headers(Headers::Request);
    host.set_header(Headers::Request, ":path", "/mcp");
    host.set_header(Headers::Request, ":method", "POST");
    host.set_header(Headers::Request, "x-request-id", "req-1");
    let token = sign("ES256", &claims("alice"));
    host.set_header(
        Headers::Request,
        "authorization",
        &format!("Bearer {token}"),
    );
    let mut s = r.new_stream(id).unwrap();
    assert_eq!(s.on_request_headers(host, false), Action::Continue);
    host.set_body(Body::Request, body.as_bytes());
    let a = s.on_request_body(host, body.len(), true);
    (s, a)
}

/// The service's answer to the last callout, delivered to the stream.
fn answer(host: &FakeHost, s: &mut Stream, status: Option<&str>, body: &str) {
    let token = host.calls.borrow().len() as u32;
    host.clear_headers(Headers::CallResponse);
    if let Some(st) = status {
        host.set_header(Headers::CallResponse, ":status", st);
    }
    host.set_body(Body::CallResponse, body.as_bytes());
    let headers = usize::from(status.is_some());
    s.on_http_call_response(host, token, headers, body.len());
}

/// The server answers the resumed call; the stream ends.
fn finish(host: &FakeHost, s: &mut Stream, id: u32) {
    host.clear_headers(Headers::Response);
    host.set_header(Headers::Response, ":status", "200");
    host.set_header(Headers::Response, "content-type", "application/json");
    let reply = format!(r#"{{"jsonrpc":"2.0","id":{id},"result":{{"content":[]}}}}"#);
    s.on_response_headers(host, false);
    host.set_body(Body::Response, reply.as_bytes());
    s.on_response_body(host, reply.len(), true);
    s.on_log(host);
}

fn last_reply(host: &FakeHost) -> Value {
    let (status, _, body) = host.responses.borrow().last().cloned().unwrap();
    assert_eq!(status, 200);
    serde_json::from_slice(&body).unwrap()
}

fn records(host: &FakeHost, r: &mut Root) -> Vec<Value> {
    host.flush(r)
}

#[test]
fn a_reviewed_call_waits_for_the_service_and_goes_on_approved() {
    let (host, mut r) = setup(&config(&inline_keys()));
    let (mut s, a) = send(&host, &r, 5, CALL);
    assert_eq!(a, Action::Pause, "held while the service is asked");
    let check = host.calls.borrow().last().cloned().unwrap();
    assert_eq!(check.cluster, "approvals");
    assert_eq!(check.timeout_ms, 1500);
    for h in [
        (":path", "/v1/check"),
        (":method", "POST"),
        ("x-api-key", "k1"),
    ] {
        assert!(
            check.headers.contains(&(h.0.into(), h.1.into())),
            "{h:?} in {:?}",
            check.headers
        );
    }
    let asked: Value = serde_json::from_slice(&check.body).unwrap();
    assert_eq!(asked["subject"]["sub"], "alice");
    assert_eq!(asked["tool"], "delete_user");
    assert_eq!(asked["method"], "tools/call");
    assert_eq!(asked["request_id"], "req-1");
    assert_eq!(asked["arguments"]["user"], "u1");
    assert_ne!(asked["arguments"]["password"], "hunter2", "shown masked");
    assert!(!String::from_utf8_lossy(&check.body).contains("hunter2"));
    let unmasked = json!({"user": "u1", "password": "hunter2"});
    assert_eq!(asked["arguments_sha256"], arguments_sha256(Some(&unmasked)));
    assert!(host.resumed.borrow().is_empty());

    // Body callbacks that come while it waits do not let it go.
    assert_eq!(s.on_request_trailers(&host), Action::Pause);
    answer(
        &host,
        &mut s,
        Some("200"),
        r#"{"decision":"approved","id":"apr_1","url":"http://a/requests/apr_1","approved_by":"bob","mode":"once"}"#,
    );
    assert_eq!(*host.resumed.borrow(), vec![5], "approved: resumed");
    assert!(host.responses.borrow().is_empty(), "not answered locally");
    finish(&host, &mut s, 7);
    let recs = records(&host, &mut r);
    let cmd = recs.iter().find(|r| r["kind"] == "command").unwrap();
    assert_eq!(cmd["outcome"]["status"], "ok");
    assert_eq!(
        cmd["approval"],
        json!({"id": "apr_1", "approved_by": "bob", "mode": "once"})
    );
    assert_eq!(
        cmd["request_id"], "req-1",
        "the record and the check read one copy"
    );
    assert_ne!(cmd["mcp"]["arguments"]["password"], "hunter2");
}

#[test]
fn pending_answers_a_url_elicitation_and_records_the_request() {
    let (host, mut r) = setup(&config(&inline_keys()));
    let (mut s, _) = send(&host, &r, 5, CALL);
    answer(
        &host,
        &mut s,
        Some("200"),
        r#"{"decision":"pending","id":"apr_2","url":"http://127.0.0.1:8787/requests/apr_2","approved_by":null,"mode":null}"#,
    );
    assert!(host.resumed.borrow().is_empty(), "never reaches the server");
    let reply = last_reply(&host);
    assert_eq!(reply["id"], 7);
    assert_eq!(reply["error"]["code"], URL_ELICITATION_REQUIRED);
    let url = "http://127.0.0.1:8787/requests/apr_2";
    assert!(reply["error"]["message"].as_str().unwrap().contains(url));
    assert_eq!(
        reply["error"]["data"]["elicitations"][0],
        json!({"mode": "url", "elicitationId": "apr_2", "url": url,
               "message": reply["error"]["message"].clone()})
    );
    s.on_log(&host);
    let recs = records(&host, &mut r);
    let held = recs
        .iter()
        .find(|r| r["kind"] == "approval.requested")
        .unwrap();
    assert_eq!(held["identity"]["sub"], "alice");
    assert_eq!(held["mcp"]["tool"], "delete_user");
    assert_ne!(held["mcp"]["arguments"]["password"], "hunter2");
    assert_eq!(held["approval"], json!({"id": "apr_2", "url": url}));
    assert_eq!(held["outcome"]["status"], "denied");
    assert!(!recs.iter().any(|r| r["kind"] == "command"));
}

/// Denied, unreachable, slow, or an answer that is not a decision: refused, said why.
#[test]
fn every_other_answer_refuses_the_call() {
    let cases: [(Option<&str>, &str, &str); 8] = [
        (
            Some("200"),
            r#"{"decision":"denied","id":"apr_3","approved_by":null,"decided_by":"bob"}"#,
            "denied by `bob`",
        ),
        (None, "", "did not answer in time"),
        (Some("500"), "{}", "answered HTTP 500"),
        (Some("200"), "not json", "not a decision"),
        (
            Some("200"),
            r#"{"decision":"maybe","id":"x"}"#,
            "not a decision",
        ),
        (
            Some("200"),
            r#"{"decision":"approved","id":"x","mode":"forever"}"#,
            "unusable",
        ),
        (
            Some("200"),
            r#"{"decision":"pending","id":"x","url":"javascript:alert(1)"}"#,
            "without a usable URL",
        ),
        (
            Some("200"),
            r#"{"decision":"approved","id":""}"#,
            "unusable",
        ),
    ];
    for (status, body, why) in cases {
        let (host, mut r) = setup(&config(&inline_keys()));
        let (mut s, _) = send(&host, &r, 5, CALL);
        answer(&host, &mut s, status, body);
        assert!(host.resumed.borrow().is_empty(), "{body}: never resumed");
        let reply = last_reply(&host);
        assert_eq!(reply["error"]["code"], POLICY_DENIED_CODE, "{body}");
        assert_eq!(reply["id"], 7);
        s.on_log(&host);
        let recs = records(&host, &mut r);
        let denied = recs.iter().find(|r| r["kind"] == "policy.denied").unwrap();
        let reason = denied["reason"].as_str().unwrap();
        assert!(reason.contains(why), "{reason} should say {why}");
        assert!(!recs.iter().any(|r| r["kind"] == "command"));
    }
}

#[test]
fn a_check_that_cannot_be_sent_refuses_at_once() {
    let (host, mut r) = setup(&config(&inline_keys()));
    host.fail_calls.set(true);
    let (mut s, a) = send(&host, &r, 5, CALL);
    assert_eq!(a, Action::Pause);
    assert_eq!(last_reply(&host)["error"]["code"], POLICY_DENIED_CODE);
    s.on_log(&host);
    host.fail_calls.set(false);
    let recs = records(&host, &mut r);
    let denied = recs.iter().find(|r| r["kind"] == "policy.denied").unwrap();
    assert!(denied["reason"].as_str().unwrap().contains("unreachable"));
}

#[test]
fn calls_no_review_rule_names_send_no_check() {
    let (host, mut r) = setup(&config(&inline_keys()));
    let (mut s, a) = send(&host, &r, 5, SAFE);
    assert_eq!(a, Action::Continue);
    assert!(host.calls.borrow().is_empty(), "no callout");
    finish(&host, &mut s, 8);
    let recs = records(&host, &mut r);
    let cmd = recs.iter().find(|r| r["kind"] == "command").unwrap();
    assert!(cmd.get("approval").is_none());
}

#[test]
fn a_batch_holding_a_reviewed_call_is_refused_whole() {
    let (host, mut r) = setup(&config(&inline_keys()));
    let batch = format!("[{CALL},{SAFE}]");
    let (mut s, a) = send(&host, &r, 5, &batch);
    assert_eq!(a, Action::Pause);
    assert!(
        host.calls.borrow().is_empty(),
        "not asked: one approval covers one call"
    );
    let reply = last_reply(&host);
    assert_eq!(reply[0]["error"]["code"], POLICY_DENIED_CODE);
    assert_eq!(reply[1]["error"]["code"], POLICY_DENIED_CODE);
    s.on_log(&host);
    let recs = records(&host, &mut r);
    assert_eq!(
        recs.iter().filter(|r| r["kind"] == "policy.denied").count(),
        2
    );
}

#[test]
fn a_stream_gone_before_the_answer_is_forgotten() {
    let (host, mut r) = setup(&config(&inline_keys()));
    let (mut s, _) = send(&host, &r, 5, CALL);
    s.on_log(&host);
    answer(
        &host,
        &mut s,
        Some("200"),
        r#"{"decision":"approved","id":"apr_1","approved_by":"bob","mode":"once"}"#,
    );
    assert!(host.resumed.borrow().is_empty());
    assert!(host.responses.borrow().is_empty());
    let recs = records(&host, &mut r);
    let cmd = recs.iter().find(|r| r["kind"] == "command").unwrap();
    assert_eq!(cmd["outcome"]["status"], "aborted");
}

/// A request whose keys were still being fetched is judged by the root once they come: the
/// check is then the root's callout, and its answer reaches the waiting stream through it.
#[test]
fn a_call_judged_after_a_wait_for_keys_is_checked_through_the_root() {
    let providers = format!(
        r#"{{"issuer":"{ISS}","audiences":["{AUD}"],"jwks_uri":"https://idp.example.com/keys","jwks_cluster":"idp"}}"#
    );
    let (host, mut r) = setup(&config(&providers));
    host.clear_headers(Headers::Request);
    host.set_header(Headers::Request, ":path", "/mcp");
    host.set_header(Headers::Request, ":method", "POST");
    let token = sign("RS256", &claims("alice"));
    host.set_header(
        Headers::Request,
        "authorization",
        &format!("Bearer {token}"),
    );
    let mut s = r.new_stream(42).unwrap();
    assert_eq!(s.on_request_headers(&host, false), Action::Pause);
    host.set_body(Body::Request, CALL.as_bytes());
    assert_eq!(s.on_request_body(&host, CALL.len(), true), Action::Pause);
    r.on_tick(&host);
    host.set_header(Headers::CallResponse, ":status", "200");
    let doc = jwks().to_string();
    host.set_body(Body::CallResponse, doc.as_bytes());
    r.on_http_call_response(&host, 1, 3, doc.len());
    let check = host.calls.borrow().last().cloned().unwrap();
    assert_eq!(check.cluster, "approvals", "asked once the caller is known");
    assert!(host.resumed.borrow().is_empty());
    let answer = r#"{"decision":"approved","id":"apr_9","approved_by":"bob","mode":"window"}"#;
    host.set_body(Body::CallResponse, answer.as_bytes());
    r.on_http_call_response(&host, 2, 1, answer.len());
    assert_eq!(*host.resumed.borrow(), vec![42]);
    assert_eq!(
        host.effective.get(),
        1,
        "the root's context is current again"
    );
    finish(&host, &mut s, 7);
    let recs = records(&host, &mut r);
    let cmd = recs.iter().find(|r| r["kind"] == "command").unwrap();
    assert_eq!(cmd["approval"]["mode"], "window");
    assert_eq!(cmd["identity"]["sub"], "alice");
}

#[test]
fn review_needs_an_approval_service_and_names_calls() {
    let auth = format!(
        r#""auth":{{"mode":"required","providers":[{}]}}"#,
        inline_keys()
    );
    let without = format!(
        r#"{{"audit":{{"cluster":"audit"}},"mcp":{{"paths":["/mcp"]}},{auth},
        "policy":{{"rules":[{{"tools":["a"],"action":"allow"}},{{"tools":["delete_*"],"action":"review"}}]}}}}"#
    );
    let err = crate::config::Config::parse(without.as_bytes()).unwrap_err();
    assert_eq!(err.key, "policy.rules[1].action");
    assert!(err.to_string().contains("approvals"), "{err}");
    // Without auth there is no caller to bind an approval to.
    let anonymous = r#"{"audit":{"cluster":"audit"},"approvals":{"cluster":"a"},
        "policy":{"rules":[{"tools":["delete_*"],"action":"review"}]}}"#;
    let err = crate::config::Config::parse(anonymous.as_bytes()).unwrap_err();
    assert_eq!(err.key, "policy.rules[0].action");
    assert!(err.to_string().contains("auth"), "{err}");
    let default = r#"{"audit":{"cluster":"audit"},"policy":{"default":"review"},
        "approvals":{"cluster":"approvals"}}"#;
    let err = crate::config::Config::parse(default.as_bytes()).unwrap_err();
    assert_eq!(err.key, "policy.default");
    let bad_header =
        r#"{"audit":{"cluster":"audit"},"approvals":{"cluster":"a","headers":{"Host":"x"}}}"#;
    let err = crate::config::Config::parse(bad_header.as_bytes()).unwrap_err();
    assert_eq!(err.key, "approvals.headers");
    let ok = r#"{"audit":{"cluster":"audit"},"approvals":{"cluster":"a"}}"#;
    let c = crate::config::Config::parse(ok.as_bytes()).unwrap();
    let a = c.approvals.unwrap();
    assert_eq!(
        (a.authority.as_str(), a.path.as_str(), a.timeout_ms),
        ("a", "/v1/check", 2000)
    );
}

/// A `review` rule on methods: the call names no tool, so its whole `params` (but `_meta`)
/// bind the approval: reading another URI is another approval.
#[test]
fn calls_naming_no_tool_are_bound_by_their_params() {
    let config = config(&inline_keys()).replace(
        r#"{"tools":["delete_*"],"action":"review"}"#,
        r#"{"methods":["resources/read"],"action":"review"}"#,
    );
    let (host, r) = setup(&config);
    let read = |uri: &str, meta: &str| {
        format!(
            r#"{{"jsonrpc":"2.0","id":3,"method":"resources/read","params":{{"uri":"{uri}"{meta}}}}}"#
        )
    };
    let mut asked = Vec::new();
    for body in [
        read("file:///a", ""),
        read("file:///b", ""),
        read("file:///a", r#","_meta":{"progressToken":1}"#),
    ] {
        let (mut s, a) = send(&host, &r, 5, &body);
        assert_eq!(a, Action::Pause);
        let check = host.calls.borrow().last().cloned().unwrap();
        let v: Value = serde_json::from_slice(&check.body).unwrap();
        assert_eq!(v["method"], "resources/read");
        assert_eq!(v["tool"], Value::Null);
        assert!(v["arguments"].get("_meta").is_none(), "{v}");
        asked.push(v["arguments_sha256"].as_str().unwrap().to_string());
        s.on_log(&host);
    }
    assert_ne!(asked[0], asked[1], "another URI, another approval");
    assert_eq!(asked[0], asked[2], "_meta does not change what runs");
}
