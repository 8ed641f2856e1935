//! VM lifecycle through real Envoy: records still held (a flush interval far longer than the
//! test) when the VM goes away must reach the collector, or the trail must show the stream
//! open. A listener reconfigured over LDS under traffic (new plugin configuration; new
//! `vm_id`), the graceful stop, a plain SIGTERM, a collector down at shutdown, and signed
//! checkpoints that show a rewrite even to a holder of the MAC key.

use std::io::Write;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

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

/// A collector, a stateless demo server and Envoy (2 workers, listener over LDS on a fixed
/// port, 1 s drain) with `cfg`.
struct Rig {
    collector: Collector,
    server: DemoServer,
    port: u16,
    envoy: Envoy,
}

impl Rig {
    async fn start(cfg: Value) -> Rig {
        let collector = Collector::start().await.unwrap();
        let server = DemoServer::start(demo::Mode {
            json: true,
            stateless: true,
        })
        .await
        .unwrap();
        let port = free_port().unwrap();
        let first = spec(cfg, &server, &collector, port);
        let envoy = tokio::task::block_in_place(|| Envoy::start_lds(&first, 2, 1)).unwrap();
        Rig {
            collector,
            server,
            port,
            envoy,
        }
    }
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

/// Calls through an Envoy in a loop until finished, each on a fresh connection.
struct Load {
    stop: Arc<AtomicBool>,
    task: tokio::task::JoinHandle<Vec<usize>>,
}

impl Load {
    fn start(envoy: &Envoy) -> Load {
        let url = format!("{}/mcp", envoy.url());
        let stop = Arc::new(AtomicBool::new(false));
        let until = Arc::clone(&stop);
        let task = tokio::spawn(async move {
            let next = AtomicUsize::new(0);
            let mut answered = Vec::new();
            while !until.load(Ordering::Relaxed) {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if call(&url, i).await {
                    answered.push(i);
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            answered
        });
        Load { stop, task }
    }

    /// Stops; the ids of the calls answered.
    async fn finish(self) -> Vec<usize> {
        self.stop.store(true, Ordering::Relaxed);
        self.task.await.unwrap()
    }
}

/// Asks the filter to drain, from the host (loopback); the answer's status.
async fn ask_drain(envoy: &Envoy) -> u16 {
    reqwest::Client::new()
        .post(format!("{}/.well-known/mcptrail/drain", envoy.url()))
        .send()
        .await
        .map_or(0, |r| r.status().as_u16())
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

/// Times between "VM going away" and "done" in the Envoy log, in ms.
fn done_times(log: &str) -> Vec<i64> {
    let ms = |l: &str| -> Option<i64> {
        // [2026-12-07 02:06:13.432][thread]...
        let t = l.get(12..24)?;
        let (hms, frac) = t.split_once('.')?;
        let mut parts = hms.split(':').map(|p| p.parse::<i64>().ok());
        let (h, m, s) = (parts.next()??, parts.next()??, parts.next()??);
        Some(((h * 60 + m) * 60 + s) * 1000 + frac.parse::<i64>().ok()?)
    };
    let thread = |l: &str| {
        l.get(25..)
            .and_then(|r| r.split(']').next())
            .map(str::to_string)
    };
    let mut open: std::collections::HashMap<String, i64> = Default::default();
    let mut out = Vec::new();
    for l in log.lines() {
        if l.contains("VM going away") {
            if let (Some(t), Some(th)) = (ms(l), thread(l)) {
                open.insert(th, t);
            }
        } else if l.contains("every record delivered; done") {
            if let (Some(t), Some(th)) = (ms(l), thread(l)) {
                if let Some(start) = open.remove(&th) {
                    out.push(t - start);
                }
            }
        }
    }
    out
}

/// The operators' stop (docs/operations.md): ask the filter to drain from the host, wait
/// until the trail shows every stream closed, drain Envoy's listeners, then SIGTERM.
async fn stop_gracefully(
    envoy: &mut Envoy,
    collector: &Collector,
    streams_before: usize,
) -> Option<Duration> {
    assert_eq!(
        ask_drain(envoy).await,
        202,
        "the drain is accepted from loopback"
    );
    let closed_all = |recs: &[Value]| {
        let streams: std::collections::HashSet<&str> = recs
            .iter()
            .filter_map(|r| r["chain"]["stream"].as_str())
            .collect();
        let closed: std::collections::HashSet<&str> = recs
            .iter()
            .filter(|r| r["kind"] == "audit.closed")
            .filter_map(|r| r["chain"]["stream"].as_str())
            .collect();
        streams.len() >= streams_before && closed.len() == streams.len()
    };
    collector
        .wait_for("every stream closed after the drain", closed_all)
        .await
        .unwrap();
    let _ = tokio::task::block_in_place(|| envoy.admin_post("/drain_listeners?graceful"));
    tokio::time::sleep(Duration::from_millis(1200)).await;
    tokio::task::block_in_place(|| envoy.terminate(Duration::from_secs(20)))
}

/// Reconfigured twice under traffic (a new plugin configuration each time: the same VM), then
/// stopped the operators' way: every answered call is in the trail, every stream closed and
/// signed to its end.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plugin_reconfiguration_under_traffic_and_the_graceful_stop_lose_nothing() {
    let Rig {
        collector,
        server,
        port,
        mut envoy,
    } = Rig::start(config("a")).await;
    let load = Load::start(&envoy);
    for tag in ["bb", "ccc"] {
        tokio::time::sleep(Duration::from_secs(2)).await;
        envoy
            .update_lds(&spec(config(tag), &server, &collector, port))
            .unwrap();
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    let answered = load.finish().await;
    let recorded_before_stop = recorded_ids(&collector.records()).len();
    let streams_before = {
        let recs = collector.records();
        let s: std::collections::HashSet<String> = recs
            .iter()
            .filter_map(|r| r["chain"]["stream"].as_str().map(str::to_string))
            .collect();
        s.len()
    };
    let exited = stop_gracefully(&mut envoy, &collector, streams_before).await;
    let log = std::fs::read_to_string(&envoy.log_path).unwrap_or_default();
    let records = collector.records();
    let recorded = recorded_ids(&records);
    let missing: Vec<&usize> = answered.iter().filter(|i| !recorded.contains(i)).collect();
    let report = verify_closed(&collector);
    let (text, _) = verify::render_report(&report);
    let times = done_times(&log);
    say(&format!(
        "lifecycle (plugin reconfigured twice, then the graceful stop): {} calls answered, {} recorded before the stop (the rest held by a 60 s flush interval and shipped by the VMs going away), {} after; {} missing; {} streams, all closed and signed; time from on_done to proxy_done {:?} ms; SIGTERM to exit {:?}",
        answered.len(),
        recorded_before_stop,
        recorded.len(),
        missing.len(),
        report.streams.len(),
        times,
        exited
    ));
    assert!(answered.len() > 50, "traffic flowed: {}", answered.len());
    assert!(
        missing.is_empty(),
        "every answered call is recorded: {missing:?}"
    );
    assert!(report.problems.is_empty(), "{text}");
    assert_eq!(report.open().count(), 0, "every stream closed: {text}");
    assert!(
        report.streams.iter().all(|s| s.signed_to_end()),
        "signed to their ends: {text}"
    );
    assert!(
        times.len() >= 6,
        "two reconfigurations of 3 VMs each shipped and reported done: {times:?}"
    );
    assert!(exited.is_some(), "Envoy stopped");

    // The trail rewritten by someone holding the HMAC key: one call removed from the busiest
    // stream, the rest renumbered, re-linked and re-MACed, the checkpoints' seq and head made
    // to agree. The MACs and links pass; the signatures over the original heads do not.
    let lines = collector.lines();
    let busiest = report
        .streams
        .iter()
        .max_by_key(|s| s.records)
        .map(|s| s.stream.clone())
        .unwrap();
    let mut chain =
        mcptrail::audit::chain::Chain::new(busiest.clone(), Some(TEST_HMAC_KEY.to_vec()));
    let mut removed = false;
    let forged: Vec<String> = lines
        .iter()
        .filter_map(|l| {
            let mut v: Value = serde_json::from_str(l).unwrap();
            if v["chain"]["stream"] != busiest.as_str() {
                return Some(l.clone());
            }
            if !removed && v["kind"] == "command" {
                removed = true;
                return None;
            }
            v.as_object_mut().unwrap().remove("chain");
            // The checkpoints' own fields follow the rewrite too; only their signatures cannot.
            if v["checkpoint"].is_object() {
                v["checkpoint"]["seq"] = json!(chain.seq());
                v["checkpoint"]["head"] = json!(chain.head());
            }
            Some(chain.seal(v.to_string()))
        })
        .collect();
    let dir = tempfile::tempdir().unwrap();
    let forged_file = dir.path().join("forged.ndjson");
    std::fs::write(&forged_file, forged.join("\n") + "\n").unwrap();
    let with_mac_only =
        verify::verify_files(Some(TEST_HMAC_KEY.to_vec()), &[&forged_file]).unwrap();
    assert!(
        with_mac_only.problems.is_empty(),
        "the leaked key makes the rewrite pass the MACs: {:?}",
        with_mac_only.problems
    );
    let signed = verify::verify_with(
        Options {
            key: None,
            public_key: Some(verify::read_public_key(&public_key_file(dir.path())).unwrap()),
            expect_closed: true,
        },
        &[&forged_file],
    )
    .unwrap();
    let (text, clean) = verify::render_report(&signed);
    assert!(!clean, "{text}");
    assert!(text.contains("bad signature"), "{text}");
    say(&format!(
        "lifecycle: a call removed from stream {busiest} and the stream re-MACed with the leaked key: verify --hmac-key passes, verify --public-key refuses ({} problems)",
        signed.problems.len()
    ));
}

/// A new `vm_id` replaces the VM: Envoy 1.40 drops the old one without waiting for
/// `proxy_done`, so it is drained first and loses nothing. A plain SIGTERM with records held
/// loses them, and the trail says so: `verify --expect-closed` refuses it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_vm_after_a_drain_loses_nothing_and_a_plain_sigterm_is_never_silent() {
    let Rig {
        collector,
        server,
        port,
        mut envoy,
    } = Rig::start(config("a")).await;
    let load = Load::start(&envoy);
    tokio::time::sleep(Duration::from_secs(2)).await;
    // Drain, then replace the VM while traffic goes on.
    assert_eq!(ask_drain(&envoy).await, 202);
    let mut new_vm = spec(config("bb"), &server, &collector, port);
    new_vm.vm_id = "mcptrail-2".into();
    envoy.update_lds(&new_vm).unwrap();
    tokio::time::sleep(Duration::from_secs(3)).await;
    let answered = load.finish().await;
    // Everything the old VM answered is in the trail, its streams closed.
    let old_streams = |recs: &[Value]| -> Vec<String> {
        let mut s: Vec<String> = recs
            .iter()
            .filter(|r| r["kind"] == "audit.closed")
            .filter_map(|r| r["chain"]["stream"].as_str().map(str::to_string))
            .collect();
        s.sort();
        s.dedup();
        s
    };
    let closed_old = old_streams(&collector.records());
    // Then a plain SIGTERM, with the new VM's records held (60 s flush interval).
    let held_ids: Vec<usize> = {
        let recorded = recorded_ids(&collector.records());
        answered
            .iter()
            .copied()
            .filter(|i| !recorded.contains(i))
            .collect()
    };
    let exited = tokio::task::block_in_place(|| envoy.terminate(Duration::from_secs(20)));
    tokio::time::sleep(Duration::from_millis(300)).await;
    let records = collector.records();
    let recorded = recorded_ids(&records);
    let lost: Vec<&usize> = answered.iter().filter(|i| !recorded.contains(i)).collect();
    let report = verify_closed(&collector);
    let (text, clean) = verify::render_report(&report);
    let log = std::fs::read_to_string(&envoy.log_path).unwrap_or_default();
    let said: u64 = log
        .lines()
        .filter(|l| l.contains("mcptrail-2") && l.contains("VM going away: shipping"))
        .filter_map(|l| {
            l.split("shipping ")
                .nth(1)?
                .split(' ')
                .next()?
                .parse::<u64>()
                .ok()
        })
        .sum();
    say(&format!(
        "lifecycle (drain, new vm_id under traffic, then a plain SIGTERM): {} calls answered; the old VM closed {} streams with nothing missing; held by the new VM at SIGTERM: {} calls, lost: {}; Envoy's log said {said} records (calls and closes) were being shipped; SIGTERM to exit {:?}; verify --expect-closed: {}",
        answered.len(),
        closed_old.len(),
        held_ids.len(),
        lost.len(),
        exited,
        if clean { "passed" } else { "refused" }
    ));
    assert!(
        closed_old.len() >= 2,
        "the old VM's streams closed: {closed_old:?}"
    );
    // Nothing the old VM answered is missing: what is lost is exactly what the new VM held.
    for i in &lost {
        assert!(
            held_ids.contains(i),
            "call {i} was lost though the old VM had it"
        );
    }
    // Either everything arrived, or the trail is refused (a stream whose close never came is
    // open even when its calls did arrive: refused too, which is on the safe side).
    if !lost.is_empty() {
        assert!(!clean, "a lossy stop is never passed as complete: {text}");
        assert!(report.open().count() >= 1, "{text}");
        assert!(said as usize >= lost.len(), "the log counted what was held");
    }
}

/// The collector down as the VM goes: the loss is counted in Envoy's log and the trail shows
/// the streams open; nothing is passed as complete.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_collector_down_at_shutdown_gives_a_counted_loss() {
    let mut cfg = config("a");
    cfg["audit"]["shutdown_timeout_ms"] = json!(1500);
    let Rig {
        collector,
        server,
        port,
        envoy,
    } = Rig::start(cfg).await;
    let url = format!("{}/mcp", envoy.url());
    tokio::time::sleep(Duration::from_millis(500)).await;
    let mut answered = 0;
    for i in 0..20 {
        answered += usize::from(call(&url, i).await);
    }
    collector.set_fault(mcptrail_integration::Fault::Status(503));
    envoy
        .update_lds(&spec(config("bb"), &server, &collector, port))
        .unwrap();
    tokio::time::sleep(Duration::from_secs(4)).await;
    collector.set_fault(mcptrail_integration::Fault::None);
    let log = std::fs::read_to_string(&envoy.log_path).unwrap_or_default();
    let gave_up: u64 = log
        .lines()
        .filter_map(|l| {
            l.split("gave up ")
                .nth(1)?
                .split(' ')
                .next()?
                .parse::<u64>()
                .ok()
        })
        .sum();
    let report = verify_closed(&collector);
    let (text, clean) = verify::render_report(&report);
    say(&format!(
        "lifecycle (collector answering 503 while the VM goes): {answered} calls answered, {} recorded, Envoy's log: gave up {gave_up} records after audit.shutdown_timeout_ms 1500; verify --expect-closed: {}",
        recorded_ids(&collector.records()).len(),
        if clean { "passed" } else { "refused" }
    ));
    assert_eq!(answered, 20);
    assert!(gave_up >= 20, "the loss is counted: {gave_up}\n{log}");
    assert!(!clean && report.open().count() >= 1, "{text}");
}
