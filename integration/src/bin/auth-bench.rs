//! Measures what token verification costs inside Envoy (V8): median request latency through
//! the filter with auth off, with one repeated token (cache hit), with a new token per request
//! (cold RS256 verification), and for refusals: forged tokens (a real signature over other
//! claims) that are expired (refused on their claims, before any signature work) or whose
//! claims pass (refused by the signature check). Sequential requests on loopback; a benchmark,
//! not a test.
//!
//! `cargo run -p mcptrail-integration --bin auth-bench [N]` (after `make build`).

use std::time::Instant;

use mcptrail_integration::demo::Mode;
use mcptrail_integration::envoy::loopback;
use mcptrail_integration::{base_plugin_config, DevIssuer, Stack};

const AUD: &str = "https://mcp.bench/mcp";
const BODY: &str = r#"{"jsonrpc":"2.0","id":1,"method":"ping"}"#;

/// `token` with its claims replaced by `edit`'s, its signature kept (so it no longer holds).
fn forge(token: &str, edit: impl Fn(&mut serde_json::Value)) -> String {
    use base64::Engine as _;
    let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let mut parts = token.splitn(3, '.');
    let (head, body, sig) = (
        parts.next().unwrap_or_default(),
        parts.next().unwrap_or_default(),
        parts.next().unwrap_or_default(),
    );
    let mut claims: serde_json::Value =
        serde_json::from_slice(&b64.decode(body).unwrap_or_default()).unwrap_or_default();
    edit(&mut claims);
    format!("{head}.{}.{sig}", b64.encode(claims.to_string()))
}

async fn run(stack: &Stack, tokens: &[String]) -> anyhow::Result<f64> {
    run_expecting(stack, tokens, true).await
}

async fn run_expecting(stack: &Stack, tokens: &[String], admitted: bool) -> anyhow::Result<f64> {
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
        anyhow::ensure!(
            status.is_success() == admitted,
            "HTTP {status} (expected {})",
            if admitted { "2xx" } else { "a refusal" }
        );
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
    let now_s = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let expired: Vec<String> = fresh
        .iter()
        .enumerate()
        .map(|(i, t)| {
            forge(t, |c| {
                c["sub"] = serde_json::json!(format!("forged{i}"));
                c["exp"] = serde_json::json!(now_s.saturating_sub(3600));
            })
        })
        .collect();
    let forged: Vec<String> = fresh
        .iter()
        .enumerate()
        .map(|(i, t)| forge(t, |c| c["sub"] = serde_json::json!(format!("forged{i}"))))
        .collect();
    let refused_claims = run_expecting(&authed, &expired, false).await?;
    let refused_sig = run_expecting(&authed, &forged, false).await?;
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
    println!(
        "median latency, forged and expired:  {refused_claims:8.0} µs  (refused on its claims, no signature check)"
    );
    println!(
        "median latency, forged, good claims: {refused_sig:8.0} µs  (refused by the signature check)"
    );
    Ok(())
}
