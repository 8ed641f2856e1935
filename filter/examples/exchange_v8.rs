//! The criterion exchange bench's workload, timed in a plain loop so it runs compiled to
//! `wasm32-wasip1` under Node's V8, the engine Envoy embeds: the filter's own cost per call
//! in V8, without Envoy's host calls (`make bench-v8`). Natively it runs too, for the ratio.
//!
//! Arguments pick what runs: depth names (`full`, `+mask`, ...), `checkpoint`, or a named
//! workload of `make bench` with its depths: `json64k` (the 64 KB JSON answer: `full`,
//! `+mask`) and `sse100` (100 SSE events: `auth+decode`, `+mask`, `full`); depth names given
//! with a workload restrict it to them (`json64k full`). Without arguments: checkpoints and
//! the 1 KB answer at every depth.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]
use std::time::Instant;

#[path = "../benches/support/exchange.rs"]
mod exchange;
use exchange::{Reply, Rig, Traffic};

/// µs per checkpoint record (sealed into the chain), signed or not: the cost the root's tick
/// pays every `audit.checkpoint_interval_s`, never a request.
fn checkpoints() {
    use mcptrail::audit::outbox::Outbox;
    use mcptrail::config::Config;
    for (name, key) in [
        ("checkpoint unsigned", ""),
        (
            "checkpoint signed",
            r#","signing_key":"KioqKioqKioqKioqKioqKioqKioqKioqKioqKioqKio=""#,
        ),
    ] {
        let json = format!(
            r#"{{"audit":{{"cluster":"c","hmac_key":"c2VjcmV0LWtleS1mb3ItZGVtby1vbmx5"{key}}}}}"#
        );
        let config = Config::parse(json.as_bytes()).unwrap();
        let mut outbox = Outbox::new(config.audit.clone(), "00000000000000aa".into(), 1);
        let t = Instant::now();
        let n = 2_000u64;
        for i in 0..n {
            outbox.checkpoint(1_800_000_000_000 + i);
            // Keep the buffer from filling (what shipping does).
            while outbox.next_send(0, true).is_some() {
                outbox.on_result(true, 0);
            }
        }
        println!(
            "{name:<24} {:>8.2} µs per checkpoint",
            t.elapsed().as_secs_f64() * 1e6 / n as f64
        );
    }
}

/// Runs `traffic` through each depth `pick` names, printing µs per exchange and host calls.
fn run(label: &str, kind: Reply, rounds_of: u32, pick: &dyn Fn(&str) -> bool) {
    let (traffic, depths) = if kind == Reply::Json1k {
        Traffic::new()
    } else {
        Traffic::with(kind)
    };
    for d in depths {
        let name = d.name;
        if !pick(name) {
            continue;
        }
        let mut rig = Rig::new(name, &d.config);
        for _ in 0..rounds_of / 2 {
            rig.exchange(&traffic);
        }
        // Median of 5 rounds.
        let mut rounds: Vec<f64> = (0..5)
            .map(|_| {
                let t = Instant::now();
                for _ in 0..rounds_of {
                    rig.exchange(&traffic);
                }
                t.elapsed().as_secs_f64() * 1e6 / f64::from(rounds_of)
            })
            .collect();
        rounds.sort_by(f64::total_cmp);
        // Host calls of one exchange (a batch shipped every 100 adds a few, not counted).
        rig.host.host_calls.borrow_mut().clear();
        rig.exchange(&traffic);
        let calls = rig.host.host_calls.borrow();
        let list: Vec<String> = calls.iter().map(|(m, n)| format!("{m} {n}")).collect();
        let name = format!("{label}{name}");
        println!(
            "{name:<24} {:>8.2} µs per exchange, {:>2} host calls ({})",
            rounds[2],
            rig.host.host_call_total(),
            list.join(", ")
        );
    }
}

fn main() {
    let only: Vec<String> = std::env::args().skip(1).collect();
    let named = |o: &str| only.iter().any(|x| x == o);
    if only.is_empty() || named("checkpoint") {
        checkpoints();
    }
    let workloads = ["checkpoint", "json64k", "sse100"];
    // Depths named on the command line restrict every workload to them.
    let depths_named = only.iter().any(|o| !workloads.contains(&o.as_str()));
    let pick = |defaults: &[&str], name: &str| {
        if depths_named {
            named(name)
        } else {
            defaults.is_empty() || defaults.contains(&name)
        }
    };
    // The 1 KB answer: every depth, or those named.
    if only.is_empty() || depths_named && !named("json64k") && !named("sse100") {
        run("", Reply::Json1k, 4_000, &|name| pick(&[], name));
    }
    if named("json64k") {
        run("64k ", Reply::Json64k, 200, &|name| {
            pick(&["full", "+mask"], name)
        });
    }
    if named("sse100") {
        let defaults = ["auth+decode", "+mask", "full"];
        run("sse100 ", Reply::Sse100, 1_000, &|name| {
            pick(&defaults, name)
        });
    }
}
