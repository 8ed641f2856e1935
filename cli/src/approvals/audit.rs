//! Decisions shipped to the collector as `approval.decided` records on the service's own
//! hash-chain stream (the filter's `Chain`, so `mcptrail verify` checks them like any other).
//!
//! Each process start opens a new stream (`approvals-<hex>`): replicas sharing a database
//! never seal into one chain, and a graceful stop ends the stream with `audit.closed`. A
//! sealed line is written to the database outbox in the same transaction as the decision, so
//! a decision is never without its record; a background shipper POSTs the outbox to the
//! collector with retries and never blocks the API. Lines left by a stopped process are
//! adopted by a running one (after two minutes of silence) and shipped in order.

use std::sync::Arc;
use std::time::Duration;

use mcptrail::audit::chain::Chain;
use mcptrail::audit::record::{Approval, Checkpoint, Identity, Kind, Mcp, Record};
use mcptrail::ids::IdGen;
use mcptrail::time::rfc3339_ms;
use serde_json::Value;
use tokio::sync::{Mutex, Notify};

use super::store::{Decided, Request, Store, Tx};
use super::{now_s, AuditConfig};
use crate::records::now_ms;

/// The sealing side of the service's stream.
pub struct Auditor {
    chain: Mutex<(Chain, bool)>,
    stream: String,
    store: Store,
    wake: Notify,
}

fn random_u64() -> u64 {
    use rand_core::RngCore as _;
    rand_core::OsRng.next_u64()
}

/// A record id in the filter's form (UUID version 4 layout).
fn record_id() -> String {
    IdGen::new(random_u64()).uuid()
}

impl Auditor {
    pub async fn start(config: &AuditConfig, store: Store) -> anyhow::Result<Auditor> {
        let key = config
            .hmac_key
            .as_deref()
            .map(crate::verify::decode_key)
            .transpose()?;
        // `approvals-` and 16 hex digits: told apart from the filter's VM streams at a glance.
        let stream = format!("approvals-{:016x}", random_u64());
        store.stream_register(&stream, now_s()).await?;
        Ok(Auditor {
            chain: Mutex::new((Chain::new(stream.clone(), key), false)),
            stream,
            store,
            wake: Notify::new(),
        })
    }

    pub fn stream(&self) -> &str {
        &self.stream
    }

    /// Asks the shipper to look at the outbox now.
    pub fn wake(&self) {
        self.wake.notify_one();
    }

    /// Applies a decision and stores its sealed record, atomically; false (and nothing
    /// sealed) when the request was no longer decidable.
    pub async fn decide(&self, d: &Decided<'_>, record: Record) -> anyhow::Result<bool> {
        // Held across the transaction: records are sealed in the order they are stored.
        let mut guard = self.chain.lock().await;
        let (chain, closed) = &mut *guard;
        if *closed {
            anyhow::bail!("the audit stream is closed (the service is stopping)");
        }
        let mut tx = self.store.begin().await?;
        if !Store::decide(&mut tx, d).await? {
            tx.rollback().await?;
            return Ok(false);
        }
        seal_and_commit(chain, tx, &record).await?;
        self.wake();
        Ok(true)
    }

    /// Seals `audit.closed` (with the checkpoint of the records before it) into the outbox.
    pub async fn close(&self) -> anyhow::Result<()> {
        let mut guard = self.chain.lock().await;
        let (chain, closed) = &mut *guard;
        if *closed {
            return Ok(());
        }
        let (seq, head) = (chain.seq(), chain.head().to_string());
        let mut record = Record::new(Kind::AuditClosed, rfc3339_ms(now_ms()), record_id());
        record.checkpoint = Some(Checkpoint {
            seq,
            head,
            emitted: seq,
            dropped: 0,
            sig: None,
        });
        let tx = self.store.begin().await?;
        seal_and_commit(chain, tx, &record).await?;
        *closed = true;
        self.wake();
        Ok(())
    }
}

/// Seals `record` into `chain` and commits its line to the outbox with `tx` (and whatever
/// else `tx` holds). On any failure nothing is stored and the chain goes back to where it
/// was, so the stream has no gap.
async fn seal_and_commit(chain: &mut Chain, mut tx: Tx, record: &Record) -> anyhow::Result<()> {
    let before = chain.clone();
    let stored = async {
        let line = chain.seal(serde_json::to_string(record)?);
        Store::outbox_put(&mut tx, chain.stream(), chain.seq(), &line).await?;
        tx.commit().await?;
        anyhow::Ok(())
    }
    .await;
    if stored.is_err() {
        *chain = before;
    }
    stored
}

/// An identity as records show it.
pub fn identity_json(i: &Identity) -> Value {
    serde_json::to_value(i).unwrap_or(Value::Null)
}

/// The `approval.decided` record of a decision on `req`: the filter's record schema, with
/// the approver as `identity` (records name the actor there) and the requester in
/// `approval.requester`.
pub fn decided_record(
    req: &Request,
    approver: &Identity,
    decision: &str,
    mode: Option<&str>,
    window_s: Option<i64>,
    note: Option<&str>,
) -> Record {
    let mut r = Record::new(Kind::ApprovalDecided, rfc3339_ms(now_ms()), record_id());
    r.session.clone_from(&req.session);
    r.request_id.clone_from(&req.request_id);
    r.identity = Some(approver.clone());
    r.mcp = Some(Mcp {
        method: Some(req.method.clone()),
        tool: Some(req.grant.tool.clone()),
        arguments: Some(req.arguments.clone()),
        ..Mcp::default()
    });
    r.approval = Some(Approval {
        id: req.grant.id.clone(),
        approved_by: (decision == "approved")
            .then(|| approver.sub.clone())
            .flatten(),
        mode: mode.map(str::to_string),
        decision: Some(decision.to_string()),
        window_s: window_s.and_then(|w| u64::try_from(w).ok()),
        note: note.map(str::to_string),
        requester: serde_json::from_value(req.subject.clone()).ok(),
        arguments_sha256: Some(req.grant.arguments_sha256.clone()),
        requested_at: Some(rfc3339_ms(
            u64::try_from(req.grant.created_at)
                .unwrap_or(0)
                .saturating_mul(1000),
        )),
        ..Approval::default()
    });
    r
}

/// Ships the outbox to the collector until the task is aborted: each batch in stream and seq
/// order, retried with backoff (1 s doubling to 60 s) while the collector fails.
pub async fn ship(a: Arc<Auditor>, http: reqwest::Client, url: String) {
    const IDLE: Duration = Duration::from_secs(5);
    let mut backoff = Duration::from_secs(1);
    loop {
        let now = now_s();
        let step = async {
            a.store.streams_heartbeat(&a.stream, now, now - 120).await?;
            let rows = a.store.outbox_due(&a.stream, 500).await?;
            if rows.is_empty() {
                return anyhow::Ok(false);
            }
            let mut body = String::new();
            for (_, _, line) in &rows {
                body.push_str(line);
                body.push('\n');
            }
            http.post(&url)
                .header("content-type", "application/x-ndjson")
                .body(body)
                .send()
                .await
                .and_then(reqwest::Response::error_for_status)?;
            // Rows come ordered by stream then seq: the last of each stream marks them all.
            let mut last: Vec<(&str, i64)> = Vec::new();
            for (s, seq, _) in &rows {
                match last.last_mut() {
                    Some((ls, lq)) if *ls == s.as_str() => *lq = *seq,
                    _ => last.push((s.as_str(), *seq)),
                }
            }
            for (s, seq) in last {
                a.store.outbox_shipped(s, seq, now).await?;
            }
            anyhow::Ok(true)
        }
        .await;
        match step {
            Ok(true) => backoff = Duration::from_secs(1),
            Ok(false) => {
                backoff = Duration::from_secs(1);
                let _ = tokio::time::timeout(IDLE, a.wake.notified()).await;
            }
            Err(e) => {
                eprintln!(
                    "approvals: audit shipping to {url} failed (retrying in {backoff:?}): {e:#}"
                );
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(60));
            }
        }
    }
}
