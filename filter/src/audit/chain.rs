//! The hash chain: canonical form shared by the filter (sealing) and `mcptrail verify`.
//!
//! Each record is one line of compact JSON ending in
//! `"chain":{"stream":S,"seq":N,"prev":P,"mac":M}}`. `prev` is the hex SHA-256 of the previous
//! line of the same stream (64 `0`s for seq 1); `mac` is the hex HMAC-SHA256 of the line with
//! the 64 characters of `mac` replaced by `0`s.

use std::collections::HashMap;
use std::fmt::Write as _;

use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

type HmacSha256 = Hmac<Sha256>;

/// 64 hex zeros: `prev` of the first record, and the stand-in for `mac` while it is computed.
pub const ZERO_HEX: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// The `chain` object as it appears in a record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChainField {
    pub stream: String,
    pub seq: u64,
    pub prev: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mac: Option<String>,
}

/// Lowercase hex (a table, not `write!`: this runs for every record's hashes).
pub fn hex(bytes: &[u8]) -> String {
    let mut s = String::with_capacity(bytes.len() * 2);
    push_hex(&mut s, bytes);
    s
}

/// Appends the lowercase hex of `bytes` to `out`.
pub fn push_hex(out: &mut String, bytes: &[u8]) {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    for &b in bytes {
        for nibble in [b >> 4, b & 0x0f] {
            out.push(char::from(
                DIGITS.get(usize::from(nibble)).copied().unwrap_or(b'0'),
            ));
        }
    }
}

pub fn sha256_hex(data: &[u8]) -> String {
    hex(&Sha256::digest(data))
}

fn hmac_hex(key: &[u8], data: &[u8]) -> Option<String> {
    let mut mac = HmacSha256::new_from_slice(key).ok()?;
    mac.update(data);
    Some(hex(&mac.finalize().into_bytes()))
}

/// What verification needs of a record line, read once: no JSON tree is built (the rest of
/// the record is checked for syntax and skipped), and the line is hashed once.
#[derive(Debug, Clone)]
pub struct ReadLine {
    pub chain: ChainField,
    /// Lowercase hex SHA-256 of the line: the next record's `prev`.
    pub hash: String,
    /// `dropped.count`, when the record has one.
    dropped: Option<u64>,
    /// An `audit.dropped` record counting records lost after exhausted retries.
    retries_lost: bool,
    /// The record's `kind` and `ts`.
    kind: Option<String>,
    ts: Option<String>,
    /// What an `audit.checkpoint` / `audit.closed` record says of the stream before it.
    checkpoint: Option<CheckpointRead>,
}

impl ReadLine {
    /// The record is an `audit.closed`: its stream ends here.
    pub fn closes(&self) -> bool {
        self.kind.as_deref() == Some(CLOSED)
    }
}

/// The part of a checkpoint the verifier checks.
#[derive(Debug, Clone, Deserialize)]
struct CheckpointRead {
    seq: u64,
    head: String,
    #[serde(default)]
    sig: Option<String>,
}

/// The fields of a record line the verifier reads; others are skipped.
#[derive(Deserialize)]
struct LineHead {
    kind: Option<serde_json::Value>,
    ts: Option<serde_json::Value>,
    chain: Option<serde_json::Value>,
    dropped: Option<serde_json::Value>,
    checkpoint: Option<serde_json::Value>,
}

/// A line of a trail without its `\r` (CRLF files), or `None` when it is blank.
pub fn record_line(line: &str) -> Option<&str> {
    let line = line.strip_suffix('\r').unwrap_or(line);
    (!line.trim().is_empty()).then_some(line)
}

/// Reads a record line for verification; the error is the problem to report.
pub fn read_line(line: &str) -> Result<ReadLine, String> {
    let head: LineHead = serde_json::from_str(line).map_err(|e| {
        if e.is_data() {
            format!("not a record: {e}")
        } else {
            format!("not JSON: {e}")
        }
    })?;
    if !line.trim_start().starts_with('{') {
        return Err("not a record: not a JSON object".into());
    }
    let chain = match head.chain.map(serde_json::from_value::<ChainField>) {
        Some(Ok(c)) => c,
        Some(Err(e)) => return Err(format!("bad chain: {e}")),
        None => return Err("record has no chain".into()),
    };
    let dropped = head.dropped.as_ref();
    let kind = head
        .kind
        .as_ref()
        .and_then(serde_json::Value::as_str)
        .map(str::to_string);
    let checkpoint = match head
        .checkpoint
        .map(serde_json::from_value::<CheckpointRead>)
    {
        Some(Ok(c)) => Some(c),
        Some(Err(e)) => return Err(format!("bad checkpoint: {e}")),
        None if matches!(kind.as_deref(), Some(CHECKPOINT | CLOSED)) => {
            return Err("checkpoint record without `checkpoint`".into())
        }
        None => None,
    };
    Ok(ReadLine {
        kind,
        ts: head
            .ts
            .as_ref()
            .and_then(serde_json::Value::as_str)
            .map(str::to_string),
        checkpoint,
        chain,
        hash: sha256_hex(line.as_bytes()),
        dropped: dropped
            .and_then(|d| d.get("count"))
            .and_then(serde_json::Value::as_u64),
        retries_lost: dropped
            .and_then(|d| d.get("reason"))
            .and_then(serde_json::Value::as_str)
            == Some("retries_exhausted")
            && head.kind.as_ref().and_then(serde_json::Value::as_str) == Some("audit.dropped"),
    })
}

const CHECKPOINT: &str = "audit.checkpoint";
const CLOSED: &str = "audit.closed";

/// The sealing side: one per VM (stream).
#[derive(Debug, Clone)]
pub struct Chain {
    stream: String,
    seq: u64,
    prev: String,
    /// The MAC keyed once (the key's two blocks hashed here, not per record).
    mac: Option<HmacSha256>,
}

impl Chain {
    pub fn new(stream: String, key: Option<Vec<u8>>) -> Self {
        Self {
            stream,
            seq: 0,
            prev: ZERO_HEX.to_string(),
            mac: key.and_then(|k| HmacSha256::new_from_slice(&k).ok()),
        }
    }

    pub fn stream(&self) -> &str {
        &self.stream
    }

    /// Seq of the last sealed record (0 before the first).
    pub fn seq(&self) -> u64 {
        self.seq
    }

    /// Hex SHA-256 of the last sealed line (64 `0`s before the first): the stream's head.
    pub fn head(&self) -> &str {
        &self.prev
    }

    /// Appends the chain to a record serialised as a compact JSON object and returns the line
    /// (the record's own buffer, extended: no copy of the record on the data path).
    pub fn seal(&mut self, record_json: String) -> String {
        let mut line = record_json;
        if line.ends_with('}') {
            line.pop();
        }
        let sep = if line.ends_with('{') { "" } else { "," };
        self.seq += 1;
        // Stream ids are generated by the filter (hex), so they need no JSON escaping.
        line.reserve(230);
        let _ = write!(
            line,
            "{sep}\"chain\":{{\"stream\":\"{}\",\"seq\":{},\"prev\":\"{}\"",
            self.stream, self.seq, self.prev
        );
        if let Some(keyed) = &self.mac {
            line.push_str(",\"mac\":\"");
            let at = line.len();
            line.push_str(ZERO_HEX);
            line.push_str("\"}}");
            let mut mac = keyed.clone();
            mac.update(line.as_bytes());
            line.replace_range(at..at + ZERO_HEX.len(), &hex(&mac.finalize().into_bytes()));
        } else {
            line.push_str("}}");
        }
        self.prev = sha256_hex(line.as_bytes());
        line
    }
}

/// A problem `verify` found, with the 1-based line it is on (in `source`, when the lines come
/// from several files).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub source: String,
    pub line: usize,
    pub message: String,
}

/// A gap the filter itself accounted for: the records were sealed, then given up after
/// exhausted retries, and a later `audit.dropped` (`retries_exhausted`) counts exactly them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExplainedGap {
    /// Where the line after the gap is.
    pub source: String,
    pub line: usize,
    pub stream: String,
    /// The seqs missing, first and last.
    pub seqs: (u64, u64),
    /// Where the `audit.dropped` record that completed the count is.
    pub by: (String, usize),
}

/// A gap waiting for the filter's count of what it lost.
#[derive(Debug, Clone)]
struct PendingGap {
    source: String,
    line: usize,
    seqs: (u64, u64),
}

#[derive(Debug, Clone, Default)]
struct StreamState {
    last_seq: u64,
    last_hash: String,
    records: u64,
    dropped_reported: u64,
    /// Gaps since the last `retries_exhausted` count.
    pending: Vec<PendingGap>,
    /// The last record is `audit.closed`.
    closed: bool,
    last_ts: Option<String>,
    /// The highest seq a valid signed checkpoint covers.
    signed_seq: u64,
}

fn gap_problem(stream: &str, g: &PendingGap) -> Problem {
    Problem {
        source: g.source.clone(),
        line: g.line,
        message: format!(
            "gap: stream {stream} jumps from seq {} to {}",
            g.seqs.0.saturating_sub(1),
            g.seqs.1.saturating_add(1)
        ),
    }
}

impl StreamSummary {
    /// The stream ends with `audit.closed` and its signature covered every record before it.
    pub fn signed_to_end(&self) -> bool {
        self.closed && self.signed_seq + 1 == self.last_seq
    }
}

/// Checks a checkpoint's signature over `{"stream","seq","head","ts"}`.
fn check_signature(
    key: &ed25519_dalek::VerifyingKey,
    stream: &str,
    cp: &CheckpointRead,
    ts: &str,
) -> Result<(), String> {
    use base64::Engine as _;
    let sig = cp.sig.as_deref().ok_or("not signed")?;
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(sig)
        .map_err(|_| "signature is not base64")?;
    let sig = ed25519_dalek::Signature::from_slice(&bytes).map_err(|_| "malformed signature")?;
    let signed = super::record::Checkpoint::signed_bytes(stream, cp.seq, &cp.head, ts);
    key.verify_strict(&signed, &sig)
        .map_err(|_| "bad signature: not signed by this key, or altered".to_string())
}

/// Per-stream summary after verification.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamSummary {
    pub stream: String,
    pub records: u64,
    pub last_seq: u64,
    /// Records the filter reported lost through `audit.dropped`.
    pub dropped_reported: u64,
    /// The stream ends with `audit.closed`: its VM finished it. Otherwise it is open (its VM
    /// runs, or stopped without closing it: what it held then may be missing).
    pub closed: bool,
    /// `ts` of its last record.
    pub last_ts: Option<String>,
    /// The highest seq covered by a signed checkpoint that verified (with a public key).
    pub signed_seq: u64,
}

/// Checks lines of one or more interleaved streams, in the order they were collected.
///
/// A gap in a stream is a problem unless the filter accounted for it: when the next
/// `audit.dropped` record with reason `retries_exhausted` in that stream counts exactly the
/// records missing since the previous such count, those gaps are explained (a count that
/// covers more than is missing could hide a deleted line behind an honest loss). Until that
/// count comes, a gap is pending; [`Verifier::finish`] settles what is left as problems.
#[derive(Debug, Default)]
pub struct Verifier {
    key: Option<Vec<u8>>,
    /// Checks checkpoint signatures (`audit.signing_key`'s public half).
    public_key: Option<ed25519_dalek::VerifyingKey>,
    streams: HashMap<String, StreamState>,
    order: Vec<String>,
    problems: Vec<Problem>,
    explained: Vec<ExplainedGap>,
    source: String,
}

impl Verifier {
    pub fn new(key: Option<Vec<u8>>) -> Self {
        Self {
            key,
            ..Default::default()
        }
    }

    /// Also checks the signatures of checkpoints with `key`: without the MAC key, a record
    /// removed, changed or reordered before a signed checkpoint is still found.
    pub fn with_public_key(mut self, key: ed25519_dalek::VerifyingKey) -> Self {
        self.public_key = Some(key);
        self
    }

    /// Names where the next lines come from (a file), for the problems found in them.
    pub fn set_source(&mut self, source: &str) {
        self.source = source.to_string();
    }

    /// Checks one line; problems are collected.
    pub fn feed(&mut self, line_no: usize, line: &str) {
        if let Some(line) = record_line(line) {
            self.feed_read(line_no, line, read_line(line));
        }
    }

    /// Checks one line already read by [`read_line`] (a collector reads each line once for
    /// its own bookkeeping and for the verifier).
    pub fn feed_read(&mut self, line_no: usize, line: &str, read: Result<ReadLine, String>) {
        let source = self.source.clone();
        let mut problem = |m: String| {
            self.problems.push(Problem {
                source: source.clone(),
                line: line_no,
                message: m,
            })
        };
        let ReadLine {
            chain,
            hash,
            dropped,
            retries_lost,
            kind,
            ts,
            checkpoint,
        } = match read {
            Ok(r) => r,
            Err(m) => return problem(m),
        };
        match (&self.key, &chain.mac) {
            (Some(key), Some(mac)) => {
                let zeroed = match line.rfind(mac.as_str()) {
                    Some(at) if mac.len() == 64 => {
                        let mut z = line.to_string();
                        z.replace_range(at..at + 64, ZERO_HEX);
                        z
                    }
                    _ => return problem("mac is not 64 hex characters".into()),
                };
                if hmac_hex(key, zeroed.as_bytes()).as_deref() != Some(mac.as_str()) {
                    problem(format!(
                        "bad mac (stream {} seq {}): the record was altered or the key is wrong",
                        chain.stream, chain.seq
                    ));
                }
            }
            (Some(_), None) => problem(format!(
                "record has no mac (stream {} seq {})",
                chain.stream, chain.seq
            )),
            (None, _) => {}
        }
        let known = self.streams.contains_key(&chain.stream);
        if !known {
            self.order.push(chain.stream.clone());
        }
        let st = self.streams.entry(chain.stream.clone()).or_default();
        let expected = st.last_seq + 1;
        if chain.seq == expected {
            let want_prev = if st.last_seq == 0 {
                ZERO_HEX
            } else {
                st.last_hash.as_str()
            };
            if chain.prev != want_prev {
                self.problems.push(Problem {
                    source: self.source.clone(),
                    line: line_no,
                    message: format!(
                        "broken link: stream {} seq {} does not follow the previous record",
                        chain.stream, chain.seq
                    ),
                });
            }
        } else if chain.seq <= st.last_seq {
            self.problems.push(Problem {
                source: self.source.clone(),
                line: line_no,
                message: format!(
                    "stream {} seq {} again or out of order (after seq {})",
                    chain.stream, chain.seq, st.last_seq
                ),
            });
            return;
        } else {
            st.pending.push(PendingGap {
                source: self.source.clone(),
                line: line_no,
                seqs: (expected, chain.seq - 1),
            });
        }
        if let Some(cp) = checkpoint.as_ref() {
            // The head it names must be the line before it, as read here.
            let before = if st.last_seq == 0 {
                ZERO_HEX
            } else {
                st.last_hash.as_str()
            };
            let mut problems = Vec::new();
            if cp.seq + 1 != chain.seq || cp.head != before {
                problems.push(format!(
                    "checkpoint at stream {} seq {} does not match the records before it (seq {} head {}): records were removed, changed or reordered",
                    chain.stream, chain.seq, cp.seq, cp.head
                ));
            }
            if let Some(pk) = self.public_key.as_ref() {
                match check_signature(pk, &chain.stream, cp, ts.as_deref().unwrap_or("")) {
                    Ok(()) if problems.is_empty() => st.signed_seq = cp.seq,
                    Ok(()) => {}
                    Err(m) => problems.push(format!(
                        "checkpoint at stream {} seq {}: {m}",
                        chain.stream, chain.seq
                    )),
                }
            }
            self.problems
                .extend(problems.into_iter().map(|message| Problem {
                    source: self.source.clone(),
                    line: line_no,
                    message,
                }));
        }
        st.closed = kind.as_deref() == Some(CLOSED);
        st.last_ts = ts;
        st.last_seq = chain.seq;
        st.last_hash = hash;
        st.records += 1;
        st.dropped_reported += dropped.unwrap_or(0);
        if let (true, Some(count)) = (retries_lost, dropped) {
            let gaps = std::mem::take(&mut st.pending);
            let missing: u64 = gaps.iter().map(|g| g.seqs.1 - g.seqs.0 + 1).sum();
            // (A count with no gap at all is a batch stored but never acknowledged.)
            if missing == count {
                self.explained
                    .extend(gaps.into_iter().map(|g| ExplainedGap {
                        source: g.source,
                        line: g.line,
                        stream: chain.stream.clone(),
                        seqs: g.seqs,
                        by: (self.source.clone(), line_no),
                    }));
            } else {
                let stream = chain.stream.as_str();
                self.problems
                    .extend(gaps.iter().map(|g| gap_problem(stream, g)));
            }
        }
    }

    /// The input is over: gaps no count explained are problems.
    pub fn finish(&mut self) {
        for name in &self.order {
            if let Some(st) = self.streams.get_mut(name) {
                let gaps = std::mem::take(&mut st.pending);
                self.problems
                    .extend(gaps.iter().map(|g| gap_problem(name, g)));
            }
        }
    }

    /// How many gaps are not settled yet.
    pub fn pending_count(&self) -> usize {
        self.streams.values().map(|st| st.pending.len()).sum()
    }

    /// Gaps seen but not settled yet (a count may still explain them), as problems.
    pub fn pending(&self) -> Vec<Problem> {
        self.order
            .iter()
            .filter_map(|n| self.streams.get(n).map(|st| (n, st)))
            .flat_map(|(n, st)| st.pending.iter().map(move |g| gap_problem(n, g)))
            .collect()
    }

    /// Gaps the filter's own `audit.dropped` counts explain.
    pub fn explained(&self) -> &[ExplainedGap] {
        &self.explained
    }

    /// The problems found so far.
    pub fn problems(&self) -> &[Problem] {
        &self.problems
    }

    /// The problems found since the last take (a long-running sink logs and forgets them).
    pub fn take_problems(&mut self) -> Vec<Problem> {
        std::mem::take(&mut self.problems)
    }

    /// The gaps explained since the last take.
    pub fn take_explained(&mut self) -> Vec<ExplainedGap> {
        std::mem::take(&mut self.explained)
    }

    /// Per-stream counts, in order of first appearance.
    pub fn summary(&self) -> Vec<StreamSummary> {
        self.order
            .iter()
            .filter_map(|s| {
                self.streams.get(s).map(|st| StreamSummary {
                    stream: s.clone(),
                    records: st.records,
                    last_seq: st.last_seq,
                    dropped_reported: st.dropped_reported,
                    closed: st.closed,
                    last_ts: st.last_ts.clone(),
                    signed_seq: st.signed_seq,
                })
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    #[cfg(all(target_arch = "wasm32", target_os = "unknown"))]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    use super::*;

    const KEY: &[u8] = b"secret-key-for-demo-only";

    fn lines(key: Option<&[u8]>, n: usize) -> Vec<String> {
        let mut c = Chain::new("s1".into(), key.map(<[u8]>::to_vec));
        (0..n).map(|i| c.seal(format!("{{\"i\":{i}}}"))).collect()
    }

    fn verify(key: Option<&[u8]>, lines: &[String]) -> Verifier {
        let mut v = Verifier::new(key.map(<[u8]>::to_vec));
        for (i, l) in lines.iter().enumerate() {
            v.feed(i + 1, l);
        }
        v.finish();
        v
    }

    #[test]
    fn gaps_are_explained_only_by_an_exact_count_of_what_retries_lost() {
        let trail = |count: u64| {
            let mut c = Chain::new("s1".into(), Some(KEY.to_vec()));
            let mut l: Vec<String> = (0..5).map(|i| c.seal(format!("{{\"i\":{i}}}"))).collect();
            l.push(c.seal(format!(
                r#"{{"kind":"audit.dropped","dropped":{{"count":{count},"reason":"retries_exhausted"}}}}"#
            )));
            l.remove(2); // seq 3 lost with its batch...
            l.remove(2); // ...and seq 4
            l
        };
        let v = verify(Some(KEY), &trail(2));
        assert!(v.problems().is_empty(), "{:?}", v.problems());
        assert_eq!(v.explained().len(), 1);
        assert_eq!(v.explained()[0].seqs, (3, 4));
        assert_eq!(v.explained()[0].by.1, 4, "the count's line");
        // A count that covers more (or less) than is missing explains nothing.
        for count in [1, 3] {
            let v = verify(Some(KEY), &trail(count));
            assert!(v.explained().is_empty());
            assert!(
                v.problems()[0].message.starts_with("gap:"),
                "{:?}",
                v.problems()
            );
        }
        // No count at all: the gap stays pending until the input ends.
        let mut l = lines(Some(KEY), 4);
        l.remove(1);
        let mut v = Verifier::new(Some(KEY.to_vec()));
        for (i, line) in l.iter().enumerate() {
            v.feed(i + 1, line);
        }
        assert!(v.problems().is_empty());
        assert_eq!(v.pending_count(), 1);
        v.finish();
        assert_eq!(v.problems().len(), 1);
    }

    #[test]
    fn canonical_form() {
        let l = lines(Some(KEY), 2);
        assert!(l[0].starts_with(&format!(
            "{{\"i\":0,\"chain\":{{\"stream\":\"s1\",\"seq\":1,\"prev\":\"{ZERO_HEX}\",\"mac\":\""
        )));
        let prev = sha256_hex(l[0].as_bytes());
        assert!(l[1].contains(&format!("\"seq\":2,\"prev\":\"{prev}\"")));
        // The mac is the HMAC of the line with the mac zeroed.
        let mac = &l[0][l[0].len() - 67..l[0].len() - 3];
        let zeroed = l[0].replace(mac, ZERO_HEX);
        assert_eq!(hmac_hex(KEY, zeroed.as_bytes()).unwrap(), mac);
        assert!(!lines(None, 1)[0].contains("mac"));
        let mut c = Chain::new("s".into(), None);
        assert_eq!(
            c.seal("{}".into()),
            format!("{{\"chain\":{{\"stream\":\"s\",\"seq\":1,\"prev\":\"{ZERO_HEX}\"}}}}")
        );
    }

    #[test]
    fn clean_chain_verifies() {
        for key in [Some(KEY), None] {
            let v = verify(key, &lines(key, 5));
            assert!(v.problems().is_empty(), "{:?}", v.problems());
            assert_eq!(v.summary()[0].records, 5);
        }
    }

    #[test]
    fn tampering_is_detected() {
        let good = lines(Some(KEY), 4);
        // edit
        let mut edited = good.clone();
        edited[1] = edited[1].replace("\"i\":1", "\"i\":9");
        assert!(!verify(Some(KEY), &edited).problems().is_empty());
        // edit detected by the hash link alone, without the key
        assert!(!verify(None, &edited).problems().is_empty());
        // delete
        let mut deleted = good.clone();
        deleted.remove(2);
        assert!(!verify(Some(KEY), &deleted).problems().is_empty());
        // reorder
        let mut reordered = good.clone();
        reordered.swap(1, 2);
        assert!(!verify(Some(KEY), &reordered).problems().is_empty());
        // duplicate
        let mut dup = good.clone();
        dup.insert(2, good[1].clone());
        assert!(!verify(Some(KEY), &dup).problems().is_empty());
        // wrong key
        assert!(!verify(Some(b"another-key-of-enough-length"), &good)
            .problems()
            .is_empty());
    }

    #[test]
    fn interleaved_streams() {
        let a = lines(Some(KEY), 3);
        let mut c = Chain::new("s2".into(), Some(KEY.to_vec()));
        let b: Vec<String> = (0..3).map(|i| c.seal(format!("{{\"j\":{i}}}"))).collect();
        let mixed = vec![
            a[0].clone(),
            b[0].clone(),
            b[1].clone(),
            a[1].clone(),
            a[2].clone(),
            b[2].clone(),
        ];
        let v = verify(Some(KEY), &mixed);
        assert!(v.problems().is_empty());
        assert_eq!(v.summary().len(), 2);
    }

    #[test]
    fn lines_that_are_not_chained_records_are_named_as_such() {
        let ok = &lines(None, 1)[0];
        let read = read_line(ok).unwrap();
        assert_eq!((read.chain.seq, read.hash.len()), (1, 64));
        assert_eq!(read.hash, sha256_hex(ok.as_bytes()));
        let dup_chain = ok.replacen('{', r#"{"chain":{"stream":"x","seq":9,"prev":"p"},"#, 1);
        for (line, problem) in [
            ("{\"a\":", "not JSON"),
            ("[1,2,3]", "not a record"),
            (r#""text""#, "not a record"),
            (r#"{"a":1}"#, "record has no chain"),
            (r#"{"chain":{"seq":"one"}}"#, "bad chain"),
            (dup_chain.as_str(), "not a record: duplicate field `chain`"),
        ] {
            let got = read_line(line).unwrap_err();
            assert!(got.starts_with(problem), "{line}: {got}");
            assert!(!verify(None, &[line.to_string()]).problems().is_empty());
        }
    }
}
