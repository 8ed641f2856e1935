//! A misbehaving upstream on demand: a raw HTTP/1.1 server whose every answer is chosen by the
//! request's `x-fault` header, for the fault and resource-bound tests (`tests/faults.rs`,
//! `tests/bounds.rs`). It also serves a JWKS at `/jwks` whose state the test switches
//! (good keys, garbage, an HTTP error).
//!
//! `x-fault` values (default `ok`):
//! - `ok`: a JSON reply to the request's JSON-RPC id;
//! - `sse:N`: N progress events, then the reply, as `text/event-stream`;
//! - `reset`: SSE headers and one event, then the connection is reset (RST);
//! - `status:CODE`: that status with a small JSON error body;
//! - `slow:MS`: the JSON reply after MS milliseconds;
//! - `forever`: SSE progress events every 20 ms until the client is gone;
//! - `bulk:BYTES`: about BYTES of 16 KiB SSE progress events, then the reply;
//! - `json:BYTES`: a JSON reply padded to about BYTES;
//! - `drip:N`: N SSE progress events 20 ms apart, then the reply (a stream that stays open);
//! - `bigevent:BYTES`: one SSE event of about BYTES, then the reply.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{json, Value};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};

/// What `/jwks` answers.
#[derive(Debug, Clone)]
pub enum Jwks {
    Good(Value),
    /// 200 with this body (not a usable JWKS).
    Garbage(String),
    Status(u16),
}

/// What the server saw, for assertions.
#[derive(Debug, Default)]
pub struct Seen {
    /// MCP requests received (not JWKS fetches).
    pub requests: AtomicU64,
    pub jwks_fetches: AtomicU64,
    /// `forever` streams whose client went away (a write failed).
    pub client_gone: AtomicU64,
}

pub struct Scripted {
    pub addr: SocketAddr,
    pub jwks: Arc<Mutex<Jwks>>,
    pub seen: Arc<Seen>,
    task: tokio::task::JoinHandle<()>,
}

impl Scripted {
    pub async fn start() -> anyhow::Result<Scripted> {
        Self::start_on(crate::envoy::loopback(0)).await
    }

    /// Starts on a given address (a port reserved earlier: "the JWKS comes up later").
    pub async fn start_on(addr: SocketAddr) -> anyhow::Result<Scripted> {
        let listener = TcpListener::bind(addr).await?;
        let addr = listener.local_addr()?;
        let jwks = Arc::new(Mutex::new(Jwks::Status(503)));
        let seen = Arc::new(Seen::default());
        let (j, s) = (Arc::clone(&jwks), Arc::clone(&seen));
        let task = tokio::spawn(async move {
            while let Ok((conn, _)) = listener.accept().await {
                let (j, s) = (Arc::clone(&j), Arc::clone(&s));
                tokio::spawn(async move {
                    let _ = serve(conn, j, s).await;
                });
            }
        });
        Ok(Scripted {
            addr,
            jwks,
            seen,
            task,
        })
    }

    pub fn set_jwks(&self, j: Jwks) {
        if let Ok(mut g) = self.jwks.lock() {
            *g = j;
        }
    }

    pub fn requests(&self) -> u64 {
        self.seen.requests.load(Ordering::SeqCst)
    }
}

/// Envoy with the filter in front of a [`Scripted`] upstream, and a collector.
pub struct Rig {
    // Field order is drop order: Envoy first, so its log is printed before the rest goes.
    pub envoy: crate::Envoy,
    pub up: Scripted,
    pub collector: crate::Collector,
}

impl Rig {
    /// One worker; `jwks` is the JWKS endpoint's address when auth fetches keys (`idp`).
    pub async fn start(cfg: Value, jwks: Option<SocketAddr>) -> anyhow::Result<Rig> {
        let collector = crate::Collector::start().await?;
        let up = Scripted::start().await?;
        let mut spec = crate::EnvoySpec::mcp(cfg, up.addr, collector.addr);
        if let Some(addr) = jwks {
            spec.clusters.push(crate::Upstream::one("idp", addr));
        }
        let envoy = tokio::task::block_in_place(|| crate::Envoy::start(&spec, 1))?;
        Ok(Rig {
            envoy,
            up,
            collector,
        })
    }
}

impl Drop for Scripted {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn chunk(s: &str) -> String {
    format!("{:x}\r\n{s}\r\n", s.len())
}

fn progress(i: usize, pad: usize) -> String {
    format!(
        "id: {i}\ndata: {{\"jsonrpc\":\"2.0\",\"method\":\"notifications/progress\",\"params\":{{\"progressToken\":1,\"progress\":{i},\"message\":\"{}\"}}}}\n\n",
        "x".repeat(pad)
    )
}

async fn serve(conn: TcpStream, jwks: Arc<Mutex<Jwks>>, seen: Arc<Seen>) -> anyhow::Result<()> {
    conn.set_nodelay(true)?;
    let (r, mut w) = conn.into_split();
    let mut r = BufReader::new(r);
    loop {
        let mut line = String::new();
        if r.read_line(&mut line).await? == 0 {
            return Ok(());
        }
        let path = line.split_whitespace().nth(1).unwrap_or("/").to_string();
        let (mut len, mut fault, mut chunked) = (0usize, "ok".to_string(), false);
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
            } else if let Some(v) = lower.strip_prefix("x-fault:") {
                fault = v.trim().to_string();
            } else if lower.starts_with("transfer-encoding:") && lower.contains("chunked") {
                chunked = true;
            }
        }
        let body = if chunked {
            read_chunked(&mut r).await?
        } else {
            let mut b = vec![0u8; len];
            r.read_exact(&mut b).await?;
            b
        };
        if path.starts_with("/jwks") {
            seen.jwks_fetches.fetch_add(1, Ordering::SeqCst);
            let state = jwks.lock().map(|j| j.clone()).unwrap_or(Jwks::Status(500));
            let (status, body) = match state {
                Jwks::Good(v) => (200, v.to_string()),
                Jwks::Garbage(s) => (200, s),
                Jwks::Status(s) => (s, "{\"error\":\"unavailable\"}".to_string()),
            };
            let head = format!(
                "HTTP/1.1 {status} X\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n",
                body.len()
            );
            w.write_all(head.as_bytes()).await?;
            w.write_all(body.as_bytes()).await?;
            continue;
        }
        seen.requests.fetch_add(1, Ordering::SeqCst);
        let id = serde_json::from_slice::<Value>(&body)
            .ok()
            .and_then(|v| v.get("id").cloned())
            .unwrap_or(Value::Null);
        let reply = json!({"jsonrpc": "2.0", "id": id, "result": {"content": []}}).to_string();
        let (kind, arg) = fault.split_once(':').unwrap_or((fault.as_str(), ""));
        let n: u64 = arg.parse().unwrap_or(0);
        let sse_head = "HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n\r\n";
        match kind {
            "sse" | "bulk" => {
                w.write_all(sse_head.as_bytes()).await?;
                let (count, pad) = if kind == "sse" {
                    (n as usize, 8)
                } else {
                    ((n as usize).div_ceil(16 * 1024), 16 * 1024 - 120)
                };
                let one = progress(0, pad);
                for i in 0..count {
                    let e = if i == 0 {
                        one.clone()
                    } else {
                        one.replacen("id: 0\n", &format!("id: {i}\n"), 1)
                    };
                    w.write_all(chunk(&e).as_bytes()).await?;
                }
                w.write_all(chunk(&format!("id: end\ndata: {reply}\n\n")).as_bytes())
                    .await?;
                w.write_all(b"0\r\n\r\n").await?;
            }
            "drip" | "bigevent" => {
                w.write_all(sse_head.as_bytes()).await?;
                if kind == "drip" {
                    for i in 0..n as usize {
                        w.write_all(chunk(&progress(i, 8)).as_bytes()).await?;
                        w.flush().await?;
                        tokio::time::sleep(Duration::from_millis(20)).await;
                    }
                } else {
                    let e = progress(0, n as usize);
                    for part in e.as_bytes().chunks(64 * 1024) {
                        w.write_all(chunk(&String::from_utf8_lossy(part)).as_bytes())
                            .await?;
                    }
                }
                w.write_all(chunk(&format!("id: end\ndata: {reply}\n\n")).as_bytes())
                    .await?;
                w.write_all(b"0\r\n\r\n").await?;
            }
            "reset" => {
                w.write_all(sse_head.as_bytes()).await?;
                w.write_all(chunk(&progress(0, 8)).as_bytes()).await?;
                w.flush().await?;
                tokio::time::sleep(Duration::from_millis(100)).await;
                // Abort: RST instead of FIN, mid-body.
                let stream = r.into_inner().reunite(w)?;
                // A zero linger never blocks: the close is an immediate RST.
                #[allow(deprecated)]
                stream.set_linger(Some(Duration::ZERO))?;
                drop(stream);
                return Ok(());
            }
            "forever" => {
                w.write_all(sse_head.as_bytes()).await?;
                let mut i = 0;
                loop {
                    if w.write_all(chunk(&progress(i, 8)).as_bytes())
                        .await
                        .is_err()
                        || w.flush().await.is_err()
                    {
                        seen.client_gone.fetch_add(1, Ordering::SeqCst);
                        return Ok(());
                    }
                    i += 1;
                    tokio::time::sleep(Duration::from_millis(20)).await;
                    if i > 3000 {
                        return Ok(()); // a minute: bounded even if nobody goes away
                    }
                }
            }
            other => {
                let (status, body) = match other {
                    "status" => (n as u16, json!({"error": "scripted failure"}).to_string()),
                    "json" => {
                        let pad = (n as usize).saturating_sub(80);
                        let v = json!({"jsonrpc": "2.0", "id": id,
                            "result": {"content": [{"type": "text", "text": "y".repeat(pad)}]}});
                        (200, v.to_string())
                    }
                    _ => {
                        if other == "slow" {
                            tokio::time::sleep(Duration::from_millis(n)).await;
                        }
                        (200, reply)
                    }
                };
                let head = format!(
                    "HTTP/1.1 {status} X\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n",
                    body.len()
                );
                w.write_all(head.as_bytes()).await?;
                w.write_all(body.as_bytes()).await?;
            }
        }
        w.flush().await?;
    }
}

async fn read_chunked<R: tokio::io::AsyncBufRead + Unpin>(r: &mut R) -> anyhow::Result<Vec<u8>> {
    let mut out = Vec::new();
    loop {
        let mut size = String::new();
        r.read_line(&mut size).await?;
        let n = usize::from_str_radix(size.trim().split(';').next().unwrap_or("0"), 16)?;
        if n == 0 {
            // Trailers (if any) up to the blank line.
            loop {
                let mut l = String::new();
                if r.read_line(&mut l).await? == 0 || l.trim().is_empty() {
                    return Ok(out);
                }
            }
        }
        let mut buf = vec![0u8; n + 2];
        r.read_exact(&mut buf).await?;
        buf.truncate(n);
        out.extend_from_slice(&buf);
    }
}
