//! Measures what token verification costs inside Envoy (V8): median request latency through
//! the filter with auth off, with one repeated token (cache hit), and with a new token per
//! request (cold RS256 verification). Sequential requests on loopback; a benchmark, not a test.
//!
//! `cargo run -p mcptrail-integration --bin auth-bench [N]` (after `make build`).

use std::time::Instant;

use mcptrail_integration::demo::Mode;
use mcptrail_integration::envoy::loopback;
use mcptrail_integration::{base_plugin_config, DevIssuer, Stack};

const AUD: &str = "https://mcp.bench/mcp";
const BODY: &str = r#"{"jsonrpc":"2.0","id":1,"method":"ping"}"#;

async fn run(stack: &Stack, tokens: &[String]) -> anyhow::Result<f64> {
    let client = reqwest::Client::new();
    let mut lat = Vec::with_capacity(tokens.len());
    for t in tokens {
        let mut req = client
            .post(stack.mcp_url())
            .header("content-type", "application/json")
            .header("accept", "application/json, text/event-stream")
            .header("mcp-protocol-version", "2025-06-18")
            .body(BODY);
        if !t.is_empty() {
            req = req.bearer_auth(t);
        }
        let start = Instant::now();
        let r = req.send().await?;
        let status = r.status();
        r.bytes().await?;
        lat.push(start.elapsed().as_secs_f64() * 1e6);
        anyhow::ensure!(status.is_success(), "HTTP {status}");
    }
    lat.sort_by(f64::total_cmp);
    Ok(lat.get(lat.len() / 2).copied().unwrap_or(0.0))
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> anyhow::Result<()> {
    let n: usize = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(300);
    let idp = DevIssuer::start(loopback(0), None).await?;
    let mode = Mode {
        json: true,
        stateless: true,
    };
    let plain = Stack::start(mode, None).await?;
    let mut cfg = base_plugin_config();
    cfg["auth"] = idp.auth_config(AUD, "idp");
    let authed = Stack::start_with(mode, Some(cfg), vec![idp.cluster("idp")]).await?;
    let one = idp.token("alice", &["eng"], AUD);
    eprintln!("minting {n} tokens...");
    let fresh: Vec<String> = (0..n)
        .map(|i| idp.token(&format!("user{i}"), &["eng"], AUD))
        .collect();
    let none = vec![String::new(); n];
    let same = vec![one; n];
    // Warm up both paths (connections, the JWKS fetch, V8 tiering).
    run(&plain, &none[..n.min(50)]).await?;
    run(&authed, &same[..n.min(50)]).await?;
    let base = run(&plain, &none).await?;
    let cached = run(&authed, &same).await?;
    let cold = run(&authed, &fresh).await?;
    println!("requests per case: {n} (sequential, loopback, 1 Envoy worker)");
    println!("median latency, auth off:            {base:8.0} µs");
    println!(
        "median latency, repeated token:      {cached:8.0} µs  (+{:.0} µs)",
        cached - base
    );
    println!(
        "median latency, new token each time: {cold:8.0} µs  (+{:.0} µs)",
        cold - base
    );
    Ok(())
}
