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

use mcptrail::audit::chain::{hex, Chain};
use mcptrail::audit::record::Identity;
use serde_json::{json, Value};
use tokio::sync::{Mutex, Notify};

use super::store::{Decided, Request, Store};
use super::{now_s, AuditConfig};

/// The sealing side of the service's stream.
pub struct Auditor {
    chain: Mutex<(Chain, bool)>,
    stream: String,
    store: Store,
    wake: Notify,
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

fn record_id() -> String {
    use rand_core::RngCore as _;
    let mut b = [0u8; 16];
    rand_core::OsRng.fill_bytes(&mut b);
    hex(&b)
}

impl Auditor {
    pub async fn start(config: &AuditConfig, store: Store) -> anyhow::Result<Auditor> {
        let key = config
            .hmac_key
            .as_deref()
            .map(crate::verify::decode_key)
            .transpose()?;
        let stream = format!("approvals-{}", record_id());
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
    pub async fn decide(&self, d: &Decided<'_>, record: Value) -> anyhow::Result<bool> {
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
        let before = chain.clone();
        let line = chain.seal(record.to_string());
        let stored = async {
            Store::outbox_put(&mut tx, chain.stream(), chain.seq(), &line).await?;
            tx.commit().await?;
            anyhow::Ok(())
        }
        .await;
        if let Err(e) = stored {
            // Nothing was stored: the chain goes back to where it was, without a gap.
            *chain = before;
            return Err(e);
        }
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
        let record = json!({
            "v": 1,
            "kind": "audit.closed",
            "ts": mcptrail::time::rfc3339_ms(now_ms()),
            "id": record_id(),
            "checkpoint": {"seq": seq, "head": head, "emitted": seq, "dropped": 0},
        });
        let before = chain.clone();
        let line = chain.seal(record.to_string());
        let stored = async {
            let mut tx = self.store.begin().await?;
            Store::outbox_put(&mut tx, chain.stream(), chain.seq(), &line).await?;
            tx.commit().await?;
            anyhow::Ok(())
        }
        .await;
        if let Err(e) = stored {
            *chain = before;
            return Err(e);
        }
        *closed = true;
        self.wake();
        Ok(())
    }
}

/// An identity as records show it.
pub fn identity_json(i: &Identity) -> Value {
    serde_json::to_value(i).unwrap_or(Value::Null)
}

/// The `approval.decided` record of a decision on `req`. `identity` is who decided (records
/// name the actor there); the requester is in `approval.requester`.
pub fn decided_record(
    req: &Request,
    approver: &Identity,
    decision: &str,
    mode: Option<&str>,
    window_s: Option<i64>,
    note: Option<&str>,
) -> Value {
    json!({
        "v": 1,
        "kind": "approval.decided",
        "ts": mcptrail::time::rfc3339_ms(now_ms()),
        "id": record_id(),
        "session": req.session,
        "request_id": req.request_id,
        "identity": identity_json(approver),
        "mcp": {
            "method": req.method,
            "tool": req.grant.tool,
            "arguments": req.arguments,
        },
        "approval": {
            "id": req.grant.id,
            "decision": decision,
            "mode": mode,
            "window_s": window_s,
            "note": note,
            "note_chars": note.map(|n| n.chars().count()),
            "approved_by": (decision == "approved").then_some(approver.sub.as_deref()).flatten(),
            "decided_by": approver.sub,
            "requester": req.subject,
            "arguments_sha256": req.grant.arguments_sha256,
            "requested_at": mcptrail::time::rfc3339_ms(
                u64::try_from(req.grant.created_at).unwrap_or(0).saturating_mul(1000)
            ),
        },
    })
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
