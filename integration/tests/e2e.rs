//! End to end through real Envoy: the official Rust MCP client (rmcp) talks to the demo
//! server (rmcp) through Envoy with the mcptrail filter, and the collector receives the trail.

use std::collections::HashMap;

use mcptrail_integration::demo::Mode;
use mcptrail_integration::Stack;
use rmcp::model::{
    CallToolRequestParams, ClientCapabilities, ClientConfig, Implementation, ProtocolVersion,
};
use rmcp::transport::streamable_http_client::StreamableHttpClientTransportConfig;
use rmcp::transport::StreamableHttpClientTransport;
use rmcp::ServiceExt;
use serde_json::{json, Value};

fn args(v: Value) -> rmcp::model::JsonObject {
    v.as_object().cloned().unwrap_or_default()
}

fn commands<'a>(recs: &'a [Value], tool: &str) -> Vec<&'a Value> {
    recs.iter()
        .filter(|r| r["kind"] == "command" && r["mcp"]["tool"] == tool)
        .collect()
}

async fn drive(stack: &Stack, version: ProtocolVersion) -> anyhow::Result<()> {
    let transport = StreamableHttpClientTransport::from_config(
        StreamableHttpClientTransportConfig::with_uri(stack.mcp_url()),
    );
    let info = ClientConfig::new(
        ClientCapabilities::default(),
        Implementation::new("e2e", "1.0"),
    )
    .with_protocol_version(version);
    let client = info.serve(transport).await?;
    let tools = client.list_all_tools().await?;
    assert!(tools.iter().any(|t| t.name == "echo"));
    let r = client
        .call_tool(
            CallToolRequestParams::new("echo").with_arguments(args(json!({"text": "hello"}))),
        )
        .await?;
    assert_ne!(r.is_error, Some(true));
    assert!(format!("{:?}", r.content).contains("hello"), "{r:?}");
    let failed = client.call_tool(CallToolRequestParams::new("fail")).await?;
    assert_eq!(failed.is_error, Some(true));
    let err = client
        .call_tool(
            CallToolRequestParams::new("divide").with_arguments(args(json!({"a": 1, "b": 0}))),
        )
        .await;
    assert!(err.is_err(), "division by zero is a JSON-RPC error");
    client.cancel().await?;
    Ok(())
}

async fn one_exchange(mode: Mode, version: ProtocolVersion) {
    let stack = Stack::start(mode, None).await.unwrap();
    drive(&stack, version).await.unwrap();
    let recs = stack
        .collector
        .wait_for("echo, fail and divide commands", |r| {
            ["echo", "fail", "divide"]
                .iter()
                .all(|t| !commands(r, t).is_empty())
        })
        .await
        .unwrap();
    let echo = commands(&recs, "echo")[0];
    assert_eq!(echo["outcome"]["status"], "ok");
    let fail = commands(&recs, "fail")[0];
    assert_eq!(fail["outcome"]["status"], "error", "{fail}");
    assert_eq!(fail["outcome"]["is_error"], true);
    let divide = commands(&recs, "divide")[0];
    assert_eq!(divide["outcome"]["status"], "error", "{divide}");
    assert_eq!(divide["outcome"]["error"]["code"], -32602);
    assert_eq!(echo["v"], 1);
    assert_eq!(echo["mcp"]["method"], "tools/call");
    assert!(echo["mcp"]["id"].is_number() || echo["mcp"]["id"].is_string());
    assert_eq!(echo["mcp"]["arguments"]["text"], "hello");
    assert_eq!(echo["outcome"]["http_status"], 200);
    assert!(echo["ts"].as_str().unwrap().ends_with('Z'));
    assert_eq!(echo["id"].as_str().unwrap().len(), 36);
    assert!(
        echo["request_id"].is_string(),
        "Envoy's x-request-id is recorded"
    );
    assert!(echo["source"]["address"]
        .as_str()
        .unwrap()
        .starts_with("127.0.0.1:"));
    // Every record id is unique.
    let mut ids: Vec<&str> = recs.iter().map(|r| r["id"].as_str().unwrap()).collect();
    ids.sort_unstable();
    ids.dedup();
    assert_eq!(ids.len(), recs.len());
    let report = stack.collector.verify();
    assert!(report.problems.is_empty(), "{:?}", report.problems);
    assert_eq!(report.streams.len(), 1, "one worker, one chain stream");
    assert_eq!(report.streams[0].records as usize, recs.len());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sse_server_with_sessions_legacy_protocol() {
    one_exchange(
        Mode {
            json: false,
            stateless: false,
        },
        ProtocolVersion::V_2025_06_18,
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_server_stateless_latest_protocol() {
    one_exchange(
        Mode {
            json: true,
            stateless: true,
        },
        ProtocolVersion::LATEST,
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn session_records_carry_the_session_id() {
    let stack = Stack::start(
        Mode {
            json: true,
            stateless: false,
        },
        None,
    )
    .await
    .unwrap();
    drive(&stack, ProtocolVersion::V_2025_06_18).await.unwrap();
    let recs = stack
        .collector
        .wait_for("echo command", |r| !commands(r, "echo").is_empty())
        .await
        .unwrap();
    let init = recs
        .iter()
        .find(|r| r["mcp"]["method"] == "initialize")
        .unwrap();
    assert_eq!(init["mcp"]["protocol_version"], "2025-06-18");
    let echo = commands(&recs, "echo")[0];
    assert!(echo["session"].is_string(), "{echo}");
    assert_eq!(
        init["session"], echo["session"],
        "initialize learns the session from the response"
    );
    let by_kind: HashMap<&str, usize> = recs.iter().fold(HashMap::new(), |mut m, r| {
        *m.entry(r["kind"].as_str().unwrap()).or_default() += 1;
        m
    });
    assert!(
        by_kind.get("notification").copied().unwrap_or(0) >= 1,
        "notifications/initialized"
    );
}
