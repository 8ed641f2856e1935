//! Measures what a `review` rule costs inside Envoy (V8): median and p90 latency of a
//! `tools/call` through the filter (1 worker, auth on, the token cached) when no rule says
//! `review`; when one does but names another tool (no check is sent: the bench shows the
//! `approval_checks` counter stays at 0); and when it names the tool and a `window` approval
//! lets every call through (one check per call to the service: the release `mcptrail
//! approvals` binary on loopback, SQLite). Rounds interleave the three so drift hits all
//! alike. Sequential requests on loopback; a benchmark, not a test.
//!
//! `cargo run -p mcptrail-integration --bin review-bench [N]` (after `make build build-cli`).

use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use mcptrail_integration::approvals::{self, Approvals};
use mcptrail_integration::demo::Mode;
use mcptrail_integration::envoy::{loopback, repo_root};
use mcptrail_integration::process::{free_port, Server};
use mcptrail_integration::{base_plugin_config, Collector, DevIssuer, Stack, TEST_HMAC_KEY_B64};
use serde_json::{json, Value};

const AUD: &str = "https://mcp.bench/mcp";

fn call(tool: &str) -> String {
    format!(
        r#"{{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{{"name":"{tool}","arguments":{{"id":"42","text":"x"}}}}}}"#
    )
}

/// One request; its latency in µs and its body.
async fn once(
    client: &reqwest::Client,
    url: &str,
    token: &str,
    body: &str,
) -> anyhow::Result<(f64, String)> {
    let start = Instant::now();
    let r = client
        .post(url)
        .bearer_auth(token)
        .header("content-type", "application/json")
        .header("accept", "application/json, text/event-stream")
        .header("mcp-protocol-version", "2025-11-25")
        .body(body.to_string())
        .send()
        .await?;
    let text = r.text().await?;
    Ok((start.elapsed().as_secs_f64() * 1e6, text))
}

fn percentile(v: &mut [f64], p: f64) -> f64 {
    v.sort_by(f64::total_cmp);
    let i = ((v.len() as f64 - 1.0) * p).round() as usize;
    v.get(i).copied().unwrap_or(0.0)
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> anyhow::Result<()> {
    let n: usize = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(400);
    let bin = repo_root().join("target/release/mcptrail");
    anyhow::ensure!(
        bin.exists(),
        "{} missing: run `make build-cli`",
        bin.display()
    );
    let idp = DevIssuer::start(loopback(0), None).await?;
    let collector = Collector::start().await?;
    let dir = tempfile::tempdir()?;
    // The approval service as it is deployed: its own (release) process.
    let port = free_port()?;
    let config_path = dir.path().join("approvals.json");
    let mut config = approvals::config(&idp.issuer, "approvals", collector.addr, TEST_HMAC_KEY_B64);
    config["public_url"] = json!(format!("http://127.0.0.1:{port}"));
    std::fs::write(&config_path, config.to_string())?;
    let mut cmd = Command::new(&bin);
    cmd.arg("approvals")
        .args(["--listen", &format!("127.0.0.1:{port}"), "--db"])
        .arg(dir.path().join("approvals.db"))
        .arg("--config")
        .arg(&config_path)
        .stderr(std::process::Stdio::null());
    let service = Server::start(
        &mut cmd,
        loopback(port),
        "mcptrail approvals",
        Duration::from_secs(20),
    )?;

    let mode = Mode {
        json: true,
        stateless: true,
    };
    let mut plain = base_plugin_config();
    plain["auth"] = idp.auth_config(AUD, "idp");
    let mut reviewing = plain.clone();
    reviewing["policy"] = json!({"rules": [{"tools": ["delete_*"], "action": "review"}]});
    reviewing["approvals"] = Approvals::plugin_section("approvals");
    let approvals_cluster = mcptrail_integration::envoy::Upstream::one("approvals", service.addr);
    let a = Stack::start_with(mode, Some(plain), vec![idp.cluster("idp")]).await?;
    let b = Stack::start_with(
        mode,
        Some(reviewing),
        vec![idp.cluster("idp"), approvals_cluster],
    )
    .await?;
    let alice = idp.token("alice", &["eng"], AUD);
    let bob = idp.token("bob", &["admins"], "approvals");
    let client = reqwest::Client::new();

    // A window approval for alice's delete_customer.
    let (_, held) = once(&client, &b.mcp_url(), &alice, &call("delete_customer")).await?;
    let held: Value = serde_json::from_str(&held).context("the held call's answer")?;
    let id = held["error"]["data"]["elicitations"][0]["elicitationId"]
        .as_str()
        .context("no approval id in the answer")?
        .to_string();
    let r = client
        .post(format!("http://{}/api/requests/{id}/approve", service.addr))
        .bearer_auth(&bob)
        .json(&json!({"mode": "window", "window_s": 3600}))
        .send()
        .await?;
    anyhow::ensure!(r.status().is_success(), "approve: HTTP {}", r.status());

    let cases: [(&str, &Stack, String); 3] = [
        ("no review rule, echo", &a, call("echo")),
        ("review rule, echo (not named)", &b, call("echo")),
        (
            "review rule, delete_customer (window)",
            &b,
            call("delete_customer"),
        ),
    ];
    let mut lat: Vec<Vec<f64>> = vec![Vec::with_capacity(n); cases.len()];
    // Warm up each path (connections, JWKS fetch, V8 tiering, the service's pool).
    for (_, stack, body) in &cases {
        for _ in 0..50 {
            once(&client, &stack.mcp_url(), &alice, body).await?;
        }
    }
    // Counters are published on the flush tick: let the warm-up's land first.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let checks_before = b
        .envoy
        .stat("wasmcustom.mcptrail.approval_checks")
        .unwrap_or(0);
    let rounds = 10;
    for _ in 0..rounds {
        for (i, (what, stack, body)) in cases.iter().enumerate() {
            for _ in 0..n / rounds {
                let (us, text) = once(&client, &stack.mcp_url(), &alice, body).await?;
                anyhow::ensure!(text.contains("\"result\""), "{what}: {text}");
                if let Some(l) = lat.get_mut(i) {
                    l.push(us);
                }
            }
        }
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let checks = b
        .envoy
        .stat("wasmcustom.mcptrail.approval_checks")
        .unwrap_or(0)
        - checks_before;
    println!(
        "requests per case: {} (sequential, loopback, 1 Envoy worker, interleaved in {rounds} rounds)",
        (n / rounds) * rounds
    );
    let mut medians = Vec::new();
    for ((what, _, _), l) in cases.iter().zip(lat.iter_mut()) {
        let (p50, p90) = (percentile(l, 0.5), percentile(l, 0.9));
        medians.push(p50);
        println!("{what:40} median {p50:7.0} µs   p90 {p90:7.0} µs");
    }
    if let [base, named_not, reviewed] = medians[..] {
        println!(
            "a review rule that does not name the call: {:+.0} µs; a check (window approval, service on loopback): {:+.0} µs",
            named_not - base,
            reviewed - base
        );
    }
    println!(
        "approval checks sent during the timed calls: {checks} (expected {}: one per delete_customer call, none for echo)",
        (n / rounds) * rounds
    );
    drop(service);
    Ok(())
}
