//! Through real Envoy to the MCP reference server (`@modelcontextprotocol/server-everything`
//! from npm), with the official Rust client: a third-party server the filter was not written
//! against.

use std::sync::Arc;

use mcptrail_integration::envoy::EnvoySpec;
use mcptrail_integration::everything::Everything;
use mcptrail_integration::{base_plugin_config, Collector, Envoy};
use rmcp::model::{
    CallToolRequestParams, ClientCapabilities, ClientConfig, Implementation, NumberOrString,
    ProgressToken, ProtocolVersion, RequestMetaObject,
};
use rmcp::transport::streamable_http_client::StreamableHttpClientTransportConfig;
use rmcp::transport::StreamableHttpClientTransport;
use rmcp::ServiceExt;
use serde_json::{json, Value};

fn call(name: &'static str, args: Value) -> CallToolRequestParams {
    CallToolRequestParams::new(name).with_arguments(args.as_object().cloned().unwrap_or_default())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reference_server_through_envoy() {
    let server = Everything::start().unwrap();
    let collector = Collector::start().await.unwrap();
    let mut config = base_plugin_config();
    config["mcp"] = json!({"paths": ["/mcp"], "record_notifications": true});
    let spec = EnvoySpec::mcp(config, server.addr, collector.addr);
    let envoy = tokio::task::block_in_place(|| Envoy::start(&spec, 1)).unwrap();

    let transport = StreamableHttpClientTransport::from_config(
        StreamableHttpClientTransportConfig::with_uri(format!("{}/mcp", envoy.url())),
    );
    let client = ClientConfig::new(
        ClientCapabilities::default(),
        Implementation::new("e2e-everything", "1.0"),
    )
    .with_protocol_version(ProtocolVersion::V_2025_06_18)
    .serve(transport)
    .await
    .unwrap();
    let tools = client.list_all_tools().await.unwrap();
    assert!(tools.iter().any(|t| t.name == "get-sum"), "{tools:?}");
    let sum = client
        .call_tool(call("get-sum", json!({"a": 2, "b": 40})))
        .await
        .unwrap();
    assert!(format!("{sum:?}").contains("42"), "{sum:?}");
    let mut long = call(
        "trigger-long-running-operation",
        json!({"duration": 1, "steps": 3}),
    );
    long.meta = Some(RequestMetaObject::with_progress_token(ProgressToken(
        NumberOrString::String(Arc::from("p-1")),
    )));
    client.call_tool(long).await.unwrap();
    let bad = client.call_tool(call("get-sum", json!({"a": "x"}))).await;
    assert!(
        bad.is_err() || bad.as_ref().is_ok_and(|r| r.is_error == Some(true)),
        "{bad:?}"
    );
    client.cancel().await.unwrap();

    let recs = collector
        .wait_for("the session's end", |r| {
            r.iter().any(|x| x["kind"] == "session.end")
        })
        .await
        .unwrap();
    let tool = |name: &str| {
        recs.iter()
            .filter(|r| r["kind"] == "command" && r["mcp"]["tool"] == name)
            .collect::<Vec<_>>()
    };
    let start = recs.iter().find(|r| r["kind"] == "session.start").unwrap();
    assert_eq!(start["mcp"]["client"]["name"], "e2e-everything");
    assert_eq!(start["mcp"]["protocol_version"], "2025-06-18");
    let sums = tool("get-sum");
    assert_eq!(sums.len(), 2);
    assert_eq!(sums[0]["outcome"]["status"], "ok");
    assert_eq!(
        sums[0]["envoy"],
        json!({"route": "mcp", "cluster": "mcp_server"})
    );
    assert_eq!(sums[0]["mcp"]["arguments"], json!({"a": 2, "b": 40}));
    assert_eq!(sums[1]["outcome"]["status"], "error", "{}", sums[1]);
    let long = tool("trigger-long-running-operation");
    assert_eq!(long[0]["outcome"]["status"], "ok");
    assert_eq!(long[0]["outcome"]["notifications"], 3, "{}", long[0]);
    let progress: Vec<&Value> = recs
        .iter()
        .filter(|r| r["mcp"]["method"] == "notifications/progress")
        .collect();
    assert_eq!(progress.len(), 3, "recorded as they came");
    assert!(progress
        .iter()
        .all(|p| p["mcp"]["direction"] == "server_to_client" && p["session"] == start["session"]));
    let end = recs.iter().find(|r| r["kind"] == "session.end").unwrap();
    assert_eq!(end["session"], start["session"]);
    let report = collector.verify();
    assert!(report.problems.is_empty(), "{:?}", report.problems);

    // Metrics reach Envoy's stats (published on the root's tick) and Prometheus.
    let shipped = |envoy: &Envoy| {
        envoy
            .stat("wasmcustom.mcptrail.records_shipped")
            .unwrap_or(0)
    };
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while shipped(&envoy) < recs.len() as u64 && std::time::Instant::now() < deadline {
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert!(
        shipped(&envoy) >= recs.len() as u64,
        "{}",
        envoy.admin_get("/stats?filter=mcptrail").unwrap()
    );
    assert!(envoy.stat("wasmcustom.mcptrail.requests").unwrap_or(0) >= 6);
    assert!(
        envoy
            .stat("wasmcustom.mcptrail.vm_memory_bytes")
            .unwrap_or(0)
            > 0
    );
    let prom = envoy.admin_get("/stats/prometheus").unwrap();
    assert!(prom.contains("mcptrail_records_emitted"), "{prom}");
}
