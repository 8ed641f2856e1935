//! The filter's SSE parser as a filter of stdin: one stream per input line (JSON
//! `{"chunks": ["<base64>", ...]}`), one JSON line of events per stream on stdout. Used by the
//! differential check against the official Python MCP SDK's SSE reader
//! (`scripts/sse-differential.py`, `make sse-diff`).
//!
//! Each chunk is fed byte by byte, so the `Last-Event-ID` a client would hold after each event
//! is exact (the fuzz target `sse` shows that chunking never changes the events).

use std::io::{BufRead as _, Write as _};

use base64::Engine as _;
use mcptrail::mcp::sse::Parser;
use serde_json::{json, Value};

fn main() {
    let stdin = std::io::stdin();
    let mut stdout = std::io::BufWriter::new(std::io::stdout());
    for line in stdin.lock().lines() {
        let Ok(line) = line else { break };
        let Ok(v) = serde_json::from_str::<Value>(&line) else {
            eprintln!("sse_events: not JSON: {line}");
            std::process::exit(2);
        };
        let mut p = Parser::new(1 << 30);
        let mut events = Vec::new();
        let mut out = Vec::new();
        for chunk in v
            .get("chunks")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            let bytes = base64::engine::general_purpose::STANDARD
                .decode(chunk.as_str().unwrap_or_default())
                .unwrap_or_default();
            for b in bytes.chunks(1) {
                let before = events.len();
                p.feed(b, &mut events);
                for e in events.iter().skip(before) {
                    out.push(json!({
                        "event": e.event,
                        "data": e.data,
                        "id": p.last_event_id.clone().unwrap_or_default(),
                        "retry": e.retry,
                    }));
                }
            }
        }
        let _ = writeln!(
            stdout,
            "{}",
            json!({"events": out, "pending": p.buffered() > 0})
        );
    }
}
