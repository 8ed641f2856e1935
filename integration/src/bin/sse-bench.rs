//! Streaming stays streaming: time to the first SSE event through Envoy with and without the
//! filter, and what a 100 MB SSE answer costs (throughput, the VMs' memory, Envoy's peak RSS).
//! A benchmark, not a test: `make bench-sse` (after `make build`).
//!
//! The upstream is a minimal HTTP/1.1 server in this process, so its own cost is negligible:
//! for the first-event figure it sends one progress event at once and the result 200 ms
//! later; for the bulk figure it sends `x-bench-bytes` of progress events, then the result.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use mcptrail_integration::envoy::{self, EnvoySpec, Upstream};
use mcptrail_integration::{base_plugin_config, Collector, Envoy};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};

const CALL: &str =
    r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"stream","arguments":{}}}"#;
const EVENT_BYTES: usize = 16 * 1024;

async fn serve_conn(stream: TcpStream) -> anyhow::Result<()> {
    // Each event goes out as written (no Nagle wait behind a delayed ACK).
    stream.set_nodelay(true)?;
    let (r, mut w) = stream.into_split();
    let mut r = BufReader::new(r);
    loop {
        let mut len = 0usize;
        let mut bulk: Option<usize> = None;
        let mut line = String::new();
        loop {
            line.clear();
            if r.read_line(&mut line).await? == 0 {
                return Ok(());
            }
            let l = line.trim_end();
            if l.is_empty() {
                break;
            }
            let lower = l.to_ascii_lowercase();
            if let Some(v) = lower.strip_prefix("content-length:") {
                len = v.trim().parse()?;
            }
            if let Some(v) = lower.strip_prefix("x-bench-bytes:") {
                bulk = Some(v.trim().parse()?);
            }
        }
        let mut body = vec![0u8; len];
        r.read_exact(&mut body).await?;
        w.write_all(b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n\r\n")
            .await?;
        let event = |i: usize, pad: usize| {
            format!(
                "id: {i}\ndata: {{\"jsonrpc\":\"2.0\",\"method\":\"notifications/progress\",\"params\":{{\"progressToken\":1,\"progress\":{i},\"message\":\"{}\"}}}}\n\n",
                "x".repeat(pad)
            )
        };
        let chunk = |s: &str| format!("{:x}\r\n{s}\r\n", s.len());
        match bulk {
            None => {
                w.write_all(chunk(&event(0, 16)).as_bytes()).await?;
                w.flush().await?;
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            Some(total) => {
                let one = event(0, EVENT_BYTES - 120);
                let mut sent = 0;
                let mut i = 0;
                while sent < total {
                    let e = if i == 0 {
                        one.clone()
                    } else {
                        one.replacen("id: 0", &format!("id: {i}"), 1)
                    };
                    w.write_all(chunk(&e).as_bytes()).await?;
                    sent += e.len();
                    i += 1;
                }
            }
        }
        let result =
            "id: end\ndata: {\"jsonrpc\":\"2.0\",\"id\":1,\"result\":{\"content\":[]}}\n\n";
        w.write_all(chunk(result).as_bytes()).await?;
        w.write_all(b"0\r\n\r\n").await?;
        w.flush().await?;
    }
}

async fn upstream() -> anyhow::Result<SocketAddr> {
    let l = TcpListener::bind("127.0.0.1:0").await?;
    let addr = l.local_addr()?;
    tokio::spawn(async move {
        while let Ok((s, _)) = l.accept().await {
            tokio::spawn(serve_conn(s));
        }
    });
    Ok(addr)
}

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
        .header("x-bench-bytes", bytes.to_string())
        .body(CALL)
        .send()
        .await?;
    let mut got = 0u64;
    while let Some(c) = r.chunk().await? {
        got += c.len() as u64;
    }
    Ok((start.elapsed().as_secs_f64(), got))
}

fn peak_rss_kib(envoy: &Envoy) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{}/status", envoy.pid()?)).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> anyhow::Result<()> {
    let mb: usize = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(100);
    let up = upstream().await?;
    let collector = Collector::start().await?;
    let spec = |with: bool| {
        let mut s = EnvoySpec::new(
            envoy::wasm_module(),
            base_plugin_config(),
            Upstream {
                name: "mcp_server".into(),
                endpoints: vec![up],
            },
        );
        s.without_filter = !with;
        s.clusters.push(Upstream {
            name: "audit_collector".into(),
            endpoints: vec![collector.addr],
        });
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
    println!("time to first SSE event (median of {n}; the result follows 200 ms later):");
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
        peak_rss_kib(&plain).unwrap_or(0) / 1024
    );
    println!(
        "  Envoy + mcptrail      {ft:6.2} s  {:7.1} MB/s  peak RSS {} MiB",
        rate(ft),
        peak_rss_kib(&filtered).unwrap_or(0) / 1024
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
