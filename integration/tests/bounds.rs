//! Resource bounds through real Envoy (issue 9): bodies at and beyond `mcp.max_body_bytes`
//! and `auth.max_token_bytes`, an SSE event beyond the bound, 200 concurrent SSE streams, and
//! a 1 GiB SSE stream, with Envoy's memory (VmRSS/VmHWM of the process: one worker, so one
//! filter VM) read before and after. Figures are printed (`--nocapture`) and recorded in
//! docs/security.md.

use std::time::{Duration, Instant};

use mcptrail_integration::base_plugin_config;
use mcptrail_integration::scripted::Rig;
use serde_json::{json, Value};

fn call_body(id: u64, pad: usize) -> String {
    json!({"jsonrpc": "2.0", "id": id, "method": "tools/call",
           "params": {"name": "work", "arguments": {"pad": "p".repeat(pad)}}})
    .to_string()
}

/// A `tools/call` body of exactly `len` bytes.
fn body_of_len(id: u64, len: usize) -> String {
    let base = call_body(id, 0).len();
    let b = call_body(id, len - base);
    assert_eq!(b.len(), len);
    b
}

async fn post(rig: &Rig, body: String, fault: &str, token: Option<&str>) -> (u16, usize) {
    let mut req = reqwest::Client::new()
        .post(format!("{}/mcp", rig.envoy.url()))
        .header("content-type", "application/json")
        .header("accept", "application/json, text/event-stream")
        .header("x-fault", fault)
        .body(body);
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    let mut r = req.send().await.unwrap();
    let status = r.status().as_u16();
    // Counted as it arrives: a long answer is not held in the test's memory.
    let mut bytes = 0;
    while let Ok(Some(c)) = r.chunk().await {
        bytes += c.len();
    }
    (status, bytes)
}

fn by_id(recs: &[Value], kind: &str, id: u64) -> Option<Value> {
    recs.iter()
        .find(|r| r["kind"] == kind && r["mcp"]["id"] == id)
        .cloned()
}

const BOUND: usize = 64 * 1024;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bodies_at_and_beyond_the_bounds() {
    let mut cfg = base_plugin_config();
    cfg["mcp"]["max_body_bytes"] = json!(BOUND);
    let rig = Rig::start(cfg, None).await.unwrap();

    // A request exactly at the bound is decoded; one byte more passes through undecoded,
    // with a decode.error saying why.
    assert_eq!(post(&rig, body_of_len(1, BOUND), "ok", None).await.0, 200);
    assert_eq!(
        post(&rig, body_of_len(2, BOUND + 1), "ok", None).await.0,
        200
    );
    // A JSON answer beyond the bound reaches the client whole; it is not decoded.
    let (status, got) = post(&rig, call_body(3, 10), &format!("json:{}", 2 * BOUND), None).await;
    assert_eq!((status, got > 2 * BOUND - 200), (200, true));
    // An SSE event beyond the bound is reported, and the reply after it still matched.
    let (status, got) = post(
        &rig,
        call_body(4, 10),
        &format!("bigevent:{}", 2 * BOUND),
        None,
    )
    .await;
    assert_eq!((status, got > 2 * BOUND), (200, true));
    let recs = rig
        .collector
        .wait_for("records for ids 1, 3, 4 and three decode errors", |r| {
            by_id(r, "command", 1).is_some()
                && by_id(r, "command", 3).is_some()
                && by_id(r, "command", 4).is_some()
                && r.iter().filter(|r| r["kind"] == "decode.error").count() >= 3
        })
        .await
        .unwrap();
    let one = by_id(&recs, "command", 1).unwrap();
    assert_eq!(one["outcome"]["status"], "ok");
    assert_eq!(
        one["mcp"]["arguments"]["pad"].as_str().unwrap().len(),
        BOUND - call_body(1, 0).len()
    );
    assert!(by_id(&recs, "command", 2).is_none(), "id 2 was not decoded");
    let reasons: Vec<&str> = recs
        .iter()
        .filter(|r| r["kind"] == "decode.error")
        .map(|r| r["reason"].as_str().unwrap_or(""))
        .collect();
    assert!(
        reasons
            .iter()
            .any(|r| r.starts_with("request body larger than mcp.max_body_bytes")),
        "{reasons:?}"
    );
    assert!(
        reasons
            .iter()
            .any(|r| r.contains("JSON response larger than mcp.max_body_bytes")),
        "{reasons:?}"
    );
    assert!(
        reasons
            .iter()
            .any(|r| r.contains("an SSE event exceeded mcp.max_body_bytes")),
        "{reasons:?}"
    );
    let three = by_id(&recs, "command", 3).unwrap();
    // Recorded as observed: the answer was delivered, its reply could not be read.
    eprintln!("JSON answer beyond the bound: outcome {}", three["outcome"]);
    assert_eq!(three["outcome"]["http_status"], 200);
    let four = by_id(&recs, "command", 4).unwrap();
    assert_eq!(four["outcome"]["status"], "ok", "{four}");

    // With a policy that can deny, a body the policy cannot read is refused (413).
    let mut cfg = base_plugin_config();
    cfg["mcp"]["max_body_bytes"] = json!(BOUND);
    cfg["policy"] = json!({"rules": [{"tools": ["delete_*"], "action": "deny"}]});
    cfg["auth"] = json!({"mode": "optional", "max_token_bytes": 4096, "providers": [{
        "issuer": "https://idp.test", "audiences": ["a"],
        "shared_secret": "YS1zaGFyZWQtc2VjcmV0LW9mLTMyLWJ5dGVzLWxvbmch", "algorithms": ["HS256"]}]});
    let held = rig_with(cfg).await;
    assert_eq!(post(&held, body_of_len(5, BOUND), "ok", None).await.0, 200);
    assert_eq!(
        post(&held, body_of_len(6, BOUND + 1), "ok", None).await.0,
        413
    );
    // A token beyond auth.max_token_bytes is refused before any parsing.
    let long = format!(
        "{}.{}.{}",
        "a".repeat(2000),
        "b".repeat(2000),
        "c".repeat(100)
    );
    assert_eq!(post(&held, call_body(7, 0), "ok", Some(&long)).await.0, 401);
    assert_eq!(
        held.up.requests(),
        1,
        "only the request within bounds went upstream"
    );
    let recs = held
        .collector
        .wait_for("the 413 and the long token", |r| {
            r.iter().any(|r| r["outcome"]["http_status"] == 413)
                && r.iter().any(|r| r["auth"]["error"] == "token_too_large")
        })
        .await
        .unwrap();
    assert!(recs
        .iter()
        .any(|r| r["kind"] == "decode.error" && r["outcome"]["http_status"] == 413));
    for r in [&rig, &held] {
        let report = r.collector.verify();
        assert!(report.problems.is_empty(), "{:?}", report.problems);
    }
}

async fn rig_with(cfg: Value) -> Rig {
    Rig::start(cfg, None).await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_hundred_concurrent_sse_streams() {
    let mut cfg = base_plugin_config();
    cfg["audit"]["batch_max_records"] = json!(500);
    let rig = Rig::start(cfg, None).await.unwrap();
    // Warm up (VM, connections), then measure.
    assert_eq!(post(&rig, call_body(0, 0), "sse:3", None).await.0, 200);
    let (rss0, hwm0) = rig.envoy.memory_kib();
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(256)
        .build()
        .unwrap();
    let url = format!("{}/mcp", rig.envoy.url());
    let start = Instant::now();
    let mut tasks = Vec::new();
    for id in 1..=200u64 {
        let (client, url) = (client.clone(), url.clone());
        tasks.push(tokio::spawn(async move {
            let r = client
                .post(url)
                .header("content-type", "application/json")
                .header("accept", "application/json, text/event-stream")
                .header("x-fault", "drip:50")
                .body(call_body(id, 0))
                .send()
                .await
                .unwrap();
            let status = r.status().as_u16();
            let body = r.text().await.unwrap_or_default();
            (status, body.contains("\"result\""))
        }));
    }
    let mut peak_during = 0;
    while !tasks.iter().all(|t| t.is_finished()) {
        peak_during = peak_during.max(rig.envoy.memory_kib().0);
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    for t in tasks {
        assert_eq!(t.await.unwrap(), (200, true));
    }
    let took = start.elapsed();
    let recs = rig
        .collector
        .wait_for("200 commands", |r| {
            (1..=200).all(|id| by_id(r, "command", id).is_some())
        })
        .await
        .unwrap();
    for id in 1..=200 {
        let rec = by_id(&recs, "command", id).unwrap();
        assert_eq!(rec["outcome"]["status"], "ok", "{rec}");
        assert_eq!(rec["outcome"]["notifications"], 50);
    }
    let (rss1, hwm1) = rig.envoy.memory_kib();
    eprintln!(
        "200 concurrent SSE streams (50 events over 1 s each) in {took:?}: Envoy RSS {rss0} KiB before, \
         {peak_during} KiB peak sampled during, {rss1} KiB after; VmHWM {hwm0} -> {hwm1} KiB"
    );
    assert!(
        hwm1 - hwm0 < 128 * 1024,
        "Envoy grew by {} KiB",
        hwm1 - hwm0
    );
    let report = rig.collector.verify();
    assert!(report.problems.is_empty(), "{:?}", report.problems);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_1_gib_sse_stream_keeps_memory_flat() {
    let rig = Rig::start(base_plugin_config(), None).await.unwrap();
    let mut figures = Vec::new();
    for (id, mb) in [(1u64, 10usize), (2, 1024)] {
        let start = Instant::now();
        let (status, got) = post(&rig, call_body(id, 0), &format!("bulk:{}", mb << 20), None).await;
        let secs = start.elapsed().as_secs_f64();
        assert_eq!(status, 200);
        assert!(got >= mb << 20, "{got} bytes");
        let (rss, hwm) = rig.envoy.memory_kib();
        figures.push((mb, secs, got, rss, hwm));
        eprintln!(
            "{mb} MB SSE answer: {got} bytes in {secs:.2} s ({:.0} MB/s), Envoy VmRSS {rss} KiB, VmHWM {hwm} KiB",
            got as f64 / secs / 1e6
        );
    }
    let recs = rig
        .collector
        .wait_for("both streams recorded", |r| {
            by_id(r, "command", 1).is_some() && by_id(r, "command", 2).is_some()
        })
        .await
        .unwrap();
    let big = by_id(&recs, "command", 2).unwrap();
    assert_eq!(big["outcome"]["status"], "ok", "{big}");
    assert!(big["outcome"]["response_bytes"].as_u64().unwrap() >= 1 << 30);
    assert_eq!(
        big["outcome"]["notifications"].as_u64().unwrap(),
        (1u64 << 30).div_ceil(16 * 1024)
    );
    // A hundred times the stream, no more memory: bounded by the event, not the stream.
    let (small, long) = (figures[0].4, figures[1].4);
    assert!(
        long < small + 32 * 1024,
        "VmHWM grew from {small} to {long} KiB between a 10 MB and a 1 GiB stream"
    );
}
