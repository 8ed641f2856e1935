//! The per-VM outbox: seals records into the chain, buffers them (bounded), cuts batches,
//! and keeps the retry state of the one batch in flight.
//!
//! It is pure state: the glue asks it for a batch to send and tells it how the send went.

use std::collections::VecDeque;

use crate::config::{AuditSettings, Format, OnBufferFull};
use crate::ids::IdGen;
use crate::time::rfc3339_ms;

use super::chain::Chain;
use super::otlp::{self, Meta};
use super::record::{Checkpoint, DropReason, Dropped, Kind, Record};

/// Backoff after the first failure; doubles per attempt up to [`MAX_BACKOFF_MS`].
pub const BASE_BACKOFF_MS: u64 = 200;
pub const MAX_BACKOFF_MS: u64 = 30_000;

#[derive(Debug, Clone)]
struct Entry {
    line: String,
    meta: Option<Meta>,
    /// The loss an `audit.dropped` entry reports.
    reports: Option<Dropped>,
}

#[derive(Debug, Clone)]
struct Inflight {
    body: Vec<u8>,
    records: usize,
    /// Losses reported by the `audit.dropped` records in this batch: if the batch is given
    /// up, they are reported again (else the count would be lost with its report).
    reports_full: u64,
    reports_retries: u64,
    /// Failed attempts so far.
    failures: u32,
    /// Sent and waiting for its response (else waiting to retry).
    sent: bool,
    retry_at_ms: u64,
}

/// Counters for metrics and tests.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Stats {
    pub emitted: u64,
    pub shipped: u64,
    pub batches_shipped: u64,
    pub retries: u64,
    pub dropped_buffer_full: u64,
    pub dropped_retries_exhausted: u64,
}

/// What [`Outbox::push`] did with a record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pushed {
    Queued,
    /// The buffer was full: the record is counted in the next `audit.dropped` record.
    Dropped,
}

/// A batch ready to be sent: the request body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Send<'a> {
    pub body: &'a [u8],
    pub content_type: &'static str,
    pub records: usize,
}

#[derive(Debug)]
pub struct Outbox {
    settings: AuditSettings,
    chain: Chain,
    ids: IdGen,
    queue: VecDeque<Entry>,
    inflight: Option<Inflight>,
    lost_full: u64,
    lost_retries: u64,
    /// Requests admitted under `reject` whose records have not come yet.
    reserved: usize,
    stats: Stats,
    /// Signs checkpoints (`audit.signing_key`).
    signer: Option<ed25519_dalek::SigningKey>,
    /// The seq of the last checkpoint record.
    checkpointed: u64,
    /// The stream has been closed (`audit.closed` sealed). Whatever comes later is closed
    /// again by the next [`Outbox::close`] (the root calls it before each send while the VM
    /// drains or goes away), so the stream still ends with one.
    closed: bool,
}

impl Outbox {
    pub fn new(settings: AuditSettings, stream: String, seed: u64) -> Self {
        let key = settings.hmac_key.clone();
        let signer = settings
            .signing_key
            .as_ref()
            .map(ed25519_dalek::SigningKey::from_bytes);
        Self {
            signer,
            checkpointed: 0,
            closed: false,
            settings,
            chain: Chain::new(stream, key),
            ids: IdGen::new(seed),
            queue: VecDeque::new(),
            inflight: None,
            lost_full: 0,
            lost_retries: 0,
            reserved: 0,
            stats: Stats::default(),
        }
    }

    pub fn stream(&self) -> &str {
        self.chain.stream()
    }

    pub fn stats(&self) -> Stats {
        self.stats
    }

    /// Records waiting (not counting the batch in flight).
    pub fn depth(&self) -> usize {
        self.queue.len()
    }

    /// Whether a batch is out or waiting for its retry.
    pub fn in_flight(&self) -> bool {
        self.inflight.is_some()
    }

    /// A fresh record id.
    pub fn next_id(&mut self) -> String {
        self.ids.uuid()
    }

    /// Records held: queued plus the batch in flight.
    pub fn buffered(&self) -> usize {
        self.queue.len() + self.inflight.as_ref().map_or(0, |f| f.records)
    }

    /// Whether a new record would be refused: with `on_buffer_full: reject` the glue answers
    /// new requests with 503 while this holds.
    pub fn is_full(&self) -> bool {
        self.buffered() >= self.settings.buffer_max_records
    }

    /// Whether new MCP requests must be refused because nothing could record them: the
    /// records held plus those promised to requests in progress fill the buffer.
    pub fn must_reject(&self) -> bool {
        self.settings.on_buffer_full == OnBufferFull::Reject
            && self.buffered().saturating_add(self.reserved) >= self.settings.buffer_max_records
    }

    /// An admitted request will bring its records at its end: keep room for them, so a
    /// request admitted under `reject` is never unrecorded.
    pub fn reserve(&mut self) {
        self.reserved = self.reserved.saturating_add(1);
    }

    /// The request ended (its records follow at once).
    pub fn release(&mut self) {
        self.reserved = self.reserved.saturating_sub(1);
    }

    /// Seals and queues a record, or counts it lost when the buffer is full. With
    /// `on_buffer_full: reject` nothing is dropped: admission already kept the room (a
    /// request that brings several records may overrun the bound by those few).
    pub fn push(&mut self, record: &Record, now_ms: u64) -> Pushed {
        self.report_losses(now_ms);
        // A stream that has closed takes what still comes (streams ending as the VM goes)
        // beyond the bound: a loss now would follow the stream's last word.
        if self.is_full() && self.settings.on_buffer_full != OnBufferFull::Reject && !self.closed {
            self.lost_full += 1;
            self.stats.dropped_buffer_full += 1;
            return Pushed::Dropped;
        }
        self.seal(record, now_ms);
        Pushed::Queued
    }

    /// With a signing key, announces the stream: a signed `audit.checkpoint` at seq 1, so the
    /// collector knows the stream before anything else is written to it, and `verify` reports
    /// it open if its VM stops without closing it (even one that delivered nothing else).
    pub fn open(&mut self, now_ms: u64) {
        if self.chain.seq() == 0 && self.signer.is_some() {
            self.seal_checkpoint(Kind::AuditCheckpoint, now_ms);
        }
    }

    /// Whether a signed checkpoint is due: a signing key, and records sealed since the last.
    pub fn checkpoint_due(&self) -> bool {
        self.signer.is_some() && self.chain.seq() > self.checkpointed
    }

    /// Seals an `audit.checkpoint` over the stream's head now (off the request path: the
    /// root's tick calls it).
    pub fn checkpoint(&mut self, now_ms: u64) {
        self.report_losses(now_ms);
        self.seal_checkpoint(Kind::AuditCheckpoint, now_ms);
    }

    /// Ends the stream: reports what was lost (whatever the buffer holds: the end must be
    /// written) and seals `audit.closed`, signed when a key is configured.
    pub fn close(&mut self, now_ms: u64) {
        // Closed with nothing after it: the stream already ends with its close.
        if self.closed && self.chain.seq() == self.checkpointed {
            return;
        }
        self.force_report_losses(now_ms);
        self.seal_checkpoint(Kind::AuditClosed, now_ms);
        self.closed = true;
    }

    /// A batch waiting out its backoff goes at the next send (the VM is going away: the
    /// shutdown time bounds the retries, and ticks may no longer come).
    pub fn retry_now(&mut self) {
        if let Some(f) = self.inflight.as_mut() {
            f.retry_at_ms = 0;
        }
    }

    fn seal_checkpoint(&mut self, kind: Kind, now_ms: u64) {
        use base64::Engine as _;
        use ed25519_dalek::Signer as _;
        let ts = rfc3339_ms(now_ms);
        let (seq, head) = (self.chain.seq(), self.chain.head().to_string());
        let sig = self.signer.as_ref().map(|k| {
            let bytes = Checkpoint::signed_bytes(self.chain.stream(), seq, &head, &ts);
            base64::engine::general_purpose::STANDARD.encode(k.sign(&bytes).to_bytes())
        });
        let mut r = Record::new(kind, ts, self.ids.uuid());
        r.checkpoint = Some(Checkpoint {
            seq,
            head,
            emitted: self.stats.emitted + self.stats.dropped_buffer_full,
            dropped: self.stats.dropped_buffer_full + self.stats.dropped_retries_exhausted,
            sig,
        });
        self.seal(&r, now_ms);
        // Due again only once something other than checkpoints was sealed.
        self.checkpointed = self.chain.seq();
    }

    fn seal(&mut self, record: &Record, now_ms: u64) {
        // Serialising our own types cannot fail; an empty object is the safe fallback.
        let json = serde_json::to_string(record).unwrap_or_else(|_| "{}".into());
        let line = self.chain.seal(json);
        let meta = (self.settings.format == Format::Otlp).then(|| Meta::of(record, now_ms));
        self.queue.push_back(Entry {
            line,
            meta,
            reports: record.dropped.clone(),
        });
        self.stats.emitted += 1;
    }

    /// Emits `audit.dropped` records for losses not yet reported, room permitting.
    /// The dropped record may use the slot a lost record would have had: it is what keeps
    /// the gap explainable.
    fn report_losses(&mut self, now_ms: u64) {
        self.report_losses_if(now_ms, false);
    }

    /// [`Outbox::report_losses`] whether or not the buffer has room (the stream's end).
    fn force_report_losses(&mut self, now_ms: u64) {
        self.report_losses_if(now_ms, true);
    }

    fn report_losses_if(&mut self, now_ms: u64, force: bool) {
        for reason in [DropReason::RetriesExhausted, DropReason::BufferFull] {
            let count = match reason {
                DropReason::BufferFull => self.lost_full,
                DropReason::RetriesExhausted => self.lost_retries,
            };
            if count == 0 || (self.is_full() && !force) {
                continue;
            }
            let mut r = Record::new(Kind::AuditDropped, rfc3339_ms(now_ms), self.ids.uuid());
            r.dropped = Some(Dropped { count, reason });
            self.seal(&r, now_ms);
            match reason {
                DropReason::BufferFull => self.lost_full = 0,
                DropReason::RetriesExhausted => self.lost_retries = 0,
            }
        }
    }

    /// The next batch to send now, if any: the batch in flight when its retry is due, or a
    /// new one cut from the queue. `force` sends a partial batch (the flush tick); otherwise
    /// only a full one is cut.
    pub fn next_send(&mut self, now_ms: u64, force: bool) -> Option<Send<'_>> {
        self.report_losses(now_ms);
        if self
            .inflight
            .as_ref()
            .is_some_and(|f| f.sent || f.retry_at_ms > now_ms)
        {
            return None;
        }
        if self.inflight.is_none() {
            let full = self.queue.len() >= self.settings.batch_max_records;
            if self.queue.is_empty() || !(force || full) {
                return None;
            }
            self.inflight = Some(self.cut_batch());
        }
        let content_type = match self.settings.format {
            Format::Ndjson => "application/x-ndjson",
            Format::Otlp => "application/json",
        };
        let f = self.inflight.as_mut()?;
        f.sent = true;
        Some(Send {
            body: &f.body,
            content_type,
            records: f.records,
        })
    }

    fn cut_batch(&mut self) -> Inflight {
        let mut take = 0usize;
        let mut bytes = 0usize;
        for e in self.queue.iter() {
            if take >= self.settings.batch_max_records
                || (take > 0 && bytes + e.line.len() + 1 > self.settings.batch_max_bytes)
            {
                break;
            }
            take += 1;
            bytes += e.line.len() + 1;
        }
        let entries: Vec<Entry> = self.queue.drain(..take).collect();
        let reported = |reason: DropReason| -> u64 {
            entries
                .iter()
                .filter_map(|e| e.reports.as_ref())
                .filter(|d| d.reason == reason)
                .map(|d| d.count)
                .sum()
        };
        let reports_full = reported(DropReason::BufferFull);
        let reports_retries = reported(DropReason::RetriesExhausted);
        let body = match self.settings.format {
            Format::Ndjson => {
                let mut b = Vec::with_capacity(bytes);
                for e in &entries {
                    b.extend_from_slice(e.line.as_bytes());
                    b.push(b'\n');
                }
                b
            }
            Format::Otlp => otlp::encode(
                self.chain.stream(),
                entries
                    .iter()
                    .filter_map(|e| e.meta.as_ref().map(|m| (e.line.as_str(), m))),
            ),
        };
        Inflight {
            body,
            records: entries.len(),
            reports_full,
            reports_retries,
            failures: 0,
            sent: false,
            retry_at_ms: 0,
        }
    }

    /// The batch in flight could not be sent at all (the host refused the call).
    pub fn dispatch_failed(&mut self, now_ms: u64) {
        self.on_result(false, now_ms);
    }

    /// How the batch in flight ended: `ok` for a 2xx answer.
    pub fn on_result(&mut self, ok: bool, now_ms: u64) {
        let Some(f) = self.inflight.as_mut() else {
            return;
        };
        if ok {
            self.stats.shipped += f.records as u64;
            self.stats.batches_shipped += 1;
            self.inflight = None;
            return;
        }
        f.failures += 1;
        f.sent = false;
        let max = self.settings.max_retries;
        // A closed stream's VM is going away: its retries are bounded by the shutdown time,
        // and giving a batch up now would lose it with no one left to report it.
        if max != 0 && f.failures > max && !self.closed {
            // The records of the batch (sealed: their seqs will be missing), plus what the
            // lost `audit.dropped` records in it reported (so the count survives its report).
            self.lost_retries += f.records as u64 + f.reports_retries;
            self.lost_full += f.reports_full;
            self.stats.dropped_retries_exhausted += f.records as u64;
            self.inflight = None;
            self.report_losses(now_ms);
            return;
        }
        self.stats.retries += 1;
        let exp = BASE_BACKOFF_MS
            .saturating_mul(1u64 << (f.failures - 1).min(20))
            .min(MAX_BACKOFF_MS);
        // Full jitter in [exp/2, exp): workers that failed together do not retry together.
        let jitter = (self.ids.unit() * (exp / 2) as f64) as u64;
        f.retry_at_ms = now_ms + exp / 2 + jitter;
    }
}

#[cfg(test)]
mod tests {
    #[cfg(all(target_arch = "wasm32", target_os = "unknown"))]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    use super::*;
    use crate::audit::chain::Verifier;
    use crate::config::Config;

    fn outbox(extra: &str) -> Outbox {
        let cfg = Config::parse(
            format!(r#"{{"audit":{{"cluster":"c","hmac_key":"c2VjcmV0LWtleS1mb3ItZGVtby1vbmx5"{extra}}}}}"#).as_bytes(),
        )
        .unwrap();
        Outbox::new(cfg.audit, "stream1".into(), 7)
    }

    fn rec(i: u64) -> Record {
        Record::new(Kind::Command, rfc3339_ms(i), format!("r{i}"))
    }

    fn lines(body: &[u8]) -> Vec<String> {
        String::from_utf8(body.to_vec())
            .unwrap()
            .lines()
            .map(str::to_string)
            .collect()
    }

    #[test]
    fn batches_by_count_and_on_flush() {
        let mut o = outbox(r#","batch_max_records":3"#);
        for i in 0..2 {
            assert_eq!(o.push(&rec(i), 0), Pushed::Queued);
        }
        assert!(o.next_send(0, false).is_none(), "not full, not forced");
        o.push(&rec(2), 0);
        o.push(&rec(3), 0);
        let s = o.next_send(0, false).unwrap();
        assert_eq!(s.records, 3);
        assert_eq!(s.content_type, "application/x-ndjson");
        assert_eq!(lines(s.body).len(), 3);
        assert!(
            o.next_send(0, true).is_none(),
            "one batch in flight at a time"
        );
        o.on_result(true, 1);
        let s = o.next_send(1, true).unwrap();
        assert_eq!(s.records, 1);
        o.on_result(true, 2);
        assert_eq!(o.stats().shipped, 4);
        assert!(o.next_send(2, true).is_none());
    }

    #[test]
    fn retries_same_body_with_backoff_then_gives_up_and_reports() {
        let mut o = outbox(r#","max_retries":2"#);
        o.push(&rec(1), 0);
        let first = o.next_send(0, true).unwrap().body.to_vec();
        o.on_result(false, 0);
        assert!(o.next_send(0, true).is_none(), "waits for the backoff");
        let again = o.next_send(BASE_BACKOFF_MS, true).unwrap().body.to_vec();
        assert_eq!(first, again);
        o.on_result(false, 1000);
        assert!(o.next_send(1000 + 2 * BASE_BACKOFF_MS, true).is_some());
        o.on_result(false, 2000);
        // Given up: the next thing shipped is an audit.dropped record.
        let s = o.next_send(2000, true).unwrap();
        let l = lines(s.body);
        assert_eq!(l.len(), 1);
        assert!(l[0].contains(r#""kind":"audit.dropped""#));
        assert!(l[0].contains(r#""dropped":{"count":1,"reason":"retries_exhausted"}"#));
        assert!(l[0].contains(r#""seq":2"#));
        assert_eq!(o.stats().dropped_retries_exhausted, 1);
    }

    #[test]
    fn a_lost_report_is_reported_again() {
        // Buffer-full losses, then every batch given up, then the collector is back.
        let mut o = outbox(r#","max_retries":1,"batch_max_records":2,"buffer_max_records":2"#);
        o.push(&rec(1), 0);
        o.push(&rec(2), 0);
        assert_eq!(o.push(&rec(3), 0), Pushed::Dropped);
        let mut now = 0;
        let mut give_up = |o: &mut Outbox| {
            for _ in 0..2 {
                now += MAX_BACKOFF_MS;
                assert!(o.next_send(now, true).is_some());
                o.on_result(false, now);
            }
        };
        give_up(&mut o); // seq 1-2 lost; seq 3 reports 2 (retries), seq 4 reports 1 (full)
        give_up(&mut o); // seq 3-4 lost with their reports
        now += MAX_BACKOFF_MS;
        let s = o.next_send(now, true).unwrap();
        let l = lines(s.body);
        o.on_result(true, now);
        assert_eq!(l.len(), 2, "{l:?}");
        // 4 sealed records lost (their seqs are the gap), 1 never sealed.
        assert!(
            l[0].contains(r#""dropped":{"count":4,"reason":"retries_exhausted"}"#),
            "{}",
            l[0]
        );
        assert!(l[0].contains(r#""seq":5"#));
        assert!(
            l[1].contains(r#""dropped":{"count":1,"reason":"buffer_full"}"#),
            "{}",
            l[1]
        );
        assert!(l[1].contains(r#""seq":6"#));
        assert_eq!(o.stats().dropped_retries_exhausted, 4);
        assert_eq!(o.stats().dropped_buffer_full, 1);
    }

    #[test]
    fn zero_retries_means_forever() {
        let mut o = outbox(r#","max_retries":0"#);
        o.push(&rec(1), 0);
        let mut now = 0;
        for _ in 0..50 {
            assert!(o.next_send(now, true).is_some());
            o.on_result(false, now);
            now += MAX_BACKOFF_MS;
        }
        assert!(o.in_flight());
        assert_eq!(o.stats().dropped_retries_exhausted, 0);
    }

    #[test]
    fn full_buffer_drops_and_counts_then_reports_in_chain() {
        let mut o = outbox(r#","batch_max_records":2,"buffer_max_records":2"#);
        assert_eq!(o.push(&rec(1), 0), Pushed::Queued);
        assert_eq!(o.push(&rec(2), 0), Pushed::Queued);
        assert!(o.is_full());
        assert!(!o.must_reject());
        assert_eq!(o.push(&rec(3), 0), Pushed::Dropped);
        assert_eq!(o.push(&rec(4), 0), Pushed::Dropped);
        let mut all = lines(o.next_send(0, true).unwrap().body);
        o.on_result(true, 0);
        o.push(&rec(5), 0);
        all.extend(lines(o.next_send(0, true).unwrap().body));
        o.on_result(true, 0);
        assert_eq!(all.len(), 4);
        assert!(all[2].contains(r#""dropped":{"count":2,"reason":"buffer_full"}"#));
        let mut v = Verifier::new(Some(b"secret-key-for-demo-only".to_vec()));
        for (i, l) in all.iter().enumerate() {
            v.feed(i + 1, l);
        }
        assert!(v.problems().is_empty(), "{:?}", v.problems());
        assert_eq!(v.summary()[0].dropped_reported, 2);
    }

    #[test]
    fn reject_mode_reports_full() {
        let mut o =
            outbox(r#","batch_max_records":1,"buffer_max_records":1,"on_buffer_full":"reject""#);
        o.push(&rec(1), 0);
        assert!(o.must_reject());
    }

    #[test]
    fn batch_bytes_bound() {
        let mut o = outbox(r#","batch_max_bytes":10"#);
        o.push(&rec(1), 0);
        o.push(&rec(2), 0);
        assert_eq!(
            o.next_send(0, true).unwrap().records,
            1,
            "at least one record per batch"
        );
    }

    #[test]
    fn otlp_batches_carry_lines() {
        let mut o = outbox(r#","format":"otlp""#);
        o.push(&rec(1), 0);
        let s = o.next_send(0, true).unwrap();
        assert_eq!(s.content_type, "application/json");
        let l = otlp::decode_lines(s.body).unwrap();
        assert_eq!(l.len(), 1);
        assert!(l[0].contains("\"chain\":{\"stream\":\"stream1\",\"seq\":1"));
    }
}
