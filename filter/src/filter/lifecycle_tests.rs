//! A VM going away (`on_done`): what it holds is shipped before it reports done, its stream
//! ends with `audit.closed`, and what it gives up is said; signed checkpoints on the tick.

#[cfg(all(target_arch = "wasm32", target_os = "unknown"))]
use wasm_bindgen_test::wasm_bindgen_test as test;

use serde_json::Value;

use super::*;
use crate::audit::chain::Verifier;
use crate::host::fake::FakeHost;
use crate::testkit::exchange::Exchange;

/// A seed for tests only.
const SEED: [u8; 32] = [7; 32];

/// A minute between flushes unless `extra` sets it: records stay held.
fn config(extra: &str) -> String {
    let flush = if extra.contains("flush_interval_ms") {
        ""
    } else {
        r#","flush_interval_ms":60000"#
    };
    format!(
        r#"{{"audit":{{"cluster":"c","hmac_key":"c2VjcmV0LWtleS1mb3ItZGVtby1vbmx5"{flush}{extra}}},"mcp":{{"paths":["/mcp"]}}}}"#
    )
}

fn root(host: &FakeHost, cfg: &str) -> Root {
    let mut r = Root::default();
    assert!(r.configure(host, cfg.as_bytes()));
    r
}

fn calls(host: &FakeHost, r: &Root, n: u32) {
    for i in 0..n {
        let body = format!(
            r#"{{"jsonrpc":"2.0","id":{i},"method":"tools/call","params":{{"name":"t","arguments":{{}}}}}}"#
        );
        let reply = format!(r#"{{"jsonrpc":"2.0","id":{i},"result":{{"content":[]}}}}"#);
        host.exchange(
            r,
            &Exchange {
                body: &body,
                chunks: &[reply.as_bytes()],
                ..Exchange::default()
            },
        );
    }
}

/// Answers every callout so far with `status`.
fn answer(host: &FakeHost, r: &mut Root, status: &str) {
    let n = host.calls.borrow().len() as u32;
    host.set_header(Headers::CallResponse, ":status", status);
    r.on_http_call_response(host, n, 1, 0);
}

fn shipped_lines(host: &FakeHost) -> Vec<String> {
    host.calls
        .borrow()
        .iter()
        .flat_map(|c| {
            String::from_utf8_lossy(&c.body)
                .lines()
                .map(str::to_string)
                .collect::<Vec<_>>()
        })
        .collect()
}

#[test]
fn a_vm_going_away_ships_what_it_holds_and_closes_its_stream() {
    let host = FakeHost::default();
    let mut r = root(&host, &config(r#","batch_max_records":4"#));
    calls(&host, &r, 10);
    assert!(
        host.calls.borrow().is_empty(),
        "held: the flush is a minute away"
    );
    assert!(!r.on_done(&host), "records held: not done yet");
    // Batches go one after another as each is acknowledged, without the flush interval.
    for _ in 0..3 {
        answer(&host, &mut r, "200");
    }
    assert!(
        host.done.get(),
        "proxy_done once the last batch is acknowledged"
    );
    assert_eq!(
        host.calls.borrow().len(),
        3,
        "10 records and the close, 4 a batch"
    );
    let lines = shipped_lines(&host);
    assert_eq!(lines.len(), 11);
    let last: Value = serde_json::from_str(lines.last().unwrap()).unwrap();
    assert_eq!(last["kind"], "audit.closed");
    assert_eq!(last["checkpoint"]["seq"], 10);
    assert_eq!(last["checkpoint"]["emitted"], 10);
    assert_eq!(last["checkpoint"]["dropped"], 0);
    let mut v = Verifier::new(Some(b"secret-key-for-demo-only".to_vec()));
    for (i, l) in lines.iter().enumerate() {
        v.feed(i + 1, l);
    }
    v.finish();
    assert!(v.problems().is_empty(), "{:?}", v.problems());
    assert!(v.summary()[0].closed);
    assert!(host.logged("shipping 11 held records"));
}

#[test]
fn a_collector_down_at_shutdown_gives_a_said_loss_within_the_bound() {
    let host = FakeHost::default();
    let mut r = root(
        &host,
        &config(r#","shutdown_timeout_ms":2000,"max_retries":0"#),
    );
    calls(&host, &r, 3);
    assert!(!r.on_done(&host));
    for _ in 0..5 {
        answer(&host, &mut r, "503");
        host.advance(300);
        r.on_tick(&host);
    }
    assert!(!host.done.get(), "still within the bound, still trying");
    host.advance(1000);
    r.on_tick(&host);
    assert!(host.done.get(), "done when the time is up");
    assert!(
        host.logged("gave up 4 undelivered records"),
        "{:?}",
        host.logs.borrow()
    );
}

#[test]
fn an_idle_vm_closes_its_stream_too() {
    let host = FakeHost::default();
    let mut r = root(&host, &config(""));
    assert!(!r.on_done(&host), "the close itself is shipped");
    answer(&host, &mut r, "200");
    assert!(host.done.get());
    let lines = shipped_lines(&host);
    assert_eq!(lines.len(), 1);
    let closed: Value = serde_json::from_str(&lines[0]).unwrap();
    assert_eq!(closed["kind"], "audit.closed");
    assert_eq!(closed["checkpoint"]["seq"], 0);
    assert_eq!(closed["checkpoint"]["head"], crate::audit::chain::ZERO_HEX);
}

#[test]
fn records_after_the_close_are_followed_by_another_close() {
    let host = FakeHost::default();
    let mut r = root(&host, &config(""));
    calls(&host, &r, 1);
    assert!(!r.on_done(&host));
    // A stream that was still running ends now.
    calls(&host, &r, 1);
    answer(&host, &mut r, "200");
    answer(&host, &mut r, "200");
    assert!(host.done.get());
    let kinds: Vec<String> = shipped_lines(&host)
        .iter()
        .map(|l| {
            serde_json::from_str::<Value>(l).unwrap()["kind"]
                .as_str()
                .unwrap()
                .to_string()
        })
        .collect();
    assert_eq!(
        kinds,
        ["command", "audit.closed", "command", "audit.closed"]
    );
}

#[test]
fn signed_checkpoints_come_on_the_tick_and_verify_with_the_public_key() {
    use base64::Engine as _;
    let host = FakeHost::default();
    let seed = base64::engine::general_purpose::STANDARD.encode(SEED);
    let cfg = config(&format!(
        r#","flush_interval_ms":100,"signing_key":"{seed}","checkpoint_interval_s":60"#
    ));
    let mut r = root(&host, &cfg);
    calls(&host, &r, 3);
    host.advance(60_000);
    r.on_tick(&host);
    answer(&host, &mut r, "200");
    // Nothing new: no checkpoint for nothing.
    host.advance(60_000);
    r.on_tick(&host);
    calls(&host, &r, 2);
    assert!(!r.on_done(&host));
    for _ in 0..3 {
        answer(&host, &mut r, "200");
    }
    assert!(host.done.get());
    let lines = shipped_lines(&host);
    let recs: Vec<Value> = lines
        .iter()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let kinds: Vec<&str> = recs.iter().map(|r| r["kind"].as_str().unwrap()).collect();
    assert_eq!(
        kinds,
        [
            "audit.checkpoint",
            "command",
            "command",
            "command",
            "audit.checkpoint",
            "command",
            "command",
            "audit.closed"
        ],
        "a signed stream announces itself, then a checkpoint each interval with news"
    );
    assert_eq!(recs[0]["checkpoint"]["seq"], 0);
    assert_eq!(recs[4]["checkpoint"]["seq"], 4);
    let public = ed25519_dalek::SigningKey::from_bytes(&SEED).verifying_key();
    let verify = |lines: &[String]| {
        let mut v = Verifier::new(None).with_public_key(public);
        for (i, l) in lines.iter().enumerate() {
            v.feed(i + 1, l);
        }
        v.finish();
        v
    };
    let v = verify(&lines);
    assert!(v.problems().is_empty(), "{:?}", v.problems());
    assert_eq!(v.summary()[0].signed_seq, 7, "signed to its end");
    // Without the MAC key an editor can rewrite a record and re-link the chain; the signed
    // checkpoint after it still names the original head.
    let mut forged = lines.clone();
    forged[1] = forged[1].replace("\"t\"", "\"x\"");
    let mut chain = crate::audit::chain::Chain::new(
        recs[0]["chain"]["stream"].as_str().unwrap().to_string(),
        Some(b"secret-key-for-demo-only".to_vec()),
    );
    let relinked: Vec<String> = forged
        .iter()
        .map(|l| {
            let body = l.split(",\"chain\":").next().unwrap().to_string() + "}";
            chain.seal(body)
        })
        .collect();
    let v = verify(&relinked);
    assert!(
        v.problems()
            .iter()
            .any(|p| p.message.contains("does not match the records before it")),
        "{:?}",
        v.problems()
    );
    // Another key's signature is refused.
    let other = ed25519_dalek::SigningKey::from_bytes(&[9; 32]).verifying_key();
    let mut v = Verifier::new(None).with_public_key(other);
    for (i, l) in lines.iter().enumerate() {
        v.feed(i + 1, l);
    }
    assert!(v
        .problems()
        .iter()
        .any(|p| p.message.contains("bad signature")));
}

#[test]
fn a_local_drain_closes_every_worker_so_the_stop_finds_nothing_held() {
    let host = FakeHost::default();
    let (mut w1, mut w2) = (root(&host, &config("")), root(&host, &config("")));
    calls(&host, &w1, 2);
    calls(&host, &w2, 3);
    let drain = |w: &Root, from: &str| {
        host.properties
            .borrow_mut()
            .insert("source.address".into(), from.as_bytes().to_vec());
        let replies = host.responses.borrow().len();
        host.exchange(
            w,
            &Exchange {
                headers: &[(":path", "/.well-known/mcptrail/drain")],
                body: "",
                ..Exchange::default()
            },
        );
        let r = host.responses.borrow();
        assert_eq!(r.len(), replies + 1, "answered by the filter");
        r.last().map(|r| r.0).unwrap()
    };
    assert_eq!(
        drain(&w1, "10.1.2.3:5555"),
        403,
        "only from the host itself"
    );
    // (The first tick after configuration flushes; then a minute between flushes.)
    let tick_and_answer = |w: &mut Root| {
        let before = host.calls.borrow().len();
        w.on_tick(&host);
        if host.calls.borrow().len() > before {
            answer(&host, w, "200");
        }
    };
    host.advance(100);
    tick_and_answer(&mut w1);
    tick_and_answer(&mut w2);
    calls(&host, &w2, 1);
    host.advance(100);
    tick_and_answer(&mut w2);
    assert_eq!(shipped_lines(&host).len(), 5, "the sixth call is held");
    assert_eq!(drain(&w1, "127.0.0.1:40000"), 202);
    host.advance(100);
    tick_and_answer(&mut w1);
    tick_and_answer(&mut w2);
    let lines = shipped_lines(&host);
    let closes = lines
        .iter()
        .filter(|l| l.contains("\"audit.closed\""))
        .count();
    assert_eq!(
        (lines.len(), closes),
        (8, 2),
        "6 calls and a close per worker"
    );
    // The stop: nothing held, nothing more to write.
    assert!(w1.on_done(&host) && w2.on_done(&host), "done at once");
    assert_eq!(shipped_lines(&host).len(), 8);
    assert!(drain(&w2, "[::1]:1") == 202);
}
