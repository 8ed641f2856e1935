//! The filter's behaviour over the [`Host`] trait: the root (one per VM) configures, fetches
//! keys and ships records; streams (one per request) authenticate, enforce policy, decode, and
//! hand records to the root's outbox.
//!
//! The proxy-wasm contexts in `proxy.rs` only forward callbacks here.

use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;

use serde_json::{json, Value};

use crate::audit::outbox::{Outbox, Pushed};
use crate::audit::record::{
    AuthInfo, EnvoyInfo, Identity, Kind, Mcp, Outcome, PolicyInfo, Record, SessionSummary, Source,
    Status,
};
use crate::auth::{self, Authenticator, DenyReason, Mode};
use crate::bounded::Bounded;
use crate::config::Config;
use crate::host::{Action, Body, Headers, Host, Level};
use crate::jsonrpc::{self, DecodeError, Message};
use crate::judge::{Routing, Unjudgeable};
use crate::mask::OnTooLarge;
use crate::policy::Effect;
use crate::sessions::Sessions;
use crate::time::rfc3339_ms;

/// Identity headers the filter sets upstream; client-sent copies are always removed.
pub const IDENTITY_HEADERS: [&str; 5] = [
    "x-mcptrail-sub",
    "x-mcptrail-groups",
    "x-mcptrail-email",
    "x-mcptrail-client-id",
    "x-mcptrail-issuer",
];

/// A stream's headers, read with one host call (each host call crosses the VM boundary).
struct Snapshot(Vec<(String, String)>);

impl Snapshot {
    /// A header by its lowercase name (Envoy hands header names lowercased).
    fn get(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// Where RFC 9728 protected-resource metadata is served.
pub const METADATA_PATH: &str = "/.well-known/oauth-protected-resource";

/// JSON-RPC error code of a policy denial (implementation-defined server error range).
pub const POLICY_DENIED_CODE: i64 = -32003;

/// What streams share with their root: config, outbox, authenticator, held requests.
#[derive(Debug)]
pub struct Shared {
    pub config: Config,
    pub outbox: RefCell<Outbox>,
    pub auth: RefCell<Authenticator>,
    pub sessions: RefCell<Sessions>,
    waiters: RefCell<Vec<Waiter>>,
    /// SSE events already recorded (by session and event id), so a redelivery on a
    /// resumed stream is not recorded twice.
    seen_events: RefCell<Bounded<()>>,
    /// Requests whose stream was cut before their reply: a resumed stream may still
    /// deliver it.
    owed: RefCell<Bounded<Owed>>,
    /// Counted here, published as metrics on the root's tick.
    pub counters: RefCell<metrics::Counters>,
}

/// A request still owed its reply.
#[derive(Debug)]
struct Owed {
    record: Record,
    started_ms: u64,
}

/// SSE event ids remembered per VM.
const SEEN_EVENTS_MAX: usize = 4096;
/// Replies still owed, remembered per VM.
const OWED_MAX: usize = 1024;

/// Key of an SSE event or a JSON-RPC id within a session.
fn session_key(session: Option<&str>, what: &str) -> String {
    format!("{}\u{1f}{what}", session.unwrap_or(""))
}

/// A request held until its provider's keys arrive.
#[derive(Debug)]
struct Waiter {
    context_id: u32,
    token: String,
    provider: usize,
    since_ms: u64,
    slot: Rc<RefCell<Slot>>,
}

/// Where a request stands with auth and policy.
#[derive(Debug, Clone, Default, PartialEq)]
enum Gate {
    #[default]
    Open,
    WaitingAuth,
    Refused(Refusal),
}

/// A request the filter answered itself.
#[derive(Debug, Clone, PartialEq)]
struct Refusal {
    kind: Kind,
    status: u32,
    reason: String,
    auth: Option<AuthInfo>,
    /// Policy denials: (index of the message, rule).
    policy: Vec<(usize, Option<usize>)>,
}

/// Per-request state the root may settle while the stream is held.
#[derive(Debug, Default)]
struct Slot {
    gate: Gate,
    identity: Option<Identity>,
    /// The whole body is read before any of it goes upstream (policy or rewriting needs it).
    hold_body: bool,
    /// A decision depends on the body (a rule may deny, or `masking.requests` rewrites it):
    /// a body that cannot be read completely and unambiguously is refused.
    judges: bool,
    /// A body callback came (the body is then finished by the stream, not the root).
    body_started: bool,
    /// Why the held request cannot be judged; refused once the caller is authenticated.
    unjudged: Option<Unjudgeable>,
    /// Decoded body of a held request, once complete.
    messages: Option<Vec<Result<Message, DecodeError>>>,
    /// `scheme://authority` and path of the request, for challenges.
    origin: String,
    path: String,
}

/// Per-VM state.
#[derive(Debug, Default)]
pub struct Root {
    /// The root context's own id, made current again after acting for held streams.
    pub context_id: u32,
    shared: Option<Rc<Shared>>,
    inflight_token: Option<u32>,
    jwks_calls: HashMap<u32, usize>,
    next_flush_ms: u64,
    metrics: metrics::Metrics,
}

/// Root tick period (ms) at most: keys are fetched and held requests settled on time, and a
/// full batch queued between flushes leaves within this much (at a high record rate, waiting
/// for the flush tick would let the buffer fill and drop records).
const FAST_TICK_MS: u64 = 100;

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
        let outbox = Outbox::new(config.audit.clone(), stream, id_seed);
        let tick = config.audit.flush_interval_ms.min(FAST_TICK_MS);
        if let Err(e) = host.set_tick_period_ms(tick) {
            host.log(
                Level::Error,
                &format!("mcptrail: cannot set the tick: {}", e.0),
            );
            return false;
        }
        self.next_flush_ms = 0;
        self.shared = Some(Rc::new(Shared {
            auth: RefCell::new(Authenticator::new(&config.auth, [key0, key1])),
            sessions: RefCell::new(Sessions::new(config.mcp.max_sessions)),
            config,
            outbox: RefCell::new(outbox),
            waiters: RefCell::new(Vec::new()),
            seen_events: RefCell::new(Bounded::new(SEEN_EVENTS_MAX)),
            owed: RefCell::new(Bounded::new(OWED_MAX)),
            counters: RefCell::new(metrics::Counters::default()),
        }));
        true
    }

    pub fn shared(&self) -> Option<&Rc<Shared>> {
        self.shared.as_ref()
    }

    /// A new stream, once configured.
    pub fn new_stream(&self, context_id: u32) -> Option<Stream> {
        self.shared
            .as_ref()
            .map(|s| Stream::new(Rc::clone(s), context_id))
    }

    /// The tick: starts due key fetches, times out held requests, ships records.
    pub fn on_tick(&mut self, host: &dyn Host) {
        let now = host.now_ms();
        self.fetch_keys(host, now);
        self.settle_waiters(host, now, None);
        let flush = self
            .shared
            .as_ref()
            .map_or(1000, |s| s.config.audit.flush_interval_ms);
        if now >= self.next_flush_ms {
            self.next_flush_ms = now + flush;
            self.ship(host, true);
            self.publish_metrics(host);
        } else {
            // Between flushes only a full batch goes (a backlog the last answer left behind).
            self.ship(host, false);
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
                outbox.buffered(),
                shared.sessions.borrow().len(),
                host.memory_bytes(),
                &shared.counters.borrow(),
            )
        };
        self.metrics.publish(host, samples);
    }

    fn fetch_keys(&mut self, host: &dyn Host, now: u64) {
        let Some(shared) = self.shared.as_ref() else {
            return;
        };
        let settings = &shared.config.auth;
        let due = shared.auth.borrow_mut().due_fetches(settings, now);
        for pi in due {
            let Some(f) = settings.providers.get(pi).and_then(|p| p.fetch.as_ref()) else {
                continue;
            };
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
            if matches!(waiter.slot.borrow().gate, Gate::Refused(_)) {
                continue; // refused while it waited (its body could not be masked)
            }
            let expired = now.saturating_sub(waiter.since_ms) >= wait_ms;
            let outcome = shared.auth.borrow_mut().authenticate(
                &shared.config.auth,
                &waiter.token,
                now,
                !expired,
            );
            let mut slot = waiter.slot.borrow_mut();
            match admit(host, shared, &mut slot, outcome) {
                Admit::Wait(provider) => {
                    drop(slot);
                    shared
                        .waiters
                        .borrow_mut()
                        .push(Waiter { provider, ..waiter });
                }
                Admit::Refused => {}
                Admit::Proceed => {
                    if proceed_after_auth(host, shared, &mut slot) {
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
        // Keep a busy outbox moving without waiting for the next tick.
        self.ship(host, false);
    }
}

/// What authentication decided for a request.
enum Admit {
    Proceed,
    Refused,
    Wait(usize),
}

fn challenge(slot: &Slot, error: Option<(&str, Option<&str>)>) -> String {
    let mut v = format!(
        "Bearer resource_metadata=\"{}{METADATA_PATH}{}\"",
        slot.origin, slot.path
    );
    if let Some((code, scope)) = error {
        v.push_str(&format!(", error=\"{code}\""));
        if let Some(scope) = scope {
            v.push_str(&format!(", scope=\"{scope}\""));
        }
    }
    v
}

/// The first `max` bytes of `text` (cut on a character boundary), `…` when cut.
fn preview(text: &str, max: usize) -> String {
    if text.len() <= max {
        return text.to_string();
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", text.get(..end).unwrap_or_default())
}

/// Replaces the current body chunk; a host refusal is logged (the original then passes).
fn replace_body(host: &dyn Host, which: Body, data: &[u8]) {
    if let Err(e) = host.set_body(which, data) {
        host.log(
            Level::Warn,
            &format!("mcptrail: cannot rewrite the {which:?} body: {}", e.0),
        );
    }
}

fn send(host: &dyn Host, status: u32, headers: &[(&str, &str)], body: &[u8]) {
    if let Err(e) = host.send_response(status, headers, body) {
        host.log(
            Level::Error,
            &format!("mcptrail: cannot send {status}: {}", e.0),
        );
    }
}

/// Refuses the current stream with an auth error and records why in the slot.
/// Refuses the current stream for an auth reason (`info.error` is the code) and records why
/// in the slot. `www` is the `WWW-Authenticate` challenge, when one applies.
fn refuse_auth(
    host: &dyn Host,
    slot: &mut Slot,
    status: u32,
    info: AuthInfo,
    detail: String,
    www: Option<String>,
) {
    let code = if status == 503 {
        "temporarily_unavailable"
    } else {
        info.error.as_str()
    };
    let body = json!({"error": code, "error_description": detail}).to_string();
    let mut headers = vec![
        ("content-type", "application/json"),
        ("cache-control", "no-store"),
    ];
    if let Some(www) = www.as_deref() {
        headers.push(("www-authenticate", www));
    }
    if status == 503 {
        headers.push(("retry-after", "1"));
    }
    send(host, status, &headers, body.as_bytes());
    slot.gate = Gate::Refused(Refusal {
        kind: Kind::AuthDenied,
        status,
        reason: detail,
        auth: Some(info),
        policy: Vec::new(),
    });
}

/// Applies an authentication outcome to the current stream.
fn admit(host: &dyn Host, shared: &Shared, slot: &mut Slot, outcome: auth::Outcome) -> Admit {
    let settings = &shared.config.auth;
    match outcome {
        auth::Outcome::Wait { provider } => {
            slot.gate = Gate::WaitingAuth;
            Admit::Wait(provider)
        }
        auth::Outcome::Denied(d) => {
            let status = if d.error == DenyReason::KeysUnavailable {
                503
            } else {
                401
            };
            let info = AuthInfo {
                error: d.error.reason().to_string(),
                issuer: d.issuer,
                kid: d.kid,
            };
            let detail = d.error.to_string();
            let www = (status == 401).then(|| challenge(slot, Some(("invalid_token", None))));
            refuse_auth(host, slot, status, info, detail, www);
            Admit::Refused
        }
        auth::Outcome::Verified(v) => {
            let missing: Vec<&str> = settings
                .required_scopes
                .iter()
                .filter(|s| !v.scopes.contains(s))
                .map(String::as_str)
                .collect();
            if !missing.is_empty() {
                let scope = settings.required_scopes.join(" ");
                let www = challenge(slot, Some(("insufficient_scope", Some(&scope))));
                let info = AuthInfo {
                    error: "insufficient_scope".into(),
                    issuer: v.identity.iss.clone(),
                    kid: None,
                };
                let detail = format!("missing scopes: {}", missing.join(" "));
                refuse_auth(host, slot, 403, info, detail, Some(www));
                slot.identity = Some(v.identity);
                return Admit::Refused;
            }
            if settings.forward_identity {
                let id = &v.identity;
                let groups = id.groups.join(",");
                let values = [
                    id.sub.as_deref(),
                    Some(groups.as_str()).filter(|g| !g.is_empty()),
                    id.email.as_deref(),
                    id.client_id.as_deref(),
                    id.iss.as_deref(),
                ];
                for (name, value) in IDENTITY_HEADERS.iter().zip(values) {
                    if let Some(value) = value {
                        host.set_header(Headers::Request, name, Some(value));
                    }
                }
            }
            if !settings.forward_token {
                host.set_header(Headers::Request, "authorization", None);
            }
            slot.gate = Gate::Open;
            slot.identity = Some(v.identity);
            Admit::Proceed
        }
    }
}

/// After authentication: whether the request may be resumed now. A held body that is
/// complete is judged here. One partly seen is finished by its last body callback. One not
/// seen yet is judged in the body callbacks after the headers go on: without
/// `allow_on_headers_stop_iteration` (Istio, Envoy Gateway) they come only once resumed.
fn proceed_after_auth(host: &dyn Host, shared: &Shared, slot: &mut Slot) -> bool {
    if !slot.hold_body {
        return true;
    }
    if judge(host, shared, slot) {
        return false;
    }
    slot.messages.is_some() || !slot.body_started
}

/// Settles a held request once its caller is known: refuses what cannot be judged, then
/// applies the policy to a complete body. Returns `true` when it refused the request.
fn judge(host: &dyn Host, shared: &Shared, slot: &mut Slot) -> bool {
    if let Some(u) = slot.unjudged.take() {
        send(
            host,
            u.status,
            &[("content-type", "application/json")],
            u.reply().as_bytes(),
        );
        slot.gate = Gate::Refused(Refusal {
            kind: Kind::DecodeError,
            status: u.status,
            reason: format!(
                "{}; refused because policy could not be evaluated",
                u.reason
            ),
            auth: None,
            policy: Vec::new(),
        });
        return true;
    }
    slot.messages.is_some() && enforce_policy(host, shared, slot)
}

/// Applies the policy to a held, decoded body. Returns `true` when it refused the request.
fn enforce_policy(host: &dyn Host, shared: &Shared, slot: &mut Slot) -> bool {
    let policy = &shared.config.policy;
    let Some(messages) = slot.messages.as_ref() else {
        return false;
    };
    let groups: &[String] = slot.identity.as_ref().map_or(&[], |i| i.groups.as_slice());
    let mut denied = Vec::new();
    for (i, m) in messages.iter().enumerate() {
        let Ok(m) = m else { continue };
        let Some(method) = m.method.as_deref() else {
            continue;
        };
        let d = policy.decide(method, m.tool(), groups);
        if d.effect == Effect::Deny {
            denied.push((i, d.rule));
        }
    }
    if denied.is_empty() {
        return false;
    }
    // One denied element refuses the whole request: nothing of it reaches the server.
    let error_for = |i: usize, m: &Message| {
        let what = match m.tool() {
            Some(t) => format!("tool `{t}`"),
            None => format!("method `{}`", m.method.as_deref().unwrap_or("?")),
        };
        let message = if denied.iter().any(|(d, _)| *d == i) {
            format!("Forbidden: {what} is not allowed for this caller")
        } else {
            "Not executed: the batch contains a call that is not allowed".to_string()
        };
        json!({"jsonrpc": "2.0", "id": m.id.clone().unwrap_or(Value::Null),
               "error": {"code": POLICY_DENIED_CODE, "message": message}})
    };
    let replies: Vec<Value> = messages
        .iter()
        .enumerate()
        .filter_map(|(i, m)| {
            m.as_ref()
                .ok()
                .filter(|m| m.kind == jsonrpc::Kind::Request)
                .map(|m| error_for(i, m))
        })
        .collect();
    let reason = "denied by policy".to_string();
    // Only notifications were denied: there is no id to answer, so the refusal is HTTP 403.
    let status = if replies.is_empty() { 403 } else { 200 };
    let body = match (messages.len(), replies.first()) {
        (1, Some(one)) => one.to_string(),
        (_, Some(_)) => Value::Array(replies).to_string(),
        (_, None) => r#"{"error":"forbidden","error_description":"denied by policy"}"#.to_string(),
    };
    send(
        host,
        status,
        &[("content-type", "application/json")],
        body.as_bytes(),
    );
    slot.gate = Gate::Refused(Refusal {
        kind: Kind::PolicyDenied,
        status,
        reason,
        auth: None,
        policy: denied,
    });
    true
}

/// Reads the current response chunk; a host failure is said in the record (`decode.error`),
/// not hidden as an empty chunk.
fn read_response(host: &dyn Host, resp: &mut response::Responses, size: usize) -> Vec<u8> {
    host.body(Body::Response, 0, size).unwrap_or_else(|e| {
        resp.problem
            .get_or_insert_with(|| format!("body unreadable from the host ({})", e.0));
        Vec::new()
    })
}

/// A body's messages, a body-wide error standing as its only element.
fn flatten(
    items: Result<Vec<Result<Message, DecodeError>>, DecodeError>,
) -> Vec<Result<Message, DecodeError>> {
    items.unwrap_or_else(|e| vec![Err(e)])
}

/// The bearer token of an `Authorization` header (scheme case-insensitive).
pub fn bearer(value: &str) -> Option<&str> {
    let (scheme, token) = value.trim().split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("bearer") {
        return None;
    }
    let token = token.trim();
    (!token.is_empty()).then_some(token)
}

/// Per-request state.
#[derive(Debug)]
pub struct Stream {
    shared: Rc<Shared>,
    context_id: u32,
    slot: Rc<RefCell<Slot>>,
    in_scope: bool,
    started_ms: u64,
    method: String,
    request_id: Option<String>,
    session: Option<String>,
    protocol_version: Option<String>,
    source: Option<String>,
    /// Copy of the request body while it is decodable (`None` once over the bound).
    body: Option<Vec<u8>>,
    body_overflow: bool,
    /// A body chunk could not be read from the host (the copy is incomplete).
    body_unreadable: bool,
    request_done: bool,
    response_status: Option<u32>,
    response_bytes: u64,
    response_done: bool,
    /// Answered locally without a record (metadata, buffer-full 503).
    silent: bool,
    resp: Option<response::Responses>,
    /// Ids (keys) of `tools/list` requests whose replies are filtered by policy.
    filter_ids: Vec<String>,
    /// The session id came from the response (a new session), not the request.
    session_from_response: bool,
    /// 2026-07-28 standard headers.
    routing: Routing,
    /// A `GET` stream (resumed or listening) under a policy that can deny: `tools/list`
    /// replies on it are filtered by their shape, the request that asked being elsewhere.
    filter_listings: bool,
    session_identity_mismatch: bool,
    /// `Last-Event-ID` of a resumed stream.
    last_event_id: Option<String>,
    /// Events of a resumed stream that were recorded before (not recorded again).
    redelivered: u64,
    /// Holds room in the outbox until `on_log` (see `Outbox::reserve`).
    reserved: bool,
    /// Route and cluster, read from Envoy once the request was routed.
    envoy: Option<EnvoyInfo>,
    /// What masking changed in the replies the client received, by reply id.
    reply_masked: RefCell<HashMap<String, Vec<String>>>,
    /// Request body bytes seen.
    body_len: usize,
}

impl Stream {
    fn new(shared: Rc<Shared>, context_id: u32) -> Self {
        Self {
            shared,
            context_id,
            slot: Rc::new(RefCell::new(Slot::default())),
            in_scope: false,
            started_ms: 0,
            method: String::new(),
            request_id: None,
            session: None,
            protocol_version: None,
            source: None,
            body: None,
            body_overflow: false,
            body_unreadable: false,
            request_done: false,
            response_status: None,
            response_bytes: 0,
            response_done: false,
            silent: false,
            resp: None,
            filter_ids: Vec::new(),
            session_from_response: false,
            routing: Routing::default(),
            filter_listings: false,
            session_identity_mismatch: false,
            last_event_id: None,
            redelivered: 0,
            reserved: false,
            envoy: None,
            reply_masked: RefCell::new(HashMap::new()),
            body_len: 0,
        }
    }

    fn serve_metadata(&mut self, host: &dyn Host, path: &str, origin: &str) -> Action {
        let settings = &self.shared.config.auth;
        let suffix = path.strip_prefix(METADATA_PATH).unwrap_or("");
        let resource_path = if suffix.is_empty() {
            self.shared
                .config
                .mcp
                .paths
                .first()
                .cloned()
                .unwrap_or_default()
        } else {
            suffix.to_string()
        };
        let mut doc = settings.resource_metadata.clone().unwrap_or_default();
        doc.entry("resource")
            .or_insert_with(|| json!(format!("{origin}{resource_path}")));
        doc.entry("authorization_servers").or_insert_with(|| {
            json!(settings
                .providers
                .iter()
                .map(|p| p.issuer.clone())
                .collect::<Vec<_>>())
        });
        doc.entry("bearer_methods_supported")
            .or_insert_with(|| json!(["header"]));
        if !settings.required_scopes.is_empty() {
            doc.entry("scopes_supported")
                .or_insert_with(|| json!(settings.required_scopes));
        }
        send(
            host,
            200,
            &[
                ("content-type", "application/json"),
                ("cache-control", "max-age=300"),
                ("access-control-allow-origin", "*"),
            ],
            Value::Object(doc).to_string().as_bytes(),
        );
        self.silent = true;
        Action::Pause
    }

    pub fn on_request_headers(&mut self, host: &dyn Host, end_of_stream: bool) -> Action {
        // One host call for all headers; lookups are then local.
        let h = Snapshot(host.headers(Headers::Request));
        for name in IDENTITY_HEADERS {
            if h.get(name).is_some() {
                host.set_header(Headers::Request, name, None);
            }
        }
        let full_path = h.get(":path").unwrap_or_default();
        let path = full_path.split(['?', '#']).next().unwrap_or("");
        let auth_on = self.shared.config.auth.mode != Mode::Off;
        let scheme = h
            .get("x-forwarded-proto")
            .or_else(|| h.get(":scheme"))
            .unwrap_or("http");
        let authority = h.get(":authority").unwrap_or_default();
        let origin = format!("{scheme}://{authority}");
        self.method = h.get(":method").map(str::to_string).unwrap_or_default();
        if auth_on
            && (self.method == "GET" || self.method == "HEAD")
            && path
                .strip_prefix(METADATA_PATH)
                .is_some_and(|rest| rest.is_empty() || rest.starts_with('/'))
        {
            return self.serve_metadata(host, path, &origin);
        }
        if !self.shared.config.mcp.in_scope(full_path) {
            return Action::Continue;
        }
        self.in_scope = true;
        self.shared.counters.borrow_mut().requests += 1;
        self.started_ms = host.now_ms();
        self.request_id = h.get("x-request-id").map(str::to_string);
        self.session = h.get("mcp-session-id").map(str::to_string);
        self.protocol_version = h.get("mcp-protocol-version").map(str::to_string);
        self.routing = Routing::from_headers(h.0.iter().map(|(k, v)| (k.as_str(), v.as_str())));
        self.last_event_id = h.get("last-event-id").map(str::to_string);
        self.source = host
            .property(&["source", "address"])
            .and_then(|b| String::from_utf8(b).ok());
        self.request_done = end_of_stream;
        let masking = &self.shared.config.masking;
        let masks = !masking.is_empty() && self.shared.config.mcp.decode;
        if masks && masking.responses {
            // Answers are rewritten as they pass: they must not come compressed.
            host.set_header(Headers::Request, "accept-encoding", Some("identity"));
        }
        let rewrite_request =
            masks && (masking.requests || masking.on_too_large == OnTooLarge::Block);
        if rewrite_request && self.method == "POST" && !end_of_stream {
            // The body may change length (or be refused) once read whole.
            host.set_header(Headers::Request, "content-length", None);
        }
        {
            let mut slot = self.slot.borrow_mut();
            slot.origin = origin;
            slot.path = path.to_string();
            // Any body is judged when a rule may deny, whatever the method: a server may
            // read it (only POST bodies are rewritten).
            let can_deny = self.shared.config.policy.can_deny();
            slot.judges = !end_of_stream && (can_deny || (masks && masking.requests));
            slot.hold_body =
                slot.judges || (rewrite_request && self.method == "POST" && !end_of_stream);
            if slot.hold_body {
                if let Some(enc) = h
                    .get("content-encoding")
                    .filter(|e| !e.trim().eq_ignore_ascii_case("identity"))
                {
                    slot.unjudged = slot.judges.then(|| Unjudgeable::encoded(enc));
                }
            }
        }
        if !end_of_stream && self.shared.config.mcp.decode {
            self.body = Some(Vec::new());
        }
        let mut outbox = self.shared.outbox.borrow_mut();
        if !outbox.must_reject() {
            outbox.reserve();
            self.reserved = true;
            drop(outbox);
        } else {
            drop(outbox);
            // Compliance mode: nothing happens that is not recorded.
            self.silent = true;
            send(
                host,
                503,
                &[("content-type", "application/json"), ("retry-after", "1")],
                br#"{"error":"audit buffer full: request refused because it could not be recorded"}"#,
            );
            return Action::Pause;
        }
        if auth_on {
            let token = h.get("authorization").and_then(bearer).map(str::to_string);
            match token {
                None if self.shared.config.auth.mode == Mode::Required => {
                    let mut slot = self.slot.borrow_mut();
                    let info = AuthInfo {
                        error: "missing_token".into(),
                        issuer: None,
                        kid: None,
                    };
                    let www = challenge(&slot, None);
                    refuse_auth(
                        host,
                        &mut slot,
                        401,
                        info,
                        "no bearer token".into(),
                        Some(www),
                    );
                    return Action::Pause;
                }
                None => {}
                Some(token) => {
                    let now = host.now_ms();
                    let outcome = self.shared.auth.borrow_mut().authenticate(
                        &self.shared.config.auth,
                        &token,
                        now,
                        true,
                    );
                    let mut slot = self.slot.borrow_mut();
                    match admit(host, &self.shared, &mut slot, outcome) {
                        Admit::Proceed => {}
                        Admit::Refused => return Action::Pause,
                        Admit::Wait(provider) => {
                            self.shared.waiters.borrow_mut().push(Waiter {
                                context_id: self.context_id,
                                token,
                                provider,
                                since_ms: now,
                                slot: Rc::clone(&self.slot),
                            });
                            return Action::Pause;
                        }
                    }
                }
            }
        }
        if let Some(session) = self.session.as_deref() {
            let owner = self
                .shared
                .sessions
                .borrow()
                .get(session)
                .map(|e| e.sub.clone());
            let sub = self
                .slot
                .borrow()
                .identity
                .as_ref()
                .and_then(|i| i.sub.clone());
            if let Some(owner) = owner {
                if owner.is_some() && owner != sub {
                    self.session_identity_mismatch = true;
                    if self.shared.config.mcp.reject_session_identity_mismatch {
                        let info = AuthInfo {
                            error: "session_identity_mismatch".into(),
                            issuer: None,
                            kid: None,
                        };
                        let detail = "the session was started by another identity".to_string();
                        refuse_auth(host, &mut self.slot.borrow_mut(), 403, info, detail, None);
                        return Action::Pause;
                    }
                }
            }
        }
        // A held body is held in the body callbacks, not here: the headers go on, so this
        // works without `allow_on_headers_stop_iteration` too. The server never gets a body
        // it should not: a refusal answers locally and Envoy resets the upstream request.
        if judge(host, &self.shared, &mut self.slot.borrow_mut()) {
            return Action::Pause;
        }
        Action::Continue
    }

    pub fn on_request_body(&mut self, host: &dyn Host, size: usize, end_of_stream: bool) -> Action {
        if self.answered_locally() {
            return Action::Pause; // nothing of it goes upstream
        }
        if !self.in_scope {
            return Action::Continue;
        }
        self.slot.borrow_mut().body_started = true;
        if !self.held() {
            self.copy_chunk(host, size);
            if end_of_stream {
                self.request_done = true;
                self.decode_request_copy();
            }
            return Action::Continue;
        }
        if !end_of_stream {
            // Envoy buffers while we pause; the last callback sees the whole body.
            return Action::Pause;
        }
        self.finish_held_body(host, size)
    }

    /// HTTP/2 bodies may end in trailers instead of an end-of-stream body callback.
    pub fn on_request_trailers(&mut self, host: &dyn Host) -> Action {
        if self.answered_locally() {
            return Action::Pause; // nothing of it goes upstream
        }
        if !self.in_scope || self.request_done {
            return Action::Continue;
        }
        if !self.held() {
            self.request_done = true;
            self.decode_request_copy();
            return Action::Continue;
        }
        self.finish_held_body(host, usize::MAX)
    }

    /// The filter answered the request itself (a refusal, metadata, a full buffer).
    fn answered_locally(&self) -> bool {
        self.silent || matches!(self.slot.borrow().gate, Gate::Refused(_))
    }

    /// Whether the request body is held back (policy needs it, or auth is pending).
    fn held(&self) -> bool {
        let slot = self.slot.borrow();
        slot.hold_body || slot.gate == Gate::WaitingAuth
    }

    /// Decodes the copied request body once complete, so replies can be matched as they
    /// come; the copy is not needed after that.
    fn decode_request_copy(&mut self) {
        if let Some(body) = self.body.take() {
            self.slot.borrow_mut().messages = Some(flatten(jsonrpc::decode_body(&body)));
        }
    }

    fn copy_chunk(&mut self, host: &dyn Host, size: usize) {
        self.body_len = self.body_len.saturating_add(size);
        if let Some(buf) = self.body.as_mut() {
            if buf.len().saturating_add(size) > self.shared.config.mcp.max_body_bytes {
                self.body = None;
                self.body_overflow = true;
            } else if size > 0 {
                match host.body(Body::Request, 0, size) {
                    Ok(chunk) => buf.extend_from_slice(&chunk),
                    Err(e) => {
                        // Not judged (nothing may deny): passed on, recorded as undecodable.
                        host.log(
                            Level::Warn,
                            &format!("mcptrail: request body chunk unreadable: {}", e.0),
                        );
                        self.body = None;
                        self.body_unreadable = true;
                    }
                }
            }
        }
    }

    fn finish_held_body(&mut self, host: &dyn Host, size: usize) -> Action {
        self.request_done = true;
        self.body = None; // the held body is read whole here, not copied chunk by chunk
        let max = self.shared.config.mcp.max_body_bytes;
        let body = host.body(Body::Request, 0, size.min(max.saturating_add(1)));
        let mut slot = self.slot.borrow_mut();
        match body {
            Err(e) => {
                self.body_unreadable = true;
                if slot.judges {
                    slot.unjudged.get_or_insert(Unjudgeable::unreadable(&e.0));
                }
            }
            Ok(body) if body.len() > max => {
                // Too large to decode: the policy cannot vouch for it.
                self.body_overflow = true;
                if slot.hold_body {
                    slot.unjudged.get_or_insert(Unjudgeable::too_large(max));
                }
            }
            Ok(body) => {
                self.body_len = body.len();
                if let Some(action) = self.read_held_body(host, &body, &mut slot) {
                    return action;
                }
            }
        }
        if slot.gate == Gate::WaitingAuth {
            return Action::Pause; // the root judges once the keys arrive
        }
        if judge(host, &self.shared, &mut slot) {
            return Action::Pause;
        }
        Action::Continue
    }

    /// Reads a held body once, strictly: the decision, the record and any rewriting use this
    /// one reading. Notes in the slot what makes it unjudgeable; masks it when
    /// `masking.requests` is on. `Some` when the request was refused (too large to mask).
    fn read_held_body(&self, host: &dyn Host, body: &[u8], slot: &mut Slot) -> Option<Action> {
        let value = jsonrpc::read_body(body);
        let masking = &self.shared.config.masking;
        let masks = !masking.is_empty();
        if masks && !masking.admits(body.len()) && masking.on_too_large == OnTooLarge::Block {
            send(
                host,
                413,
                &[("content-type", "application/json")],
                br#"{"error":"request body too large to mask (masking.max_bytes)"}"#,
            );
            slot.gate = Gate::Refused(Refusal {
                kind: Kind::DecodeError,
                status: 413,
                reason: format!(
                    "request body larger than masking.max_bytes ({} bytes); refused (masking.on_too_large: block)",
                    masking.max_bytes
                ),
                auth: None,
                policy: Vec::new(),
            });
            return Some(Action::Pause);
        }
        if let (Ok(v), true) = (
            &value,
            masks && masking.requests && masking.admits(body.len()),
        ) {
            let mut masked = v.clone();
            let changed = match &mut masked {
                Value::Array(items) => items
                    .iter_mut()
                    .fold(false, |acc, m| !masking.mask_message(m).is_empty() | acc),
                m => !masking.mask_message(m).is_empty(),
            };
            if changed {
                replace_body(host, Body::Request, masked.to_string().as_bytes());
            }
        }
        let items = value.and_then(jsonrpc::decode_request_value);
        if slot.judges {
            if let Some(u) = crate::judge::check(body, &items, &self.routing) {
                slot.unjudged.get_or_insert(u);
            }
        }
        slot.messages = Some(flatten(items));
        None
    }

    /// Whether answers are rewritten on their way to the client (tools/list filtering,
    /// masking of responses).
    fn rewriting(&self) -> bool {
        !self.filter_ids.is_empty() || self.filter_listings || self.masks_responses()
    }

    fn masks_responses(&self) -> bool {
        let m = &self.shared.config.masking;
        m.responses && !m.is_empty()
    }

    pub fn on_response_headers(&mut self, host: &dyn Host, end_of_stream: bool) -> Action {
        if !self.in_scope || !self.shared.config.mcp.decode {
            return Action::Continue;
        }
        let h = Snapshot(host.headers(Headers::Response));
        self.response_status = h.get(":status").and_then(|s| s.parse().ok());
        if self.session.is_none() {
            self.session = h.get("mcp-session-id").map(str::to_string);
            self.session_from_response = self.session.is_some();
        }
        self.response_done = end_of_stream;
        let content_type = h.get("content-type").unwrap_or_default();
        let mut resp =
            response::Responses::new(content_type, self.shared.config.mcp.max_body_bytes);
        resp.collect_server = self.shared.config.mcp.record_notifications;
        resp.collect_replies = self.method == "GET";
        resp.keep_results = self.shared.config.mcp.result_preview_bytes > 0;
        if h.get("content-encoding")
            .is_some_and(|e| !e.eq_ignore_ascii_case("identity"))
        {
            resp.kind = response::BodyKind::Other;
            resp.problem = Some("compressed response: not decoded".into());
        }
        if self.shared.config.policy.can_deny() && resp.kind != response::BodyKind::Other {
            let slot = self.slot.borrow();
            self.filter_ids = slot
                .messages
                .iter()
                .flatten()
                .filter_map(|m| m.as_ref().ok())
                .filter(|m| {
                    m.kind == jsonrpc::Kind::Request && m.method.as_deref() == Some("tools/list")
                })
                .filter_map(|m| m.id.as_ref().map(response::id_key))
                .collect();
            self.filter_listings = self.method == "GET";
        }
        if self.rewriting() && resp.kind != response::BodyKind::Other {
            // The body will change length.
            host.set_header(Headers::Response, "content-length", None);
        }
        if self.masks_responses() && resp.kind == response::BodyKind::Other && !end_of_stream {
            // Compressed or not MCP: passed as it is, and said so.
            resp.problem
                .get_or_insert_with(|| format!("content-type `{content_type}`: not masked"));
        }
        self.resp = Some(resp);
        Action::Continue
    }

    /// The rewrite applied to each reply: tools/list filtering, then masking. What masking
    /// changed is kept by reply id, for the command's record.
    fn rewriter(&self) -> impl Fn(&mut Value) -> bool + '_ {
        let filter = self.tools_filter();
        move |reply: &mut Value| {
            let filtered = (!self.filter_ids.is_empty() || self.filter_listings) && filter(reply);
            if !self.masks_responses() {
                return filtered;
            }
            let masked = self.shared.config.masking.mask_message(reply);
            if masked.is_empty() {
                return filtered;
            }
            let key = reply.get("id").map(response::id_key).unwrap_or_default();
            self.reply_masked
                .borrow_mut()
                .entry(key)
                .or_default()
                .extend(masked);
            true
        }
    }

    /// Drops the tools a caller may not call from `tools/list` replies.
    fn tools_filter(&self) -> impl Fn(&mut Value) -> bool + '_ {
        move |reply: &mut Value| {
            // On a GET stream the request is elsewhere (a cut POST, another worker): a
            // listing is known by its shape, `result.tools` being an array.
            let is_target = reply
                .get("id")
                .is_some_and(|id| self.filter_ids.contains(&response::id_key(id)))
                || (self.filter_listings
                    && reply.pointer("/result/tools").is_some_and(Value::is_array));
            if !is_target {
                return false;
            }
            let slot = self.slot.borrow();
            let groups: &[String] = slot.identity.as_ref().map_or(&[], |i| i.groups.as_slice());
            let Some(tools) = reply
                .pointer_mut("/result/tools")
                .and_then(Value::as_array_mut)
            else {
                return false;
            };
            let before = tools.len();
            tools.retain(|t| {
                let name = t.get("name").and_then(Value::as_str);
                self.shared
                    .config
                    .policy
                    .decide("tools/call", name, groups)
                    .effect
                    == Effect::Allow
            });
            tools.len() != before
        }
    }

    pub fn on_response_body(
        &mut self,
        host: &dyn Host,
        size: usize,
        end_of_stream: bool,
    ) -> Action {
        if !self.in_scope {
            return Action::Continue;
        }
        self.response_done |= end_of_stream;
        let Some(mut resp) = self.resp.take() else {
            self.response_bytes = self.response_bytes.saturating_add(size as u64);
            return Action::Continue;
        };
        let rewriting = self.rewriting();
        let mut bytes = self.response_bytes;
        let filter = self.rewriter();
        let mut action = Action::Continue;
        let mut replacement = None;
        match resp.kind {
            response::BodyKind::Json if rewriting => {
                if end_of_stream {
                    // Held until complete: `size` is the whole body.
                    let whole = read_response(host, &mut resp, size);
                    bytes = size as u64;
                    replacement = self.rewrite_json(&mut resp, &whole, &filter);
                } else {
                    action = Action::Pause;
                }
            }
            response::BodyKind::Json => {
                bytes = bytes.saturating_add(size as u64);
                if size > 0 {
                    let chunk = read_response(host, &mut resp, size);
                    resp.json_chunk(&chunk);
                }
                if end_of_stream {
                    resp.json_end(None, None);
                }
            }
            response::BodyKind::Sse => {
                bytes = bytes.saturating_add(size as u64);
                let chunk = if size > 0 {
                    read_response(host, &mut resp, size)
                } else {
                    Vec::new()
                };
                replacement = resp.sse_chunk(
                    &chunk,
                    rewriting.then_some(&filter as response::Rewrite<'_>),
                );
            }
            response::BodyKind::Other => {
                bytes = bytes.saturating_add(size as u64);
            }
        }
        drop(filter);
        if end_of_stream {
            resp.finish();
        }
        self.response_bytes = bytes;
        if let Some(new_body) = replacement {
            replace_body(host, Body::Response, &new_body);
        }
        self.resp = Some(resp);
        self.record_delivered(host);
        action
    }

    /// HTTP/2 responses may end in trailers: finish what the body callbacks left open.
    pub fn on_response_trailers(&mut self, host: &dyn Host) -> Action {
        if !self.in_scope || self.response_done {
            return Action::Continue;
        }
        self.response_done = true;
        let Some(mut resp) = self.resp.take() else {
            return Action::Continue;
        };
        match resp.kind {
            response::BodyKind::Json if self.rewriting() => {
                // The body was held for rewriting: it is all buffered now.
                let max = self.shared.config.mcp.max_body_bytes;
                let whole = read_response(host, &mut resp, max.saturating_add(1));
                self.response_bytes = whole.len() as u64;
                let filter = self.rewriter();
                let replacement = self.rewrite_json(&mut resp, &whole, &filter);
                drop(filter);
                if let Some(new_body) = replacement {
                    replace_body(host, Body::Response, &new_body);
                }
            }
            response::BodyKind::Json => {
                resp.json_end(None, None);
            }
            response::BodyKind::Sse | response::BodyKind::Other => resp.finish(),
        }
        self.resp = Some(resp);
        self.record_delivered(host);
        Action::Continue
    }

    /// A whole JSON answer through the rewrite, within the masking bound: a larger one is
    /// passed (said so in a `decode.error`) or withheld (`masking.on_too_large: block`).
    fn rewrite_json(
        &self,
        resp: &mut response::Responses,
        whole: &[u8],
        rewrite: response::Rewrite<'_>,
    ) -> Option<Vec<u8>> {
        let masking = &self.shared.config.masking;
        if self.masks_responses() && !masking.admits(whole.len()) {
            resp.problem = Some(format!(
                "JSON response larger than masking.max_bytes ({} bytes); {}",
                masking.max_bytes,
                if masking.on_too_large == OnTooLarge::Block {
                    "withheld"
                } else {
                    "passed unmasked"
                }
            ));
            if masking.on_too_large == OnTooLarge::Block {
                let id = self.first_request_id().unwrap_or(Value::Null);
                let withheld = json!({"jsonrpc": "2.0", "id": id, "error": {"code": -32603,
                    "message": "response withheld by mcptrail: too large to mask"}});
                return Some(withheld.to_string().into_bytes());
            }
            return None;
        }
        resp.json_end(Some(whole), Some(rewrite))
    }

    fn first_request_id(&self) -> Option<Value> {
        let slot = self.slot.borrow();
        slot.messages
            .iter()
            .flatten()
            .filter_map(|m| m.as_ref().ok())
            .find(|m| m.kind == jsonrpc::Kind::Request)
            .and_then(|m| m.id.clone())
    }

    /// Records what arrived on the stream that deserves its own record, as it arrives (a
    /// `GET` stream may stay open for hours): server notifications and requests when
    /// `mcp.record_notifications` is on, and replies owed to earlier, cut streams. An event
    /// recorded before (redelivered after `Last-Event-ID`) is skipped.
    fn record_delivered(&mut self, host: &dyn Host) {
        let delivered = match self.resp.as_mut() {
            Some(r) if !r.delivered.is_empty() => std::mem::take(&mut r.delivered),
            _ => return,
        };
        let now = host.now_ms();
        self.learn_route(host);
        let mut records = Vec::with_capacity(delivered.len());
        for d in delivered {
            if let Some(event_id) = d.event_id.as_deref() {
                let key = session_key(self.session.as_deref(), event_id);
                let mut seen = self.shared.seen_events.borrow_mut();
                if seen.contains(&key) {
                    self.redelivered += 1;
                    self.shared.counters.borrow_mut().redelivered_skipped += 1;
                    continue;
                }
                seen.insert(&key, ());
            }
            records.push(self.delivered_record(&d, now));
        }
        self.push_records(host, records, now);
    }

    fn delivered_record(&self, d: &response::Delivered, now: u64) -> Record {
        let m = &d.message;
        if m.kind != jsonrpc::Kind::Response {
            let mut r = self.base(Kind::Notification, now);
            r.mcp = Some(Mcp {
                method: m.method.clone(),
                id: m.id.clone(),
                protocol_version: self.protocol_version.clone(),
                direction: Some("server_to_client".into()),
                event_id: d.event_id.clone(),
                last_event_id: self.last_event_id.clone(),
                ..Mcp::default()
            });
            // Delivered intact; how the stream ends belongs to the command it served.
            r.outcome = Some(Outcome {
                status: Status::Ok,
                http_status: self.response_status,
                is_error: false,
                error: None,
                duration_ms: None,
                response_bytes: None,
                notifications: 0,
                server_requests: 0,
                result_preview: None,
            });
            return r;
        }
        let owed = m.id.as_ref().and_then(|id| {
            let key = session_key(self.session.as_deref(), &response::id_key(id));
            self.shared.owed.borrow_mut().remove(&key)
        });
        let mut outcome = self.outcome(now);
        outcome.response_bytes = None;
        let mut r = match owed {
            Some(owed) => {
                let mut r = owed.record;
                r.ts = rfc3339_ms(now);
                r.reason = Some("reply delivered on a resumed stream (Last-Event-ID)".into());
                outcome.duration_ms = Some(now.saturating_sub(owed.started_ms));
                r
            }
            None => {
                let mut r = self.base(Kind::Command, now);
                r.mcp = Some(Mcp {
                    id: m.id.clone(),
                    protocol_version: self.protocol_version.clone(),
                    ..Mcp::default()
                });
                r.reason = Some("reply to a request this VM did not see (resumed stream)".into());
                outcome.duration_ms = None;
                r
            }
        };
        response::Reply::of(m, d.event_id.as_deref()).settle(&mut outcome);
        if let Some(mcp) = r.mcp.as_mut() {
            mcp.event_id = d.event_id.clone();
            mcp.last_event_id = self.last_event_id.clone();
        }
        r.outcome = Some(outcome);
        r
    }

    /// Hands records to the root's outbox.
    fn push_records(&self, host: &dyn Host, records: Vec<Record>, now: u64) {
        let mut outbox = self.shared.outbox.borrow_mut();
        let mut counters = self.shared.counters.borrow_mut();
        for mut r in records {
            match r.kind {
                Kind::AuthDenied => {
                    let code = r.auth.as_ref().map_or("unknown", |a| a.error.as_str());
                    match counters.auth_denied.get_mut(code) {
                        Some(n) => *n += 1,
                        None => {
                            counters.auth_denied.insert(code.to_string(), 1);
                        }
                    }
                }
                Kind::PolicyDenied => counters.policy_denied += 1,
                Kind::DecodeError => counters.decode_errors += 1,
                _ => {}
            }
            r.id = outbox.next_id();
            if outbox.push(&r, now) == Pushed::Dropped {
                host.log(
                    Level::Warn,
                    "mcptrail: audit buffer full, record dropped (counted)",
                );
            }
        }
    }

    /// Stream end (always called, also on resets): build the records and hand them over.
    pub fn on_log(&mut self, host: &dyn Host) {
        self.shared
            .waiters
            .borrow_mut()
            .retain(|w| w.context_id != self.context_id);
        if std::mem::take(&mut self.reserved) {
            self.shared.outbox.borrow_mut().release();
        }
        if !self.in_scope || self.silent {
            return;
        }
        let refused = matches!(self.slot.borrow().gate, Gate::Refused(_));
        if !self.shared.config.mcp.decode && !refused {
            return; // authentication only: nothing to record for admitted requests
        }
        let now = host.now_ms();
        self.learn_route(host);
        self.record_delivered(host);
        let records = self.records(now);
        self.remember_owed(&records);
        self.push_records(host, records, now);
    }

    /// Remembers the requests cut short before their reply (the reply may come on a
    /// resumed stream), and the events already recorded with their replies.
    fn remember_owed(&self, records: &[Record]) {
        let session = self.session.as_deref();
        if let Some(resp) = self.resp.as_ref() {
            let mut seen = self.shared.seen_events.borrow_mut();
            for event_id in resp.replies.values().filter_map(|r| r.event_id.as_deref()) {
                seen.insert(&session_key(session, event_id), ());
            }
        }
        if session.is_none() {
            return;
        }
        let mut owed = self.shared.owed.borrow_mut();
        for r in records {
            let Some(mcp) = r.mcp.as_ref() else { continue };
            let cut = r.kind == Kind::Command
                && mcp.method.is_some()
                && r.outcome
                    .as_ref()
                    .is_some_and(|o| o.status == Status::Aborted);
            if let (true, Some(id)) = (cut, mcp.id.as_ref()) {
                let key = session_key(session, &response::id_key(id));
                owed.insert(
                    &key,
                    Owed {
                        record: r.clone(),
                        started_ms: self.started_ms,
                    },
                );
            }
        }
    }

    fn outcome(&self, now: u64) -> Outcome {
        let refused = matches!(self.slot.borrow().gate, Gate::Refused(_));
        let status = match self.response_status {
            _ if refused => Status::Denied,
            None => Status::Aborted,
            Some(s) if s >= 500 => Status::UpstreamError,
            Some(s) if s >= 400 => Status::Error,
            Some(_) if !self.response_done => Status::Aborted,
            Some(_) => Status::Ok,
        };
        Outcome {
            status,
            http_status: self.response_status,
            is_error: false,
            error: None,
            duration_ms: Some(now.saturating_sub(self.started_ms)),
            response_bytes: Some(self.response_bytes),
            notifications: self.resp.as_ref().map_or(0, |r| r.notifications),
            server_requests: self.resp.as_ref().map_or(0, |r| r.server_requests),
            result_preview: None,
        }
    }

    fn base(&self, kind: Kind, now: u64) -> Record {
        let mut r = Record::new(kind, rfc3339_ms(now), String::new());
        r.session = self.session.clone();
        r.request_id = self.request_id.clone();
        r.identity = self.slot.borrow().identity.clone();
        r.source = Some(Source {
            address: self.source.clone(),
        });
        r.envoy = self.envoy.clone();
        r
    }

    /// Reads the route and cluster names once (after routing: when records are built).
    fn learn_route(&mut self, host: &dyn Host) {
        if self.envoy.is_some() {
            return;
        }
        // One host call each: Envoy's `xds.*` attributes (the Wasm-only `route_name` and
        // `cluster_name` return nothing in Envoy 1.40, so falling back to them cost two calls).
        let text = |path: &[&str]| {
            host.property(path)
                .and_then(|b| String::from_utf8(b).ok())
                .filter(|s| !s.is_empty())
        };
        let info = EnvoyInfo {
            route: text(&["xds", "route_name"]),
            cluster: text(&["xds", "cluster_name"]),
        };
        self.envoy = (info.route.is_some() || info.cluster.is_some()).then_some(info);
    }

    fn records(&mut self, now: u64) -> Vec<Record> {
        let outcome = self.outcome(now);
        let slot_messages = self.slot.borrow_mut().messages.take();
        let refusal = match &self.slot.borrow().gate {
            Gate::Refused(r) => Some(r.clone()),
            _ => None,
        };
        let messages = match slot_messages {
            Some(m) => Some(m),
            None if self.body_overflow => None,
            None => self.body.take().map(|b| flatten(jsonrpc::decode_body(&b))),
        };
        if let Some(refusal) = refusal {
            return self.refusal_records(&refusal, messages.as_deref(), now, outcome);
        }
        if self.body_overflow {
            let why = format!(
                "request body larger than mcp.max_body_bytes ({} bytes); passed through undecoded",
                self.shared.config.mcp.max_body_bytes
            );
            return vec![self.decode_error(&why, now, outcome)];
        }
        if self.body_unreadable {
            let why = "request body could not be read from the host; passed through undecoded";
            return vec![self.decode_error(why, now, outcome)];
        }
        if messages.is_some() && !self.request_done && self.response_status.is_none() {
            let why = "request body incomplete: the client went away";
            return vec![self.decode_error(why, now, outcome)];
        }
        // A GET or DELETE has no messages of its own; its answer may still be undecodable.
        let messages = messages.unwrap_or_default();
        let mut out: Vec<Record> = messages
            .iter()
            .map(|item| match item {
                Ok(m) => self.message_record(m, now, outcome.clone()),
                Err(e) => self.decode_error(&e.to_string(), now, outcome.clone()),
            })
            .collect();
        if self.arguments_too_large() {
            let why = format!(
                "request body larger than masking.max_bytes ({} bytes): arguments not recorded",
                self.shared.config.masking.max_bytes
            );
            out.push(self.decode_error(&why, now, outcome.clone()));
        }
        if let Some(problem) = self.response_problem(&messages) {
            out.push(self.decode_error(&problem, now, outcome.clone()));
        }
        self.session_records(&mut out, now, &outcome);
        out
    }

    /// A successful answer with a body MCP never uses (an HTML error page, say).
    fn unexpected_content_type(&self) -> bool {
        let status = self.response_status.unwrap_or(0);
        self.resp.as_ref().is_some_and(|r| {
            r.kind == response::BodyKind::Other
                && r.problem.is_none()
                && (200..300).contains(&status)
                && status != 202
                && status != 204
                && self.response_bytes > 0
        })
    }

    /// Why the answer to decoded requests could not be decoded, if it could not.
    fn response_problem(&self, messages: &[Result<Message, DecodeError>]) -> Option<String> {
        let resp = self.resp.as_ref()?;
        if let Some(p) = resp.problem.as_ref() {
            return Some(format!("response: {p}"));
        }
        let asked = messages
            .iter()
            .any(|m| m.as_ref().is_ok_and(|m| m.kind == jsonrpc::Kind::Request));
        (asked && self.unexpected_content_type()).then(|| {
                format!(
                    "response: content-type `{}` is neither application/json nor text/event-stream; not decoded",
                    resp.content_type
                )
            })
    }

    /// `session.start` after a successful `initialize` that opened a session;
    /// `session.end` on `DELETE`, or on a 404 for a session this VM saw start.
    fn session_records(&self, out: &mut Vec<Record>, now: u64, outcome: &Outcome) {
        let Some(session) = self.session.as_deref() else {
            return;
        };
        let mut sessions = self.shared.sessions.borrow_mut();
        let started = out
            .iter()
            .find(|r| {
                r.kind == Kind::Command
                    && r.mcp.as_ref().and_then(|m| m.method.as_deref()) == Some("initialize")
                    && r.outcome.as_ref().is_some_and(|o| o.status == Status::Ok)
            })
            .cloned();
        if let Some(mut start) = started.filter(|_| self.session_from_response) {
            start.kind = Kind::SessionStart;
            let sub = start.identity.as_ref().and_then(|i| i.sub.clone());
            sessions.start(session, self.started_ms, sub);
            out.insert(0, start);
            return;
        }
        for _ in out.iter().filter(|r| r.kind == Kind::Command) {
            sessions.touch(session);
        }
        let ended_by_client = self.method == "DELETE";
        let gone = self.response_status == Some(404) && sessions.get(session).is_some();
        if !(ended_by_client || gone) {
            return;
        }
        let known = sessions.end(session);
        let mut r = self.base(Kind::SessionEnd, now);
        r.outcome = Some(outcome.clone());
        r.reason = Some(if ended_by_client {
            "closed by the client (DELETE)".into()
        } else {
            "unknown or expired at the server (404)".into()
        });
        r.session_summary = Some(SessionSummary {
            started: known.as_ref().map(|e| rfc3339_ms(e.started_ms)),
            duration_ms: known.as_ref().map(|e| now.saturating_sub(e.started_ms)),
            commands: known.map_or(0, |e| e.commands),
        });
        out.push(r);
    }

    fn refusal_records(
        &self,
        refusal: &Refusal,
        messages: Option<&[Result<Message, DecodeError>]>,
        now: u64,
        mut outcome: Outcome,
    ) -> Vec<Record> {
        outcome.http_status = Some(refusal.status);
        if refusal.kind == Kind::PolicyDenied {
            let Some(messages) = messages else {
                return Vec::new();
            };
            return messages
                .iter()
                .enumerate()
                .filter_map(|(i, m)| m.as_ref().ok().map(|m| (i, m)))
                .map(|(i, m)| {
                    let mut r = self.message_record(m, now, outcome.clone());
                    r.kind = Kind::PolicyDenied;
                    let rule = refusal.policy.iter().find(|(d, _)| *d == i);
                    r.policy = Some(PolicyInfo {
                        rule: rule.and_then(|(_, rule)| *rule),
                    });
                    r.reason = Some(if rule.is_some() {
                        refusal.reason.clone()
                    } else {
                        "not executed: the batch contains a call denied by policy".into()
                    });
                    r
                })
                .collect();
        }
        // One record for an auth refusal (or an undecodable held body), naming the call
        // when the body was read.
        let mut r = match messages
            .and_then(|m| m.first())
            .and_then(|m| m.as_ref().ok())
        {
            Some(m) => {
                let mut r = self.message_record(m, now, outcome.clone());
                r.kind = refusal.kind;
                r
            }
            None => self.base(refusal.kind, now),
        };
        r.outcome = Some(outcome);
        // Masked: a decoder's reason may quote the body.
        r.reason = Some(
            self.shared
                .config
                .masking
                .mask_text(&refusal.reason)
                .into_owned(),
        );
        r.auth = refusal.auth.clone();
        vec![r]
    }

    /// A `decode.error` record; the reason goes through masking (it may quote a body).
    fn decode_error(&self, why: &str, now: u64, outcome: Outcome) -> Record {
        let mut r = self.base(Kind::DecodeError, now);
        r.reason = Some(self.shared.config.masking.mask_text(why).into_owned());
        r.outcome = Some(outcome);
        r
    }

    /// The outcome of one request: its reply when one was seen, else the HTTP exchange's.
    fn outcome_of(&self, m: &Message, mut outcome: Outcome) -> Outcome {
        if m.kind != jsonrpc::Kind::Request || outcome.status == Status::Denied {
            return outcome;
        }
        let reply =
            m.id.as_ref()
                .and_then(|id| self.resp.as_ref()?.replies.get(&response::id_key(id)));
        match reply {
            Some(r) => r.settle(&mut outcome),
            // Not an MCP answer at all: the upstream failed the protocol.
            None if self.unexpected_content_type() => outcome.status = Status::UpstreamError,
            // A 2xx answer that ended without this request's reply was cut short (unless it
            // could not be decoded at all: a decode.error says why, the HTTP outcome stands).
            None if outcome.status == Status::Ok
                && self.resp.as_ref().is_some_and(|r| {
                    r.kind != response::BodyKind::Other && r.problem.is_none()
                }) =>
            {
                outcome.status = Status::Aborted;
            }
            None => {}
        }
        outcome
    }

    fn message_record(&self, m: &Message, now: u64, outcome: Outcome) -> Record {
        let kind = match m.kind {
            jsonrpc::Kind::Notification => Kind::Notification,
            jsonrpc::Kind::Request | jsonrpc::Kind::Response => Kind::Command,
        };
        let mut r = self.base(kind, now);
        let outcome = self.outcome_of(m, outcome);
        let protocol_version = if m.method.as_deref() == Some("initialize") {
            // The negotiated version is the server's answer; the request's is the offer.
            let negotiated = m.id.as_ref().and_then(|id| {
                self.resp
                    .as_ref()?
                    .replies
                    .get(&response::id_key(id))?
                    .protocol_version
                    .clone()
            });
            negotiated.or_else(|| {
                m.params
                    .as_ref()
                    .and_then(|p| p.get("protocolVersion"))
                    .and_then(Value::as_str)
                    .map(str::to_string)
            })
        } else {
            self.protocol_version.clone()
        };
        let header_mismatch = self.routing.mismatch(m).is_some();
        // What the record keeps of the message, masked: never a secret in the trail.
        let masking = &self.shared.config.masking;
        let mut masked = Vec::new();
        // Each part is masked where it sits in the message, so rules and pointers agree.
        let mut masked_part = |part: Option<(&str, &Value)>| {
            part.map(|(at, v)| {
                let mut v = v.clone();
                masked.extend(masking.mask_value_at(&mut v, at));
                v
            })
        };
        let arguments = if self.arguments_too_large() {
            None
        } else {
            masked_part(m.arguments_at())
        };
        let client = masked_part(m.client_info_at());
        let resource = m.resource_at().and_then(|(at, uri)| {
            let mut v = Value::String(uri.to_string());
            masked.extend(masking.mask_value_at(&mut v, at));
            v.as_str().map(str::to_string)
        });
        let mut outcome = outcome;
        if let Some(e) = outcome.error.as_mut() {
            masked.extend(masking.mask_value_at(e, "/error"));
        }
        let preview_bytes = self.shared.config.mcp.result_preview_bytes;
        let result = m.id.as_ref().filter(|_| preview_bytes > 0).and_then(|id| {
            self.resp
                .as_ref()?
                .replies
                .get(&response::id_key(id))?
                .result
                .as_ref()
        });
        if let Some(result) = result {
            // Masked whole, then cut: a secret is never cut in half before the detectors see it.
            let mut v = result.clone();
            masked.extend(masking.mask_value_at(&mut v, "/result"));
            outcome.result_preview = Some(preview(&v.to_string(), preview_bytes));
        }
        if let Some(id) = m.id.as_ref() {
            if let Some(p) = self.reply_masked.borrow().get(&response::id_key(id)) {
                masked.extend(p.iter().cloned());
            }
        }
        r.mcp = Some(Mcp {
            method: m.method.clone(),
            id: m.id.clone(),
            tool: m.tool().map(str::to_string),
            arguments,
            protocol_version,
            prompt: m.prompt().map(str::to_string),
            resource,
            client,
            header_mismatch,
            session_identity_mismatch: self.session_identity_mismatch,
            ..Mcp::default()
        });
        r.outcome = Some(outcome);
        r.masked = masked;
        r
    }

    /// The request is larger than masking can vouch for: its arguments stay out of the
    /// record (a `decode.error` says so).
    fn arguments_too_large(&self) -> bool {
        let m = &self.shared.config.masking;
        !m.is_empty() && !m.admits(self.body_len)
    }
}

pub mod metrics;
pub mod response;

#[cfg(any(test, feature = "testkit"))]
pub mod fake;

#[cfg(test)]
mod tests;

#[cfg(test)]
mod stream_tests;

#[cfg(test)]
mod fixture_tests;

#[cfg(test)]
mod mask_tests;

#[cfg(test)]
mod judge_tests;
