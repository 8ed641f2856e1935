//! Policy that cannot be bypassed, through real Envoy (2 workers) to the official Python SDK
//! server, with and without `allow_on_headers_stop_iteration` (Istio's `WasmPlugin` and Envoy
//! Gateway cannot set it): every body the filter cannot judge is refused and never reaches
//! the server (the server logs every body it received whole and every tool it ran), plain
//! calls still work, and each refusal leaves a record.

use std::io::Write;
use std::time::Duration;

use mcptrail_integration::envoy::{loopback, Envoy, EnvoySpec};
use mcptrail_integration::pyserver::PyServer;
use mcptrail_integration::{base_plugin_config, Collector, DevIssuer};
use serde_json::{json, Value};

const AUD: &str = "https://mcp.test/mcp";

/// A body the filter must refuse, the headers it comes with, and the status expected.
struct Shape {
    what: &'static str,
    body: Vec<u8>,
    headers: Vec<(&'static str, &'static str)>,
    status: u16,
}

fn shapes() -> Vec<Shape> {
    let call = |extra: &str| {
        format!(
            r#"{{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{{"name":"delete_records","arguments":{{"table":"users"}}{extra}}}}}"#
        )
    };
    let shape = |what, body: String, status| Shape {
        what,
        body: body.into_bytes(),
        headers: Vec::new(),
        status,
    };
    let mut non_utf8 = call(r#","_meta":{"s":"X"}"#).into_bytes();
    let at = non_utf8.iter().position(|b| *b == b'X').unwrap();
    non_utf8.splice(at..=at, [0xff, 0xfe]);
    let mut out = vec![
        shape("number beyond f64 (the issue's finding)", call(r#","_meta":{"n":1e400}"#), 400),
        shape("lone surrogate", call(r#","_meta":{"s":"\ud800"}"#), 400),
        shape(
            "nesting past the bound",
            call(&format!(r#","_meta":{{"a":{}1{}}}"#, "[".repeat(300), "]".repeat(300))),
            400,
        ),
        shape(
            "name twice (the server keeps the last)",
            r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"read_records","name":"delete_records","arguments":{}}}"#.into(),
            400,
        ),
        shape(
            "method twice",
            r#"{"jsonrpc":"2.0","id":1,"method":"tools/list","method":"tools/call","params":{"name":"delete_records","arguments":{}}}"#.into(),
            400,
        ),
        shape(
            "params twice",
            r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"read_records"},"params":{"name":"delete_records"}}"#.into(),
            400,
        ),
        shape(
            "name in another case",
            r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"read_records","Name":"delete_records"}}"#.into(),
            400,
        ),
        shape("a BOM", format!("\u{feff}{}", call("")), 400),
        shape(
            "name not a string",
            r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":["delete_records"]}}"#.into(),
            400,
        ),
        shape("body larger than mcp.max_body_bytes", call(&format!(r#","_meta":{{"pad":"{}"}}"#, "x".repeat(70_000))), 413),
        Shape {
            what: "not UTF-8",
            body: non_utf8,
            headers: Vec::new(),
            status: 400,
        },
        Shape {
            what: "an encoded body",
            body: call("").into_bytes(),
            headers: vec![("content-encoding", "gzip")],
            status: 415,
        },
        Shape {
            what: "Mcp-Method that disagrees",
            body: call("").into_bytes(),
            headers: vec![("mcp-method", "tools/list")],
            status: 400,
        },
        Shape {
            what: "Mcp-Name that disagrees",
            body: call("").into_bytes(),
            headers: vec![("mcp-method", "tools/call"), ("mcp-name", "read_records")],
            status: 400,
        },
    ];
    // Spaces and escapes the server decodes to the same name are judged as that name.
    out.push(shape(
        "escaped name (policy.denied)",
        r#"{ "jsonrpc" : "2.0" , "id" : 1 , "method" : "tools\/call" , "params" : { "name" : "delete\u005frecords" } }"#.into(),
        200,
    ));
    out
}

async fn post(
    client: &reqwest::Client,
    url: &str,
    token: &str,
    body: Vec<u8>,
    headers: &[(&str, &str)],
) -> (u16, String) {
    let mut req = client
        .post(url)
        .bearer_auth(token)
        .header("content-type", "application/json")
        .header("accept", "application/json, text/event-stream")
        .header("mcp-protocol-version", "2025-11-25")
        .body(body);
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let resp = req.send().await.unwrap();
    let status = resp.status().as_u16();
    (status, resp.text().await.unwrap_or_default())
}

async fn nothing_unjudged_reaches_the_server(stop_iteration: bool) {
    let idp = DevIssuer::start(loopback(0), None).await.unwrap();
    let collector = Collector::start().await.unwrap();
    let server = tokio::task::block_in_place(|| PyServer::start(false));
    let mut cfg = base_plugin_config();
    cfg["auth"] = idp.auth_config(AUD, "idp");
    cfg["mcp"]["max_body_bytes"] = json!(65_536);
    cfg["policy"] = json!({"rules": [
        {"tools": ["delete_*"], "groups": ["admins"], "action": "allow"},
        {"tools": ["delete_*"], "action": "deny"}
    ]});
    let mut spec = EnvoySpec::mcp(cfg, server.server.addr, collector.addr);
    spec.clusters.push(idp.cluster("idp"));
    spec.stop_iteration = stop_iteration;
    let envoy = tokio::task::block_in_place(|| Envoy::start(&spec, 2)).unwrap();
    let url = format!("{}/mcp", envoy.url());
    let alice = idp.token("alice", &["eng"], AUD);
    let bob = idp.token("bob", &["admins"], AUD);
    let client = reqwest::Client::new();

    // Plain calls work, the first ones waiting for the keys on each worker.
    let read = br#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"read_records","arguments":{"table":"a"}}}"#;
    for _ in 0..4 {
        let (status, text) = post(&client, &url, &alice, read.to_vec(), &[]).await;
        assert_eq!(status, 200, "{text}");
        assert!(text.contains("read a"), "{text}");
    }
    let delete = br#"{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"delete_records","arguments":{"table":"b"}}}"#;
    let (status, text) = post(&client, &url, &bob, delete.to_vec(), &[]).await;
    assert_eq!(status, 200, "admins may delete: {text}");
    assert!(text.contains("deleted b"), "{text}");

    // Every shape, by a caller the policy denies: refused, never at the server.
    let shapes = shapes();
    for s in &shapes {
        let (status, text) = post(&client, &url, &alice, s.body.clone(), &s.headers).await;
        assert_eq!(status, s.status, "{}: {text}", s.what);
        let v: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
        assert!(
            v["error"]["code"].is_i64(),
            "{}: a JSON-RPC error: {text}",
            s.what
        );
    }
    let (status, text) = post(&client, &url, &alice, delete.to_vec(), &[]).await;
    assert_eq!(status, 200);
    assert!(text.contains("-32003"), "plain denial: {text}");

    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(server.ran("delete_records"), 1, "only bob's delete ran");
    let bodies = server.bodies();
    for s in &shapes {
        assert!(
            !bodies.contains(&s.body),
            "{}: the server received the refused body",
            s.what
        );
    }

    // A record for each refusal, with the caller.
    let recs = collector
        .wait_for("a record for every refusal", |r| {
            r.iter()
                .filter(|r| {
                    matches!(r["kind"].as_str(), Some("decode.error" | "policy.denied"))
                        && r["outcome"]["status"] == "denied"
                })
                .count()
                > shapes.len()
        })
        .await
        .unwrap();
    for r in recs.iter().filter(|r| r["outcome"]["status"] == "denied") {
        assert_eq!(r["identity"]["sub"], "alice", "{r}");
    }
    let ran: Vec<&Value> = recs.iter().filter(|r| r["kind"] == "command").collect();
    assert_eq!(ran.len(), 5, "4 reads and bob's delete");
    assert!(collector.verify().problems.is_empty());
    let mut out = std::io::stdout();
    let _ = writeln!(
        out,
        "policy (allow_on_headers_stop_iteration: {stop_iteration}): {} shapes refused, 0 reached the server",
        shapes.len() + 1
    );
    drop(envoy);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nothing_unjudged_reaches_the_server_with_stop_iteration() {
    nothing_unjudged_reaches_the_server(true).await;
}

/// As Istio's `WasmPlugin` and Envoy Gateway deploy the filter.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nothing_unjudged_reaches_the_server_without_stop_iteration() {
    nothing_unjudged_reaches_the_server(false).await;
}
