//! The glue's request/response state machine, driven through the host trait (the recording
//! `FakeHost`) with arbitrary callback orders: up to four streams at once, request and
//! response headers, bodies in arbitrary chunks (Envoy's buffering after a `Pause` is
//! modelled), trailers, stream ends at any point (resets), root ticks with the clock moving,
//! callout answers with any status and body (audit collector, JWKS endpoint), callouts the
//! host refuses. Bodies are fuzzed bytes or fuzzer-chosen slices of the recorded real
//! exchanges (`filter/testdata/exchanges/`).
//!
//! Checked, beyond "never panics":
//! - with `auth.mode: required`, a request without a valid token is never let through: no
//!   request callback answers `Continue` after its headers, and it is never resumed (judged on
//!   the sequences Envoy can produce: no request callback after the request's end of stream;
//!   the calls are still made, and must not panic);
//! - client-sent `x-mcptrail-*` identity headers never survive the request headers callback;
//! - no bearer token ever appears in what is shipped to the collector;
//! - what the collector acknowledged verifies (hash chain, HMAC), and its only gaps are
//!   batches the outbox gave up on (counted by it).
#![no_main]

use std::collections::HashMap;

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use mcptrail::audit::chain::Verifier;
use mcptrail::host::fake::FakeHost;
use mcptrail::filter::{Root, Stream};
use mcptrail::host::{Action, Body, Headers, Host as _};
use mcptrail_fuzz::{
    b64, exchanges, jwks, slice, valid_token, Signer, AUDIT_KEY, AUDIT_KEY_B64, AUD,
    HMAC_SECRET, ISS, NOW_S,
};
use serde_json::{json, Value};

const ROOT_ID: u32 = 1;
const STREAMS: usize = 4;

#[derive(Arbitrary, Debug)]
enum Payload {
    Raw(Vec<u8>),
    Request { ex: u8, start: u16, len: u16 },
    Response { ex: u8, start: u16, len: u16 },
    WholeRequest(u8),
    WholeResponse(u8),
    Jwks,
}

#[derive(Arbitrary, Debug)]
enum TokenPick {
    None,
    Valid(u8),
    Garbage(String),
    Scheme(String, String),
}

#[derive(Arbitrary, Debug)]
enum Op {
    RequestHeaders {
        s: u8,
        method: u8,
        path: u8,
        token: TokenPick,
        /// Headers of a recorded exchange (session, protocol version, ...).
        from: Option<u8>,
        session: Option<u8>,
        last_event_id: Option<u8>,
        mcp_method: Option<String>,
        spoof: bool,
        eos: bool,
    },
    RequestBody {
        s: u8,
        data: Payload,
        eos: bool,
    },
    RequestTrailers {
        s: u8,
    },
    ResponseHeaders {
        s: u8,
        /// Status and headers of a recorded exchange, or the fields below.
        from: Option<u8>,
        status: u16,
        content_type: u8,
        session: Option<u8>,
        encoded: bool,
        eos: bool,
    },
    ResponseBody {
        s: u8,
        data: Payload,
        eos: bool,
    },
    ResponseTrailers {
        s: u8,
    },
    /// The stream ends (completed or reset): `on_log`.
    Log {
        s: u8,
    },
    Tick {
        ms: u16,
        hours: bool,
    },
    CallResponse {
        which: u8,
        status: Option<u16>,
        body: Payload,
    },
    RefuseCallouts(bool),
}

#[derive(Arbitrary, Debug)]
struct Input {
    config: u8,
    ops: Vec<Op>,
}

struct Conf {
    json: Value,
    required: bool,
    /// Which of [`Tokens`] pass under this configuration.
    valid: [bool; 4],
}

fn configs() -> Vec<Conf> {
    let secret = b64(HMAC_SECRET);
    vec![
        Conf {
            json: json!({
                "audit": {"cluster": "audit", "hmac_key": AUDIT_KEY_B64, "flush_interval_ms": 100,
                          "batch_max_records": 3, "max_retries": 2, "buffer_max_records": 20},
                "mcp": {"paths": ["/mcp"], "record_notifications": true}
            }),
            required: false,
            valid: [false; 4],
        },
        Conf {
            json: json!({
                "audit": {"cluster": "audit", "hmac_key": AUDIT_KEY_B64, "flush_interval_ms": 100,
                          "batch_max_records": 4, "max_retries": 0},
                "mcp": {"paths": ["/mcp"], "reject_session_identity_mismatch": true, "max_sessions": 4, "session_keys": ["c2Vzc2lvbi1rZXktZm9yLXRoZS1kZW1vLW9ubHktMzJi"]},
                "auth": {"mode": "required", "forward_identity": true, "forward_token": false,
                         "cache_max_entries": 2, "resource_metadata": {"resource": AUD},
                         "providers": [{"issuer": ISS, "audiences": [AUD], "shared_secret": secret,
                                        "algorithms": ["HS256"]}]},
                "policy": {"rules": [
                    {"tools": ["get-env", "delete_*"], "groups": ["admins"], "action": "allow"},
                    {"tools": ["get-env", "delete_*"], "action": "deny"},
                    {"methods": ["resources/*"], "groups": ["eng"], "action": "deny"}]}
            }),
            required: true,
            valid: [true, true, false, false],
        },
        Conf {
            json: json!({
                "audit": {"cluster": "audit", "hmac_key": AUDIT_KEY_B64, "format": "otlp",
                          "flush_interval_ms": 50, "timeout_ms": 100, "max_retries": 1,
                          "buffer_max_records": 8, "batch_max_records": 2},
                "mcp": {"max_body_bytes": 2048},
                "auth": {"mode": "required", "jwks_wait_ms": 500,
                         "providers": [{"issuer": ISS, "audiences": [AUD],
                                        "jwks_uri": "https://idp.example.com/jwks",
                                        "jwks_cluster": "idp", "jwks_refetch_min_s": 0,
                                        "jwks_refresh_s": 1}]},
                "policy": {"default": "deny", "rules": [
                    {"methods": ["initialize", "notifications/*", "tools/list", "ping"], "action": "allow"},
                    {"tools": ["echo*"], "action": "allow"}]}
            }),
            required: true,
            valid: [false, false, true, false],
        },
        Conf {
            json: json!({
                "audit": {"cluster": "audit", "hmac_key": AUDIT_KEY_B64, "on_buffer_full": "reject",
                          "buffer_max_records": 3, "batch_max_records": 1, "max_retries": 1},
                "mcp": {"max_body_bytes": 256, "paths": ["/mcp"], "record_notifications": true},
                "auth": {"mode": "optional", "required_scopes": ["mcp"],
                         "providers": [{"issuer": ISS, "audiences": [AUD], "jwks": jwks(),
                                        "shared_secret": secret}]},
                "policy": {"rules": [{"tools": ["*"], "groups": ["eng"], "action": "deny"}]}
            }),
            required: false,
            valid: [false; 4],
        },
    ]
}

/// Fixed tokens: two HS256, one EdDSA, one EdDSA already expired.
struct Tokens([String; 4]);

impl Tokens {
    fn new() -> Self {
        Tokens([
            valid_token("alice", &["admins"], NOW_S + 3600, Signer::Hs256),
            valid_token("bob", &["eng"], NOW_S + 3600, Signer::Hs256),
            valid_token("carol", &["eng"], NOW_S + 3600, Signer::EdDsa),
            valid_token("dave", &["eng"], NOW_S - 1000, Signer::EdDsa),
        ])
    }
}

struct Slot {
    ctx: u32,
    stream: Stream,
    request: HashMap<String, String>,
    response: HashMap<String, String>,
    req_body: Vec<u8>,
    req_paused: bool,
    resp_body: Vec<u8>,
    resp_paused: bool,
    headers_seen: bool,
    /// The request has ended (end of stream, or trailers): Envoy calls nothing more for it.
    req_ended: bool,
    /// Required auth, in scope, and no valid token: must never pass.
    must_block: bool,
    trusted: bool,
}

struct World {
    host: FakeHost,
    root: Root,
    conf: Conf,
    tokens: Tokens,
    slots: Vec<Option<Slot>>,
    next_ctx: u32,
    /// Bodies the collector acknowledged, in order.
    acked: Vec<Vec<u8>>,
}

fn payload(p: &Payload) -> Vec<u8> {
    let ex = exchanges();
    let pick = |i: u8| ex.get(usize::from(i) % ex.len().max(1));
    match p {
        Payload::Raw(b) => b.clone(),
        Payload::Request { ex, start, len } => pick(*ex)
            .map(|e| slice(&e.request_body, *start, *len).to_vec())
            .unwrap_or_default(),
        Payload::Response { ex, start, len } => pick(*ex)
            .map(|e| slice(&e.response_body, *start, *len).to_vec())
            .unwrap_or_default(),
        Payload::WholeRequest(i) => pick(*i).map(|e| e.request_body.clone()).unwrap_or_default(),
        Payload::WholeResponse(i) => pick(*i)
            .map(|e| e.response_body.clone())
            .unwrap_or_default(),
        Payload::Jwks => jwks().to_string().into_bytes(),
    }
}

const METHODS: [&str; 5] = ["POST", "GET", "DELETE", "HEAD", "PUT"];
const PATHS: [&str; 7] = [
    "/mcp",
    "/mcp/sub?x=1",
    "/other",
    "/.well-known/oauth-protected-resource",
    "/.well-known/oauth-protected-resource/mcp",
    "/mcp#frag",
    "/mcpx",
];
const CONTENT_TYPES: [&str; 6] = [
    "application/json",
    "text/event-stream",
    "application/json; charset=utf-8",
    "text/html",
    "",
    "TEXT/EVENT-STREAM;charset=UTF-8",
];

fn load(host: &FakeHost, map: Headers, h: &HashMap<String, String>) {
    host.clear_headers(map);
    for (k, v) in h {
        host.set_header(map, k, v);
    }
}

fn save(host: &FakeHost, map: Headers) -> HashMap<String, String> {
    let key = match map {
        Headers::Request => 0,
        Headers::Response => 1,
        Headers::CallResponse => 2,
    };
    host.headers
        .borrow()
        .iter()
        .filter(|((m, _), _)| *m == key)
        .map(|((_, k), v)| (k.clone(), v.clone()))
        .collect()
}

impl World {
    fn now_s(&self) -> i64 {
        (self.host.now.get() / 1000) as i64
    }

    fn slot(&mut self, s: u8) -> &mut Slot {
        let i = usize::from(s) % STREAMS;
        if self.slots[i].is_none() {
            let ctx = self.next_ctx;
            self.next_ctx += 1;
            let stream = match self.root.new_stream(ctx) {
                Some(st) => st,
                None => panic!("no stream from a configured root"),
            };
            self.slots[i] = Some(Slot {
                ctx,
                stream,
                request: HashMap::new(),
                response: HashMap::new(),
                req_body: Vec::new(),
                req_paused: false,
                resp_body: Vec::new(),
                resp_paused: false,
                headers_seen: false,
                req_ended: false,
                must_block: false,
                trusted: false,
            });
        }
        match self.slots[i].as_mut() {
            Some(slot) => slot,
            None => unreachable!(),
        }
    }

    /// Makes the stream current on the host, as Envoy does before a stream callback.
    fn enter(&mut self, s: u8) -> usize {
        let i = usize::from(s) % STREAMS;
        let (ctx, req, resp) = {
            let slot = self.slot(s);
            (slot.ctx, slot.request.clone(), slot.response.clone())
        };
        self.host.effective.set(ctx);
        load(&self.host, Headers::Request, &req);
        load(&self.host, Headers::Response, &resp);
        i
    }

    fn leave(&mut self, i: usize) {
        let req = save(&self.host, Headers::Request);
        let resp = save(&self.host, Headers::Response);
        if let Some(slot) = self.slots[i].as_mut() {
            slot.request = req;
            slot.response = resp;
        }
        self.host.effective.set(ROOT_ID);
    }

    /// The auth invariant after a request-side callback.
    /// `ended_before`: the request had ended before this callback (a sequence Envoy never
    /// produces; only "no panic" is asked of it).
    fn check_request_action(&self, i: usize, action: Action, what: &str, ended_before: bool) {
        let Some(slot) = self.slots[i].as_ref() else {
            return;
        };
        if slot.must_block && !slot.trusted && slot.headers_seen && !ended_before {
            assert_eq!(
                action,
                Action::Pause,
                "{what} let an unauthenticated request through"
            );
        }
    }

    fn check_not_resumed(&self) {
        let resumed = self.host.resumed.borrow();
        for slot in self.slots.iter().flatten() {
            if slot.must_block && !slot.trusted {
                assert!(
                    !resumed.contains(&slot.ctx),
                    "an unauthenticated request was resumed"
                );
            }
        }
    }

    fn run(&mut self, op: &Op) {
        match op {
            Op::RequestHeaders {
                s,
                method,
                path,
                token,
                from,
                session,
                last_event_id,
                mcp_method,
                spoof,
                eos,
            } => {
                let method = METHODS[usize::from(*method) % METHODS.len()];
                let path = PATHS[usize::from(*path) % PATHS.len()];
                let mut h: HashMap<String, String> = HashMap::new();
                if let Some(e) = from.and_then(|f| {
                    let ex = exchanges();
                    ex.get(usize::from(f) % ex.len().max(1))
                }) {
                    h.extend(e.request_headers.iter().cloned());
                }
                h.insert(":method".into(), method.into());
                h.insert(":path".into(), path.into());
                h.insert(":authority".into(), "mcp.example.com".into());
                h.insert("x-request-id".into(), "req-1".into());
                if let Some(sess) = session {
                    h.insert("mcp-session-id".into(), format!("S{}", sess % 3));
                }
                if let Some(id) = last_event_id {
                    h.insert("last-event-id".into(), format!("{}", id % 4));
                }
                if let Some(m) = mcp_method {
                    h.insert("mcp-method".into(), m.clone());
                }
                if *spoof {
                    h.insert("x-mcptrail-sub".into(), "spoofed".into());
                    h.insert("x-mcptrail-groups".into(), "spoofed".into());
                }
                let mut valid = false;
                match token {
                    TokenPick::None => {}
                    TokenPick::Valid(t) => {
                        let t = usize::from(*t) % 4;
                        let exp = if t == 3 { NOW_S - 1000 } else { NOW_S + 3600 };
                        valid = self.conf.valid[t] && self.now_s() - 60 < exp;
                        h.insert("authorization".into(), format!("Bearer {}", self.tokens.0[t]));
                    }
                    TokenPick::Garbage(g) => {
                        h.insert("authorization".into(), format!("Bearer {g}"));
                    }
                    TokenPick::Scheme(scheme, g) => {
                        h.insert("authorization".into(), format!("{scheme} {g}"));
                    }
                }
                let metadata = (method == "GET" || method == "HEAD")
                    && path.starts_with("/.well-known/oauth-protected-resource");
                let in_scope = path.starts_with("/mcp") && !path.starts_with("/mcpx");
                let required = self.conf.required;
                let (i, ended_before) = {
                    let slot = self.slot(*s);
                    let ended_before = slot.req_ended;
                    slot.req_ended |= *eos;
                    slot.request = h;
                    slot.headers_seen = true;
                    if valid {
                        slot.trusted = true;
                    }
                    slot.must_block = required && in_scope && !metadata;
                    (usize::from(*s) % STREAMS, ended_before)
                };
                self.enter(*s);
                let action = match self.slots[i].as_mut() {
                    Some(slot) => slot.stream.on_request_headers(&self.host, *eos),
                    None => return,
                };
                for name in ["x-mcptrail-sub", "x-mcptrail-groups"] {
                    let v = self.host.header(Headers::Request, name);
                    assert_ne!(v.as_deref(), Some("spoofed"), "a client identity header survived");
                }
                self.leave(i);
                self.check_request_action(i, action, "request headers", ended_before);
            }
            Op::RequestBody { s, data, eos } => {
                let chunk = payload(data);
                let i = self.enter(*s);
                let (action, ended_before) = {
                    let Some(slot) = self.slots[i].as_mut() else {
                        return;
                    };
                    let ended_before = slot.req_ended;
                    slot.req_ended |= *eos;
                    if slot.req_paused {
                        slot.req_body.extend_from_slice(&chunk);
                    } else {
                        slot.req_body = chunk;
                    }
                    self.host.set_body(Body::Request, &slot.req_body);
                    let size = slot.req_body.len();
                    let a = slot.stream.on_request_body(&self.host, size, *eos);
                    slot.req_paused = a == Action::Pause;
                    (a, ended_before)
                };
                self.leave(i);
                self.check_request_action(i, action, "request body", ended_before);
            }
            Op::RequestTrailers { s } => {
                let i = self.enter(*s);
                let (action, ended_before) = match self.slots[i].as_mut() {
                    Some(slot) => {
                        let ended_before = std::mem::replace(&mut slot.req_ended, true);
                        (slot.stream.on_request_trailers(&self.host), ended_before)
                    }
                    None => return,
                };
                self.leave(i);
                self.check_request_action(i, action, "request trailers", ended_before);
            }
            Op::ResponseHeaders {
                s,
                from,
                status,
                content_type,
                session,
                encoded,
                eos,
            } => {
                let mut h: HashMap<String, String> = HashMap::new();
                let ex = from.and_then(|f| {
                    let ex = exchanges();
                    ex.get(usize::from(f) % ex.len().max(1))
                });
                match ex {
                    Some(e) => {
                        h.extend(e.response_headers.iter().cloned());
                        h.insert(":status".into(), e.status.to_string());
                    }
                    None => {
                        h.insert(":status".into(), status.to_string());
                        let ct = CONTENT_TYPES[usize::from(*content_type) % CONTENT_TYPES.len()];
                        if !ct.is_empty() {
                            h.insert("content-type".into(), ct.into());
                        }
                        if let Some(sess) = session {
                            h.insert("mcp-session-id".into(), format!("S{}", sess % 3));
                        }
                        if *encoded {
                            h.insert("content-encoding".into(), "gzip".into());
                        }
                    }
                }
                let i = {
                    let slot = self.slot(*s);
                    slot.response = h;
                    usize::from(*s) % STREAMS
                };
                self.enter(*s);
                if let Some(slot) = self.slots[i].as_mut() {
                    slot.stream.on_response_headers(&self.host, *eos);
                }
                self.leave(i);
            }
            Op::ResponseBody { s, data, eos } => {
                let chunk = payload(data);
                let i = self.enter(*s);
                if let Some(slot) = self.slots[i].as_mut() {
                    if slot.resp_paused {
                        slot.resp_body.extend_from_slice(&chunk);
                    } else {
                        slot.resp_body = chunk;
                    }
                    self.host.set_body(Body::Response, &slot.resp_body);
                    let size = slot.resp_body.len();
                    let a = slot.stream.on_response_body(&self.host, size, *eos);
                    slot.resp_paused = a == Action::Pause;
                }
                self.leave(i);
            }
            Op::ResponseTrailers { s } => {
                let i = self.enter(*s);
                if let Some(slot) = self.slots[i].as_mut() {
                    slot.stream.on_response_trailers(&self.host);
                }
                self.leave(i);
            }
            Op::Log { s } => {
                let i = self.enter(*s);
                if let Some(slot) = self.slots[i].as_mut() {
                    slot.stream.on_log(&self.host);
                }
                self.leave(i);
                self.check_not_resumed();
                self.slots[i] = None;
            }
            Op::Tick { ms, hours } => {
                let ms = if *hours {
                    2 * 3_600_000
                } else {
                    u64::from(*ms) * 4
                };
                self.host.advance(ms);
                self.host.effective.set(ROOT_ID);
                self.root.on_tick(&self.host);
                self.check_not_resumed();
            }
            Op::CallResponse {
                which,
                status,
                body,
            } => {
                let n = self.host.calls.borrow().len();
                if n == 0 {
                    return;
                }
                // Mostly the latest callouts: the one in flight is usually the last.
                let token = (n - usize::from(*which) % n.min(4)) as u32;
                let body = payload(body);
                self.host.clear_headers(Headers::CallResponse);
                let num_headers = match status {
                    Some(st) => {
                        self.host
                            .set_header(Headers::CallResponse, ":status", &st.to_string());
                        1
                    }
                    None => 0,
                };
                self.host.set_body(Body::CallResponse, &body);
                let shipped_before = self.shipped();
                self.host.effective.set(ROOT_ID);
                self.root
                    .on_http_call_response(&self.host, token, num_headers, body.len());
                if self.shipped() > shipped_before {
                    let call = self.host.calls.borrow().get(token as usize - 1).cloned();
                    if let Some(call) = call {
                        assert_eq!(call.cluster, "audit", "an ack for a callout that was not a batch");
                        self.acked.push(call.body);
                    }
                }
                self.check_not_resumed();
            }
            Op::RefuseCallouts(on) => self.host.fail_calls.set(*on),
        }
    }

    fn shipped(&self) -> u64 {
        self.root
            .outbox_stats()
            .map_or(0, |s| s.batches_shipped)
    }

    fn dropped_by_retries(&self) -> u64 {
        self.root
            .outbox_stats()
            .map_or(0, |s| s.dropped_retries_exhausted)
    }

    /// Trail checks at the end of a run.
    fn check_trail(&self) {
        for call in self.host.calls.borrow().iter() {
            for t in &self.tokens.0 {
                let found = call.body.windows(t.len()).any(|w| w == t.as_bytes());
                assert!(!found, "a bearer token was shipped to cluster {}", call.cluster);
            }
        }
        let otlp = self.conf.json["audit"]["format"] == "otlp";
        let mut verifier = Verifier::new(Some(AUDIT_KEY.to_vec()));
        let mut last_seq = 0u64;
        let mut gaps = 0u64;
        let mut n = 0;
        for body in &self.acked {
            let lines = if otlp {
                match mcptrail::audit::otlp::decode_lines(body) {
                    Ok(l) => l,
                    Err(e) => panic!("an acknowledged OTLP batch does not decode: {e}"),
                }
            } else {
                String::from_utf8_lossy(body)
                    .lines()
                    .map(str::to_string)
                    .collect()
            };
            for line in lines {
                n += 1;
                verifier.feed(n, &line);
                let seq = serde_json::from_str::<Value>(&line)
                    .ok()
                    .and_then(|v| v["chain"]["seq"].as_u64())
                    .unwrap_or(0);
                gaps += seq.saturating_sub(last_seq + 1);
                last_seq = seq;
            }
        }
        let problems: Vec<_> = verifier
            .problems()
            .iter()
            .filter(|p| !p.message.starts_with("gap:"))
            .collect();
        assert!(problems.is_empty(), "the acknowledged trail does not verify: {problems:?}");
        assert!(
            gaps <= self.dropped_by_retries(),
            "{gaps} records missing from the trail, {} given up by the outbox",
            self.dropped_by_retries()
        );
    }
}

fuzz_target!(|input: Input| {
    let mut confs = configs();
    let conf = confs.swap_remove(usize::from(input.config) % 4);
    let host = FakeHost::default();
    host.now.set(NOW_S as u64 * 1000);
    let mut root = Root::default();
    root.context_id = ROOT_ID;
    assert!(root.configure(&host, conf.json.to_string().as_bytes()));
    let mut w = World {
        host,
        root,
        conf,
        tokens: Tokens::new(),
        slots: (0..STREAMS).map(|_| None).collect(),
        next_ctx: ROOT_ID + 1,
        acked: Vec::new(),
    };
    for op in input.ops.iter().take(64) {
        w.run(op);
    }
    // Every stream ends, then the root ships what it holds.
    for s in 0..STREAMS as u8 {
        if w.slots[usize::from(s)].is_some() {
            w.run(&Op::Log { s });
        }
    }
    w.run(&Op::Tick {
        ms: 10_000,
        hours: false,
    });
    w.check_trail();
});
