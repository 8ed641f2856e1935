#[cfg(all(target_arch = "wasm32", target_os = "unknown"))]
use wasm_bindgen_test::wasm_bindgen_test as test;

use serde_json::Value;

use super::*;
use crate::host::fake::FakeHost;

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
    let mut s = root.new_stream(7).unwrap();
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
        s.on_response_body(host, 0, true);
    }
    s.on_log(host);
}

#[test]
fn bad_config_is_rejected_with_the_key() {
    let host = FakeHost::default();
    let mut r = Root::default();
    assert!(!r.configure(&host, br#"{"audit":{"cluster":"c","timeout_ms":"soon"}}"#));
    assert!(host.logged("audit.timeout_ms"), "{:?}", host.logs.borrow());
    assert!(r.new_stream(7).is_none());
}

#[test]
fn command_record_per_request_shipped_on_tick() {
    let host = FakeHost::default();
    host.now.set(1_795_514_400_000);
    let mut r = root(&host, CONFIG);
    assert_eq!(
        host.tick_ms.get(),
        FAST_TICK_MS,
        "flush_interval_ms 500; the tick is faster"
    );
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
    let recs = host.shipped();
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
    let recs = host.shipped();
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
    let mut s = r.new_stream(7).unwrap();
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
    let recs = host.shipped();
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
    let recs = host.shipped();
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
    r.on_http_call_response(&host, 1, 0, 0);
    host.advance(10_000);
    r.on_tick(&host);
    assert_eq!(host.calls.borrow().len(), 2);
    assert_eq!(host.calls.borrow()[0].body, host.calls.borrow()[1].body);
    host.set_header(Headers::CallResponse, ":status", "500");
    r.on_http_call_response(&host, 2, 1, 0);
    host.advance(10_000);
    r.on_tick(&host);
    r.on_http_call_response(&host, 3, 1, 0);
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
    r.on_http_call_response(&host, 4, 1, 0);
    let stats = r.outbox_stats().unwrap();
    assert_eq!(stats.shipped, 1);
    assert_eq!(stats.dropped_retries_exhausted, 1);
}

/// A backlog (records queued faster than batches are acknowledged) leaves in full batches on
/// the fast tick, not only at the flush: waiting a whole flush interval at a high record rate
/// would fill the buffer and drop records.
#[test]
fn full_batches_leave_between_flushes() {
    let host = FakeHost::default();
    let mut r = root(
        &host,
        r#"{"audit":{"cluster":"c","flush_interval_ms":5000,"batch_max_records":10},"mcp":{"paths":["/mcp"]}}"#,
    );
    r.on_tick(&host); // the first flush, nothing queued
    let ping = r#"{"jsonrpc":"2.0","id":1,"method":"ping"}"#;
    for _ in 0..25 {
        post(&host, &r, ping, Some("200"));
    }
    assert!(host.calls.borrow().is_empty(), "streams never ship");
    host.set_header(Headers::CallResponse, ":status", "200");
    host.advance(FAST_TICK_MS);
    r.on_tick(&host);
    assert_eq!(
        host.calls.borrow().len(),
        1,
        "a full batch leaves on the next tick"
    );
    r.on_http_call_response(&host, 1, 1, 0);
    assert_eq!(
        host.calls.borrow().len(),
        2,
        "the next full one on the answer"
    );
    r.on_http_call_response(&host, 2, 1, 0);
    host.advance(FAST_TICK_MS);
    r.on_tick(&host);
    assert_eq!(
        host.calls.borrow().len(),
        2,
        "a partial batch waits for the flush"
    );
    host.advance(5000);
    r.on_tick(&host);
    assert_eq!(host.calls.borrow().len(), 3);
    r.on_http_call_response(&host, 3, 1, 0);
    assert_eq!(host.shipped().len(), 25);
    assert_eq!(r.outbox_stats().unwrap().shipped, 25);
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
    let mut s = r.new_stream(7).unwrap();
    assert_eq!(s.on_request_headers(&host, false), Action::Pause);
    assert_eq!(host.responses.borrow()[0].0, 503);
    s.on_log(&host);
    assert_eq!(r.outbox_depth(), 1);
}

mod auth_and_policy {
    #[cfg(all(target_arch = "wasm32", target_os = "unknown"))]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    use serde_json::{json, Value};

    use super::super::*;
    use crate::host::fake::FakeHost;
    use crate::testkit::jwt::*;

    fn config(extra_auth: &str, policy: &str) -> String {
        format!(
            r#"{{"audit":{{"cluster":"audit"}},"mcp":{{"paths":["/mcp"]}},
            "auth":{{"mode":"required","providers":[{{"name":"corp","issuer":"{ISS}","audiences":["{AUD}"],
              "jwks":{jwks}}}]{extra_auth}}}{policy}}}"#,
            jwks = jwks()
        )
    }

    fn host_at_now() -> FakeHost {
        let h = FakeHost::default();
        h.now.set(NOW as u64 * 1000);
        h
    }

    fn request(host: &FakeHost, token: Option<&str>, method: &str) {
        host.clear_headers(Headers::Request);
        host.set_header(Headers::Request, ":path", "/mcp");
        host.set_header(Headers::Request, ":method", method);
        host.set_header(Headers::Request, ":scheme", "https");
        host.set_header(Headers::Request, ":authority", "mcp.example.com");
        host.set_header(Headers::Request, "x-mcptrail-sub", "spoofed-admin");
        if let Some(t) = token {
            host.set_header(Headers::Request, "authorization", &format!("Bearer {t}"));
        }
    }

    /// Status and `WWW-Authenticate` of the first local reply.
    fn first_reply(host: &FakeHost) -> (u32, Option<String>) {
        let (status, headers, _) = host.responses.borrow()[0].clone();
        let www = headers
            .into_iter()
            .find(|(k, _)| k == "www-authenticate")
            .map(|(_, v)| v);
        (status, www)
    }

    fn body(host: &FakeHost, s: &mut Stream, body: &str) -> Action {
        host.set_body(Body::Request, body.as_bytes());
        s.on_request_body(host, body.len(), true)
    }

    fn finish(host: &FakeHost, s: &mut Stream, status: &str) {
        host.set_header(Headers::Response, ":status", status);
        s.on_response_headers(host, false);
        s.on_response_body(host, 10, true);
        s.on_log(host);
    }

    const CALL: &str = r#"{"jsonrpc":"2.0","id":9,"method":"tools/call","params":{"name":"delete_user","arguments":{"id":"u1"}}}"#;

    #[test]
    fn missing_token_gets_the_mcp_challenge() {
        let host = host_at_now();
        let mut r = Root::default();
        assert!(r.configure(&host, config("", "").as_bytes()));
        request(&host, None, "POST");
        let mut s = r.new_stream(3).unwrap();
        assert_eq!(s.on_request_headers(&host, false), Action::Pause);
        let (status, headers, _) = host.responses.borrow()[0].clone();
        assert_eq!(status, 401);
        let www = headers
            .iter()
            .find(|(k, _)| k == "www-authenticate")
            .unwrap()
            .1
            .clone();
        assert_eq!(
            www,
            "Bearer resource_metadata=\"https://mcp.example.com/.well-known/oauth-protected-resource/mcp\""
        );
        assert_eq!(
            body(&host, &mut s, CALL),
            Action::Pause,
            "nothing goes upstream"
        );
        finish(&host, &mut s, "401");
        r.on_tick(&host);
        let rec = &host.shipped()[0];
        assert_eq!(rec["kind"], "auth.denied");
        assert_eq!(rec["auth"]["error"], "missing_token");
        assert_eq!(rec["outcome"]["status"], "denied");
        assert_eq!(rec["outcome"]["http_status"], 401);
    }

    #[test]
    fn invalid_token_is_refused_and_never_recorded() {
        let host = host_at_now();
        let mut r = Root::default();
        assert!(r.configure(&host, config("", "").as_bytes()));
        let forged = sign_with("RS256", Some("rsa"), &claims("mallory"), RSA2_PEM);
        request(&host, Some(&forged), "POST");
        let mut s = r.new_stream(3).unwrap();
        assert_eq!(s.on_request_headers(&host, false), Action::Pause);
        let (status, www) = first_reply(&host);
        assert_eq!(status, 401);
        let www = www.unwrap();
        assert!(www.ends_with(", error=\"invalid_token\""), "{www}");
        finish(&host, &mut s, "401");
        r.on_tick(&host);
        let line = String::from_utf8(host.calls.borrow()[0].body.clone()).unwrap();
        assert!(
            !line.contains(&forged[forged.len() - 20..]),
            "the token never reaches a record"
        );
        let rec: Value = serde_json::from_str(line.trim()).unwrap();
        assert_eq!(rec["auth"]["error"], "bad_signature");
        assert_eq!(rec["auth"]["issuer"], ISS);
        assert_eq!(rec["auth"]["kid"], "rsa");
    }

    #[test]
    fn valid_token_passes_with_identity_and_forwarding() {
        let host = host_at_now();
        let mut r = Root::default();
        let cfg = config(r#","forward_identity":true,"forward_token":false"#, "");
        assert!(r.configure(&host, cfg.as_bytes()));
        let t = sign("ES256", &claims("alice"));
        request(&host, Some(&t), "POST");
        let mut s = r.new_stream(3).unwrap();
        assert_eq!(s.on_request_headers(&host, false), Action::Continue);
        let h = |n: &str| host.header(Headers::Request, n);
        assert_eq!(
            h("x-mcptrail-sub").as_deref(),
            Some("alice"),
            "spoofed header replaced"
        );
        assert_eq!(h("x-mcptrail-groups").as_deref(), Some("eng"));
        assert_eq!(h("authorization"), None, "forward_token: false");
        assert_eq!(body(&host, &mut s, CALL), Action::Continue);
        finish(&host, &mut s, "200");
        r.on_tick(&host);
        let rec = &host.shipped()[0];
        assert_eq!(rec["kind"], "command");
        assert_eq!(rec["identity"]["sub"], "alice");
        assert_eq!(rec["identity"]["iss"], ISS);
        assert_eq!(rec["identity"]["groups"], json!(["eng"]));
        assert_eq!(rec["identity"]["client_id"], "agent-1");
    }

    #[test]
    fn spoofed_identity_headers_are_stripped_without_auth() {
        let host = FakeHost::default();
        let r = super::root(&host, super::CONFIG);
        request(&host, None, "POST");
        let mut s = r.new_stream(1).unwrap();
        s.on_request_headers(&host, false);
        assert_eq!(host.header(Headers::Request, "x-mcptrail-sub"), None);
    }

    #[test]
    fn protected_resource_metadata() {
        let host = host_at_now();
        let r = {
            let mut r = Root::default();
            assert!(r.configure(
                &host,
                config(r#","required_scopes":["mcp"]"#, "").as_bytes()
            ));
            r
        };
        for path in [
            "/.well-known/oauth-protected-resource",
            "/.well-known/oauth-protected-resource/mcp",
        ] {
            host.responses.borrow_mut().clear();
            request(&host, None, "GET");
            host.set_header(Headers::Request, ":path", path);
            let mut s = r.new_stream(1).unwrap();
            assert_eq!(s.on_request_headers(&host, true), Action::Pause);
            let (status, _, body) = host.responses.borrow()[0].clone();
            assert_eq!(status, 200);
            let doc: Value = serde_json::from_slice(&body).unwrap();
            assert_eq!(doc["resource"], "https://mcp.example.com/mcp");
            assert_eq!(doc["authorization_servers"], json!([ISS]));
            assert_eq!(doc["bearer_methods_supported"], json!(["header"]));
            assert_eq!(doc["scopes_supported"], json!(["mcp"]));
        }
    }

    #[test]
    fn missing_scope_is_403_insufficient_scope() {
        let host = host_at_now();
        let mut r = Root::default();
        assert!(r.configure(
            &host,
            config(r#","required_scopes":["mcp:tools"]"#, "").as_bytes()
        ));
        request(&host, Some(&sign("EdDSA", &claims("bob"))), "POST");
        let mut s = r.new_stream(1).unwrap();
        assert_eq!(s.on_request_headers(&host, false), Action::Pause);
        let (status, www) = first_reply(&host);
        assert_eq!(status, 403);
        let www = www.unwrap();
        assert!(
            www.contains("error=\"insufficient_scope\", scope=\"mcp:tools\""),
            "{www}"
        );
        let mut c = claims("carol");
        c["scope"] = json!("openid mcp:tools");
        request(&host, Some(&sign("EdDSA", &c)), "POST");
        let mut s = r.new_stream(2).unwrap();
        assert_eq!(s.on_request_headers(&host, false), Action::Continue);
    }

    const POLICY: &str = r#","policy":{"rules":[{"tools":["delete_*"],"groups":["admins"],"action":"allow"},{"tools":["delete_*"],"action":"deny"}]}"#;

    #[test]
    fn policy_denies_with_a_json_rpc_error_and_holds_nothing_back_when_allowed() {
        let host = host_at_now();
        let mut r = Root::default();
        assert!(r.configure(&host, config("", POLICY).as_bytes()));
        // eng may not delete.
        request(&host, Some(&sign("RS256", &claims("alice"))), "POST");
        let mut s = r.new_stream(1).unwrap();
        assert_eq!(
            s.on_request_headers(&host, false),
            Action::Continue,
            "the headers go on; the body is held in the body callbacks"
        );
        host.set_body(Body::Request, &CALL.as_bytes()[..20]);
        assert_eq!(s.on_request_body(&host, 20, false), Action::Pause);
        assert_eq!(
            body(&host, &mut s, CALL),
            Action::Pause,
            "denied: never reaches the server"
        );
        let (status, _, reply) = host.responses.borrow()[0].clone();
        assert_eq!(status, 200);
        let reply: Value = serde_json::from_slice(&reply).unwrap();
        assert_eq!(reply["id"], 9);
        assert_eq!(reply["error"]["code"], POLICY_DENIED_CODE);
        s.on_log(&host);
        // admins may.
        let mut c = claims("root");
        c["groups"] = json!(["admins"]);
        request(&host, Some(&sign("RS256", &c)), "POST");
        let mut s = r.new_stream(2).unwrap();
        assert_eq!(s.on_request_headers(&host, false), Action::Continue);
        assert_eq!(body(&host, &mut s, CALL), Action::Continue);
        finish(&host, &mut s, "200");
        r.on_tick(&host);
        let recs = host.shipped();
        assert_eq!(recs[0]["kind"], "policy.denied");
        assert_eq!(recs[0]["mcp"]["tool"], "delete_user");
        assert_eq!(recs[0]["policy"]["rule"], 1);
        assert_eq!(recs[0]["identity"]["sub"], "alice");
        assert_eq!(recs[1]["kind"], "command");
        assert_eq!(recs[1]["identity"]["sub"], "root");
    }

    #[test]
    fn a_denied_notification_gets_403() {
        let host = host_at_now();
        let mut r = Root::default();
        let policy = r#","policy":{"rules":[{"methods":["notifications/*"],"action":"deny"}]}"#;
        assert!(r.configure(&host, config("", policy).as_bytes()));
        request(&host, Some(&sign("RS256", &claims("alice"))), "POST");
        let mut s = r.new_stream(1).unwrap();
        assert_eq!(s.on_request_headers(&host, false), Action::Continue);
        let note = r#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#;
        assert_eq!(body(&host, &mut s, note), Action::Pause);
        assert_eq!(first_reply(&host).0, 403);
        s.on_log(&host);
        r.on_tick(&host);
        let rec = &host.shipped()[0];
        assert_eq!(rec["kind"], "policy.denied");
        assert_eq!(rec["outcome"]["http_status"], 403);
    }

    /// Answers the JWKS callout `token` of `r` with the test key set.
    fn answer_jwks(host: &FakeHost, r: &mut Root, token: u32) {
        host.set_header(Headers::CallResponse, ":status", "200");
        let doc = jwks().to_string();
        host.set_body(Body::CallResponse, doc.as_bytes());
        r.on_http_call_response(host, token, 3, doc.len());
    }

    fn fetch_config() -> String {
        format!(
            r#"{{"audit":{{"cluster":"audit","flush_interval_ms":1000}},"mcp":{{"paths":["/mcp"]}},
            "auth":{{"mode":"required","jwks_wait_ms":2000,"providers":[{{"issuer":"{ISS}","audiences":["{AUD}"],
              "jwks_uri":"https://idp.example.com/keys","jwks_cluster":"idp"}}]}}}}"#
        )
    }

    #[test]
    fn requests_wait_for_the_first_jwks_fetch_then_resume() {
        let host = host_at_now();
        let mut r = Root {
            context_id: 1,
            ..Root::default()
        };
        assert!(r.configure(&host, fetch_config().as_bytes()));
        assert_eq!(host.tick_ms.get(), FAST_TICK_MS);
        request(&host, Some(&sign("RS256", &claims("alice"))), "POST");
        let mut s = r.new_stream(42).unwrap();
        assert_eq!(
            s.on_request_headers(&host, false),
            Action::Pause,
            "waits for keys"
        );
        assert_eq!(body(&host, &mut s, CALL), Action::Pause);
        r.on_tick(&host);
        let call = host.calls.borrow()[0].clone();
        assert_eq!(call.cluster, "idp");
        assert!(call.headers.contains(&(":path".into(), "/keys".into())));
        assert!(call
            .headers
            .contains(&(":authority".into(), "idp.example.com".into())));
        answer_jwks(&host, &mut r, 1);
        assert_eq!(*host.resumed.borrow(), vec![42]);
        assert_eq!(
            host.effective.get(),
            1,
            "the root's own context is current again"
        );
        assert!(host.logged("JWKS loaded, 4 keys"));
        finish(&host, &mut s, "200");
        host.advance(1000);
        r.on_tick(&host);
        let recs = host.shipped();
        assert_eq!(recs.last().unwrap()["identity"]["sub"], "alice");
    }

    /// Without `allow_on_headers_stop_iteration` (Istio, Envoy Gateway) a Pause in the headers
    /// hides the body callbacks until the stream is resumed: the root resumes a request whose
    /// body it has not seen, and the body callbacks judge it then. With the flag, a body seen
    /// whole while waiting is judged by the root before anything goes on.
    #[test]
    fn held_bodies_are_judged_whether_body_callbacks_come_before_or_after_the_resume() {
        let config = fetch_config().replace(
            "}]}}",
            r#"}]}, "policy":{"rules":[{"tools":["delete_*"],"action":"deny"}]}}"#,
        );
        for body_while_waiting in [false, true] {
            let host = host_at_now();
            let mut r = Root {
                context_id: 1,
                ..Root::default()
            };
            assert!(r.configure(&host, config.as_bytes()), "{config}");
            request(&host, Some(&sign("RS256", &claims("alice"))), "POST");
            let mut s = r.new_stream(42).unwrap();
            assert_eq!(s.on_request_headers(&host, false), Action::Pause);
            if body_while_waiting {
                assert_eq!(body(&host, &mut s, CALL), Action::Pause);
            }
            r.on_tick(&host);
            answer_jwks(&host, &mut r, 1);
            if body_while_waiting {
                assert!(host.resumed.borrow().is_empty(), "denied: never resumed");
                assert_eq!(*host.replies_to.borrow(), vec![42]);
            } else {
                assert_eq!(*host.resumed.borrow(), vec![42], "resumed unseen");
                assert_eq!(body(&host, &mut s, CALL), Action::Pause, "judged now");
            }
            let (status, _, reply) = host.responses.borrow()[0].clone();
            let reply: Value = serde_json::from_slice(&reply).unwrap();
            assert_eq!(
                (status, reply["error"]["code"].clone()),
                (200, json!(POLICY_DENIED_CODE))
            );
            s.on_log(&host);
            host.advance(1000);
            r.on_tick(&host);
            let rec = host.shipped().pop().unwrap();
            assert_eq!(rec["kind"], "policy.denied", "{rec}");
            assert_eq!(rec["identity"]["sub"], "alice");
        }
    }

    /// A request that waited for keys passes the session stage too once its caller is known:
    /// another identity's session is refused, never resumed.
    #[test]
    fn the_session_owner_is_checked_after_a_wait_for_keys() {
        use crate::mcp::seal::{Opened, Owner, Sealer};
        let key = "c2Vzc2lvbi1rZXktZm9yLXRoZS1kZW1vLW9ubHktMzJi";
        let config = fetch_config().replace(
            r#""paths":["/mcp"]"#,
            &format!(r#""paths":["/mcp"],"reject_session_identity_mismatch":true,"session_keys":["{key}"]"#),
        );
        let sealer =
            Sealer::new(&[
                base64::Engine::decode(&base64::engine::general_purpose::STANDARD, key).unwrap(),
            ]);
        let alice = crate::audit::record::Identity {
            iss: Some(ISS.into()),
            sub: Some("alice".into()),
            ..Default::default()
        };
        let opened = Opened {
            server_id: "S1".into(),
            started_ms: 1,
            owner: Owner::of(Some(&alice)),
        };
        let sealed = sealer.seal(&opened, [3; 24]).unwrap();
        for (who, refused) in [("alice", false), ("mallory", true)] {
            let host = host_at_now();
            let mut r = Root {
                context_id: 1,
                ..Root::default()
            };
            assert!(r.configure(&host, config.as_bytes()), "{config}");
            request(&host, Some(&sign("RS256", &claims(who))), "POST");
            host.set_header(Headers::Request, "mcp-session-id", &sealed);
            let mut s = r.new_stream(42).unwrap();
            assert_eq!(s.on_request_headers(&host, false), Action::Pause);
            r.on_tick(&host);
            answer_jwks(&host, &mut r, 1);
            if refused {
                assert!(host.resumed.borrow().is_empty(), "never resumed");
                assert_eq!(host.responses.borrow()[0].0, 403);
                s.on_log(&host);
            } else {
                assert_eq!(*host.resumed.borrow(), vec![42]);
                assert_eq!(
                    host.header(Headers::Request, "mcp-session-id").as_deref(),
                    Some("S1")
                );
                assert_eq!(body(&host, &mut s, CALL), Action::Continue);
                finish(&host, &mut s, "200");
            }
            let kind = if refused { "auth.denied" } else { "command" };
            let recs = host.flush(&mut r);
            let rec = recs.iter().find(|x| x["kind"] == kind).unwrap();
            assert_eq!(rec["session"], "S1", "{rec}");
            assert_eq!(rec["identity"]["sub"], who);
        }
    }

    /// Four roots on one host are four workers of one Envoy process: one fetches the JWKS,
    /// the others adopt it (their held requests go on when it comes); a token verified on
    /// one worker is not verified again on another.
    #[test]
    fn workers_of_one_process_fetch_keys_once_and_share_verified_tokens() {
        let host = host_at_now();
        let token = sign("RS256", &claims("alice"));
        let mut workers: Vec<Root> = (0..4)
            .map(|i| {
                let mut r = Root {
                    context_id: 100 + i,
                    ..Root::default()
                };
                assert!(r.configure(&host, fetch_config().as_bytes()));
                r
            })
            .collect();
        let mut streams: Vec<Stream> = Vec::new();
        for (i, w) in workers.iter().enumerate() {
            request(&host, Some(&token), "POST");
            let mut s = w.new_stream(i as u32 + 1).unwrap();
            assert_eq!(
                s.on_request_headers(&host, false),
                Action::Pause,
                "waits for keys"
            );
            streams.push(s);
        }
        for w in workers.iter_mut() {
            w.on_tick(&host);
        }
        let fetches = |h: &FakeHost| {
            h.calls
                .borrow()
                .iter()
                .filter(|c| c.cluster == "idp")
                .count()
        };
        assert_eq!(
            fetches(&host),
            1,
            "one worker fetches; the lease holds the others back"
        );
        // Whichever worker made the call gets the answer.
        let fetcher = workers
            .iter()
            .position(|w| !w.jwks_calls.is_empty())
            .unwrap();
        answer_jwks(&host, &mut workers[fetcher], 1);
        host.advance(100);
        for w in workers.iter_mut() {
            w.on_tick(&host);
        }
        let mut resumed = host.resumed.borrow().clone();
        resumed.sort();
        assert_eq!(resumed, vec![1, 2, 3, 4], "every held request went on");
        assert_eq!(fetches(&host), 1);
        let stats: Vec<_> = workers
            .iter()
            .map(|w| w.shared.as_ref().unwrap().auth.borrow().stats())
            .collect();
        assert_eq!(stats.iter().map(|s| s.jwks_fetches).sum::<u64>(), 1);
        assert_eq!(stats.iter().map(|s| s.jwks_adopted).sum::<u64>(), 3);
        // The first worker to settle verified the token; the others took its verification.
        let verified: u64 = stats.iter().map(|s| s.verifications).sum();
        let shared: u64 = stats.iter().map(|s| s.shared_hits).sum();
        assert_eq!((verified, shared), (1, 3), "{stats:?}");

        // A shared entry does not outlive the key set it was verified under, nor survive
        // tampering: a worker holding other keys verifies again.
        let planted = host
            .shared
            .borrow()
            .iter()
            .find(|(k, _)| k.starts_with("mcptrail.tok."))
            .map(|(k, v)| (k.clone(), v.0.clone()))
            .unwrap();
        let mut forged = planted.1.clone();
        let at = forged.len() - 3;
        forged[at] ^= 1;
        host.shared.borrow_mut().get_mut(&planted.0).unwrap().0 = forged;
        let mut fifth = Root::default();
        assert!(fifth.configure(&host, fetch_config().as_bytes()));
        fifth.on_tick(&host);
        request(&host, Some(&token), "POST");
        let mut s = fifth.new_stream(9).unwrap();
        assert_eq!(s.on_request_headers(&host, true), Action::Continue);
        let st = fifth.shared.as_ref().unwrap().auth.borrow().stats();
        assert_eq!(
            (st.verifications, st.shared_hits, st.jwks_fetches),
            (1, 0, 0),
            "{st:?}"
        );
    }

    #[test]
    fn keys_that_never_come_give_503_after_the_wait() {
        let host = host_at_now();
        let mut r = Root::default();
        assert!(r.configure(&host, fetch_config().as_bytes()));
        request(&host, Some(&sign("RS256", &claims("alice"))), "GET");
        let mut s = r.new_stream(5).unwrap();
        assert_eq!(s.on_request_headers(&host, true), Action::Pause);
        r.on_tick(&host);
        r.on_http_call_response(&host, 1, 0, 0); // transport failure
        assert!(host.logged("JWKS fetch failed (no response)"));
        assert!(host.responses.borrow().is_empty(), "still waiting");
        host.advance(2000);
        r.on_tick(&host);
        assert_eq!(*host.replies_to.borrow(), vec![5]);
        assert_eq!(host.responses.borrow()[0].0, 503);
    }
}

mod sessions_and_headers {
    #[cfg(all(target_arch = "wasm32", target_os = "unknown"))]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    use super::super::*;
    use super::root;
    use crate::host::fake::FakeHost;
    use crate::testkit::exchange::Exchange;

    /// The response side of an exchange: status, new session id, body.
    type Resp<'a> = (&'a str, Option<&'a str>, &'a str);

    /// One request/response through a stream; `headers` are extra request headers.
    fn exchange(
        host: &FakeHost,
        r: &Root,
        method: &str,
        headers: &[(&str, &str)],
        body: &str,
        resp: Resp<'_>,
    ) -> Action {
        let (status, resp_session, resp_body) = resp;
        let mut response_headers = vec![("content-type", "application/json")];
        if let Some(rs) = resp_session {
            response_headers.push(("mcp-session-id", rs));
        }
        let ex = Exchange {
            method,
            headers,
            body,
            status,
            response_headers: &response_headers,
            chunks: &[resp_body.as_bytes()],
            ..Exchange::default()
        };
        host.exchange(r, &ex).request
    }

    const CFG: &str = r#"{"audit":{"cluster":"c"},"mcp":{"paths":["/mcp"]}}"#;
    const INIT: &str = r#"{"jsonrpc":"2.0","id":0,"method":"initialize","params":{"protocolVersion":"2025-11-25","capabilities":{},"clientInfo":{"name":"agent","version":"2"}}}"#;
    const INIT_OK: &str = r#"{"jsonrpc":"2.0","id":0,"result":{"protocolVersion":"2025-06-18","capabilities":{},"serverInfo":{"name":"s","version":"1"}}}"#;

    #[test]
    fn session_lifecycle_records() {
        let host = FakeHost::default();
        let mut r = root(&host, CFG);
        exchange(&host, &r, "POST", &[], INIT, ("200", Some("S1"), INIT_OK));
        let call = r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"echo","arguments":{}}}"#;
        let in_s1 = [("mcp-session-id", "S1")];
        // The same call answered once with a result, once with a JSON-RPC error.
        for reply in [
            r#"{"jsonrpc":"2.0","id":1,"result":{"content":[]}}"#,
            r#"{"jsonrpc":"2.0","id":1,"error":{"code":-32601,"message":"no"}}"#,
        ] {
            exchange(&host, &r, "POST", &in_s1, call, ("200", None, reply));
        }
        host.advance(250);
        exchange(
            &host,
            &r,
            "DELETE",
            &[("mcp-session-id", "S1")],
            "",
            ("200", None, ""),
        );
        r.on_tick(&host);
        let recs = host.shipped();
        let kinds: Vec<&str> = recs.iter().map(|r| r["kind"].as_str().unwrap()).collect();
        assert_eq!(
            kinds,
            [
                "session.start",
                "command",
                "command",
                "command",
                "session.end"
            ]
        );
        assert_eq!(
            recs[0]["mcp"]["protocol_version"], "2025-06-18",
            "negotiated, not offered"
        );
        assert_eq!(recs[0]["mcp"]["client"]["name"], "agent");
        assert_eq!(recs[2]["outcome"]["status"], "ok");
        assert_eq!(recs[3]["outcome"]["status"], "error");
        assert_eq!(recs[3]["outcome"]["error"]["code"], -32601);
        assert_eq!(recs[4]["session_summary"]["commands"], 2);
        assert_eq!(recs[4]["session_summary"]["duration_ms"], 250);
        host.set_header(Headers::CallResponse, ":status", "200");
        r.on_http_call_response(&host, 1, 1, 0);
        // A 404 for a known session ends it too.
        exchange(&host, &r, "POST", &[], INIT, ("200", Some("S2"), INIT_OK));
        exchange(
            &host,
            &r,
            "POST",
            &[("mcp-session-id", "S2")],
            call,
            ("404", None, ""),
        );
        host.advance(2000);
        r.on_tick(&host);
        let recs = host.shipped();
        let last = recs.last().unwrap();
        assert_eq!(last["kind"], "session.end");
        assert!(last["reason"].as_str().unwrap().contains("404"));
    }

    const SESSION_KEY: &str = "c2Vzc2lvbi1rZXktZm9yLXRoZS1kZW1vLW9ubHktMzJi";

    fn sealed_config(reject: bool, extra: &str) -> String {
        use crate::testkit::jwt::*;
        format!(
            r#"{{"audit":{{"cluster":"c"}},"mcp":{{"paths":["/mcp"],"reject_session_identity_mismatch":{reject},"session_keys":["{SESSION_KEY}"]{extra}}},
            "auth":{{"mode":"required","providers":[{{"issuer":"{ISS}","audiences":["{AUD}"],"jwks":{}}}]}}}}"#,
            jwks()
        )
    }

    /// Each VM (worker or replica) is a root of its own with the same configuration: a
    /// session opened through one is bound to its owner on every other.
    #[test]
    fn a_session_is_bound_to_the_identity_that_started_it_on_every_vm() {
        use crate::testkit::jwt::*;
        let host = FakeHost::default();
        host.now.set(NOW as u64 * 1000);
        let as_user = |sub: &str| format!("Bearer {}", sign("ES256", &claims(sub)));
        let (alice, mallory) = (as_user("alice"), as_user("mallory"));
        let call = r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"echo","arguments":{}}}"#;
        let reply = r#"{"jsonrpc":"2.0","id":1,"result":{"content":[]}}"#;
        for reject in [false, true] {
            host.calls.borrow_mut().clear();
            host.responses.borrow_mut().clear();
            let mut opener = root(&host, &sealed_config(reject, ""));
            let ok = exchange(
                &host,
                &opener,
                "POST",
                &[("authorization", &alice)],
                INIT,
                ("200", Some("S9"), INIT_OK),
            );
            assert_eq!(ok, Action::Continue);
            let sealed = host.header(Headers::Response, "mcp-session-id").unwrap();
            assert!(
                sealed.starts_with(crate::mcp::seal::PREFIX) && !sealed.contains("S9"),
                "{sealed}"
            );
            let start = host
                .flush(&mut opener)
                .into_iter()
                .find(|r| r["kind"] == "session.start")
                .unwrap();
            assert_eq!(start["session"], "S9", "records name the server's id");

            // Another VM: the owner goes on; the server receives exactly its own id; the
            // client keeps the id it was given.
            let mut other = root(&host, &sealed_config(reject, ""));
            let mine = [
                ("authorization", alice.as_str()),
                ("mcp-session-id", sealed.as_str()),
            ];
            assert_eq!(
                exchange(
                    &host,
                    &other,
                    "POST",
                    &mine,
                    call,
                    ("200", Some("S9"), reply)
                ),
                Action::Continue
            );
            assert_eq!(
                host.header(Headers::Request, "mcp-session-id").as_deref(),
                Some("S9")
            );
            assert_eq!(
                host.header(Headers::Response, "mcp-session-id"),
                Some(sealed.clone())
            );
            let rec = host.flush(&mut other).pop().unwrap();
            assert_eq!(
                (rec["kind"].as_str(), rec["session"].as_str()),
                (Some("command"), Some("S9"))
            );
            assert!(rec["mcp"].get("session_identity_mismatch").is_none());

            // Another identity with the owner's id, on that other VM.
            host.responses.borrow_mut().clear();
            let theirs = [
                ("authorization", mallory.as_str()),
                ("mcp-session-id", sealed.as_str()),
            ];
            let action = exchange(&host, &other, "POST", &theirs, call, ("200", None, reply));
            let rec = host.flush(&mut other).pop().unwrap();
            assert_eq!(rec["identity"]["sub"], "mallory");
            assert_eq!(rec["session"], "S9");
            if reject {
                assert_eq!(action, Action::Pause);
                assert_eq!(host.responses.borrow()[0].0, 403);
                assert_eq!(rec["kind"], "auth.denied");
                assert_eq!(rec["auth"]["error"], "session_identity_mismatch");
            } else {
                assert_eq!(action, Action::Continue);
                assert_eq!(rec["kind"], "command");
                assert_eq!(rec["mcp"]["session_identity_mismatch"], true);
            }

            // The DELETE on a third VM ends the session there, with its start time.
            let mut third = root(&host, &sealed_config(reject, ""));
            host.advance(5_000);
            exchange(&host, &third, "DELETE", &mine, "", ("200", None, ""));
            let end = host.flush(&mut third).pop().unwrap();
            assert_eq!(
                (end["kind"].as_str(), end["session"].as_str()),
                (Some("session.end"), Some("S9"))
            );
            assert!(end["session_summary"]["started"].is_string(), "{end}");
            assert!(
                end["session_summary"]["duration_ms"].as_u64().unwrap() >= 5_000,
                "{end}"
            );
        }
    }

    /// Ids that were not sealed by this deployment are answered as the server answers an
    /// unknown session (404): tampered, sealed under another key, made up, or bare.
    #[test]
    fn foreign_tampered_and_bare_session_ids() {
        use crate::testkit::jwt::*;
        let host = FakeHost::default();
        host.now.set(NOW as u64 * 1000);
        let alice = format!("Bearer {}", sign("ES256", &claims("alice")));
        let r = root(&host, &sealed_config(true, ""));
        exchange(
            &host,
            &r,
            "POST",
            &[("authorization", &alice)],
            INIT,
            ("200", Some("S9"), INIT_OK),
        );
        let sealed = host.header(Headers::Response, "mcp-session-id").unwrap();
        let foreign = {
            let other = root(
                &host,
                &sealed_config(true, "")
                    .replace(SESSION_KEY, "b3RoZXItZGVwbG95bWVudHMta2V5LW9mLTMyLWJ5dGVz"),
            );
            exchange(
                &host,
                &other,
                "POST",
                &[("authorization", &alice)],
                INIT,
                ("200", Some("S9"), INIT_OK),
            );
            host.header(Headers::Response, "mcp-session-id").unwrap()
        };
        let mut tampered = sealed.clone().into_bytes();
        let last = tampered.len() - 1;
        tampered[last] = if tampered[last] == b'A' { b'B' } else { b'A' };
        let tampered = String::from_utf8(tampered).unwrap();
        let call = r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"echo","arguments":{}}}"#;
        for presented in [foreign.as_str(), tampered.as_str(), "S9", "mcpt1_AAAA"] {
            host.responses.borrow_mut().clear();
            let h = [
                ("authorization", alice.as_str()),
                ("mcp-session-id", presented),
            ];
            assert_eq!(
                exchange(&host, &r, "POST", &h, call, ("200", None, "{}")),
                Action::Pause,
                "{presented}"
            );
            let (status, _, body) = host.responses.borrow()[0].clone();
            assert_eq!(status, 404, "{presented}");
            let body: serde_json::Value = serde_json::from_slice(&body).unwrap();
            assert_eq!(body["error"]["message"], "Session not found");
        }
        let mut r = r;
        let denied: Vec<serde_json::Value> = host
            .flush(&mut r)
            .into_iter()
            .filter(|x| x["kind"] == "auth.denied")
            .collect();
        assert_eq!(denied.len(), 4);
        assert!(denied
            .iter()
            .all(|d| d["auth"]["error"] == "session_unknown" && d["session"].is_null()));

        // unsealed_sessions: pass lets a bare id through, flagged; a tampered one still not.
        let mut pass = root(
            &host,
            &sealed_config(true, r#","unsealed_sessions":"pass""#),
        );
        let h = [
            ("authorization", alice.as_str()),
            ("mcp-session-id", "S-old"),
        ];
        assert_eq!(
            exchange(&host, &pass, "POST", &h, call, ("200", None, "{}")),
            Action::Continue
        );
        assert_eq!(
            host.header(Headers::Request, "mcp-session-id").as_deref(),
            Some("S-old")
        );
        let h = [
            ("authorization", alice.as_str()),
            ("mcp-session-id", tampered.as_str()),
        ];
        assert_eq!(
            exchange(&host, &pass, "POST", &h, call, ("200", None, "{}")),
            Action::Pause
        );
        let recs = host.flush(&mut pass);
        let flagged = recs.iter().find(|x| x["session"] == "S-old").unwrap();
        assert_eq!(flagged["mcp"]["session_unsealed"], true);
    }

    #[test]
    fn standard_headers_that_disagree_are_flagged() {
        let host = FakeHost::default();
        let mut r = root(&host, CFG);
        let call = r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"delete_all","arguments":{}}}"#;
        host.clear_headers(Headers::Request);
        host.set_header(Headers::Request, ":path", "/mcp");
        host.set_header(Headers::Request, ":method", "POST");
        host.set_header(Headers::Request, "mcp-method", "tools/call");
        host.set_header(Headers::Request, "mcp-name", "echo");
        let mut s = r.new_stream(1).unwrap();
        s.on_request_headers(&host, false);
        host.set_body(Body::Request, call.as_bytes());
        s.on_request_body(&host, call.len(), true);
        host.set_header(Headers::Response, ":status", "200");
        s.on_response_headers(&host, true);
        s.on_log(&host);
        r.on_tick(&host);
        assert_eq!(host.shipped()[0]["mcp"]["header_mismatch"], true);
    }
}

/// Every host call crosses the VM boundary in Envoy (and one that returns data also calls
/// back into the VM for memory): how many a call takes is part of the filter's cost, kept in
/// check here (the time itself is measured by `make bench`, never asserted).
#[test]
fn host_calls_per_decoded_call_stay_few() {
    let host = FakeHost::default();
    host.properties
        .borrow_mut()
        .insert("source.address".into(), b"127.0.0.1:5000".to_vec());
    // (configuration, most host calls, body reads, bodies replaced): the last two prove the
    // call was really decoded (and its answer masked), so the bound is not met vacuously.
    for (config, most, reads, rewrites) in [
        (
            r#"{"audit":{"cluster":"c"},"mcp":{"paths":["/mcp"],"decode":false}}"#,
            3,
            0,
            0,
        ),
        (CONFIG, 10, 2, 0),
        (
            r#"{"audit":{"cluster":"c"},"mcp":{"paths":["/mcp"]},"masking":{"detectors":["email"],"responses":true}}"#,
            13,
            2,
            1,
        ),
    ] {
        let r = root(&host, config);
        let reply = br#"{"jsonrpc":"2.0","id":1,"result":{"content":[{"type":"text","text":"bob@example.com"}]}}"#;
        let ex = crate::testkit::exchange::Exchange {
            headers: &[("x-request-id", "r1"), ("content-type", "application/json")],
            body: r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"echo","arguments":{"text":"hi"}}}"#,
            chunks: &[reply],
            ..crate::testkit::exchange::Exchange::default()
        };
        host.host_calls.borrow_mut().clear();
        host.exchange(&r, &ex);
        let calls = host.host_call_total();
        let made = host.host_calls.borrow();
        assert!(calls <= most, "{config}: {calls} host calls, {made:?}");
        let count = |m: &str| made.get(m).copied().unwrap_or(0);
        assert_eq!(
            (count("body"), count("set_body")),
            (reads, rewrites),
            "{config}: {made:?}"
        );
    }
}
