//! Masking through real Envoy with the official Rust client: secrets in tool arguments and in
//! JSON and SSE tool results never reach the collector's file, and with `responses: true` never
//! reach the client either.

use mcptrail_integration::demo::Mode;
use mcptrail_integration::{base_plugin_config, Stack};
use rmcp::model::{
    CallToolRequestParams, ClientCapabilities, ClientConfig, Implementation, ProtocolVersion,
};
use rmcp::transport::streamable_http_client::StreamableHttpClientTransportConfig;
use rmcp::transport::StreamableHttpClientTransport;
use rmcp::ServiceExt;
use serde_json::{json, Value};

/// What the demo server's tools hold that must not leak.
const SECRETS: [&str; 6] = [
    "hunter2",
    "jane.doe@example.com",
    "123-45-6789",
    "4111 1111 1111 1111",
    "AKIAIOSFODNN7EXAMPLE",
    "carol@example.net",
];

fn call(name: &'static str, args: Value) -> CallToolRequestParams {
    CallToolRequestParams::new(name).with_arguments(args.as_object().cloned().unwrap_or_default())
}

/// Calls the tools that carry secrets; returns what the client received.
async fn drive(stack: &Stack) -> String {
    let transport = StreamableHttpClientTransport::from_config(
        StreamableHttpClientTransportConfig::with_uri(stack.mcp_url()),
    );
    let client = ClientConfig::new(
        ClientCapabilities::default(),
        Implementation::new("mask-e2e", "1"),
    )
    .with_protocol_version(ProtocolVersion::V_2025_06_18)
    .serve(transport)
    .await
    .unwrap();
    let mut seen = String::new();
    for (tool, args) in [
        ("login", json!({"username": "bob", "password": "hunter2"})),
        ("get_customer", json!({"id": "7"})),
        ("echo", json!({"text": "write to carol@example.net"})),
    ] {
        let r = client.call_tool(call(tool, args)).await.unwrap();
        seen.push_str(&serde_json::to_string(&r).unwrap());
    }
    client.cancel().await.unwrap();
    seen
}

async fn run(mode: Mode, responses: bool) {
    let mut config = base_plugin_config();
    config["mcp"]["result_preview_bytes"] = json!(400);
    config["masking"] = json!({
        "fields": ["password", "api_key"],
        "detectors": ["email", "us_ssn", "credit_card", "aws_access_key"],
        "responses": responses,
    });
    let stack = Stack::start(mode, Some(config)).await.unwrap();
    let seen = drive(&stack).await;
    let recs = stack
        .collector
        .wait_for("the three calls", |r| {
            ["login", "get_customer", "echo"]
                .iter()
                .all(|t| r.iter().any(|x| x["mcp"]["tool"] == *t))
        })
        .await
        .unwrap();
    // The trail: no secret, and the places masked are listed.
    for r in &recs {
        let line = r.to_string();
        for secret in SECRETS {
            assert!(!line.contains(secret), "{secret} in a record: {line}");
        }
    }
    let login = recs.iter().find(|x| x["mcp"]["tool"] == "login").unwrap();
    assert_eq!(login["mcp"]["arguments"]["password"], "[REDACTED]");
    assert_eq!(login["mcp"]["arguments"]["username"], "bob");
    assert!(login["masked"]
        .as_array()
        .unwrap()
        .iter()
        .any(|p| p == "/params/arguments/password"));
    let echo = recs.iter().find(|x| x["mcp"]["tool"] == "echo").unwrap();
    assert_eq!(echo["mcp"]["arguments"]["text"], "write to [REDACTED]");
    // The result previews are masked whether or not the client's answers are.
    let customer = recs
        .iter()
        .find(|x| x["mcp"]["tool"] == "get_customer")
        .unwrap();
    let preview = customer["outcome"]["result_preview"].as_str().unwrap();
    assert!(preview.contains("Jane Doe"), "{preview}");
    assert!(
        customer["masked"]
            .as_array()
            .unwrap()
            .iter()
            .any(|p| p.as_str().unwrap().starts_with("/result/content/0/text")),
        "{customer}"
    );
    // The client: unchanged unless responses are masked too.
    let leaked: Vec<&str> = SECRETS[1..]
        .iter()
        .copied()
        .filter(|s| seen.contains(s))
        .collect();
    if responses {
        assert!(leaked.is_empty(), "reached the client: {leaked:?}\n{seen}");
        assert!(
            seen.contains("Jane Doe"),
            "the rest of the result is intact: {seen}"
        );
    } else {
        assert!(
            seen.contains("jane.doe@example.com"),
            "answers pass untouched: {seen}"
        );
    }
    let report = stack.collector.verify();
    assert!(report.problems.is_empty(), "{:?}", report.problems);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sse_answers_masked_for_the_client() {
    run(
        Mode {
            json: false,
            stateless: false,
        },
        true,
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_answers_masked_for_the_client() {
    run(
        Mode {
            json: true,
            stateless: true,
        },
        true,
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn records_masked_answers_untouched() {
    run(
        Mode {
            json: false,
            stateless: false,
        },
        false,
    )
    .await;
}
