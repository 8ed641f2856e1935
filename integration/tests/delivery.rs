//! Audit delivery under collector faults, through real Envoy: the collector answers 500s,
//! is stopped and restarted on the same port, or answers after `audit.timeout_ms`. Once the
//! fault clears, every record arrives, and the verifier (the logic of `mcptrail verify`)
//! proves each stream complete: no gap, nothing twice, or each loss counted by an
//! `audit.dropped` record. With `on_buffer_full: reject`, MCP requests get 503 while the
//! buffer is full.
//!
//! Bounded: short flush and timeout settings, faults of a second or two, waits with
//! deadlines (no timing assertions).

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use mcptrail_integration::demo::Mode;
use mcptrail_integration::{base_plugin_config, Fault, Stack};
use serde_json::{json, Value};

/// How long the fault lasts (the filter retries meanwhile).
const FAULT: Duration = Duration::from_millis(1500);
/// Deadline for everything to arrive once the fault clears (backoff can reach ~3 s).
const SETTLE: Duration = Duration::from_secs(20);

/// A stateless JSON server behind Envoy; `audit` keys override the base config.
async fn stack(audit: Value) -> Stack {
    let mut cfg = base_plugin_config();
    cfg["audit"]["flush_interval_ms"] = json!(50);
    cfg["audit"]["timeout_ms"] = json!(300);
    cfg["audit"]["batch_max_records"] = json!(4);
    cfg["audit"]["max_retries"] = json!(0);
    for (k, v) in audit.as_object().into_iter().flatten() {
        cfg["audit"][k] = v.clone();
    }
    Stack::start(
        Mode {
            json: true,
            stateless: true,
        },
        Some(cfg),
    )
    .await
    .unwrap()
}

/// One `tools/call echo` with a text that names it; returns the HTTP status and body.
async fn call(stack: &Stack, n: usize) -> (u16, String) {
    let body = json!({
        "jsonrpc": "2.0", "id": n, "method": "tools/call",
        "params": { "name": "echo", "arguments": { "text": format!("msg-{n}") } }
    });
    let r = reqwest::Client::new()
        .post(stack.mcp_url())
        .header("content-type", "application/json")
        .header("accept", "application/json, text/event-stream")
        .header("mcp-protocol-version", "2025-06-18")
        .body(body.to_string())
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    (status, r.text().await.unwrap_or_default())
}

/// The numbers of the `msg-N` calls the collector holds (with repetitions, if any).
fn msgs(recs: &[Value]) -> Vec<usize> {
    let mut out: Vec<usize> = recs
        .iter()
        .filter(|r| r["kind"] == "command")
        .filter_map(|r| r["mcp"]["arguments"]["text"].as_str())
        .filter_map(|t| t.strip_prefix("msg-")?.parse().ok())
        .collect();
    out.sort_unstable();
    out
}

/// Waits (with a deadline) for `cond`.
async fn until(what: &str, limit: Duration, cond: impl Fn() -> bool) {
    let deadline = Instant::now() + limit;
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Waits until no callout to the collector is in flight (its counters are then final).
async fn drained(stack: &Stack) {
    until("the outbox to drain", SETTLE, || {
        stack
            .envoy
            .stat("cluster.audit_collector.upstream_rq_active")
            .unwrap_or(0)
            == 0
    })
    .await;
}

/// The collected file verifies clean, in one stream, with `records` records and
/// `dropped` reported lost.
/// Waits until calls `0..n` are all recorded, then checks each came once and the stream
/// verifies with nothing dropped.
async fn every_call_once(stack: &Stack, n: usize, what: &str) {
    let recs = stack
        .collector
        .wait_for_within(what, SETTLE, |r| msgs(r).len() >= n)
        .await
        .unwrap();
    assert_eq!(msgs(&recs), (0..n).collect::<Vec<_>>(), "each call once");
    assert_complete(stack, n, 0);
}

fn assert_complete(stack: &Stack, records: usize, dropped: u64) {
    let report = stack.collector.verify();
    assert!(
        report.problems.is_empty(),
        "verify found problems: {:?}",
        report.problems
    );
    assert_eq!(report.streams.len(), 1, "{:?}", report.streams);
    let s = &report.streams[0];
    assert_eq!(s.records as usize, records, "{s:?}");
    assert_eq!(s.last_seq as usize, records, "{s:?}");
    assert_eq!(s.dropped_reported, dropped, "{s:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn collector_errors_then_recovers() {
    let started = Instant::now();
    let stack = stack(json!({})).await;
    stack.collector.set_fault(Fault::Status(500));
    let n = 10;
    for i in 0..n {
        assert_eq!(
            call(&stack, i).await.0,
            200,
            "traffic flows during the fault"
        );
    }
    let faults = stack.collector.fault_counters();
    until("retries against the failing collector", SETTLE, || {
        faults.refused.load(Ordering::Relaxed) >= 3
    })
    .await;
    tokio::time::sleep(FAULT).await;
    stack.collector.set_fault(Fault::None);
    every_call_once(&stack, n, "every call once the collector recovers").await;
    let (batches, stored, dups) = stack.collector.sink_counters();
    assert_eq!(
        dups, 0,
        "a refused batch was not stored, so nothing comes twice"
    );
    eprintln!(
        "500s: {n} records in {batches} batches ({stored} lines) after {} refused attempts; {:?}",
        faults.refused.load(Ordering::Relaxed),
        started.elapsed()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn collector_stopped_then_restarted_on_the_same_port() {
    let started = Instant::now();
    let stack = stack(json!({})).await;
    // Some records before the outage.
    for i in 0..3 {
        call(&stack, i).await;
    }
    stack
        .collector
        .wait_for("the first records", |r| msgs(r).len() == 3)
        .await
        .unwrap();
    stack.collector.stop().await;
    let n = 11;
    for i in 3..n {
        assert_eq!(
            call(&stack, i).await.0,
            200,
            "traffic flows during the outage"
        );
    }
    let fails = || {
        stack
            .envoy
            .stat("cluster.audit_collector.upstream_cx_connect_fail")
            .unwrap_or(0)
    };
    until(
        "connection failures to the stopped collector",
        SETTLE,
        || fails() >= 2,
    )
    .await;
    tokio::time::sleep(FAULT).await;
    stack.collector.restart().await.unwrap();
    every_call_once(&stack, n, "every call once the collector is back").await;
    eprintln!(
        "stop/restart: {n} records; {} refused connections while stopped; {:?}",
        fails(),
        started.elapsed()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn collector_answers_after_the_timeout() {
    let started = Instant::now();
    // Stored at once, answered after three timeouts: the filter never hears back in time,
    // and sends the same batch again.
    let stack = stack(json!({ "timeout_ms": 200 })).await;
    stack
        .collector
        .set_fault(Fault::Slow(Duration::from_millis(600)));
    let n = 9;
    for i in 0..n {
        assert_eq!(call(&stack, i).await.0, 200);
    }
    let faults = stack.collector.fault_counters();
    until("the same batch sent again after a timeout", SETTLE, || {
        faults.requests.load(Ordering::Relaxed) >= 3
    })
    .await;
    let timeouts = stack
        .envoy
        .stat("cluster.audit_collector.upstream_rq_timeout")
        .unwrap_or(0);
    stack.collector.set_fault(Fault::None);
    stack
        .collector
        .wait_for_within("every call once the collector is fast again", SETTLE, |r| {
            msgs(r).len() >= n
        })
        .await
        .unwrap();
    // Let any batch still in the air land, then look again: still each call once.
    drained(&stack).await;
    let recs = stack.collector.records();
    assert_eq!(msgs(&recs), (0..n).collect::<Vec<_>>(), "each call once");
    assert_complete(&stack, n, 0);
    let (batches, stored, dups) = stack.collector.sink_counters();
    assert!(
        dups > 0,
        "the batch re-sent after a timeout was recognised (stored {stored} lines in {batches} batches)"
    );
    assert!(timeouts >= 1, "Envoy timed the callouts out");
    eprintln!(
        "slow: {n} records; {} ingest requests, {timeouts} callout timeouts, {dups} duplicate lines acknowledged and not stored again; {:?}",
        faults.requests.load(Ordering::Relaxed),
        started.elapsed()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batches_given_up_after_max_retries_are_counted() {
    let started = Instant::now();
    let stack = stack(json!({ "max_retries": 1 })).await;
    stack.collector.set_fault(Fault::Status(500));
    let n = 8;
    for i in 0..n {
        assert_eq!(call(&stack, i).await.0, 200);
    }
    tokio::time::sleep(FAULT).await;
    stack.collector.set_fault(Fault::None);
    // The stream goes on after the losses.
    for i in n..n + 3 {
        assert_eq!(call(&stack, i).await.0, 200);
    }
    let lost = |r: &[Value]| -> u64 {
        r.iter()
            .filter(|x| x["kind"] == "audit.dropped")
            .filter_map(|x| x["dropped"]["count"].as_u64())
            .sum()
    };
    stack
        .collector
        .wait_for_within("every call recorded or counted as lost", SETTLE, |r| {
            let m = msgs(r);
            (n..n + 3).all(|i| m.contains(&i)) && m.len() as u64 + lost(r) >= n as u64 + 3
        })
        .await
        .unwrap();
    drained(&stack).await;
    let recs = stack.collector.records();
    let kept = msgs(&recs);
    // The count covers every sealed record lost: calls, and the audit.dropped records
    // that were themselves in batches given up (their counts carried over).
    assert!(lost(&recs) > 0, "batches were given up during the fault");
    assert!(kept.len() as u64 + lost(&recs) >= n as u64 + 3);
    assert!(kept.ends_with(&[n, n + 1, n + 2]), "{kept:?}");
    let mut dedup = kept.clone();
    dedup.dedup();
    assert_eq!(dedup, kept, "nothing twice");
    assert!(recs
        .iter()
        .filter(|x| x["kind"] == "audit.dropped")
        .all(|x| x["dropped"]["reason"] == "retries_exhausted"));
    // The lost records had entered the chain: their seqs are missing, and every gap is
    // explained by the filter's own count.
    let report = stack.collector.verify();
    assert!(report.problems.is_empty(), "{:?}", report.problems);
    let missing: u64 = report
        .explained
        .iter()
        .map(|g| g.seqs.1 - g.seqs.0 + 1)
        .sum();
    assert_eq!(missing, lost(&recs));
    eprintln!(
        "retries exhausted: {} calls, {} recorded, {} records lost in {} gap(s), each explained; {:?}",
        n + 3,
        kept.len(),
        lost(&recs),
        report.explained.len(),
        started.elapsed()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn full_buffer_drops_and_counts() {
    let started = Instant::now();
    let stack = stack(json!({ "buffer_max_records": 4, "on_buffer_full": "drop" })).await;
    stack.collector.set_fault(Fault::Status(503));
    let n = 12;
    for i in 0..n {
        assert_eq!(
            call(&stack, i).await.0,
            200,
            "drop mode keeps serving traffic"
        );
    }
    tokio::time::sleep(FAULT).await;
    stack.collector.set_fault(Fault::None);
    let dropped = |r: &[Value]| -> u64 {
        r.iter()
            .filter(|x| x["kind"] == "audit.dropped")
            .filter_map(|x| x["dropped"]["count"].as_u64())
            .sum()
    };
    let recs = stack
        .collector
        .wait_for_within("every call recorded or counted as dropped", SETTLE, |r| {
            msgs(r).len() as u64 + dropped(r) >= n as u64
        })
        .await
        .unwrap();
    let kept = msgs(&recs);
    let lost = dropped(&recs);
    assert_eq!(kept.len() as u64 + lost, n as u64);
    assert_eq!(
        kept,
        (0..4).collect::<Vec<_>>(),
        "the first four fit the buffer"
    );
    let reports: Vec<&Value> = recs
        .iter()
        .filter(|x| x["kind"] == "audit.dropped")
        .collect();
    assert!(
        reports
            .iter()
            .all(|x| x["dropped"]["reason"] == "buffer_full"),
        "{reports:?}"
    );
    assert_complete(&stack, kept.len() + reports.len(), lost);
    eprintln!(
        "drop: {n} calls, {} recorded, {lost} counted lost in {} audit.dropped record(s); {:?}",
        kept.len(),
        reports.len(),
        started.elapsed()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn full_buffer_rejects_requests_in_compliance_mode() {
    let started = Instant::now();
    let stack = stack(json!({ "buffer_max_records": 4, "on_buffer_full": "reject" })).await;
    stack.collector.set_fault(Fault::Status(500));
    let mut answers = Vec::new();
    for i in 0..7 {
        answers.push(call(&stack, i).await);
    }
    let statuses: Vec<u16> = answers.iter().map(|a| a.0).collect();
    assert_eq!(
        statuses,
        vec![200, 200, 200, 200, 503, 503, 503],
        "four recorded calls fill the buffer; then 503"
    );
    assert!(
        answers[4].1.contains("audit buffer full"),
        "{}",
        answers[4].1
    );
    stack.collector.set_fault(Fault::None);
    // Once the buffer drains, calls pass again.
    let deadline = Instant::now() + SETTLE;
    let mut next = 7;
    loop {
        let (status, _) = call(&stack, next).await;
        next += 1;
        if status == 200 {
            break;
        }
        assert_eq!(status, 503);
        assert!(
            Instant::now() < deadline,
            "calls still refused after the fault"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let recs = stack
        .collector
        .wait_for_within("the accepted calls", SETTLE, |r| msgs(r).len() >= 5)
        .await
        .unwrap();
    // Exactly the calls that were served are recorded; refused ones were not served.
    assert_eq!(msgs(&recs), vec![0, 1, 2, 3, next - 1]);
    assert!(
        recs.iter().all(|r| r["kind"] != "audit.dropped"),
        "nothing lost in reject mode"
    );
    assert_complete(&stack, 5, 0);
    eprintln!(
        "reject: {} calls answered 503 while the buffer was full; {:?}",
        next - 5,
        started.elapsed()
    );
}

/// Compliance mode under concurrency: calls admitted together must all be recorded (each
/// admitted request holds room in the buffer until its records come).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reject_mode_records_every_concurrent_call_it_admits() {
    let stack = stack(json!({ "buffer_max_records": 4, "on_buffer_full": "reject" })).await;
    stack.collector.set_fault(Fault::Status(500));
    let url = stack.mcp_url();
    let calls: Vec<_> = (0..10)
        .map(|i| {
            let url = url.clone();
            tokio::spawn(async move {
                // Slow calls, so that they overlap.
                let body = json!({
                    "jsonrpc": "2.0", "id": i, "method": "tools/call",
                    "params": { "name": "progress", "arguments": { "steps": 2, "delay_ms": 200 } }
                });
                reqwest::Client::new()
                    .post(url)
                    .header("content-type", "application/json")
                    .header("accept", "application/json, text/event-stream")
                    .header("mcp-protocol-version", "2025-06-18")
                    .body(body.to_string())
                    .send()
                    .await
                    .map(|r| r.status().as_u16())
                    .unwrap_or(0)
            })
        })
        .collect();
    let mut served = 0u64;
    for c in calls {
        if c.await.unwrap() == 200 {
            served += 1;
        }
    }
    stack.collector.set_fault(Fault::None);
    let recs = stack
        .collector
        .wait_for_within("the served calls, recorded or counted", SETTLE, |r| {
            let commands = r.iter().filter(|x| x["kind"] == "command").count() as u64;
            let dropped: u64 = r
                .iter()
                .filter_map(|x| x["dropped"]["count"].as_u64())
                .sum();
            commands + dropped >= served
        })
        .await
        .unwrap();
    assert!(
        recs.iter().all(|r| r["kind"] != "audit.dropped"),
        "reject mode served {served} calls but dropped records: {recs:?}"
    );
}
