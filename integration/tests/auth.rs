//! Identity and access through real Envoy: JWT validation against a served JWKS (fetched by
//! the filter through an Envoy cluster), MCP authorization challenges, key rotation, and
//! group policy, driven by the official Rust MCP client.

use mcptrail_cli::issuer;
use mcptrail_integration::demo::Mode;
use mcptrail_integration::envoy::loopback;
use mcptrail_integration::{base_plugin_config, DevIssuer, Stack};
use rmcp::model::{
    CallToolRequestParams, ClientCapabilities, ClientConfig, Implementation, ProtocolVersion,
};
use rmcp::transport::streamable_http_client::StreamableHttpClientTransportConfig;
use rmcp::transport::StreamableHttpClientTransport;
use rmcp::ServiceExt;
use serde_json::{json, Value};

const AUD: &str = "https://mcp.test/mcp";

async fn stack(idp: &DevIssuer) -> Stack {
    stack_in(
        idp,
        Mode {
            json: true,
            stateless: false,
        },
    )
    .await
}

async fn stack_in(idp: &DevIssuer, mode: Mode) -> Stack {
    let mut cfg = base_plugin_config();
    cfg["auth"] = idp.auth_config(AUD, "idp");
    cfg["auth"]["providers"][0]["jwks_refetch_min_s"] = json!(0);
    cfg["auth"]["providers"][0]["leeway_s"] = json!(0);
    cfg["auth"]["resource_metadata"] =
        json!({ "resource": AUD, "authorization_servers": [idp.issuer] });
    cfg["policy"] = json!({ "rules": [
        { "tools": ["get_customer"], "groups": ["support"], "action": "allow" },
        { "tools": ["get_customer"], "action": "deny" },
    ]});
    Stack::start_with(mode, Some(cfg), vec![idp.cluster("idp")])
        .await
        .unwrap()
}

async fn client(
    stack: &Stack,
    token: Option<&str>,
) -> Result<rmcp::service::RunningService<rmcp::RoleClient, ClientConfig>, String> {
    let mut cfg = StreamableHttpClientTransportConfig::with_uri(stack.mcp_url());
    if let Some(t) = token {
        cfg = cfg.auth_header(t);
    }
    let info = ClientConfig::new(
        ClientCapabilities::default(),
        Implementation::new("e2e", "1.0"),
    )
    .with_protocol_version(ProtocolVersion::V_2025_06_18);
    info.serve(StreamableHttpClientTransport::from_config(cfg))
        .await
        .map_err(|e| format!("{e:?}"))
}

async fn raw_post(stack: &Stack, token: Option<&str>) -> reqwest::Response {
    let mut req = reqwest::Client::new()
        .post(stack.mcp_url())
        .header("content-type", "application/json")
        .header("accept", "application/json, text/event-stream")
        .body(r#"{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-06-18","capabilities":{},"clientInfo":{"name":"raw","version":"1"}}}"#);
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    req.send().await.unwrap()
}

/// The tools a client is shown.
async fn tool_names(
    c: &rmcp::service::RunningService<rmcp::RoleClient, ClientConfig>,
) -> Vec<String> {
    c.list_all_tools()
        .await
        .unwrap()
        .iter()
        .map(|t| t.name.to_string())
        .collect()
}

fn www(r: &reqwest::Response) -> String {
    r.headers()
        .get("www-authenticate")
        .map(|v| v.to_str().unwrap().to_string())
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn auth_outcomes_through_envoy() {
    let idp = DevIssuer::start(loopback(0), None).await.unwrap();
    let stack = stack(&idp).await;
    let base = stack.envoy.url();

    // No token: 401 with the MCP challenge, and the metadata it points at.
    let r = raw_post(&stack, None).await;
    assert_eq!(r.status(), 401);
    let challenge = www(&r);
    let expected =
        format!("Bearer resource_metadata=\"{base}/.well-known/oauth-protected-resource/mcp\"");
    assert_eq!(challenge, expected);
    let meta: Value = reqwest::get(format!("{base}/.well-known/oauth-protected-resource/mcp"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(meta["resource"], AUD);
    assert_eq!(meta["authorization_servers"], json!([idp.issuer]));
    let root_meta = reqwest::get(format!("{base}/.well-known/oauth-protected-resource"))
        .await
        .unwrap();
    assert_eq!(root_meta.status(), 200);
    // The official client sees the challenge too.
    let Err(err) = client(&stack, None).await else {
        panic!("a client without a token must be refused")
    };
    assert!(
        err.contains("resource_metadata") || err.contains("401"),
        "{err}"
    );

    // Bad tokens: 401 invalid_token.
    let expired = idp.token_with(&idp.key, "alice", &["eng"], AUD, 0);
    let wrong_aud = idp.token_with(&idp.key, "alice", &["eng"], "https://elsewhere/mcp", 600);
    for bad in [expired.as_str(), wrong_aud.as_str(), "not.a.jwt"] {
        let r = raw_post(&stack, Some(bad)).await;
        assert_eq!(r.status(), 401, "{bad}");
        assert!(www(&r).contains("error=\"invalid_token\""));
    }

    // A good token: the official client works, records carry the identity.
    let alice = idp.token_with(&idp.key, "alice", &["eng"], AUD, 600);
    let c = client(&stack, Some(&alice)).await.unwrap();
    // tools/list only shows what the caller may call.
    let names = tool_names(&c).await;
    assert!(names.contains(&"echo".to_string()), "{names:?}");
    assert!(!names.contains(&"get_customer".to_string()), "{names:?}");
    let r = c
        .call_tool(
            CallToolRequestParams::new("echo")
                .with_arguments(json!({"text": "as alice"}).as_object().cloned().unwrap()),
        )
        .await
        .unwrap();
    assert!(format!("{r:?}").contains("as alice"));
    // Policy: get_customer is for the support group only.
    let denied = c
        .call_tool(
            CallToolRequestParams::new("get_customer")
                .with_arguments(json!({"id": "c1"}).as_object().cloned().unwrap()),
        )
        .await;
    let Err(denied) = denied else {
        panic!("get_customer must be denied by policy")
    };
    let denied = format!("{denied:?}");
    assert!(
        denied.contains("-32003") || denied.contains("not allowed"),
        "{denied}"
    );
    c.cancel().await.unwrap();
    let support = idp.token_with(&idp.key, "sam", &["support"], AUD, 600);
    let c = client(&stack, Some(&support)).await.unwrap();
    let names = tool_names(&c).await;
    assert!(names.contains(&"get_customer".to_string()), "{names:?}");
    c.call_tool(
        CallToolRequestParams::new("get_customer")
            .with_arguments(json!({"id": "c1"}).as_object().cloned().unwrap()),
    )
    .await
    .unwrap();
    c.cancel().await.unwrap();

    let recs = stack
        .collector
        .wait_for("alice's echo, her denial, sam's lookup", |r| {
            r.iter().any(|x| x["kind"] == "policy.denied")
                && r.iter()
                    .any(|x| x["mcp"]["tool"] == "get_customer" && x["kind"] == "command")
                && r.iter().any(|x| x["mcp"]["tool"] == "echo")
        })
        .await
        .unwrap();
    let echo = recs.iter().find(|x| x["mcp"]["tool"] == "echo").unwrap();
    assert_eq!(echo["identity"]["sub"], "alice");
    assert_eq!(echo["identity"]["iss"], idp.issuer.as_str());
    assert_eq!(echo["identity"]["groups"], json!(["eng"]));
    let denial = recs.iter().find(|x| x["kind"] == "policy.denied").unwrap();
    assert_eq!(denial["identity"]["sub"], "alice");
    assert_eq!(denial["outcome"]["status"], "denied");
    let lookup = recs
        .iter()
        .find(|x| x["kind"] == "command" && x["mcp"]["tool"] == "get_customer")
        .unwrap();
    assert_eq!(lookup["identity"]["sub"], "sam");
    let auth_denied: Vec<&Value> = recs.iter().filter(|x| x["kind"] == "auth.denied").collect();
    assert!(auth_denied.len() >= 5, "{auth_denied:?}");
    assert!(auth_denied
        .iter()
        .any(|x| x["auth"]["error"] == "missing_token"));
    assert!(auth_denied.iter().any(|x| x["auth"]["error"] == "expired"));
    assert!(auth_denied
        .iter()
        .any(|x| x["auth"]["error"] == "audience_mismatch"));
    assert!(auth_denied
        .iter()
        .any(|x| x["auth"]["error"] == "malformed"));
    // No record holds a token.
    let file = std::fs::read_to_string(&stack.collector.out).unwrap();
    for t in [&alice, &support, &expired, &wrong_aud] {
        let sig = t.rsplit('.').next().unwrap();
        assert!(!file.contains(sig), "a token leaked into the audit file");
    }
    assert!(stack.collector.verify().problems.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jwks_rotation_end_to_end() {
    let idp = DevIssuer::start(loopback(0), None).await.unwrap();
    let stack = stack(&idp).await;
    let old = idp.token_with(&idp.key, "alice", &["eng"], AUD, 600);
    assert_eq!(raw_post(&stack, Some(&old)).await.status(), 200);

    // The IdP rotates: a new key replaces the old one in the served JWKS.
    let dir = tempfile::tempdir().unwrap();
    let new_kp = issuer::load_or_create_key(&dir.path().join("k2.pem")).unwrap();
    *idp.keys.write().unwrap() = issuer::jwks(&new_kp);
    let new = idp.token_with(&new_kp, "alice", &["eng"], AUD, 600);
    // The unknown kid makes the filter re-fetch while the request waits.
    assert_eq!(raw_post(&stack, Some(&new)).await.status(), 200);
    // The withdrawn key no longer verifies, even though its token was cached.
    let r = raw_post(&stack, Some(&old)).await;
    assert_eq!(r.status(), 401);
    let recs = stack
        .collector
        .wait_for("the refusal of the old key", |r| {
            r.iter().any(|x| x["kind"] == "auth.denied")
        })
        .await
        .unwrap();
    let d = recs.iter().find(|x| x["kind"] == "auth.denied").unwrap();
    assert_eq!(d["auth"]["error"], "unknown_kid");
    assert!(
        stack.envoy.log().contains("JWKS loaded"),
        "the fetch is logged"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tools_list_is_filtered_in_sse_responses_too() {
    let idp = DevIssuer::start(loopback(0), None).await.unwrap();
    let stack = stack_in(
        &idp,
        Mode {
            json: false,
            stateless: false,
        },
    )
    .await;
    let alice = idp.token_with(&idp.key, "alice", &["eng"], AUD, 600);
    let c = client(&stack, Some(&alice)).await.unwrap();
    let names = tool_names(&c).await;
    assert!(names.contains(&"progress".to_string()), "{names:?}");
    assert!(!names.contains(&"get_customer".to_string()), "{names:?}");
    // Streaming still streams: progress notifications and the result come through the rewrite path.
    let r = c
        .call_tool(
            CallToolRequestParams::new("progress")
                .with_arguments(json!({"steps": 3}).as_object().cloned().unwrap()),
        )
        .await
        .unwrap();
    assert!(format!("{r:?}").contains("done after 3 steps"));
    c.cancel().await.unwrap();
    let recs = stack
        .collector
        .wait_for("the progress call", |r| {
            r.iter().any(|x| x["mcp"]["tool"] == "progress")
        })
        .await
        .unwrap();
    let p = recs
        .iter()
        .find(|x| x["mcp"]["tool"] == "progress")
        .unwrap();
    assert_eq!(p["outcome"]["status"], "ok", "{p}");
}
