//! `mcptrail verify`: checks collected NDJSON files against the chain's canonical form.
//!
//! A batch the filter gave up on (`max_retries`) leaves a gap in its stream: those records
//! were sealed, then lost. The filter counts them in an `audit.dropped` record with reason
//! `retries_exhausted`, sealed after them. When the next such count in the stream equals the
//! records missing since the previous count, those gaps are explained, not problems (they are
//! still listed in the report).

use std::io::{BufRead, BufReader};
use std::path::Path;

use anyhow::Context as _;
use base64::Engine as _;
use mcptrail::audit::chain::{ExplainedGap, Problem, StreamSummary, Verifier};

/// Decodes a base64 HMAC key as given on the command line or in `MCPTRAIL_HMAC_KEY`.
pub fn decode_key(b64: &str) -> anyhow::Result<Vec<u8>> {
    base64::engine::general_purpose::STANDARD
        .decode(b64.trim())
        .context("the HMAC key is not base64")
}

/// The outcome of verifying files.
#[derive(Debug, Default)]
pub struct Report {
    pub problems: Vec<Problem>,
    pub streams: Vec<StreamSummary>,
    /// Gaps accounted for by `audit.dropped` (`retries_exhausted`) records.
    pub explained: Vec<ExplainedGap>,
}

/// Verifies files in order, as one interleaved collection.
pub fn verify_files(key: Option<Vec<u8>>, files: &[impl AsRef<Path>]) -> anyhow::Result<Report> {
    let mut v = Verifier::new(key);
    for f in files {
        let f = f.as_ref();
        let name = f.display().to_string();
        let file = std::fs::File::open(f).with_context(|| format!("cannot open {name}"))?;
        v.set_source(&name);
        for (i, line) in BufReader::new(file).lines().enumerate() {
            let line = line.with_context(|| format!("cannot read {name}"))?;
            v.feed(i + 1, &line);
        }
    }
    v.finish();
    Ok(Report {
        problems: v.problems().to_vec(),
        streams: v.summary(),
        explained: v.explained().to_vec(),
    })
}

/// The report as printed: each problem with its file and line, per-stream counts, and a
/// verdict; with whether it was clean.
pub fn render_report(r: &Report) -> (String, bool) {
    let mut out = String::new();
    for p in &r.problems {
        out.push_str(&format!("{}:{}: {}\n", p.source, p.line, p.message));
    }
    for g in &r.explained {
        out.push_str(&format!(
            "{}:{}: note: stream {} seq {}..{} lost after exhausted retries, counted by the audit.dropped record at {}:{}\n",
            g.source, g.line, g.stream, g.seqs.0, g.seqs.1, g.by.0, g.by.1
        ));
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

#[cfg(test)]
mod tests {
    use super::*;
    use mcptrail::audit::chain::Chain;

    const KEY: &[u8] = b"secret-key-for-demo-only";

    fn sealed(records: &[String]) -> Vec<String> {
        let mut c = Chain::new("00000000000000c1".into(), Some(KEY.to_vec()));
        records.iter().map(|r| c.seal(r.clone())).collect()
    }

    fn command(i: usize) -> String {
        format!(r#"{{"kind":"command","i":{i}}}"#)
    }

    fn dropped(count: u64, reason: &str) -> String {
        format!(r#"{{"kind":"audit.dropped","dropped":{{"count":{count},"reason":"{reason}"}}}}"#)
    }

    fn run(lines: &[String]) -> (String, bool, Report) {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("audit.ndjson");
        std::fs::write(
            &f,
            lines.iter().map(|l| format!("{l}\n")).collect::<String>(),
        )
        .unwrap();
        let r = verify_files(Some(KEY.to_vec()), &[&f]).unwrap();
        let (text, clean) = render_report(&r);
        (text.replace(&f.display().to_string(), "F"), clean, r)
    }

    #[test]
    fn clean_file_prints_per_stream_counts() {
        let lines = sealed(&(0..4).map(command).collect::<Vec<_>>());
        let (text, clean, _) = run(&lines);
        assert!(clean);
        assert_eq!(
            text,
            "stream 00000000000000c1: 4 records, last seq 4, 0 reported dropped\nok: 1 streams verified\n"
        );
    }

    #[test]
    fn each_tampering_is_reported_with_its_line() {
        let good = sealed(&(0..5).map(command).collect::<Vec<_>>());
        // edit
        let mut edited = good.clone();
        edited[2] = edited[2].replace(r#""i":2"#, r#""i":9"#);
        let (text, clean, _) = run(&edited);
        assert!(!clean);
        assert!(text.contains("F:3: bad mac"), "{text}");
        assert!(text.contains("F:4: broken link"), "{text}");
        // delete
        let mut deleted = good.clone();
        deleted.remove(1);
        let (text, clean, _) = run(&deleted);
        assert!(!clean);
        assert!(
            text.contains("F:2: gap: stream 00000000000000c1 jumps from seq 1 to 3"),
            "{text}"
        );
        // reorder
        let mut reordered = good.clone();
        reordered.swap(1, 2);
        let (text, clean, _) = run(&reordered);
        assert!(!clean);
        assert!(text.contains("F:2: gap"), "{text}");
        assert!(
            text.contains("F:3: stream 00000000000000c1 seq 2 again or out of order"),
            "{text}"
        );
        // insert (a copy, and a forged line)
        let mut inserted = good.clone();
        inserted.insert(3, good[1].clone());
        let (text, clean, _) = run(&inserted);
        assert!(!clean);
        assert!(
            text.contains("F:4: stream 00000000000000c1 seq 2 again"),
            "{text}"
        );
        let mut forged = good.clone();
        forged.insert(2, r#"{"kind":"command","i":7}"#.to_string());
        let (text, clean, _) = run(&forged);
        assert!(!clean);
        assert!(text.contains("F:3: record has no chain"), "{text}");
        assert!(text.ends_with("problems\n"), "{text}");
        assert!(
            text.contains("stream 00000000000000c1: 5 records"),
            "counts still shown: {text}"
        );
    }

    #[test]
    fn losses_after_exhausted_retries_are_explained_by_their_count() {
        // seq 2..4 were given up; the filter says so at seq 6.
        let all = sealed(&[
            command(0),
            command(1),
            command(2),
            command(3),
            command(4),
            dropped(3, "retries_exhausted"),
            command(6),
        ]);
        let kept: Vec<String> = [0, 4, 5, 6].iter().map(|&i| all[i].clone()).collect();
        let (text, clean, r) = run(&kept);
        assert!(clean, "{text}");
        assert_eq!(r.explained.len(), 1);
        assert!(text.contains("F:2: note: stream 00000000000000c1 seq 2..4 lost after exhausted retries, counted by the audit.dropped record at F:3"), "{text}");
        assert!(
            text.contains("4 records, last seq 7, 3 reported dropped"),
            "{text}"
        );
        // A count that does not match the gap leaves it a problem...
        let short = sealed(&[
            command(0),
            command(1),
            command(2),
            command(3),
            dropped(1, "retries_exhausted"),
        ]);
        let kept: Vec<String> = [0, 3, 4].iter().map(|&i| short[i].clone()).collect();
        let (text, clean, _) = run(&kept);
        assert!(!clean, "{text}");
        assert!(text.contains("F:2: gap"), "{text}");
        // ...and so does a buffer_full count (those records never entered the chain).
        let buffer = sealed(&[command(0), command(1), dropped(1, "buffer_full")]);
        let kept: Vec<String> = [0, 2].iter().map(|&i| buffer[i].clone()).collect();
        let (_, clean, _) = run(&kept);
        assert!(!clean);
        // Deleting a line before an honest count of records that did arrive (stored, but
        // never acknowledged) is still caught.
        let mut tampered = all.clone();
        tampered.remove(1);
        let (text, clean, _) = run(&tampered);
        assert!(!clean, "{text}");
    }
}
