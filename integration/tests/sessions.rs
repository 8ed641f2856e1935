//! Sessions across workers and replicas, through real Envoy: two replicas with the same
//! configuration (4 and 2 workers) in front of one official Python SDK server that keeps
//! sessions, every request on a fresh connection. The owner's calls succeed wherever they
//! land; another valid user presenting the owner's session id is refused on every VM and
//! never reaches the server; every record names the server's session id; `query --sessions`
//! gives the session's totals over both trails.

use std::collections::HashSet;
use std::io::Write;
use std::time::Duration;

use mcptrail_cli::{query, records};
use mcptrail_integration::envoy::{loopback, Envoy, EnvoySpec};
use mcptrail_integration::pyserver::PyServer;
use mcptrail_integration::{base_plugin_config, Collector, DevIssuer};
use serde_json::{json, Value};

const AUD: &str = "https://mcp.test/mcp";
/// base64 of a 33-byte test key.
const SESSION_KEY: &str = "c2Vzc2lvbi1rZXktZm9yLXRoZS1kZW1vLW9ubHktMzJi";
const REQUESTS: usize = 16;

struct Call<'a> {
    url: &'a str,
    token: &'a str,
    session: Option<&'a str>,
    body: Value,
}

/// One request on a connection of its own (so the kernel may hand it to any worker).
async fn send(c: Call<'_>, method: reqwest::Method) -> (u16, Option<String>, String) {
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(0)
        .build()
        .unwrap();
    let mut req = client
        .request(method, c.url)
        .bearer_auth(c.token)
        .header("content-type", "application/json")
        .header("accept", "application/json, text/event-stream")
        .header("mcp-protocol-version", "2025-11-25");
    if let Some(s) = c.session {
        req = req.header("mcp-session-id", s);
    }
    if !c.body.is_null() {
        req = req.body(c.body.to_string());
    }
    let resp = req.send().await.unwrap();
    let status = resp.status().as_u16();
    let session = resp
        .headers()
        .get("mcp-session-id")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    (status, session, resp.text().await.unwrap_or_default())
}

fn read(id: usize, table: &str) -> Value {
    json!({"jsonrpc": "2.0", "id": id, "method": "tools/call",
           "params": {"name": "read_records", "arguments": {"table": table}}})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_is_bound_to_its_owner_on_every_worker_and_replica() {
    let idp = DevIssuer::start(loopback(0), None).await.unwrap();
    let trail_a = Collector::start().await.unwrap();
    let trail_b = Collector::start().await.unwrap();
    let server = tokio::task::block_in_place(|| PyServer::start(true));
    let mut cfg = base_plugin_config();
    cfg["auth"] = idp.auth_config(AUD, "idp");
    cfg["mcp"]["session_keys"] = json!([SESSION_KEY]);
    cfg["mcp"]["reject_session_identity_mismatch"] = json!(true);
    let replica = |trail: &Collector, workers: u32| {
        let mut spec = EnvoySpec::mcp(cfg.clone(), server.server.addr, trail.addr);
        spec.clusters.push(idp.cluster("idp"));
        tokio::task::block_in_place(|| Envoy::start(&spec, workers)).unwrap()
    };
    let (a, b) = (replica(&trail_a, 4), replica(&trail_b, 2));
    let urls = [format!("{}/mcp", a.url()), format!("{}/mcp", b.url())];
    let alice = idp.token("alice", &["eng"], AUD);
    let mallory = idp.token("mallory", &["eng"], AUD);

    // Alice opens the session on replica A: she gets a sealed id, not the server's.
    let init = json!({"jsonrpc": "2.0", "id": 0, "method": "initialize", "params": {
        "protocolVersion": "2025-11-25", "capabilities": {},
        "clientInfo": {"name": "sessions-e2e", "version": "1"}}});
    let call = |url, token, session, body| Call {
        url,
        token,
        session,
        body,
    };
    let (status, sealed, text) =
        send(call(&urls[0], &alice, None, init), reqwest::Method::POST).await;
    assert_eq!(status, 200, "{text}");
    let sealed = sealed.expect("a session id");
    assert!(sealed.starts_with("mcpt1_"), "{sealed}");
    let note = json!({"jsonrpc": "2.0", "method": "notifications/initialized"});
    let (status, _, text) = send(
        call(&urls[1], &alice, Some(&sealed), note),
        reqwest::Method::POST,
    )
    .await;
    assert_eq!(status, 202, "{text}");

    // Her calls work on every worker of both replicas; the id she holds does not change.
    for i in 0..REQUESTS {
        let table = format!("alice-{i}");
        let body = read(i + 1, &table);
        let (status, echoed, text) = send(
            call(&urls[i % 2], &alice, Some(&sealed), body),
            reqwest::Method::POST,
        )
        .await;
        assert_eq!(status, 200, "{text}");
        assert!(text.contains(&format!("read {table}")), "{text}");
        assert_eq!(
            echoed.as_deref(),
            Some(sealed.as_str()),
            "the client's id stays"
        );
    }

    // Mallory, valid token, alice's session id: refused everywhere, never at the server.
    for i in 0..REQUESTS {
        let body = read(100 + i, &format!("mallory-{i}"));
        let (status, _, text) = send(
            call(&urls[i % 2], &mallory, Some(&sealed), body),
            reqwest::Method::POST,
        )
        .await;
        assert_eq!(status, 403, "{text}");
    }
    // An altered id, and the bare form of some other id: answered as an unknown session.
    let mut altered = sealed.clone().into_bytes();
    let last = altered.len() - 1;
    altered[last] = if altered[last] == b'A' { b'B' } else { b'A' };
    let altered = String::from_utf8(altered).unwrap();
    for (i, presented) in [altered.as_str(), "0123456789abcdef0123456789abcdef"]
        .iter()
        .enumerate()
    {
        let body = read(200 + i, "mallory-guess");
        let (status, _, text) = send(
            call(&urls[i % 2], &alice, Some(presented), body),
            reqwest::Method::POST,
        )
        .await;
        assert_eq!(status, 404, "{text}");
        assert!(text.contains("Session not found"), "{text}");
    }

    // Alice ends the session on replica B.
    let (status, _, text) = send(
        call(&urls[1], &alice, Some(&sealed), Value::Null),
        reqwest::Method::DELETE,
    )
    .await;
    assert!(status == 200 || status == 204, "{status} {text}");

    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        server.ran("read_records"),
        REQUESTS,
        "only alice's calls ran"
    );
    assert!(
        !server
            .bodies()
            .iter()
            .any(|b| String::from_utf8_lossy(b).contains("mallory")),
        "no refused body reached the server"
    );

    // Both trails complete: the start on A, the end on B, every call and every refusal.
    let complete = |all: &[Value]| {
        let count = |kind: &str| all.iter().filter(|r| r["kind"] == kind).count();
        count("session.start") == 1
            && count("session.end") == 1
            && count("auth.denied") == REQUESTS + 2
            && all
                .iter()
                .filter(|r| r["mcp"]["method"] == "tools/call" && r["kind"] == "command")
                .count()
                == REQUESTS
    };
    let all = Collector::wait_for_all(&[&trail_a, &trail_b], "both trails complete", complete)
        .await
        .unwrap();

    // One story: every record of the session names the server's id.
    let start = all.iter().find(|r| r["kind"] == "session.start").unwrap();
    let server_id = start["session"].as_str().unwrap().to_string();
    assert!(
        !server_id.starts_with("mcpt1_"),
        "records name the server's id"
    );
    let of_session: Vec<&Value> = all
        .iter()
        .filter(|r| r["session"] == server_id.as_str())
        .collect();
    let commands = of_session
        .iter()
        .filter(|r| r["kind"] == "command" && r["mcp"]["method"] == "tools/call")
        .count();
    assert_eq!(commands, REQUESTS, "alice's calls, whichever VM wrote them");
    let denied: Vec<&&Value> = of_session
        .iter()
        .filter(|r| r["kind"] == "auth.denied")
        .collect();
    assert_eq!(
        denied.len(),
        REQUESTS,
        "mallory's refusals name the session"
    );
    assert!(denied
        .iter()
        .all(|r| r["identity"]["sub"] == "mallory"
            && r["auth"]["error"] == "session_identity_mismatch"));
    let end = all.iter().find(|r| r["kind"] == "session.end").unwrap();
    assert_eq!(end["session"], server_id.as_str());
    assert!(end["session_summary"]["started"].is_string(), "{end}");
    let unknown = all
        .iter()
        .filter(|r| r["auth"]["error"] == "session_unknown")
        .count();
    assert_eq!(unknown, 2);

    // The refusals were spread over the VMs of both replicas.
    let streams = |recs: &[Value]| -> HashSet<String> {
        recs.iter()
            .filter(|r| r["kind"] == "auth.denied" && r["identity"]["sub"] == "mallory")
            .filter_map(|r| r["chain"]["stream"].as_str().map(str::to_string))
            .collect()
    };
    let (vms_a, vms_b) = (streams(&trail_a.records()), streams(&trail_b.records()));
    assert!(vms_a.len() >= 2, "replica A's 4 workers: {vms_a:?}");
    assert!(!vms_b.is_empty());
    assert!(trail_a.verify().problems.is_empty());
    assert!(trail_b.verify().problems.is_empty());

    // Per process, not per worker: each replica fetched the JWKS once, and verified each
    // user's token once (the other workers took the verification from shared data).
    for (envoy, workers) in [(&a, 4), (&b, 2)] {
        let stat = |name: &str| {
            envoy
                .stat(&format!("wasmcustom.mcptrail.{name}"))
                .unwrap_or(0)
        };
        assert_eq!(stat("jwks_fetches"), 1, "{workers} workers, one fetch");
        // Every other VM adopted it (Envoy's main thread runs one more VM than the workers).
        assert!(stat("jwks_adopted") >= workers - 1);
        assert_eq!(
            stat("token_verifications"),
            2,
            "alice's and mallory's tokens"
        );
        assert!(stat("token_shared_hits") >= 1);
    }

    // The session's totals over both trails.
    let (entries, skipped) = records::read_files(&[&trail_a.out, &trail_b.out]).unwrap();
    assert!(skipped.is_empty(), "{skipped:?}");
    let rows = query::select(&query::Filter::default(), &entries);
    let totals = query::session_totals(&rows);
    let t = totals.iter().find(|t| t.session == server_id).unwrap();
    assert_eq!((t.user.as_str(), t.denied), ("alice", REQUESTS));
    assert!(
        t.commands > REQUESTS,
        "initialize, the notification and the calls"
    );
    assert!(t.started && t.ended);
    assert!(t.vms >= 3, "{t:?}");
    let stat = |e: &Envoy, n: &str| e.stat(&format!("wasmcustom.mcptrail.{n}")).unwrap_or(0);
    let _ = writeln!(
        std::io::stdout(),
        "per process: replica A (4 workers) jwks_fetches {} adopted {} verifications {} shared hits {}; replica B (2 workers) jwks_fetches {} adopted {} verifications {} shared hits {}",
        stat(&a, "jwks_fetches"), stat(&a, "jwks_adopted"), stat(&a, "token_verifications"), stat(&a, "token_shared_hits"),
        stat(&b, "jwks_fetches"), stat(&b, "jwks_adopted"), stat(&b, "token_verifications"), stat(&b, "token_shared_hits"),
    );
    let _ = writeln!(
        std::io::stdout(),
        "sessions: {REQUESTS} owner calls and {REQUESTS} foreign ones over 2 replicas ({} + {} VMs wrote refusals): owner 200 everywhere, foreign 403 everywhere, 0 reached the server; {} VMs wrote the session",
        vms_a.len(),
        vms_b.len(),
        t.vms
    );
    drop((a, b));
}
