//! Calls under a `review` rule, end to end: the official Python SDK client calls the official
//! Python SDK server through two Envoy replicas (2 workers each; one without
//! `allow_on_headers_stop_iteration`, as Istio runs it) running the filter, which asks
//! the approval service (in this process, SQLite); approvers decide over its JSON API with
//! tokens of the issuer. The server logs every tool it ran, so "never reached the server" is
//! shown, not assumed.

use std::process::Command;
use std::time::{Duration, Instant};

use mcptrail_integration::approvals::{self, Approvals};
use mcptrail_integration::envoy::{loopback, repo_root, tools_dir, Envoy, EnvoySpec};
use mcptrail_integration::pyserver::PyServer;
use mcptrail_integration::{base_plugin_config, Collector, DevIssuer, TEST_HMAC_KEY_B64};
use serde_json::{json, Value};

const AUD: &str = "https://mcp.test/mcp";
const APPROVALS_AUD: &str = "approvals";

/// One tool call with the official Python SDK client; what it printed.
fn call(url: &str, token: &str, tool: &str, args: Value) -> Value {
    let out = Command::new(tools_dir().join("venv/bin/python"))
        .arg(repo_root().join("integration/py/approvals_client.py"))
        .args([url, "--token", token, "--tool", tool, "--args"])
        .arg(args.to_string())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "client failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&out.stdout)))
}

/// The approval id and URL of a held call (`-32042`, as the SDK read it).
fn held(v: &Value) -> (String, String) {
    assert_eq!(v["error"]["code"], -32042, "{v}");
    let e = &v["elicitations"][0];
    assert_eq!(e["mode"], "url", "{v}");
    let url = e["url"].as_str().unwrap().to_string();
    assert!(
        v["error"]["message"].as_str().unwrap().contains(&url),
        "the message names the URL for clients that show only messages: {v}"
    );
    (e["id"].as_str().unwrap().to_string(), url)
}

fn refused(v: &Value, why: &str) {
    assert_eq!(v["error"]["code"], -32003, "{v}");
    let m = v["error"]["message"].as_str().unwrap();
    assert!(m.contains(why), "{m} should say {why}");
}

fn passed(v: &Value) {
    assert!(v.get("result").is_some(), "{v}");
    assert_eq!(v["is_error"], false, "{v}");
}

struct Api {
    http: reqwest::Client,
    base: String,
}

impl Api {
    async fn post(&self, token: &str, path: &str, body: Value) -> (u16, Value) {
        let r = self
            .http
            .post(format!("{}{path}", self.base))
            .bearer_auth(token)
            .json(&body)
            .send()
            .await
            .unwrap();
        (r.status().as_u16(), r.json().await.unwrap_or(Value::Null))
    }

    async fn get(&self, token: &str, path: &str) -> (u16, Value) {
        let r = self
            .http
            .get(format!("{}{path}", self.base))
            .bearer_auth(token)
            .send()
            .await
            .unwrap();
        (r.status().as_u16(), r.json().await.unwrap_or(Value::Null))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn review_calls_through_envoy_with_the_python_sdk() {
    let collector = Collector::start().await.unwrap();
    let server = tokio::task::block_in_place(|| PyServer::start(false));
    let idp = DevIssuer::start(loopback(0), None).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("approvals.db");
    let mut service = Approvals::start(
        loopback(0),
        approvals::config(
            &idp.issuer,
            APPROVALS_AUD,
            collector.addr,
            TEST_HMAC_KEY_B64,
        ),
        &db,
    )
    .await
    .unwrap();

    let mut plugin = base_plugin_config();
    plugin["auth"] = idp.auth_config(AUD, "idp");
    plugin["masking"] = json!({"fields": ["password"]});
    plugin["policy"] = json!({"rules": [{"tools": ["delete_*"], "action": "review"}]});
    plugin["approvals"] = Approvals::plugin_section("approvals");
    let mut spec = EnvoySpec::mcp(plugin, server.server.addr, collector.addr);
    spec.clusters.push(idp.cluster("idp"));
    spec.clusters.push(service.cluster("approvals"));
    // Two replicas, two workers each: an approval is single-use whichever replica and worker
    // the retry lands on. The second runs without `allow_on_headers_stop_iteration`, as
    // Istio's WasmPlugin and Envoy Gateway must: the check is sent from the body callbacks.
    let a = tokio::task::block_in_place(|| Envoy::start(&spec, 2)).unwrap();
    spec.stop_iteration = false;
    let b = tokio::task::block_in_place(|| Envoy::start(&spec, 2)).unwrap();
    let (url_a, url_b) = (format!("{}/mcp", a.url()), format!("{}/mcp", b.url()));

    let alice = idp.token("alice", &["eng"], AUD);
    let bob_mcp = idp.token("bob", &["admins"], AUD);
    let bob = idp.token("bob", &["admins"], APPROVALS_AUD);
    let carol = idp.token("carol", &["admins"], APPROVALS_AUD);
    let eve = idp.token("eve", &["eng"], APPROVALS_AUD);
    let api = Api {
        http: reqwest::Client::new(),
        base: service.url.clone(),
    };
    let orders = json!({"table": "orders", "password": "hunter2"});
    let py = |url: &str, token: &str, tool: &str, args: &Value| {
        let (url, token, tool, args) = (url.to_string(), token.to_string(), tool, args.clone());
        tokio::task::block_in_place(move || call(&url, &token, tool, args))
    };

    // Held: -32042 with the page's URL; the server never ran it.
    let first = py(&url_a, &alice, "delete_records", &orders);
    let (id1, page) = held(&first);
    assert_eq!(page, format!("{}/requests/{id1}", service.url));
    assert_eq!(server.ran("delete_records"), 0);
    // Tools no review rule names pay no check and pass.
    passed(&py(
        &url_a,
        &alice,
        "read_records",
        &json!({"table": "orders"}),
    ));

    // Approvers see it masked; non-approvers and requesters cannot decide.
    let (st, pending) = api.get(&bob, "/api/requests?status=pending").await;
    assert_eq!(st, 200);
    let req = pending["requests"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["id"] == id1.as_str())
        .cloned()
        .unwrap();
    assert_eq!(req["caller"]["sub"], "alice");
    assert_eq!(req["tool"], "delete_records");
    assert_eq!(req["arguments"]["table"], "orders");
    assert!(!req.to_string().contains("hunter2"), "masked: {req}");
    let approve_once = json!({"mode": "once", "note": "ok for the orders cleanup"});
    let path1 = format!("/api/requests/{id1}/approve");
    assert_eq!(api.post(&eve, &path1, approve_once.clone()).await.0, 403);
    let bobs = py(
        &url_b,
        &bob_mcp,
        "delete_records",
        &json!({"table": "audit"}),
    );
    let (bob_id, _) = held(&bobs);
    let bob_path = format!("/api/requests/{bob_id}/approve");
    assert_eq!(
        api.post(&bob, &bob_path, approve_once.clone()).await.0,
        403,
        "nobody approves their own request"
    );

    // Approved once: the retry passes once, whichever replica it lands on.
    let (st, decided) = api.post(&bob, &path1, approve_once.clone()).await;
    assert_eq!((st, decided["status"].as_str()), (200, Some("approved")));
    assert_eq!(
        api.post(&carol, &path1, approve_once.clone()).await.0,
        409,
        "a replayed approval changes nothing"
    );
    let (r1, r2) = tokio::join!(
        async { py(&url_a, &alice, "delete_records", &orders) },
        async { py(&url_b, &alice, "delete_records", &orders) },
    );
    let passes = [&r1, &r2]
        .iter()
        .filter(|r| r.get("result").is_some())
        .count();
    assert_eq!(passes, 1, "one use of a once approval: {r1} {r2}");
    assert_eq!(server.ran("delete_records"), 1);
    // The same call again needs a new approval.
    let again = py(&url_a, &alice, "delete_records", &orders);
    let (id2, _) = held(&again);
    assert_ne!(id2, id1);
    // Other arguments need their own.
    let users = json!({"table": "users"});
    let (id3, _) = held(&py(&url_b, &alice, "delete_records", &users));
    assert_ne!(id3, id2);

    // Denied: refused, saying so.
    let (st, _) = api
        .post(
            &carol,
            &format!("/api/requests/{id3}/deny"),
            json!({"note": "not users"}),
        )
        .await;
    assert_eq!(st, 200);
    refused(
        &py(&url_a, &alice, "delete_records", &users),
        "denied by `carol`",
    );
    assert_eq!(server.ran("delete_records"), 1);

    // A window covers the caller and tool, whatever the arguments, on both replicas.
    let window = json!({"mode": "window", "window_s": 600});
    let (st, _) = api
        .post(&bob, &format!("/api/requests/{id2}/approve"), window)
        .await;
    assert_eq!(st, 200);
    passed(&py(
        &url_a,
        &alice,
        "delete_records",
        &json!({"table": "t1"}),
    ));
    passed(&py(
        &url_b,
        &alice,
        "delete_records",
        &json!({"table": "t2"}),
    ));
    assert_eq!(server.ran("delete_records"), 3);
    // Not another caller's.
    held(&py(
        &url_a,
        &bob_mcp,
        "delete_records",
        &json!({"table": "t1"}),
    ));

    // What a review check costs: the same call under the window grant, and a call no review
    // rule names, through the same replica (loopback service, SQLite). Reported, not asserted.
    let raw = |tool: &str| {
        format!(
            r#"{{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{{"name":"{tool}","arguments":{{"table":"t"}}}}}}"#
        )
    };
    let timed = |body: String| {
        let (http, url, token) = (reqwest::Client::new(), url_a.clone(), alice.clone());
        async move {
            let mut ms = Vec::new();
            for _ in 0..30 {
                let t = Instant::now();
                let r = http
                    .post(&url)
                    .bearer_auth(&token)
                    .header("content-type", "application/json")
                    .header("accept", "application/json, text/event-stream")
                    .header("mcp-protocol-version", "2025-11-25")
                    .body(body.clone())
                    .send()
                    .await
                    .unwrap();
                let text = r.text().await.unwrap();
                assert!(text.contains("\"result\""), "{text}");
                ms.push(t.elapsed().as_secs_f64() * 1000.0);
            }
            ms.sort_by(f64::total_cmp);
            ms[ms.len() / 2]
        }
    };
    let plain = timed(raw("read_records")).await;
    let reviewed = timed(raw("delete_records")).await;
    println!(
        "review check cost: median {reviewed:.2} ms with a check (window grant) vs {plain:.2} ms without (+{:.2} ms), 30 calls each",
        reviewed - plain
    );

    // The service down: refused, never fails open; calls without review still pass.
    service.stop().await;
    refused(
        &py(&url_a, &alice, "delete_records", &json!({"table": "t3"})),
        "needs approval",
    );
    passed(&py(&url_b, &alice, "read_records", &json!({"table": "t"})));
    let ran_before = server.ran("delete_records");
    // Restarted on the same database: the window still holds.
    service.restart().await.unwrap();
    passed(&py(
        &url_b,
        &alice,
        "delete_records",
        &json!({"table": "t4"}),
    ));
    assert_eq!(server.ran("delete_records"), ran_before + 1);
    service.stop().await;

    // The trail: every call and decision, masked, chained, checked against the schema.
    tokio::time::sleep(Duration::from_millis(800)).await;
    drop((a, b));
    let recs = collector.records();
    let text = serde_json::to_string(&recs).unwrap();
    assert!(!text.contains("hunter2"), "no secret in the trail");
    let kind = |k: &str| recs.iter().filter(|r| r["kind"] == k).collect::<Vec<_>>();
    let requested = kind("approval.requested");
    assert!(requested.len() >= 4, "{requested:?}");
    let first_held = requested
        .iter()
        .find(|r| r["approval"]["id"] == id1.as_str())
        .unwrap();
    assert_eq!(first_held["identity"]["sub"], "alice");
    assert_eq!(first_held["mcp"]["tool"], "delete_records");
    assert_eq!(first_held["mcp"]["arguments"]["table"], "orders");
    // The SDK's calls (the timed raw ones are the 30 more under the window).
    let approved: Vec<_> = kind("command")
        .into_iter()
        .filter(|r| r["mcp"]["tool"] == "delete_records" && r["mcp"]["client"].is_object())
        .collect();
    assert_eq!(approved.len(), 4, "{} SDK calls approved", approved.len());
    assert!(approved
        .iter()
        .any(|r| r["approval"] == json!({"id": id1, "approved_by": "bob", "mode": "once"})));
    assert_eq!(
        approved
            .iter()
            .filter(|r| r["approval"]["mode"] == "window")
            .count(),
        3
    );
    let denied = kind("policy.denied");
    assert!(denied.iter().any(|r| r["approval"]["id"] == id3.as_str()
        && r["reason"].as_str().unwrap().contains("denied by `carol`")));
    // Envoy answers a refused connection itself (503): the record says so.
    let reasons: Vec<&str> = denied.iter().filter_map(|r| r["reason"].as_str()).collect();
    assert!(
        reasons
            .iter()
            .any(|r| r.contains("the approval service answered HTTP 503")),
        "{reasons:?}"
    );
    let decisions = kind("approval.decided");
    assert_eq!(decisions.len(), 3, "{decisions:?}");
    for d in &decisions {
        assert!(d["chain"]["stream"]
            .as_str()
            .unwrap()
            .starts_with("approvals-"));
        assert_eq!(d["approval"]["requester"]["sub"], "alice");
    }
    assert!(decisions
        .iter()
        .any(|d| d["identity"]["sub"] == "carol" && d["approval"]["decision"] == "denied"));
    let report = collector.verify();
    assert!(report.problems.is_empty(), "{:?}", report.problems);
    let services: Vec<_> = report
        .streams
        .iter()
        .filter(|s| s.stream.starts_with("approvals-"))
        .collect();
    assert_eq!(services.len(), 2, "one stream per service start");
    assert!(
        services.iter().all(|s| s.closed),
        "each stop closed its stream"
    );
}
