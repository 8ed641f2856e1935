//! `mcptrail collect`: an HTTP audit sink. It accepts NDJSON and OTLP/HTTP JSON logs,
//! appends every record line to a file (fsync'd per batch), answers 200 only after the
//! write, and verifies the chains as records arrive.

use std::path::PathBuf;
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::{get, post};
use axum::Router;
use mcptrail::audit::chain::Verifier;
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

struct Sink {
    file: tokio::fs::File,
    lines: usize,
    verifier: Verifier,
    echo: bool,
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
        let l = l.trim_end_matches('\r');
        if l.trim().is_empty() {
            continue;
        }
        if serde_json::from_str::<serde_json::Value>(l).is_err() {
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
    let mut buf = Vec::with_capacity(body.len() + lines.len());
    for l in &lines {
        buf.extend_from_slice(l.as_bytes());
        buf.push(b'\n');
    }
    let mut s = sink.lock().await;
    let written = async {
        s.file.write_all(&buf).await?;
        s.file.sync_data().await
    }
    .await;
    if let Err(e) = written {
        eprintln!("collector: write failed: {e}");
        return (StatusCode::INTERNAL_SERVER_ERROR, "write failed\n".into());
    }
    for l in &lines {
        s.lines += 1;
        let n = s.lines;
        let before = s.verifier.problems().len();
        s.verifier.feed(n, l);
        for p in s.verifier.problems().iter().skip(before) {
            eprintln!("collector: verify: line {}: {}", p.line, p.message);
        }
        if s.echo {
            println!("{l}");
        }
    }
    (
        StatusCode::OK,
        format!("{{\"accepted\":{}}}\n", lines.len()),
    )
}

/// The collector's routes.
pub async fn router(opts: &Options) -> anyhow::Result<Router> {
    let file = tokio::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&opts.out)
        .await?;
    // Continue numbering after what the file already holds, so problems name real lines.
    let existing = tokio::fs::read(&opts.out).await?;
    let mut verifier = Verifier::new(opts.hmac_key.clone());
    let mut lines = 0;
    for l in String::from_utf8_lossy(&existing).lines() {
        lines += 1;
        verifier.feed(lines, l);
    }
    let sink = Arc::new(Mutex::new(Sink {
        file,
        lines,
        verifier,
        echo: opts.echo,
    }));
    Ok(Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/{*path}", post(ingest))
        .route("/", post(ingest))
        .with_state(sink))
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
}
