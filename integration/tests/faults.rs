//! Faults through real Envoy (issue 9): the MCP server resets mid-stream, fails with 5xx, or
//! is slow; the client goes away mid-SSE; the JWKS endpoint is down at start or serves
//! garbage. Each gives a defined outcome in the trail, and the filter keeps serving: a
//! follow-up request succeeds and is recorded, and the chain verifies.
//! A request refused by auth whose HTTP/2 body ends in trailers never reaches the server (a
//! fuzz finding in the glue, checked here through Envoy; the module from before the fix
//! passes this test too, as Envoy 1.40 stops a stream once the filter has answered it: the
//! fix is defence in depth).
//! (Collector faults: another suite. VM failures and `failure_policy`: `tests/vm_failure.rs`.)

use std::time::{Duration, Instant};

use mcptrail_integration::envoy::{loopback, EnvoySpec};
use mcptrail_integration::scripted::{Jwks, Rig, Scripted};
use mcptrail_integration::{base_plugin_config, Collector, DevIssuer, Envoy};
use serde_json::{json, Value};

const AUD: &str = "https://mcp.test/mcp";

fn call_body(id: u64) -> String {
    json!({"jsonrpc": "2.0", "id": id, "method": "tools/call",
           "params": {"name": "work", "arguments": {"n": id}}})
    .to_string()
}

async fn call(rig: &Rig, id: u64, fault: &str, token: Option<&str>) -> reqwest::Response {
    let mut req = reqwest::Client::new()
        .post(format!("{}/mcp", rig.envoy.url()))
        .header("content-type", "application/json")
        .header("accept", "application/json, text/event-stream")
        .header("x-fault", fault)
        .body(call_body(id));
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    req.send().await.unwrap()
}

fn command(recs: &[Value], id: u64) -> Option<&Value> {
    recs.iter()
        .find(|r| r["kind"] == "command" && r["mcp"]["id"] == id)
}

async fn recorded(rig: &Rig, id: u64) -> Value {
    let recs = rig
        .collector
        .wait_for(&format!("the command with id {id}"), |r| {
            command(r, id).is_some()
        })
        .await
        .unwrap();
    command(&recs, id).cloned().unwrap()
}

fn assert_trail_verifies(rig: &Rig) {
    let report = rig.collector.verify();
    assert!(report.problems.is_empty(), "{:?}", report.problems);
}

/// A follow-up call succeeds and is recorded `ok`: the filter keeps serving.
async fn still_serving(rig: &Rig, id: u64, token: Option<&str>) {
    let r = call(rig, id, "ok", token).await;
    assert_eq!(r.status(), 200);
    r.bytes().await.unwrap();
    let rec = recorded(rig, id).await;
    assert_eq!(rec["outcome"]["status"], "ok", "{rec}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upstream_reset_5xx_and_slowness_give_defined_outcomes() {
    let rig = Rig::start(base_plugin_config(), None).await.unwrap();

    // Reset mid-SSE: the client sees the stream break; the call is recorded `aborted`.
    let r = call(&rig, 1, "reset", None).await;
    assert_eq!(r.status(), 200);
    assert!(r.bytes().await.is_err(), "the answer is cut");
    let rec = recorded(&rig, 1).await;
    assert_eq!(rec["outcome"]["status"], "aborted", "{rec}");
    assert_eq!(rec["outcome"]["http_status"], 200);
    assert!(
        rec["outcome"]["response_bytes"].as_u64().unwrap() > 0,
        "{rec}"
    );
    still_serving(&rig, 2, None).await;

    // 5xx from the server: `upstream_error` with the status.
    for (id, code) in [(3, 500), (4, 503)] {
        let r = call(&rig, id, &format!("status:{code}"), None).await;
        assert_eq!(r.status().as_u16(), code);
        let rec = recorded(&rig, id).await;
        assert_eq!(rec["outcome"]["status"], "upstream_error", "{rec}");
        assert_eq!(rec["outcome"]["http_status"], code);
    }
    still_serving(&rig, 5, None).await;

    // Slow: still recorded, with the whole wait in its duration.
    let start = Instant::now();
    let r = call(&rig, 6, "slow:1500", None).await;
    assert_eq!(r.status(), 200);
    r.bytes().await.unwrap();
    assert!(start.elapsed() >= Duration::from_millis(1500));
    let rec = recorded(&rig, 6).await;
    assert_eq!(rec["outcome"]["status"], "ok", "{rec}");
    let ms = rec["outcome"]["duration_ms"].as_u64().unwrap();
    assert!((1500..10_000).contains(&ms), "duration_ms {ms}");

    // The upstream disappears altogether: Envoy answers 503 itself, recorded as such.
    let dead = {
        let l = std::net::TcpListener::bind(loopback(0)).unwrap();
        l.local_addr().unwrap()
    };
    let cfg = base_plugin_config();
    let gone = {
        let collector = Collector::start().await.unwrap();
        let spec = EnvoySpec::mcp(cfg, dead, collector.addr);
        let envoy = tokio::task::block_in_place(|| Envoy::start(&spec, 1)).unwrap();
        (envoy, collector)
    };
    let r = reqwest::Client::new()
        .post(format!("{}/mcp", gone.0.url()))
        .header("content-type", "application/json")
        .body(call_body(7))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 503);
    let recs = gone
        .1
        .wait_for("the refused connection", |r| command(r, 7).is_some())
        .await
        .unwrap();
    let rec = command(&recs, 7).unwrap();
    assert_eq!(rec["outcome"]["status"], "upstream_error", "{rec}");
    assert_eq!(rec["outcome"]["http_status"], 503);

    assert_trail_verifies(&rig);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_gone_mid_sse_is_recorded_aborted() {
    let rig = Rig::start(base_plugin_config(), None).await.unwrap();
    {
        let client = reqwest::Client::new();
        let mut r = client
            .post(format!("{}/mcp", rig.envoy.url()))
            .header("content-type", "application/json")
            .header("accept", "application/json, text/event-stream")
            .header("x-fault", "forever")
            .body(call_body(1))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        let first = r.chunk().await.unwrap().unwrap();
        assert!(String::from_utf8_lossy(&first).contains("notifications/progress"));
        tokio::time::sleep(Duration::from_millis(200)).await;
        // The client goes away: response and connection dropped mid-stream.
    }
    let rec = recorded(&rig, 1).await;
    assert_eq!(rec["outcome"]["status"], "aborted", "{rec}");
    assert_eq!(rec["outcome"]["http_status"], 200);
    assert!(
        rec["outcome"]["notifications"].as_u64().unwrap() >= 1,
        "{rec}"
    );
    // Envoy tore the upstream stream down too.
    let deadline = Instant::now() + Duration::from_secs(5);
    while rig
        .up
        .seen
        .client_gone
        .load(std::sync::atomic::Ordering::SeqCst)
        == 0
    {
        assert!(
            Instant::now() < deadline,
            "the upstream stream was not reset"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    still_serving(&rig, 2, None).await;
    assert_trail_verifies(&rig);
}

fn auth_config(idp: &DevIssuer, jwks: std::net::SocketAddr) -> Value {
    let mut cfg = base_plugin_config();
    cfg["auth"] = json!({
        "mode": "required",
        "jwks_wait_ms": 500,
        "providers": [{
            "issuer": idp.issuer,
            "audiences": [AUD],
            "jwks_uri": format!("http://{jwks}/jwks"),
            "jwks_cluster": "idp",
            "jwks_refresh_s": 1,
            "jwks_refetch_min_s": 0,
            "jwks_timeout_ms": 500,
        }],
    });
    cfg
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jwks_down_at_start_then_up() {
    let idp = DevIssuer::start(loopback(0), None).await.unwrap();
    // A port with nothing behind it yet.
    let jwks_addr = {
        let l = std::net::TcpListener::bind(loopback(0)).unwrap();
        l.local_addr().unwrap()
    };
    let rig = Rig::start(auth_config(&idp, jwks_addr), Some(jwks_addr))
        .await
        .unwrap();
    let token = idp.token("alice", &["eng"], AUD);

    // Keys cannot be had: a valid token gets 503 (retry later), no token 401.
    let r = call(&rig, 1, "ok", Some(&token)).await;
    assert_eq!(r.status(), 503, "{:?}", r.text().await);
    let r = call(&rig, 2, "ok", None).await;
    assert_eq!(r.status(), 401);
    assert_eq!(rig.up.requests(), 0, "nothing reached the server");
    let recs = rig
        .collector
        .wait_for("two auth.denied records", |r| {
            r.iter().filter(|r| r["kind"] == "auth.denied").count() >= 2
        })
        .await
        .unwrap();
    let denied: Vec<&str> = recs
        .iter()
        .filter(|r| r["kind"] == "auth.denied")
        .map(|r| r["auth"]["error"].as_str().unwrap_or(""))
        .collect();
    assert!(denied.contains(&"jwks_unavailable"), "{denied:?}");
    assert!(denied.contains(&"missing_token"), "{denied:?}");

    // The endpoint comes up: the filter fetches on its own and serves.
    let jwks = Scripted::start_on(jwks_addr).await.unwrap();
    jwks.set_jwks(Jwks::Good(idp.keys.read().unwrap().clone()));
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut id = 10;
    loop {
        id += 1;
        let r = call(&rig, id, "ok", Some(&token)).await;
        if r.status() == 200 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "still {} after the JWKS came up",
            r.status()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let rec = recorded(&rig, id).await;
    assert_eq!(rec["identity"]["sub"], "alice");
    assert_trail_verifies(&rig);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jwks_garbage_keeps_the_last_good_keys() {
    let idp = DevIssuer::start(loopback(0), None).await.unwrap();
    let jwks = Scripted::start().await.unwrap();
    jwks.set_jwks(Jwks::Good(idp.keys.read().unwrap().clone()));
    let rig = Rig::start(auth_config(&idp, jwks.addr), Some(jwks.addr))
        .await
        .unwrap();
    let r = call(&rig, 1, "ok", Some(&idp.token("alice", &["eng"], AUD))).await;
    assert_eq!(r.status(), 200);

    let garbage = [
        Jwks::Garbage("<html>502 Bad Gateway</html>".into()),
        Jwks::Garbage(r#"{"keys":[{"kty":"oct","k":"c2VjcmV0"}]}"#.into()),
        Jwks::Garbage(r#"{"keys":"#.into()),
        Jwks::Status(500),
    ];
    for (i, g) in garbage.into_iter().enumerate() {
        let before = jwks
            .seen
            .jwks_fetches
            .load(std::sync::atomic::Ordering::SeqCst);
        jwks.set_jwks(g);
        // Two refreshes (jwks_refresh_s 1) see the bad answer.
        let deadline = Instant::now() + Duration::from_secs(10);
        while jwks
            .seen
            .jwks_fetches
            .load(std::sync::atomic::Ordering::SeqCst)
            < before + 2
        {
            assert!(
                Instant::now() < deadline,
                "the filter stopped refreshing its keys"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        // A token never seen before (not in the verified-token cache) still passes.
        let id = 10 + i as u64;
        let token = idp.token(&format!("user{i}"), &["eng"], AUD);
        let r = call(&rig, id, "ok", Some(&token)).await;
        assert_eq!(r.status(), 200, "after bad JWKS #{i}");
        let rec = recorded(&rig, id).await;
        assert_eq!(rec["identity"]["sub"], format!("user{i}"));
    }
    // A token from an unknown key is still refused (and its re-fetch gets garbage too).
    let other = jwt_simple::prelude::RS256KeyPair::from_pem(include_str!(
        "../../filter/testdata/rsa-test-key-2.pem"
    ))
    .unwrap()
    .with_key_id("rotated");
    let r = call(
        &rig,
        20,
        "ok",
        Some(&idp.token_with(&other, "mallory", &[], AUD, 600)),
    )
    .await;
    assert_eq!(r.status(), 401);
    let log = rig.envoy.log();
    assert!(log.contains("keeping the last good set"), "{log}");
    assert_trail_verifies(&rig);
}

/// Sends headers, a body and trailers in one burst over HTTP/2 (prior knowledge); returns the
/// status, or 0 when the stream was reset.
async fn h2_post_with_trailers(envoy: &Envoy, token: Option<&str>) -> u16 {
    let tcp = tokio::net::TcpStream::connect(envoy.listen).await.unwrap();
    let (mut client, conn) = h2::client::handshake(tcp).await.unwrap();
    tokio::spawn(async move {
        let _ = conn.await;
    });
    let mut req = http::Request::builder()
        .method("POST")
        .uri(format!("http://{}/mcp", envoy.listen))
        .header("content-type", "application/json")
        .header("accept", "application/json, text/event-stream");
    if let Some(t) = token {
        req = req.header("authorization", format!("Bearer {t}"));
    }
    let (resp, mut stream) = client.send_request(req.body(()).unwrap(), false).unwrap();
    let _ = stream.send_data(bytes::Bytes::from(call_body(1)), false);
    let mut trailers = http::HeaderMap::new();
    trailers.insert("x-checksum", http::HeaderValue::from_static("1"));
    let _ = stream.send_trailers(trailers);
    match resp.await {
        Ok(r) => r.status().as_u16(),
        Err(_) => 0,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_request_ending_in_trailers_never_reaches_the_server() {
    let secret = "YS1zaGFyZWQtc2VjcmV0LW9mLTMyLWJ5dGVzLWxvbmch";
    for policy in [false, true] {
        let mut cfg = base_plugin_config();
        cfg["auth"] = json!({"mode": "required", "providers": [{
            "issuer": "https://idp.test", "audiences": [AUD],
            "shared_secret": secret, "algorithms": ["HS256"]}]});
        if policy {
            cfg["policy"] = json!({"rules": [{"tools": ["delete_*"], "action": "deny"}]});
        }
        let rig = Rig::start(cfg, None).await.unwrap();
        for _ in 0..5 {
            let status = h2_post_with_trailers(&rig.envoy, None).await;
            assert!(matches!(status, 401 | 0), "status {status}");
            let status = h2_post_with_trailers(&rig.envoy, Some("not.a.token")).await;
            assert!(matches!(status, 401 | 0), "status {status}");
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert_eq!(
            rig.up.requests(),
            0,
            "a refused request reached the server (policy {policy})"
        );
        // The same client with trailers and no refusal gets through (the test can see a pass).
        let mut cfg = base_plugin_config();
        cfg["mcp"]["paths"] = json!(["/mcp"]);
        let open = Rig::start(cfg, None).await.unwrap();
        assert_eq!(h2_post_with_trailers(&open.envoy, None).await, 200);
        assert_eq!(open.up.requests(), 1);
    }
}
