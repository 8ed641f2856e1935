//! Other official clients through real Envoy: the Python SDK (`mcp` on PyPI) and the MCP
//! Inspector CLI (npm), as `make run` users would call it.

use std::process::Command;

use mcptrail_integration::demo::Mode;
use mcptrail_integration::envoy::{loopback, repo_root, tools_dir};
use mcptrail_integration::process::client_stdout;
use mcptrail_integration::{base_plugin_config, DevIssuer, Stack};
use serde_json::Value;

/// A stack that requires tokens from a dev issuer, as `make run` does.
async fn authed_stack(mode: Mode) -> (Stack, String, DevIssuer) {
    let idp = DevIssuer::start(loopback(0), None).await.unwrap();
    let mut cfg = base_plugin_config();
    // The audience is the resource; the port is only known once Envoy runs, so any
    // audience the token and the config agree on will do here.
    cfg["auth"] = idp.auth_config("https://mcp.test/mcp", "idp");
    let stack = Stack::start_with(mode, Some(cfg), vec![idp.cluster("idp")])
        .await
        .unwrap();
    let token = idp.token("alice", &["eng"], "https://mcp.test/mcp");
    (stack, token, idp)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_sdk_client_both_protocol_modes() {
    for (mode, server) in [
        (
            "legacy",
            Mode {
                json: false,
                stateless: false,
            },
        ),
        (
            "auto",
            Mode {
                json: true,
                stateless: true,
            },
        ),
    ] {
        let (stack, token, _idp) = authed_stack(server).await;
        let out = client_stdout(
            Command::new(tools_dir().join("venv/bin/python"))
                .arg(repo_root().join("integration/py/client.py"))
                .arg(stack.mcp_url())
                .args(["--mode", mode, "--token", &token]),
        );
        let v: Value = serde_json::from_str(out.trim()).unwrap();
        assert_eq!(v["echo"][0], "from python", "{v}");
        assert_eq!(v["fail_is_error"], true);
        let recs = stack
            .collector
            .wait_for("the python echo and fail calls", |r| {
                r.iter().any(|r| {
                    r["mcp"]["tool"] == "echo"
                        && r["mcp"]["arguments"]["text"] == "from python"
                        && r["identity"]["sub"] == "alice"
                }) && r.iter().any(|r| r["mcp"]["tool"] == "fail")
            })
            .await
            .unwrap();
        let fail = recs.iter().find(|r| r["mcp"]["tool"] == "fail").unwrap();
        assert_eq!(fail["outcome"]["is_error"], true, "{fail}");
        assert!(stack.collector.verify().problems.is_empty());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn inspector_cli_calls_a_tool() {
    let (stack, token, _idp) = authed_stack(Mode::default()).await;
    let out = client_stdout(
        Command::new(tools_dir().join("bin/mcp-inspector"))
            .arg("--cli")
            .arg(stack.mcp_url())
            .args(["--transport", "http", "--method", "tools/call"])
            .args(["--header", &format!("Authorization: Bearer {token}")])
            .args(["--tool-name", "echo", "--tool-arg", "text=from-inspector"]),
    );
    assert!(out.contains("from-inspector"), "{out}");
    stack
        .collector
        .wait_for("the inspector's echo call", |r| {
            r.iter().any(|r| {
                r["mcp"]["arguments"]["text"] == "from-inspector" && r["identity"]["sub"] == "alice"
            })
        })
        .await
        .unwrap();
}
