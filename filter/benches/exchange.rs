//! One whole `tools/call` exchange through the glue (request headers and body, answer headers
//! and body, log, a shipped batch every 100 calls), natively through the fake host, for the
//! depth ladder of `make bench`. Host calls cost nothing here; `make bench-v8` runs the same
//! code in V8. `perf record` on this bench shows where the filter's own time goes.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]
use criterion::{criterion_group, criterion_main, Criterion};

mod support;
use support::exchange::{Reply, Rig, Traffic};

fn exchange(c: &mut Criterion) {
    let (traffic, depths) = Traffic::new();
    let mut group = c.benchmark_group("exchange_1k_tools_call");
    for d in depths {
        let mut rig = Rig::new(d.name, &d.config);
        group.bench_function(d.name, |b| b.iter(|| rig.exchange(&traffic)));
    }
    group.finish();
    // `make bench`'s large answers, at the depths where they cost.
    for (name, reply, picked) in [
        ("exchange_64k_json", Reply::Json64k, ["full", "+mask"]),
        (
            "exchange_sse_100_events",
            Reply::Sse100,
            ["auth+decode", "+mask"],
        ),
    ] {
        let (traffic, depths) = Traffic::with(reply);
        let mut group = c.benchmark_group(name);
        for d in depths.into_iter().filter(|d| picked.contains(&d.name)) {
            let mut rig = Rig::new(d.name, &d.config);
            group.bench_function(d.name, |b| b.iter(|| rig.exchange(&traffic)));
        }
        group.finish();
    }
}

criterion_group!(benches, exchange);
criterion_main!(benches);
