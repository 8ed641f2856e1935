//! `mcptrail collect`: an HTTP audit sink. It accepts NDJSON and OTLP/HTTP JSON logs,
//! appends every record line to a file (fsync'd per batch), answers 200 only after the
//! write, and verifies the chains as records arrive.
//!
//! Delivery is at least once: a batch whose answer was lost (a timeout after the write) is
//! sent again. The sink is idempotent: a line identical to one it already stored at the same
//! `chain.stream`/`chain.seq` is acknowledged without being stored twice. A different line at
//! a stored position is stored, and the verifier flags it.

use std::collections::{HashMap, VecDeque};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::{get, post};
use axum::Router;
use mcptrail::audit::chain::{read_line, record_line, ReadLine, Verifier};
use mcptrail::audit::otlp;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpListener;
use tokio::sync::Mutex;

/// Collector settings.
#[derive(Debug, Clone)]
pub struct Options {
    pub out: PathBuf,
    pub hmac_key: Option<Vec<u8>>,
    /// Print each stored record line to stdout too.
    pub echo: bool,
}

/// What the sink did so far (for tests and logs).
#[derive(Debug, Default)]
pub struct Counters {
    /// Ingest requests answered 200.
    pub batches: AtomicU64,
    /// Lines appended to the file.
    pub stored: AtomicU64,
    /// Lines acknowledged without storing: already stored at the same position.
    pub duplicates: AtomicU64,
}

/// Lines remembered per stream to recognise a re-sent batch.
const SEEN_PER_STREAM: usize = 100_000;

/// Hashes of the lines recently stored, per stream and seq.
#[derive(Default)]
struct Seen {
    streams: HashMap<String, (HashMap<u64, String>, VecDeque<u64>)>,
}

impl Seen {
    /// Whether this very line (same position, same hash) is stored already.
    fn is_stored(&self, r: &ReadLine) -> bool {
        self.streams
            .get(&r.chain.stream)
            .and_then(|(m, _)| m.get(&r.chain.seq))
            .is_some_and(|h| *h == r.hash)
    }

    fn remember(&mut self, r: &ReadLine) {
        let (m, order) = self.streams.entry(r.chain.stream.clone()).or_default();
        if m.insert(r.chain.seq, r.hash.clone()).is_none() {
            order.push_back(r.chain.seq);
        }
        while order.len() > SEEN_PER_STREAM {
            if let Some(old) = order.pop_front() {
                m.remove(&old);
            }
        }
    }
}

struct Sink {
    file: tokio::fs::File,
    lines: usize,
    verifier: Verifier,
    seen: Seen,
    echo: bool,
    counters: Arc<Counters>,
}

type Shared = Arc<Mutex<Sink>>;

/// Splits a request body into record lines, by format.
pub fn record_lines(headers: &HeaderMap, body: &[u8]) -> Result<Vec<String>, String> {
    let ct = headers
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_ascii_lowercase();
    if ct.starts_with("application/x-protobuf") {
        return Err("OTLP protobuf is not supported; send OTLP/HTTP JSON".into());
    }
    let trimmed = body.iter().position(|b| !b.is_ascii_whitespace());
    let looks_otlp = ct.starts_with("application/json")
        && trimmed.is_some_and(|i| body.get(i..).is_some_and(|b| b.starts_with(b"{")))
        && memchr_str(body, b"\"resourceLogs\"");
    if looks_otlp {
        return otlp::decode_lines(body);
    }
    let text = std::str::from_utf8(body).map_err(|_| "body is not UTF-8".to_string())?;
    let mut out = Vec::new();
    for (i, l) in text.lines().enumerate() {
        let Some(l) = record_line(l) else {
            continue;
        };
        // Syntax only: the verifier reads the fields it needs, once, later.
        if serde_json::from_str::<serde::de::IgnoredAny>(l).is_err() {
            return Err(format!("line {} is not JSON", i + 1));
        }
        out.push(l.to_string());
    }
    Ok(out)
}

fn memchr_str(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

async fn ingest(
    State(sink): State<Shared>,
    headers: HeaderMap,
    body: Bytes,
) -> (StatusCode, String) {
    let lines = match record_lines(&headers, &body) {
        Ok(l) => l,
        Err(e) => return (StatusCode::BAD_REQUEST, format!("{e}\n")),
    };
    let mut s = sink.lock().await;
    // Drop what is already stored (a batch sent again after a lost answer).
    // Each line is read (its chain fields, its hash) once, for deduplication and verifying.
    let mut fresh: Vec<(String, Result<ReadLine, String>)> = Vec::with_capacity(lines.len());
    let mut duplicates = 0u64;
    for l in lines {
        let read = read_line(&l);
        let again = read.as_ref().is_ok_and(|r| {
            s.seen.is_stored(r)
                || fresh.iter().any(|(_, f)| {
                    f.as_ref().is_ok_and(|f| {
                        (&f.chain.stream, f.chain.seq, &f.hash)
                            == (&r.chain.stream, r.chain.seq, &r.hash)
                    })
                })
        });
        if again {
            duplicates += 1;
        } else {
            fresh.push((l, read));
        }
    }
    let mut buf = Vec::with_capacity(body.len() + fresh.len());
    for (l, _) in &fresh {
        buf.extend_from_slice(l.as_bytes());
        buf.push(b'\n');
    }
    let written = async {
        if !buf.is_empty() {
            s.file.write_all(&buf).await?;
            s.file.sync_data().await?;
        }
        Ok::<(), std::io::Error>(())
    }
    .await;
    if let Err(e) = written {
        eprintln!("collector: write failed: {e}");
        return (StatusCode::INTERNAL_SERVER_ERROR, "write failed\n".into());
    }
    let stored = fresh.len();
    for (l, read) in fresh {
        if let Ok(r) = &read {
            s.seen.remember(r);
        }
        s.lines += 1;
        let n = s.lines;
        let closing = read
            .as_ref()
            .ok()
            .filter(|r| r.closes())
            .map(|r| (r.chain.stream.clone(), r.chain.seq));
        let v = &mut s.verifier;
        let pending = v.pending_count();
        v.feed_read(n, &l, read);
        if let Some((stream, seq)) = closing {
            eprintln!("collector: stream {stream} closed at seq {seq}: its VM finished it");
        }
        // Taken once logged: a sink that runs for months keeps no growing list.
        for p in v.take_problems() {
            eprintln!("collector: verify: line {}: {}", p.line, p.message);
        }
        if v.pending_count() > pending {
            for p in v.pending().iter().filter(|p| p.line == n) {
                eprintln!(
                    "collector: verify: line {}: {} (pending: a later audit.dropped count may explain it)",
                    p.line, p.message
                );
            }
        }
        for g in v.take_explained() {
            eprintln!(
                "collector: verify: line {}: stream {} seq {}..{} lost after exhausted retries, explained by the audit.dropped count on line {}",
                g.line, g.stream, g.seqs.0, g.seqs.1, g.by.1
            );
        }
        if s.echo {
            println!("{l}");
        }
    }
    if duplicates > 0 {
        eprintln!(
            "collector: {duplicates} line(s) received again (a re-sent batch): acknowledged, stored once"
        );
    }
    s.counters.batches.fetch_add(1, Ordering::Relaxed);
    s.counters
        .stored
        .fetch_add(stored as u64, Ordering::Relaxed);
    s.counters
        .duplicates
        .fetch_add(duplicates, Ordering::Relaxed);
    (
        StatusCode::OK,
        format!("{{\"accepted\":{stored},\"duplicates\":{duplicates}}}\n"),
    )
}

/// The collector's routes.
pub async fn router(opts: &Options) -> anyhow::Result<Router> {
    Ok(router_with_counters(opts).await?.0)
}

/// The collector's routes, and what they count.
pub async fn router_with_counters(opts: &Options) -> anyhow::Result<(Router, Arc<Counters>)> {
    let file = tokio::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&opts.out)
        .await?;
    // Continue numbering after what the file already holds, so problems name real lines.
    let existing = tokio::fs::read(&opts.out).await?;
    let mut verifier = Verifier::new(opts.hmac_key.clone());
    let mut seen = Seen::default();
    let mut lines = 0;
    for l in String::from_utf8_lossy(&existing).lines() {
        lines += 1;
        let Some(l) = record_line(l) else {
            continue;
        };
        let read = read_line(l);
        if let Ok(r) = &read {
            seen.remember(r);
        }
        verifier.feed_read(lines, l, read);
    }
    for p in verifier.take_problems() {
        eprintln!(
            "collector: verify (stored earlier): line {}: {}",
            p.line, p.message
        );
    }
    verifier.take_explained();
    let counters = Arc::new(Counters::default());
    let sink = Arc::new(Mutex::new(Sink {
        file,
        lines,
        verifier,
        seen,
        echo: opts.echo,
        counters: Arc::clone(&counters),
    }));
    let app = Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/streams", get(streams))
        .route("/{*path}", post(ingest))
        .route("/", post(ingest))
        .with_state(sink);
    Ok((app, counters))
}

/// `GET /streams`: every stream seen, open or closed (as `verify` reports them), live.
async fn streams(State(sink): State<Arc<Mutex<Sink>>>) -> impl axum::response::IntoResponse {
    let s = sink.lock().await;
    let rows: Vec<serde_json::Value> = s
        .verifier
        .summary()
        .iter()
        .map(|st| {
            serde_json::json!({
                "stream": st.stream, "records": st.records, "last_seq": st.last_seq,
                "last_ts": st.last_ts, "closed": st.closed, "dropped_reported": st.dropped_reported,
            })
        })
        .collect();
    (
        [(axum::http::header::CONTENT_TYPE, "application/json")],
        serde_json::json!({ "streams": rows }).to_string(),
    )
}

/// Serves until the process ends.
pub async fn serve(listener: TcpListener, opts: Options) -> anyhow::Result<()> {
    let app = router(&opts).await?;
    axum::serve(listener, app).await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn h(ct: &str) -> HeaderMap {
        let mut m = HeaderMap::new();
        m.insert("content-type", ct.parse().unwrap());
        m
    }

    #[test]
    fn ndjson_and_otlp_bodies() {
        assert_eq!(
            record_lines(&h("application/x-ndjson"), b"{\"a\":1}\n\n{\"b\":2}\n").unwrap(),
            vec!["{\"a\":1}", "{\"b\":2}"]
        );
        assert!(record_lines(&h("application/x-ndjson"), b"nope\n").is_err());
        let otlp = br#"{"resourceLogs":[{"scopeLogs":[{"logRecords":[{"body":{"stringValue":"{\"a\":1}"}}]}]}]}"#;
        assert_eq!(
            record_lines(&h("application/json"), otlp).unwrap(),
            vec!["{\"a\":1}"]
        );
        assert!(record_lines(&h("application/x-protobuf"), b"x").is_err());
    }

    #[tokio::test]
    async fn a_batch_sent_again_is_stored_once() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("a.ndjson");
        let key = b"secret-key-for-demo-only".to_vec();
        let opts = Options {
            out: out.clone(),
            hmac_key: Some(key.clone()),
            echo: false,
        };
        let (app, counters) = router_with_counters(&opts).await.unwrap();
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/ingest", listener.local_addr().unwrap());
        let server = tokio::spawn(async move { axum::serve(listener, app).await });
        let mut chain = mcptrail::audit::chain::Chain::new("00000000000000aa".into(), Some(key));
        let l: Vec<String> = (0..4)
            .map(|i| chain.seal(format!("{{\"i\":{i}}}")))
            .collect();
        let post = |body: String| {
            let url = url.clone();
            async move {
                let r = reqwest::Client::new()
                    .post(url)
                    .header("content-type", "application/x-ndjson")
                    .body(body)
                    .send()
                    .await
                    .unwrap();
                assert_eq!(r.status(), 200);
                r.text().await.unwrap()
            }
        };
        assert!(post(format!("{}\n{}\n", l[0], l[1]))
            .await
            .contains("\"duplicates\":0"));
        // The answer was lost: the same batch comes again, then the next one.
        assert!(post(format!("{}\n{}\n", l[0], l[1]))
            .await
            .contains("\"accepted\":0,\"duplicates\":2"));
        assert!(post(format!("{}\n{}\n", l[1], l[2]))
            .await
            .contains("\"accepted\":1,\"duplicates\":1"));
        // A line twice in one batch is stored once too.
        assert!(post(format!("{}\n{}\n", l[3], l[3]))
            .await
            .contains("\"accepted\":1,\"duplicates\":1"));
        let stored = std::fs::read_to_string(&out).unwrap();
        assert_eq!(stored.lines().collect::<Vec<_>>(), l);
        assert_eq!(counters.duplicates.load(Ordering::Relaxed), 4);
        // A different line at a stored position is kept (and is the verifier's business).
        let forged = l[1].replace("\"i\":1", "\"i\":7");
        assert!(post(format!("{forged}\n")).await.contains("\"accepted\":1"));
        let report =
            crate::verify::verify_files(Some(b"secret-key-for-demo-only".to_vec()), &[&out])
                .unwrap();
        assert!(!report.problems.is_empty());
        // A restarted collector remembers what the file holds.
        let (app, counters) = router_with_counters(&opts).await.unwrap();
        server.abort();
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url2 = format!("http://{}/ingest", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await });
        let r = reqwest::Client::new()
            .post(url2)
            .header("content-type", "application/x-ndjson")
            .body(format!("{}\n", l[2]))
            .send()
            .await
            .unwrap();
        assert!(r.text().await.unwrap().contains("\"duplicates\":1"));
        assert_eq!(counters.duplicates.load(Ordering::Relaxed), 1);
    }
}
