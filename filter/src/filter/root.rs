//! The root context (one per VM): configuration, the tick, key fetches, the requests waiting
//! for keys, and shipping records to the collector.

use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;

use super::process::{self, Process};
use super::{apply, metrics, proceed_after_auth, Admit, Phase, Shared, Slot, Stream};
use crate::audit::outbox::{Outbox, Stats};
use crate::auth::{http, Authenticator};
use crate::config::Config;
use crate::host::{Body, Headers, Host, Level};
use crate::mcp::seal::Sealer;
use crate::mcp::sessions::Sessions;

/// A request held until its provider's keys arrive.
#[derive(Debug)]
pub(super) struct Waiter {
    pub(super) context_id: u32,
    pub(super) token: String,
    pub(super) provider: usize,
    pub(super) since_ms: u64,
    pub(super) slot: Rc<RefCell<Slot>>,
}

/// Per-VM state.
#[derive(Debug, Default)]
pub struct Root {
    /// The root context's own id, made current again after acting for held streams.
    pub context_id: u32,
    pub(super) shared: Option<Rc<Shared>>,
    pub(super) inflight_token: Option<u32>,
    pub(super) jwks_calls: HashMap<u32, usize>,
    pub(super) next_flush_ms: u64,
    pub(super) metrics: metrics::Metrics,
    /// The shared-data version of each provider's JWKS entry last read.
    pub(super) seen_jwks: Vec<u32>,
    /// When the next signed checkpoint is due.
    pub(super) next_checkpoint_ms: u64,
    /// The VM is going away (`on_done`): the time by which it reports done, shipped or not.
    pub(super) closing_until: Option<u64>,
    /// `proxy_done` was called (once).
    pub(super) reported_done: bool,
    /// When this VM was configured: a drain asked for before belongs to another VM.
    pub(super) configured_ms: u64,
    /// A drain was asked for: the stream is closed and records go on every tick.
    pub(super) draining: bool,
}

/// Root tick period (ms) at most: keys are fetched and held requests settled on time, and a
/// full batch queued between flushes leaves within this much (at a high record rate, waiting
/// for the flush tick would let the buffer fill and drop records).
pub const FAST_TICK_MS: u64 = 100;

impl Root {
    /// Parses and compiles the plugin configuration. On error, logs one line naming the key
    /// and returns `false`, so Envoy rejects the configuration.
    pub fn configure(&mut self, host: &dyn Host, bytes: &[u8]) -> bool {
        let config = match Config::parse(bytes) {
            Ok(c) => c,
            Err(e) => {
                host.log(Level::Error, &format!("mcptrail: {e}"));
                return false;
            }
        };
        // Stream id, record-id seed, token-cache keys: never guessable, so never the clock.
        let mut random = [0u64; 4];
        for r in &mut random {
            match host.random_u64() {
                Ok(v) => *r = v,
                Err(e) => {
                    host.log(
                        Level::Error,
                        &format!("mcptrail: the host gives no randomness ({}): refusing the configuration (stream ids, record ids and token-cache keys need it)", e.0),
                    );
                    return false;
                }
            }
        }
        let [stream_id, id_seed, key0, key1] = random;
        let stream = format!("{stream_id:016x}");
        let mut outbox = Outbox::new(config.audit.clone(), stream, id_seed);
        // The stream announces itself; the first tick ships it.
        outbox.open(host.now_ms());
        let tick = config.audit.flush_interval_ms.min(FAST_TICK_MS);
        if let Err(e) = host.set_tick_period_ms(tick) {
            host.log(
                Level::Error,
                &format!("mcptrail: cannot set the tick: {}", e.0),
            );
            return false;
        }
        self.next_flush_ms = 0;
        self.configured_ms = host.now_ms();
        self.draining = false;
        self.next_checkpoint_ms = host
            .now_ms()
            .saturating_add(config.audit.checkpoint_interval_s.saturating_mul(1000));
        let process = Process::new(bytes, config.auth.cache_max_entries);
        process::prepare(host, &process, &config.auth);
        self.shared = Some(Rc::new(Shared {
            auth: RefCell::new(Authenticator::new(&config.auth, [key0, key1])),
            sessions: RefCell::new(Sessions::new(config.mcp.max_sessions)),
            sealer: (!config.mcp.session_keys.is_empty())
                .then(|| Sealer::new(&config.mcp.session_keys)),
            process,
            config,
            outbox: RefCell::new(outbox),
            waiters: RefCell::new(Vec::new()),
            checks: RefCell::new(Vec::new()),
            counters: RefCell::new(metrics::Counters::default()),
        }));
        true
    }

    /// The outbox's counters (none before a configuration).
    pub fn outbox_stats(&self) -> Option<Stats> {
        self.shared.as_ref().map(|s| s.outbox.borrow().stats())
    }

    /// Records queued in the outbox.
    pub fn outbox_depth(&self) -> usize {
        self.shared
            .as_ref()
            .map_or(0, |s| s.outbox.borrow().depth())
    }

    /// A new stream, once configured.
    pub fn new_stream(&self, context_id: u32) -> Option<Stream> {
        self.shared
            .as_ref()
            .map(|s| Stream::new(Rc::clone(s), context_id))
    }

    /// The VM is going away (a configuration push, Envoy stopping). Ends the stream with
    /// `audit.closed` and ships what is held, whole batches, without waiting for the flush
    /// interval. `true` when nothing is left (the host may drop the VM now); else the root
    /// calls `proxy_done` once the last batch is acknowledged or `audit.shutdown_timeout_ms`
    /// has passed, logging what it had to give up.
    pub fn on_done(&mut self, host: &dyn Host) -> bool {
        let Some(shared) = self.shared.clone() else {
            return true;
        };
        let now = host.now_ms();
        if self.closing_until.is_none() {
            self.closing_until = Some(now.saturating_add(shared.config.audit.shutdown_timeout_ms));
            let held = {
                let mut outbox = shared.outbox.borrow_mut();
                outbox.close(now);
                outbox.buffered()
            };
            host.log(
                Level::Info,
                &format!("mcptrail: VM going away: shipping {held} held records (stream closed) before reporting done"),
            );
        }
        self.ship(host, true);
        let settled = self.settled();
        if settled {
            self.end(host);
        }
        settled
    }

    /// The end of a closing VM: says what was delivered or given up, once.
    fn end(&mut self, host: &dyn Host) {
        self.reported_done = true;
        let Some(shared) = self.shared.as_ref() else {
            return;
        };
        let outbox = shared.outbox.borrow();
        match outbox.buffered() {
            0 => host.log(Level::Info, "mcptrail: every record delivered; done"),
            left => host.log(
                Level::Error,
                &format!("mcptrail: VM going away: gave up {left} undelivered records of stream {} after audit.shutdown_timeout_ms; the trail shows the stream without audit.closed", outbox.stream()),
            ),
        }
    }

    /// Nothing held and nothing in flight.
    fn settled(&self) -> bool {
        self.inflight_token.is_none()
            && self
                .shared
                .as_ref()
                .is_none_or(|s| s.outbox.borrow().buffered() == 0)
    }

    /// While closing: done once everything is delivered, or when the time is up.
    fn close_step(&mut self, host: &dyn Host, now: u64) {
        let Some(until) = self.closing_until else {
            return;
        };
        if self.reported_done {
            return;
        }
        if let Some(s) = self.shared.as_ref() {
            // Records that came since the close (streams ending now) are closed again.
            s.outbox.borrow_mut().close(now);
        }
        if !self.settled() && now < until {
            if let Some(s) = self.shared.as_ref() {
                s.outbox.borrow_mut().retry_now();
            }
            self.ship(host, true);
            return;
        }
        self.end(host);
        if let Err(e) = host.done() {
            host.log(
                Level::Warn,
                &format!("mcptrail: proxy_done failed: {}", e.0),
            );
        }
    }

    /// The tick: starts due key fetches, times out held requests, ships records.
    pub fn on_tick(&mut self, host: &dyn Host) {
        let now = host.now_ms();
        if self.closing_until.is_some() {
            self.close_step(host, now);
            return;
        }
        self.drain(host, now);
        self.checkpoint(now);
        for provider in self.adopt_keys(host) {
            self.settle_waiters(host, now, Some(provider));
        }
        self.fetch_keys(host, now);
        self.settle_waiters(host, now, None);
        let flush = self
            .shared
            .as_ref()
            .map_or(1000, |s| s.config.audit.flush_interval_ms);
        if now >= self.next_flush_ms || self.draining {
            self.next_flush_ms = now + flush;
            self.ship(host, true);
            self.publish_metrics(host);
        } else {
            // Between flushes only a full batch goes (a backlog the last answer left behind).
            self.ship(host, false);
        }
    }

    /// A drain asked for (by a `POST` to `audit.drain_path` on any worker): close the stream
    /// now and from then on ship on every tick, so a stop that follows finds nothing held.
    fn drain(&mut self, host: &dyn Host, now: u64) {
        let Some(shared) = self.shared.as_ref() else {
            return;
        };
        if self.draining {
            // Records that came since (requests still in flight) are followed by a close.
            shared.outbox.borrow_mut().close(now);
            return;
        }
        let asked = process::drain_requested(host, &shared.process);
        if asked.is_some_and(|t| t >= self.configured_ms) {
            self.draining = true;
            shared.outbox.borrow_mut().close(now);
            host.log(
                Level::Info,
                "mcptrail: drain asked for: stream closed, records shipped on every tick",
            );
        }
    }

    /// A signed checkpoint every `audit.checkpoint_interval_s`, when records came since.
    fn checkpoint(&mut self, now: u64) {
        let Some(shared) = self.shared.as_ref() else {
            return;
        };
        let interval = shared.config.audit.checkpoint_interval_s;
        if interval == 0 || now < self.next_checkpoint_ms {
            return;
        }
        self.next_checkpoint_ms = now.saturating_add(interval.saturating_mul(1000));
        let mut outbox = shared.outbox.borrow_mut();
        if outbox.checkpoint_due() {
            outbox.checkpoint(now);
        }
    }

    fn publish_metrics(&mut self, host: &dyn Host) {
        let Some(shared) = self.shared.as_ref() else {
            return;
        };
        let samples = {
            let outbox = shared.outbox.borrow();
            metrics::samples(
                &outbox.stats(),
                &shared.auth.borrow().stats(),
                outbox.buffered(),
                shared.sessions.borrow().len(),
                host.memory_bytes(),
                &shared.counters.borrow(),
            )
        };
        self.metrics.publish(host, samples);
    }

    /// Key sets other workers of the process fetched since the last tick.
    fn adopt_keys(&mut self, host: &dyn Host) -> Vec<usize> {
        let Some(shared) = self.shared.as_ref() else {
            return Vec::new();
        };
        let mut auth = shared.auth.borrow_mut();
        let settings = &shared.config.auth;
        process::adopt_published(
            host,
            &shared.process,
            &mut auth,
            settings,
            &mut self.seen_jwks,
        )
    }

    fn fetch_keys(&mut self, host: &dyn Host, now: u64) {
        let Some(shared) = self.shared.clone() else {
            return;
        };
        let settings = &shared.config.auth;
        let due = shared.auth.borrow_mut().due_fetches(settings, now);
        let mut deferred = Vec::new();
        for pi in due {
            let Some(f) = settings.providers.get(pi).and_then(|p| p.fetch.as_ref()) else {
                continue;
            };
            let mut auth = shared.auth.borrow_mut();
            if !process::claim_fetch(host, &shared.process, &mut auth, settings, pi, now) {
                // Taken from, or left to, another worker: its held requests may go now.
                deferred.push(pi);
                continue;
            }
            drop(auth);
            let headers = [
                (":method", "GET"),
                (":path", f.path.as_str()),
                (":authority", f.authority.as_str()),
                ("accept", "application/json"),
            ];
            match host.http_call(&f.cluster, &headers, &[], f.timeout_ms) {
                Ok(token) => {
                    self.jwks_calls.insert(token, pi);
                }
                Err(e) => {
                    process::publish_jwks(host, &shared.process, f, None, now);
                    let line = shared.auth.borrow_mut().on_fetch(
                        settings,
                        pi,
                        Err(format!(
                            "callout to cluster `{}` refused: {}",
                            f.cluster, e.0
                        )),
                        now,
                    );
                    host.log(Level::Warn, &format!("mcptrail: {line}"));
                }
            }
        }
        for pi in deferred {
            self.settle_waiters(host, now, Some(pi));
        }
    }

    /// Settles held requests: those waiting on `provider` (keys just arrived), and any whose
    /// wait is over.
    fn settle_waiters(&mut self, host: &dyn Host, now: u64, provider: Option<usize>) {
        let Some(shared) = self.shared.as_ref() else {
            return;
        };
        let wait_ms = shared.config.auth.jwks_wait_ms;
        let ready: Vec<Waiter> = {
            let mut w = shared.waiters.borrow_mut();
            let (ready, keep): (Vec<Waiter>, Vec<Waiter>) = w.drain(..).partition(|x| {
                Some(x.provider) == provider || now.saturating_sub(x.since_ms) >= wait_ms
            });
            *w = keep;
            ready
        };
        if ready.is_empty() {
            return;
        }
        for waiter in ready {
            if host.set_effective_context(waiter.context_id).is_err() {
                continue; // the stream is gone
            }
            if matches!(waiter.slot.borrow().phase, Phase::Refused(_)) {
                continue; // refused while it waited (its body could not be masked)
            }
            let expired = now.saturating_sub(waiter.since_ms) >= wait_ms;
            let outcome = shared.auth.borrow_mut().authenticate_with(
                &shared.config.auth,
                &waiter.token,
                now,
                !expired,
                &mut process::tokens(host, &shared.process),
            );
            let mut slot = waiter.slot.borrow_mut();
            let admission = http::admit(&shared.config.auth, outcome, &slot.origin, &slot.path);
            match apply(host, &mut slot, admission) {
                Admit::Wait(provider) => {
                    drop(slot);
                    shared
                        .waiters
                        .borrow_mut()
                        .push(Waiter { provider, ..waiter });
                }
                Admit::Refused => {}
                Admit::Proceed => {
                    let owner = super::approval::Owner {
                        context_id: waiter.context_id,
                        slot: &waiter.slot,
                    };
                    if proceed_after_auth(host, shared, &mut slot, &owner) {
                        if let Err(e) = host.resume_request() {
                            host.log(Level::Warn, &format!("mcptrail: cannot resume: {}", e.0));
                        }
                    }
                }
            }
        }
        let _ = host.set_effective_context(self.context_id);
    }

    fn ship(&mut self, host: &dyn Host, force: bool) {
        let Some(shared) = self.shared.as_ref() else {
            return;
        };
        if self.inflight_token.is_some() {
            return;
        }
        let audit = &shared.config.audit;
        let now = host.now_ms();
        let mut outbox = shared.outbox.borrow_mut();
        let Some(send) = outbox.next_send(now, force) else {
            return;
        };
        let len = send.body.len().to_string();
        let mut headers: Vec<(&str, &str)> = vec![
            (":method", "POST"),
            (":path", &audit.path),
            (":authority", &audit.authority),
            ("content-type", send.content_type),
            ("content-length", &len),
        ];
        headers.extend(audit.headers.iter().map(|(k, v)| (k.as_str(), v.as_str())));
        match host.http_call(&audit.cluster, &headers, send.body, audit.timeout_ms) {
            Ok(token) => self.inflight_token = Some(token),
            Err(e) => {
                host.log(
                    Level::Warn,
                    &format!(
                        "mcptrail: audit callout to cluster `{}` failed: {}",
                        audit.cluster, e.0
                    ),
                );
                outbox.dispatch_failed(now);
                shared.counters.borrow_mut().callout_failures += 1;
            }
        }
    }

    /// A callout answered. `num_headers == 0` is a transport failure (reset, timeout).
    pub fn on_http_call_response(
        &mut self,
        host: &dyn Host,
        token: u32,
        num_headers: usize,
        body_size: usize,
    ) {
        let status = if num_headers == 0 {
            None
        } else {
            host.header(Headers::CallResponse, ":status")
                .and_then(|s| s.parse::<u32>().ok())
        };
        let ok = status.is_some_and(|s| (200..300).contains(&s));
        let what = status.map_or_else(|| "no response".to_string(), |s| format!("HTTP {s}"));
        if let Some(pi) = self.jwks_calls.remove(&token) {
            let Some(shared) = self.shared.as_ref() else {
                return;
            };
            let now = host.now_ms();
            let body = if ok {
                host.body(Body::CallResponse, 0, body_size)
                    .map_err(|e| format!("body unreadable: {}", e.0))
            } else {
                Err(what)
            };
            let result = body.as_deref().map_err(String::clone);
            if let Some(f) = shared
                .config
                .auth
                .providers
                .get(pi)
                .and_then(|p| p.fetch.as_ref())
            {
                process::publish_jwks(host, &shared.process, f, result.as_ref().ok().copied(), now);
            }
            let line = shared
                .auth
                .borrow_mut()
                .on_fetch(&shared.config.auth, pi, result, now);
            host.log(
                if ok { Level::Info } else { Level::Warn },
                &format!("mcptrail: {line}"),
            );
            self.settle_waiters(host, now, Some(pi));
            return;
        }
        if self.inflight_token != Some(token) {
            // An approval check sent while this root settled a request (after a key fetch).
            if let Some(shared) = self.shared.as_ref() {
                if super::approval::answered(host, shared, token, num_headers, body_size) {
                    let _ = host.set_effective_context(self.context_id);
                }
            }
            return;
        }
        self.inflight_token = None;
        let Some(shared) = self.shared.as_ref() else {
            return;
        };
        if !ok {
            host.log(
                Level::Warn,
                &format!(
                    "mcptrail: audit collector (cluster `{}`) answered {what}; will retry",
                    shared.config.audit.cluster
                ),
            );
            shared.counters.borrow_mut().callout_failures += 1;
        }
        shared.outbox.borrow_mut().on_result(ok, host.now_ms());
        if self.closing_until.is_some() {
            self.close_step(host, host.now_ms());
            return;
        }
        // Keep a busy outbox moving without waiting for the next tick.
        self.ship(host, false);
    }
}
