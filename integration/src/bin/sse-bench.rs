//! Streaming stays streaming: time to the first SSE event through Envoy with and without the
//! filter, and what a 100 MB SSE answer costs (throughput, the VMs' memory, Envoy's peak RSS).
//! A benchmark, not a test: `make bench-sse` (after `make build`).
//!
//! The upstream is the harness's raw HTTP/1.1 server ([`Scripted`]), so its own cost is
//! negligible: for the first-event figure it sends two progress events 20 ms apart, then the
//! result (`x-fault: drip:2`); for the bulk figure about N bytes of 16 KiB progress events,
//! then the result (`x-fault: bulk:N`).

use std::time::{Duration, Instant};

use mcptrail_integration::envoy::EnvoySpec;
use mcptrail_integration::scripted::Scripted;
use mcptrail_integration::{base_plugin_config, Collector, Envoy};

const CALL: &str =
    r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"stream","arguments":{}}}"#;
const EVENT_BYTES: usize = 16 * 1024;

/// Median time to the first body bytes (the first event), in µs.
async fn first_event(url: &str, n: usize) -> anyhow::Result<f64> {
    let client = reqwest::Client::new();
    let mut lat = Vec::with_capacity(n);
    for _ in 0..n {
        let start = Instant::now();
        let mut r = client
            .post(url)
            .header("content-type", "application/json")
            .header("accept", "application/json, text/event-stream")
            .header("x-fault", "drip:2")
            .body(CALL)
            .send()
            .await?;
        let first = r.chunk().await?;
        anyhow::ensure!(first.is_some_and(|c| !c.is_empty()), "no first event");
        lat.push(start.elapsed().as_secs_f64() * 1e6);
        while r.chunk().await?.is_some() {}
    }
    lat.sort_by(f64::total_cmp);
    Ok(lat.get(lat.len() / 2).copied().unwrap_or(0.0))
}

/// Streams `bytes` of SSE; returns (seconds, bytes received).
async fn bulk(url: &str, bytes: usize) -> anyhow::Result<(f64, u64)> {
    let client = reqwest::Client::new();
    let start = Instant::now();
    let mut r = client
        .post(url)
        .header("content-type", "application/json")
        .header("accept", "application/json, text/event-stream")
        .header("x-fault", format!("bulk:{bytes}"))
        .body(CALL)
        .send()
        .await?;
    let mut got = 0u64;
    while let Some(c) = r.chunk().await? {
        got += c.len() as u64;
    }
    Ok((start.elapsed().as_secs_f64(), got))
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> anyhow::Result<()> {
    let mb: usize = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(100);
    let scripted = Scripted::start().await?;
    let up = scripted.addr;
    let collector = Collector::start().await?;
    let spec = |with: bool| {
        let mut s = EnvoySpec::mcp(base_plugin_config(), up, collector.addr);
        s.without_filter = !with;
        s
    };
    let plain = tokio::task::block_in_place(|| Envoy::start(&spec(false), 1))?;
    let filtered = tokio::task::block_in_place(|| Envoy::start(&spec(true), 1))?;
    let direct = format!("http://{up}/mcp");
    let (p_url, f_url) = (
        format!("{}/mcp", plain.url()),
        format!("{}/mcp", filtered.url()),
    );
    let n = 30;
    first_event(&p_url, 5).await?;
    first_event(&f_url, 5).await?;
    let d = first_event(&direct, n).await?;
    let p = first_event(&p_url, n).await?;
    let f = first_event(&f_url, n).await?;
    println!("time to first SSE event (median of {n}; the stream then stays open 40 ms):");
    println!("  upstream directly     {d:8.0} µs");
    println!("  plain Envoy           {p:8.0} µs");
    println!("  Envoy + mcptrail      {f:8.0} µs  (+{:.0} µs)", f - p);

    let bytes = mb * 1024 * 1024;
    let mem = |e: &Envoy| e.stat("wasmcustom.mcptrail.vm_memory_bytes").unwrap_or(0);
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let mem_before = mem(&filtered);
    let (pt, pgot) = bulk(&p_url, bytes).await?;
    let (ft, fgot) = bulk(&f_url, bytes).await?;
    anyhow::ensure!(
        pgot == fgot,
        "the filter changed the stream: {pgot} vs {fgot} bytes"
    );
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let mem_after = mem(&filtered);
    let rate = |t: f64| fgot as f64 / t / 1e6;
    println!(
        "{mb} MB SSE answer ({} events of {} KiB):",
        bytes / EVENT_BYTES,
        EVENT_BYTES / 1024
    );
    println!(
        "  plain Envoy           {pt:6.2} s  {:7.1} MB/s  peak RSS {} MiB",
        rate(pt),
        plain.memory_kib().1 / 1024
    );
    println!(
        "  Envoy + mcptrail      {ft:6.2} s  {:7.1} MB/s  peak RSS {} MiB",
        rate(ft),
        filtered.memory_kib().1 / 1024
    );
    println!(
        "  mcptrail VMs' linear memory (all VMs of the process): {:.1} MiB before, {:.1} MiB after",
        mem_before as f64 / 1048576.0,
        mem_after as f64 / 1048576.0
    );
    let recs = collector
        .wait_for("the bulk command", |r| {
            r.iter()
                .any(|x| x["outcome"]["response_bytes"].as_u64() > Some(1 << 20))
        })
        .await?;
    let last = recs
        .iter()
        .find(|x| x["outcome"]["response_bytes"].as_u64() > Some(1 << 20));
    if let Some(last) = last {
        println!(
            "  its record: status {}, {} response bytes, {} notifications counted",
            last["outcome"]["status"],
            last["outcome"]["response_bytes"],
            last["outcome"]["notifications"]
        );
    }
    Ok(())
}
