//! Metrics in Envoy's `/stats` (and `/stats/prometheus`): counted in plain memory where things
//! happen and published to the host on the root's tick, so the data path makes no host call
//! for them.
//!
//! Envoy shows them as `wasmcustom.mcptrail.*`. Gauges move by deltas, so across the VMs of
//! all workers they add up (buffer depth and memory of the whole process).

use std::collections::{BTreeMap, HashMap};

use crate::audit::outbox::Stats;
use crate::auth::AuthStats;
use crate::host::{Host, Level, MetricKind};

/// Things counted by streams and the root between ticks.
#[derive(Debug, Default)]
pub struct Counters {
    /// Requests in scope (decoded and recorded).
    pub requests: u64,
    /// `auth.denied` records by error code.
    pub auth_denied: BTreeMap<String, u64>,
    pub policy_denied: u64,
    pub decode_errors: u64,
    /// Audit callouts refused at dispatch, answered non-2xx, reset or timed out.
    pub callout_failures: u64,
    /// Server messages and resumed replies recorded as they came.
    pub redelivered_skipped: u64,
    /// Approval checks sent (`review` rules), and those that failed (refused calls).
    pub approval_checks: u64,
    pub approval_failures: u64,
}

/// One value to publish.
pub struct Sample {
    pub name: String,
    pub kind: MetricKind,
    pub value: u64,
}

impl Sample {
    fn counter(name: &str, value: u64) -> Self {
        Self {
            name: format!("mcptrail.{name}"),
            kind: MetricKind::Counter,
            value,
        }
    }

    fn gauge(name: &str, value: u64) -> Self {
        Self {
            name: format!("mcptrail.{name}"),
            kind: MetricKind::Gauge,
            value,
        }
    }
}

/// Everything worth publishing, from the outbox's totals and the counters.
pub fn samples(
    stats: &Stats,
    auth: &AuthStats,
    buffered: usize,
    sessions: usize,
    memory: u64,
    c: &Counters,
) -> Vec<Sample> {
    let mut v = vec![
        Sample::counter("requests", c.requests),
        Sample::counter("records_emitted", stats.emitted),
        Sample::counter("records_shipped", stats.shipped),
        Sample::counter("batches_shipped", stats.batches_shipped),
        Sample::counter("batches_retried", stats.retries),
        Sample::counter("records_dropped_buffer_full", stats.dropped_buffer_full),
        Sample::counter(
            "records_dropped_retries_exhausted",
            stats.dropped_retries_exhausted,
        ),
        Sample::counter("callout_failures", c.callout_failures),
        Sample::counter("policy_denied", c.policy_denied),
        Sample::counter("decode_errors", c.decode_errors),
        Sample::counter("approval_checks", c.approval_checks),
        Sample::counter("approval_check_failures", c.approval_failures),
        Sample::counter("redelivered_events_skipped", c.redelivered_skipped),
        Sample::counter("token_cache_hits", auth.cache_hits),
        Sample::counter("token_verifications", auth.verifications),
        Sample::counter("jwks_fetches", auth.jwks_fetches),
        Sample::counter("jwks_fetch_failures", auth.jwks_failures),
        Sample::counter("token_shared_hits", auth.shared_hits),
        Sample::counter("jwks_adopted", auth.jwks_adopted),
        Sample::gauge("buffer_depth", buffered as u64),
        Sample::gauge("sessions", sessions as u64),
        Sample::gauge("vm_memory_bytes", memory),
    ];
    let denied: u64 = c.auth_denied.values().sum();
    v.push(Sample::counter("auth_denied", denied));
    for (code, n) in &c.auth_denied {
        v.push(Sample::counter(&format!("auth_denied.{code}"), *n));
    }
    v
}

/// Metric ids and what the host was last told, per name.
#[derive(Debug, Default)]
pub struct Metrics {
    ids: HashMap<String, u32>,
    published: HashMap<String, u64>,
    broken: bool,
}

impl Metrics {
    /// Tells the host what changed since the last call.
    pub fn publish(&mut self, host: &dyn Host, samples: Vec<Sample>) {
        if self.broken {
            return;
        }
        for s in samples {
            let last = self.published.get(&s.name).copied().unwrap_or(0);
            if s.value == last {
                continue;
            }
            let id = match self.ids.get(&s.name) {
                Some(id) => *id,
                None => match host.define_metric(s.kind, &s.name) {
                    Ok(id) => {
                        self.ids.insert(s.name.clone(), id);
                        id
                    }
                    Err(e) => {
                        // Metrics are a convenience: never let them disturb the data path.
                        host.log(
                            Level::Warn,
                            &format!(
                                "mcptrail: metrics disabled: cannot define {}: {}",
                                s.name, e.0
                            ),
                        );
                        self.broken = true;
                        return;
                    }
                },
            };
            let delta = i64::try_from(s.value)
                .unwrap_or(i64::MAX)
                .saturating_sub(i64::try_from(last).unwrap_or(i64::MAX));
            if host.increment_metric(id, delta).is_ok() {
                self.published.insert(s.name, s.value);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #[cfg(all(target_arch = "wasm32", target_os = "unknown"))]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    use super::*;
    use crate::host::fake::FakeHost;

    #[test]
    fn publishes_deltas_once_per_change() {
        let host = FakeHost::default();
        let mut m = Metrics::default();
        let mut c = Counters::default();
        c.auth_denied.insert("expired".into(), 2);
        let mut stats = Stats {
            emitted: 5,
            ..Stats::default()
        };
        m.publish(
            &host,
            samples(&stats, &AuthStats::default(), 3, 1, 65536, &c),
        );
        assert_eq!(host.metric("mcptrail.records_emitted"), Some(5));
        assert_eq!(host.metric("mcptrail.auth_denied.expired"), Some(2));
        assert_eq!(host.metric("mcptrail.auth_denied"), Some(2));
        assert_eq!(host.metric("mcptrail.buffer_depth"), Some(3));
        let calls = host.metric_calls.get();
        m.publish(
            &host,
            samples(&stats, &AuthStats::default(), 3, 1, 65536, &c),
        );
        assert_eq!(
            host.metric_calls.get(),
            calls,
            "nothing changed, nothing sent"
        );
        stats.emitted = 7;
        m.publish(
            &host,
            samples(&stats, &AuthStats::default(), 0, 1, 65536, &c),
        );
        assert_eq!(host.metric("mcptrail.records_emitted"), Some(7));
        assert_eq!(
            host.metric("mcptrail.buffer_depth"),
            Some(0),
            "gauges go down too"
        );
    }
}
