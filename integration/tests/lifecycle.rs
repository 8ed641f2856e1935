//! VM lifecycle through real Envoy: records still held (a flush interval far longer than the
//! test) when the VM goes away must reach the collector, or the trail must show the stream
//! open. A listener reconfigured over LDS under traffic (new plugin configuration; new
//! `vm_id`), the graceful stop, a plain SIGTERM, a collector down at shutdown, and signed
//! checkpoints that show a rewrite even to a holder of the MAC key.

use std::io::Write;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use mcptrail_cli::verify::{self, Options};
use mcptrail_integration::demo;
use mcptrail_integration::envoy::{loopback, Envoy, EnvoySpec};
use mcptrail_integration::process::free_port;
use mcptrail_integration::{base_plugin_config, Collector, DemoServer, TEST_HMAC_KEY};
use serde_json::{json, Value};

/// Test-only Ed25519 seed and its public key.
const SEED: [u8; 32] = [42; 32];

fn b64(b: &[u8]) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(b)
}

/// Records held a minute: only the VM's end can ship them in time.
fn config(tag: &str) -> Value {
    let mut cfg = base_plugin_config();
    cfg["audit"]["flush_interval_ms"] = json!(60_000);
    cfg["audit"]["batch_max_records"] = json!(1000);
    cfg["audit"]["signing_key"] = json!(b64(&SEED));
    cfg["audit"]["checkpoint_interval_s"] = json!(3600);
    // A different configuration each time (what an operator's change does).
    cfg["mcp"]["result_preview_bytes"] = json!(tag.len());
    cfg
}

fn spec(cfg: Value, server: &DemoServer, collector: &Collector, port: u16) -> EnvoySpec {
    let mut s = EnvoySpec::mcp(cfg, server.addr, collector.addr);
    s.listen = loopback(port);
    s
}

/// One `tools/call` on a fresh connection; whether it was answered 200.
async fn call(url: &str, i: usize) -> bool {
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(0)
        .build()
        .unwrap();
    let body = json!({"jsonrpc": "2.0", "id": i, "method": "tools/call",
                      "params": {"name": "echo", "arguments": {"text": format!("call-{i}")}}});
    client
        .post(url)
        .header("content-type", "application/json")
        .header("accept", "application/json, text/event-stream")
        .body(body.to_string())
        .timeout(Duration::from_secs(5))
        .send()
        .await
        .is_ok_and(|r| r.status() == 200)
}

/// Calls in a loop until stopped; the ids answered.
fn traffic(url: String, stop: Arc<AtomicBool>) -> tokio::task::JoinHandle<Vec<usize>> {
    tokio::spawn(async move {
        let next = AtomicUsize::new(0);
        let mut answered = Vec::new();
        while !stop.load(Ordering::Relaxed) {
            let i = next.fetch_add(1, Ordering::Relaxed);
            if call(&url, i).await {
                answered.push(i);
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        answered
    })
}

fn recorded_ids(records: &[Value]) -> Vec<usize> {
    records
        .iter()
        .filter(|r| r["kind"] == "command" && r["mcp"]["tool"] == "echo")
        .filter_map(|r| r["mcp"]["arguments"]["text"].as_str())
        .filter_map(|t| t.strip_prefix("call-")?.parse().ok())
        .collect()
}

fn public_key_file(dir: &std::path::Path) -> std::path::PathBuf {
    let pk = ed25519_dalek::SigningKey::from_bytes(&SEED).verifying_key();
    let f = dir.join("public.b64");
    std::fs::write(&f, b64(pk.as_bytes())).unwrap();
    f
}

fn verify_closed(collector: &Collector) -> verify::Report {
    let dir = tempfile::tempdir().unwrap();
    verify::verify_with(
        Options {
            key: Some(TEST_HMAC_KEY.to_vec()),
            public_key: Some(verify::read_public_key(&public_key_file(dir.path())).unwrap()),
            expect_closed: true,
        },
        &[&collector.out],
    )
    .unwrap()
}

fn say(line: &str) {
    let _ = writeln!(std::io::stdout(), "{line}");
}

/// Reconfigured twice under traffic (a new plugin configuration, then a new `vm_id`), then
/// stopped gracefully: every answered call is in the trail, every stream closed and signed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reconfiguration_under_traffic_and_the_graceful_stop_lose_nothing() {
    let collector = Collector::start().await.unwrap();
    let server = DemoServer::start(demo::Mode {
        json: true,
        stateless: true,
    })
    .await
    .unwrap();
    let port = free_port().unwrap();
    let first = spec(config("a"), &server, &collector, port);
    let mut envoy = tokio::task::block_in_place(|| Envoy::start_lds(&first, 2, 1)).unwrap();
    let url = format!("{}/mcp", envoy.url());
    let stop = Arc::new(AtomicBool::new(false));
    let load = traffic(url.clone(), Arc::clone(&stop));

    tokio::time::sleep(Duration::from_secs(1)).await;
    envoy
        .update_lds(&spec(config("bb"), &server, &collector, port))
        .unwrap();
    tokio::time::sleep(Duration::from_secs(3)).await;
    let mut new_vm = spec(config("ccc"), &server, &collector, port);
    new_vm.vm_id = "mcptrail-2".into();
    envoy.update_lds(&new_vm).unwrap();
    tokio::time::sleep(Duration::from_secs(8)).await;
    stop.store(true, Ordering::Relaxed);
    let answered = load.await.unwrap();
    let after_reconfig = recorded_ids(&collector.records()).len();

    // The recommended stop: drain, wait, SIGTERM.
    let _ = tokio::task::block_in_place(|| envoy.admin_post("/drain_listeners?graceful"));
    tokio::time::sleep(Duration::from_secs(2)).await;
    let started = Instant::now();
    let exited = tokio::task::block_in_place(|| envoy.terminate(Duration::from_secs(20)));
    let log = std::fs::read_to_string(&envoy.log_path).unwrap_or_default();
    let records = collector.records();
    let recorded = recorded_ids(&records);
    let missing: Vec<&usize> = answered.iter().filter(|i| !recorded.contains(i)).collect();
    let report = verify_closed(&collector);
    let (text, _) = verify::render_report(&report);
    say(&format!(
        "lifecycle: {} calls answered over 2 reconfigurations, {} recorded before the stop, {} after it; missing {:?}; Envoy exited after SIGTERM in {:?} ({:?} since)\n{text}",
        answered.len(),
        after_reconfig,
        recorded.len(),
        missing,
        exited,
        started.elapsed()
    ));
    say(&log
        .lines()
        .filter(|l| l.contains("mcptrail"))
        .collect::<Vec<_>>()
        .join("\n"));
    for r in &records {
        if r["kind"] != "command" {
            say(&format!(
                "{} {} seq {} {}",
                r["chain"]["stream"], r["kind"], r["chain"]["seq"], r["ts"]
            ));
        }
    }
    let mut per: std::collections::BTreeMap<String, (u64, u64)> = Default::default();
    for r in &records {
        let e = per
            .entry(r["chain"]["stream"].as_str().unwrap_or("").to_string())
            .or_insert((u64::MAX, 0));
        let seq = r["chain"]["seq"].as_u64().unwrap_or(0);
        e.0 = e.0.min(seq);
        e.1 = e.1.max(seq);
    }
    say(&format!("seq ranges: {per:?}"));
    assert!(answered.len() > 50, "traffic flowed: {}", answered.len());
    assert!(
        missing.is_empty(),
        "every answered call is recorded: {missing:?}"
    );
    assert!(report.problems.is_empty(), "{text}");
    assert_eq!(report.open().count(), 0, "every stream closed: {text}");
}
