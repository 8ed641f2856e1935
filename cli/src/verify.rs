//! `mcptrail verify`: checks collected NDJSON files against the chain's canonical form.

use std::io::{BufRead, BufReader};
use std::path::Path;

use anyhow::Context as _;
use base64::Engine as _;
use mcptrail::audit::chain::{Problem, StreamSummary, Verifier};

/// Decodes a base64 HMAC key as given on the command line or in `MCPTRAIL_HMAC_KEY`.
pub fn decode_key(b64: &str) -> anyhow::Result<Vec<u8>> {
    base64::engine::general_purpose::STANDARD
        .decode(b64.trim())
        .context("the HMAC key is not base64")
}

/// The outcome of verifying files.
#[derive(Debug)]
pub struct Report {
    pub problems: Vec<(String, Problem)>,
    pub streams: Vec<StreamSummary>,
}

/// Verifies files in order, as one interleaved collection.
pub fn verify_files(key: Option<Vec<u8>>, files: &[impl AsRef<Path>]) -> anyhow::Result<Report> {
    let mut v = Verifier::new(key);
    let mut problems = Vec::new();
    for f in files {
        let f = f.as_ref();
        let file =
            std::fs::File::open(f).with_context(|| format!("cannot open {}", f.display()))?;
        let seen = v.problems().len();
        for (i, line) in BufReader::new(file).lines().enumerate() {
            let line = line.with_context(|| format!("cannot read {}", f.display()))?;
            v.feed(i + 1, &line);
        }
        for p in v.problems().iter().skip(seen) {
            problems.push((f.display().to_string(), p.clone()));
        }
    }
    Ok(Report {
        problems,
        streams: v.summary(),
    })
}

/// The report as printed: each problem with its file and line, per-stream counts, and a
/// verdict; with whether it was clean.
pub fn render_report(r: &Report) -> (String, bool) {
    let mut out = String::new();
    for (file, p) in &r.problems {
        out.push_str(&format!("{file}:{}: {}\n", p.line, p.message));
    }
    for s in &r.streams {
        out.push_str(&format!(
            "stream {}: {} records, last seq {}, {} reported dropped\n",
            s.stream, s.records, s.last_seq, s.dropped_reported
        ));
    }
    let clean = r.problems.is_empty();
    if clean {
        out.push_str(&format!("ok: {} streams verified\n", r.streams.len()));
    } else {
        out.push_str(&format!("FAILED: {} problems\n", r.problems.len()));
    }
    (out, clean)
}

/// Prints a report; returns whether it was clean.
pub fn print_report(r: &Report) -> bool {
    let (text, clean) = render_report(r);
    print!("{text}");
    clean
}
