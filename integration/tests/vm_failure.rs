//! What Envoy does when the filter's VM fails, under each `failure_policy` (issue 9).
//!
//! The production filter has no way to make itself trap, and gets none: this test runs a
//! separate, test-only proxy-wasm module (WAT below) in the same filter slot, with the same
//! Envoy wiring as mcptrail (`integration/src/envoy.rs`). It answers 299 itself when a request
//! carries `x-wasm-ping` (so a test can tell the VM is alive), executes `unreachable` (a trap,
//! as a Rust panic with `panic = "abort"` is) when it carries `x-trap`, and lets everything
//! else through. Observed on Envoy 1.40 (also recorded in docs/security.md):
//! - `FAIL_CLOSED`: the request that trapped gets 503, and so does every later request on that
//!   worker: the VM stays dead until Envoy is restarted or the filter reconfigured;
//! - `FAIL_OPEN`: the request that trapped gets 503; every later one goes upstream without
//!   the filter: no auth, no policy, no records;
//! - `FAIL_RELOAD`: the trapping request gets 503; the VM is recreated and serves again.

use std::time::{Duration, Instant};

use mcptrail_integration::envoy::{EnvoySpec, Upstream};
use mcptrail_integration::scripted::Scripted;
use mcptrail_integration::Envoy;
use serde_json::json;

const TRAP_MODULE: &str = r#"
(module
  (import "env" "proxy_get_header_map_value"
    (func $get (param i32 i32 i32 i32 i32) (result i32)))
  (import "env" "proxy_send_local_response"
    (func $reply (param i32 i32 i32 i32 i32 i32 i32 i32) (result i32)))
  (memory (export "memory") 16)
  (data (i32.const 1024) "x-trap")
  (data (i32.const 1040) "x-wasm-ping")
  (data (i32.const 1056) "alive")
  (global $heap (mut i32) (i32.const 65536))
  (func (export "proxy_abi_version_0_2_1"))
  (func (export "proxy_on_memory_allocate") (param $size i32) (result i32)
    (local $p i32)
    (local.set $p (global.get $heap))
    (global.set $heap
      (i32.and (i32.add (i32.add (global.get $heap) (local.get $size)) (i32.const 7))
               (i32.const -8)))
    ;; Reuse the heap: the tests make few calls, each value is read at once.
    (if (i32.gt_u (global.get $heap) (i32.const 900000))
      (then (global.set $heap (i32.const 65536))))
    (local.get $p))
  (func (export "proxy_on_vm_start") (param i32 i32) (result i32) (i32.const 1))
  (func (export "proxy_on_configure") (param i32 i32) (result i32) (i32.const 1))
  (func (export "proxy_on_context_create") (param i32 i32))
  (func (export "proxy_on_request_headers") (param i32 i32 i32) (result i32)
    (if (i32.eqz (call $get (i32.const 0) (i32.const 1024) (i32.const 6)
                            (i32.const 2048) (i32.const 2052)))
      (then unreachable))
    (if (i32.eqz (call $get (i32.const 0) (i32.const 1040) (i32.const 11)
                            (i32.const 2048) (i32.const 2052)))
      (then
        (drop (call $reply (i32.const 299) (i32.const 0) (i32.const 0)
                           (i32.const 1056) (i32.const 5) (i32.const 0) (i32.const 0)
                           (i32.const -1)))
        (return (i32.const 1))))
    (i32.const 0))
  (func (export "proxy_on_done") (param i32) (result i32) (i32.const 1))
  (func (export "proxy_on_log") (param i32))
  (func (export "proxy_on_delete") (param i32))
)
"#;

async fn get(envoy: &Envoy, header: Option<&str>) -> u16 {
    let mut req = reqwest::Client::new()
        .post(format!("{}/mcp", envoy.url()))
        .header("content-type", "application/json")
        .body(r#"{"jsonrpc":"2.0","id":1,"method":"ping"}"#);
    if let Some(h) = header {
        req = req.header(h, "1");
    }
    match req.send().await {
        Ok(r) => r.status().as_u16(),
        Err(_) => 0,
    }
}

struct Seen {
    trapping: u16,
    after: Vec<u16>,
    upstream_after: u64,
    recovered_in: Option<Duration>,
}

async fn run(policy: &str) -> Seen {
    let dir = tempfile::tempdir().unwrap();
    let module = dir.path().join("trap.wasm");
    std::fs::write(&module, wat::parse_str(TRAP_MODULE).unwrap()).unwrap();
    let up = Scripted::start().await.unwrap();
    let mut spec = EnvoySpec::new(module, json!({}), Upstream::one("mcp_server", up.addr));
    spec.failure_policy = policy.into();
    let envoy = tokio::task::block_in_place(|| Envoy::start(&spec, 1)).unwrap();
    assert_eq!(
        get(&envoy, Some("x-wasm-ping")).await,
        299,
        "the VM answers"
    );
    assert_eq!(get(&envoy, None).await, 200, "and lets requests through");
    let before = up.requests();
    let trapping = get(&envoy, Some("x-trap")).await;
    let mut after = Vec::new();
    let start = Instant::now();
    let mut recovered_in = None;
    while start.elapsed() < Duration::from_secs(5) {
        let s = get(&envoy, Some("x-wasm-ping")).await;
        after.push(s);
        if s == 299 {
            recovered_in = Some(start.elapsed());
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let log = envoy.log();
    assert!(
        log.contains("unreachable") || log.contains("Function: proxy_on_request_headers failed"),
        "Envoy logs the trap:\n{log}"
    );
    Seen {
        trapping,
        after,
        upstream_after: up.requests() - before,
        recovered_in,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fail_closed_refuses_until_restart() {
    let s = run("FAIL_CLOSED").await;
    assert_eq!(s.trapping, 503);
    assert!(s.recovered_in.is_none(), "{:?}", s.after);
    assert!(s.after.iter().all(|&c| c == 503), "{:?}", s.after);
    assert_eq!(s.upstream_after, 0, "nothing passes unfiltered");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fail_open_serves_without_the_filter() {
    let s = run("FAIL_OPEN").await;
    assert_eq!(
        s.trapping, 503,
        "the request that trapped is failed, even so"
    );
    assert!(s.recovered_in.is_none(), "{:?}", s.after);
    assert!(s.after.iter().all(|&c| c == 200), "{:?}", s.after);
    assert!(
        s.upstream_after >= 1,
        "unfiltered traffic reaches the server"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fail_reload_restarts_the_vm() {
    let s = run("FAIL_RELOAD").await;
    assert_eq!(s.trapping, 503);
    let took = s
        .recovered_in
        .unwrap_or_else(|| panic!("no new VM: {:?}", s.after));
    eprintln!(
        "FAIL_RELOAD: VM back after {took:?}; answers meanwhile {:?}",
        s.after
    );
    assert!(
        s.after.iter().all(|&c| c == 503 || c == 299),
        "{:?}",
        s.after
    );
    assert_eq!(s.upstream_after, 0, "nothing passes unfiltered");
}
