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

/// Reads an Ed25519 public key (base64 of its 32 bytes) from a file, as `mcptrail
/// signing-key` writes it.
pub fn read_public_key(path: &Path) -> anyhow::Result<ed25519_dalek::VerifyingKey> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(text.trim())
        .context("the public key is not base64")?;
    let bytes: [u8; 32] = bytes
        .as_slice()
        .try_into()
        .map_err(|_| anyhow::anyhow!("the public key is not 32 bytes"))?;
    ed25519_dalek::VerifyingKey::from_bytes(&bytes).context("not an Ed25519 public key")
}

/// A new checkpoint signing key: (seed, public key), both base64.
pub fn new_signing_key() -> (String, String) {
    let key = ed25519_dalek::SigningKey::generate(&mut rand_core::OsRng);
    let b64 = |b: &[u8]| base64::engine::general_purpose::STANDARD.encode(b);
    (b64(&key.to_bytes()), b64(key.verifying_key().as_bytes()))
}

/// What to check besides the chain.
#[derive(Debug, Default)]
pub struct Options {
    /// The HMAC key: every record's MAC.
    pub key: Option<Vec<u8>>,
    /// The checkpoint signing key's public half: every checkpoint's signature.
    pub public_key: Option<ed25519_dalek::VerifyingKey>,
    /// A stream without `audit.closed` is a problem (the trail of a stopped Envoy).
    pub expect_closed: bool,
}

/// The outcome of verifying files.
#[derive(Debug, Default)]
pub struct Report {
    pub problems: Vec<Problem>,
    pub streams: Vec<StreamSummary>,
    /// Gaps accounted for by `audit.dropped` (`retries_exhausted`) records.
    pub explained: Vec<ExplainedGap>,
    /// Open streams fail the report.
    pub expect_closed: bool,
    /// Signatures were checked.
    pub signed: bool,
}

impl Report {
    /// Streams that do not end with `audit.closed`.
    pub fn open(&self) -> impl Iterator<Item = &StreamSummary> {
        self.streams.iter().filter(|s| !s.closed)
    }
}

/// Verifies files in order, as one interleaved collection.
pub fn verify_files(key: Option<Vec<u8>>, files: &[impl AsRef<Path>]) -> anyhow::Result<Report> {
    verify_with(
        Options {
            key,
            ..Options::default()
        },
        files,
    )
}

/// [`verify_files`] with signatures and completeness checked as `opts` asks.
pub fn verify_with(opts: Options, files: &[impl AsRef<Path>]) -> anyhow::Result<Report> {
    let signed = opts.public_key.is_some();
    let mut v = Verifier::new(opts.key);
    if let Some(pk) = opts.public_key {
        v = v.with_public_key(pk);
    }
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
        expect_closed: opts.expect_closed,
        signed,
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
            "stream {}: {} records, last seq {}, {} reported dropped",
            s.stream, s.records, s.last_seq, s.dropped_reported
        ));
        if !s.closed {
            out.push_str(&format!(
                ", open (no audit.closed; last record at {})",
                s.last_ts.as_deref().unwrap_or("?")
            ));
        }
        if r.signed {
            if s.signed_to_end() {
                out.push_str(", signed to its end");
            } else {
                out.push_str(&format!(", signed up to seq {}", s.signed_seq));
            }
        }
        out.push('\n');
    }
    let open = r.open().count();
    let failing_open = if r.expect_closed { open } else { 0 };
    let unsigned_tail = if r.signed && r.expect_closed {
        r.streams
            .iter()
            .filter(|s| s.closed && !s.signed_to_end())
            .count()
    } else {
        0
    };
    let clean = r.problems.is_empty() && failing_open == 0 && unsigned_tail == 0;
    if failing_open > 0 {
        out.push_str(&format!(
            "{failing_open} streams are open (--expect-closed): their VM stopped without closing them, and what it held then may be missing\n"
        ));
    }
    if unsigned_tail > 0 {
        out.push_str(&format!(
            "{unsigned_tail} closed streams end without a valid signed audit.closed\n"
        ));
    }
    if clean {
        out.push_str(&format!("ok: {} streams verified", r.streams.len()));
        if open > 0 {
            out.push_str(&format!(", {open} open"));
        }
        out.push('\n');
    } else {
        out.push_str(&format!(
            "FAILED: {} problems, {} open streams\n",
            r.problems.len(),
            open
        ));
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

    /// `lines` as a trail file.
    fn trail(lines: &[String]) -> (tempfile::TempDir, std::path::PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("audit.ndjson");
        std::fs::write(
            &f,
            lines.iter().map(|l| format!("{l}\n")).collect::<String>(),
        )
        .unwrap();
        (dir, f)
    }

    fn run(lines: &[String]) -> (String, bool, Report) {
        let (_dir, f) = trail(lines);
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
            "stream 00000000000000c1: 4 records, last seq 4, 0 reported dropped, open (no audit.closed; last record at ?)\nok: 1 streams verified, 1 open\n"
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
        assert!(text.ends_with("1 open streams\n"), "{text}");
        assert!(
            text.contains("stream 00000000000000c1: 5 records"),
            "counts still shown: {text}"
        );
    }

    fn closed(seq: u64, head: &str) -> String {
        format!(
            r#"{{"kind":"audit.closed","ts":"2026-12-07T10:00:00.000Z","checkpoint":{{"seq":{seq},"head":"{head}","emitted":{seq},"dropped":0}}}}"#
        )
    }

    fn run_with(lines: &[String], expect_closed: bool) -> (String, bool) {
        let (_dir, f) = trail(lines);
        let opts = Options {
            key: Some(KEY.to_vec()),
            expect_closed,
            ..Options::default()
        };
        let r = verify_with(opts, &[&f]).unwrap();
        let (text, clean) = render_report(&r);
        (text, clean)
    }

    #[test]
    fn a_stream_without_its_close_is_open_and_fails_when_closes_are_expected() {
        let mut c = Chain::new("00000000000000c1".into(), Some(KEY.to_vec()));
        let mut lines: Vec<String> = (0..3).map(|i| c.seal(command(i))).collect();
        let (text, clean) = run_with(&lines, true);
        assert!(!clean, "{text}");
        assert!(text.contains("open (no audit.closed"), "{text}");
        assert!(
            text.contains("1 streams are open (--expect-closed)"),
            "{text}"
        );
        let (_, clean) = run_with(&lines, false);
        assert!(
            clean,
            "open is reported, not failed, for a running Envoy's trail"
        );
        lines.push(c.seal(closed(3, c.head())));
        let (text, clean) = run_with(&lines, true);
        assert!(clean, "{text}");
        assert!(!text.contains("open"), "{text}");
        // Cut off before the close: open again.
        let (_, clean) = run_with(&lines[..3], true);
        assert!(!clean);
        // A close that names another head: records were removed before it.
        let mut c = Chain::new("00000000000000c2".into(), Some(KEY.to_vec()));
        let mut l: Vec<String> = (0..3).map(|i| c.seal(command(i))).collect();
        l.push(c.seal(closed(3, ZERO)));
        let (text, clean) = run_with(&l, true);
        assert!(!clean);
        assert!(
            text.contains("does not match the records before it"),
            "{text}"
        );
    }

    const ZERO: &str = mcptrail::audit::chain::ZERO_HEX;

    #[test]
    fn a_new_signing_key_round_trips_through_its_public_file() {
        let (seed, public) = new_signing_key();
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("pub.b64");
        std::fs::write(&f, format!("{public}\n")).unwrap();
        let pk = read_public_key(&f).unwrap();
        let seed = base64::engine::general_purpose::STANDARD
            .decode(seed)
            .unwrap();
        let sk = ed25519_dalek::SigningKey::from_bytes(&seed.try_into().unwrap());
        assert_eq!(sk.verifying_key(), pk);
        std::fs::write(&f, "bm90IGEga2V5").unwrap();
        assert!(read_public_key(&f).is_err());
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
