//! The criterion exchange bench's workload, timed in a plain loop so it runs compiled to
//! `wasm32-wasip1` under Node's V8, the engine Envoy embeds: the filter's own cost per call
//! in V8, without Envoy's host calls (`make bench-v8`). Natively it runs too, for the ratio.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]
use std::time::Instant;

#[path = "../benches/support/exchange.rs"]
mod exchange;
use exchange::{Rig, Traffic};

fn main() {
    let only: Vec<String> = std::env::args().skip(1).collect();
    let (traffic, depths) = Traffic::new();
    for d in depths {
        let name = d.name;
        if !only.is_empty() && !only.iter().any(|o| o == name) {
            continue;
        }
        let mut rig = Rig::new(name, &d.config);
        for _ in 0..2_000 {
            rig.exchange(&traffic);
        }
        // Median of 5 rounds of 4,000 calls.
        let mut rounds: Vec<f64> = (0..5)
            .map(|_| {
                let t = Instant::now();
                for _ in 0..4_000 {
                    rig.exchange(&traffic);
                }
                t.elapsed().as_secs_f64() * 1e6 / 4_000.0
            })
            .collect();
        rounds.sort_by(f64::total_cmp);
        // Host calls of one exchange (a batch shipped every 100 adds a few, not counted).
        rig.host.host_calls.borrow_mut().clear();
        rig.exchange(&traffic);
        let calls = rig.host.host_calls.borrow();
        let list: Vec<String> = calls.iter().map(|(m, n)| format!("{m} {n}")).collect();
        println!(
            "{name:<24} {:>8.2} µs per exchange, {:>2} host calls ({})",
            rounds[2],
            rig.host.host_call_total(),
            list.join(", ")
        );
    }
}
