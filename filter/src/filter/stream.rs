//! A stream (one per request): the pipeline run by phase. Requests: scope, auth, the held
//! body judged (`policy`), masked (`mask`), or copied as it passes; answers decoded (`mcp`),
//! filtered and masked on their way back; at the end, records built (`audit::build`) and
//! handed to the root's outbox.

use std::cell::RefCell;
use std::rc::Rc;

use serde_json::{json, Value};

use super::{
    apply, approval, judge, operation, proceed_after_auth, replace_body, send, session, Admit,
    Phase, Shared, Slot, Snapshot,
};
use crate::audit::build::{Facts, Finished};
use crate::audit::outbox::Pushed;
use crate::audit::record::{EnvoyInfo, Kind, Record};
use crate::audit::resume::Owed;
use crate::auth::http::{self, IDENTITY_HEADERS, METADATA_HEADERS};
use crate::auth::Mode;
use crate::host::{Action, Body, Headers, Host, Level};
use crate::mask::OnTooLarge;
use crate::mcp::jsonrpc::{self, DecodeError, Message};
use crate::mcp::response;
use crate::mcp::routing::Routing;
use crate::mcp::seal::Owner;
use crate::policy::judge::{self as judging, Unjudgeable};
use crate::policy::{enforce, listing};

/// Per-request state.
#[derive(Debug)]
pub struct Stream {
    shared: Rc<Shared>,
    context_id: u32,
    /// What the root may settle while the stream waits (the phase among it).
    slot: Rc<RefCell<Slot>>,
    /// What the records will say.
    facts: Facts,
    /// Copy of the request body while it is decodable (`None` once over the bound).
    body: Option<Vec<u8>>,
    /// Ids (keys) of `tools/list` requests whose replies are filtered by policy.
    filter_ids: Vec<String>,
    /// A `GET` stream (resumed or listening) under a policy that can deny: `tools/list`
    /// replies on it are filtered by their shape, the request that asked being elsewhere.
    filter_listings: bool,
    /// Holds room in the outbox until `on_log` (see `Outbox::reserve`).
    reserved: bool,
    /// The record id of this stream's `subscriptions/listen` call, chosen when its first
    /// notification is recorded: the notifications name it as their operation.
    listen_op: Option<String>,
}

impl Stream {
    pub(super) fn new(shared: Rc<Shared>, context_id: u32) -> Self {
        Self {
            shared,
            context_id,
            slot: Rc::new(RefCell::new(Slot::default())),
            facts: Facts::default(),
            body: None,
            filter_ids: Vec::new(),
            filter_listings: false,
            reserved: false,
            listen_op: None,
        }
    }

    fn phase(&self) -> Phase {
        self.slot.borrow().phase.clone()
    }

    /// MCP traffic this filter decodes and records (not passed through, not served).
    fn in_scope(&self) -> bool {
        !matches!(self.slot.borrow().phase, Phase::Passthrough | Phase::Served)
    }

    /// Answers locally with nothing to record.
    fn serve(
        &mut self,
        host: &dyn Host,
        status: u32,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> Action {
        send(host, status, headers, body);
        self.slot.borrow_mut().phase = Phase::Served;
        Action::Pause
    }

    /// A stop's first step, from the host itself (a pre-stop hook): every VM of the process
    /// closes its stream and ships what it holds on its next tick. Other callers are refused.
    fn drain(&mut self, host: &dyn Host) -> Action {
        // Envoy gives `ip:port` (`[ip]:port` for IPv6).
        let loopback = host
            .property(&["source", "address"])
            .and_then(|b| String::from_utf8(b).ok())
            .and_then(|a| a.parse::<std::net::SocketAddr>().ok())
            .is_some_and(|a| a.ip().is_loopback());
        const JSON: [(&str, &str); 1] = [("content-type", "application/json")];
        if !loopback {
            return self.serve(
                host,
                403,
                &JSON,
                br#"{"error":"the drain is accepted from a loopback address only"}"#,
            );
        }
        let asked = super::process::request_drain(host, &self.shared.process, host.now_ms());
        host.log(Level::Info, "mcptrail: drain asked for by a local caller");
        let body: &[u8] = if asked {
            br#"{"draining":true}"#
        } else {
            br#"{"draining":false,"error":"shared data refused the request"}"#
        };
        self.serve(host, if asked { 202 } else { 503 }, &JSON, body)
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
        let shared = Rc::clone(&self.shared);
        let config = &shared.config;
        let auth_on = config.auth.mode != Mode::Off;
        let scheme = h
            .get("x-forwarded-proto")
            .or_else(|| h.get(":scheme"))
            .unwrap_or("http");
        let authority = h.get(":authority").unwrap_or_default();
        let origin = format!("{scheme}://{authority}");
        self.facts.method = h.get(":method").map(str::to_string).unwrap_or_default();
        let method = self.facts.method.as_str();
        if method == "POST"
            && !config.audit.drain_path.is_empty()
            && path == config.audit.drain_path
        {
            return self.drain(host);
        }
        if auth_on && (method == "GET" || method == "HEAD") && http::is_metadata_path(path) {
            let default = config.mcp.paths.first().map_or("", String::as_str);
            let doc = http::metadata_document(&config.auth, path, &origin, default);
            return self.serve(host, 200, &METADATA_HEADERS, doc.as_bytes());
        }
        if !config.mcp.in_scope(full_path) {
            return Action::Continue; // Passthrough
        }
        shared.counters.borrow_mut().requests += 1;
        self.facts.started_ms = host.now_ms();
        self.facts.protocol_version = h.get("mcp-protocol-version").map(str::to_string);
        self.facts.routing =
            Routing::from_headers(h.0.iter().map(|(k, v)| (k.as_str(), v.as_str())));
        self.facts.last_event_id = h.get("last-event-id").map(str::to_string);
        self.facts.source = host
            .property(&["source", "address"])
            .and_then(|b| String::from_utf8(b).ok());
        self.facts.request_done = end_of_stream;
        let masking = &config.masking;
        let masks = !masking.is_empty() && config.mcp.decode;
        if masks && masking.responses {
            // Answers are rewritten as they pass: they must not come compressed.
            host.set_header(Headers::Request, "accept-encoding", Some("identity"));
        }
        let post = self.facts.method == "POST";
        let rewrite_request =
            masks && (masking.requests || masking.on_too_large == OnTooLarge::Block);
        if rewrite_request && post && !end_of_stream {
            // The body may change length (or be refused) once read whole.
            host.set_header(Headers::Request, "content-length", None);
        }
        {
            let mut slot = self.slot.borrow_mut();
            slot.phase = Phase::Upstream;
            slot.session.presented = h.get("mcp-session-id").map(str::to_string);
            slot.origin = origin;
            slot.path = path.to_string();
            slot.request_id = h.get("x-request-id").map(str::to_string);
            // Any body is judged when a rule may deny, whatever the method: a server may
            // read it (only POST bodies are rewritten).
            let can_deny = config.policy.can_deny();
            slot.judges = !end_of_stream && (can_deny || (masks && masking.requests));
            slot.hold_body = slot.judges || (rewrite_request && post && !end_of_stream);
            if slot.hold_body {
                if let Some(enc) = h
                    .get("content-encoding")
                    .filter(|e| !e.trim().eq_ignore_ascii_case("identity"))
                {
                    slot.unjudged = slot.judges.then(|| Unjudgeable::encoded(enc));
                }
            }
        }
        if !end_of_stream && config.mcp.decode {
            self.body = Some(Vec::new());
        }
        let mut outbox = shared.outbox.borrow_mut();
        if outbox.must_reject() {
            drop(outbox);
            // Compliance mode: nothing happens that is not recorded.
            return self.serve(
                host,
                503,
                &[("content-type", "application/json"), ("retry-after", "1")],
                br#"{"error":"audit buffer full: request refused because it could not be recorded"}"#,
            );
        }
        outbox.reserve();
        self.reserved = true;
        drop(outbox);
        if auth_on {
            if let Some(action) = self.authenticate(host, &h) {
                return action;
            }
        }
        let mut slot = self.slot.borrow_mut();
        slot.phase = slot.admitted();
        // A held body is held in the body callbacks, not here: the headers go on, so this
        // works without `allow_on_headers_stop_iteration` too. The server never gets a body
        // it should not: a refusal answers locally and Envoy resets the upstream request.
        let owner = approval::Owner {
            context_id: self.context_id,
            slot: &self.slot,
        };
        let go_on = proceed_after_auth(host, &shared, &mut slot, &owner);
        drop(slot);
        self.session_facts();
        if go_on {
            Action::Continue
        } else {
            Action::Pause
        }
    }

    /// Authenticates the request; `Some` when it is answered or held (waiting for keys).
    fn authenticate(&mut self, host: &dyn Host, h: &Snapshot) -> Option<Action> {
        let settings = &self.shared.config.auth;
        let token = h.get("authorization").and_then(http::bearer);
        let mut slot = self.slot.borrow_mut();
        let Some(token) = token else {
            if settings.mode == Mode::Required {
                let refused = http::missing_token(&slot.origin, &slot.path);
                super::refuse(host, &mut slot, refused);
                return Some(Action::Pause);
            }
            return None;
        };
        let now = host.now_ms();
        let mut tier = super::process::tokens(host, &self.shared.process);
        let outcome = self
            .shared
            .auth
            .borrow_mut()
            .authenticate_with(settings, token, now, true, &mut tier);
        let admission = http::admit(settings, outcome, &slot.origin, &slot.path);
        match apply(host, &mut slot, admission) {
            Admit::Proceed => None,
            Admit::Refused => Some(Action::Pause),
            Admit::Wait(provider) => {
                self.shared.waiters.borrow_mut().push(super::root::Waiter {
                    context_id: self.context_id,
                    token: token.to_string(),
                    provider,
                    since_ms: now,
                    slot: Rc::clone(&self.slot),
                });
                Some(Action::Pause)
            }
        }
    }

    /// The session id the session stage forwarded (here or, after a wait for keys, in the
    /// root); the rest of what it learnt is read from the slot when records are built.
    fn session_facts(&mut self) {
        let slot = self.slot.borrow();
        if slot.session.server_id.is_some() {
            self.facts.session.clone_from(&slot.session.server_id);
        }
    }

    pub fn on_request_body(&mut self, host: &dyn Host, size: usize, end_of_stream: bool) -> Action {
        match self.phase() {
            Phase::Passthrough => Action::Continue,
            // Nothing of it goes upstream (yet: a call under review waits for its answer).
            Phase::Served | Phase::Refused(_) | Phase::Reviewing => Action::Pause,
            Phase::AwaitingAuth | Phase::Holding => {
                self.slot.borrow_mut().body_started = true;
                if end_of_stream {
                    self.finish_held_body(host, size)
                } else {
                    // Envoy buffers while we pause; the last callback sees the whole body.
                    Action::Pause
                }
            }
            Phase::Upstream => {
                self.copy_chunk(host, size);
                if end_of_stream {
                    self.facts.request_done = true;
                    self.decode_request_copy();
                }
                Action::Continue
            }
        }
    }

    /// HTTP/2 bodies may end in trailers instead of an end-of-stream body callback.
    pub fn on_request_trailers(&mut self, host: &dyn Host) -> Action {
        match self.phase() {
            Phase::Passthrough => Action::Continue,
            Phase::Served | Phase::Refused(_) | Phase::Reviewing => Action::Pause,
            _ if self.facts.request_done => Action::Continue,
            Phase::AwaitingAuth | Phase::Holding => self.finish_held_body(host, usize::MAX),
            Phase::Upstream => {
                self.facts.request_done = true;
                self.decode_request_copy();
                Action::Continue
            }
        }
    }

    /// Decodes the copied request body once complete, so replies can be matched as they
    /// come; the copy is not needed after that.
    fn decode_request_copy(&mut self) {
        if let Some(body) = self.body.take() {
            self.slot.borrow_mut().messages = Some(flatten(jsonrpc::decode_body(&body)));
        }
    }

    fn copy_chunk(&mut self, host: &dyn Host, size: usize) {
        self.facts.body_len = self.facts.body_len.saturating_add(size);
        if let Some(buf) = self.body.as_mut() {
            if buf.len().saturating_add(size) > self.shared.config.mcp.max_body_bytes {
                self.body = None;
                self.facts.body_overflow = true;
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
                        self.facts.body_unreadable = true;
                    }
                }
            }
        }
    }

    fn finish_held_body(&mut self, host: &dyn Host, size: usize) -> Action {
        self.facts.request_done = true;
        self.body = None; // the held body is read whole here, not copied chunk by chunk
        let max = self.shared.config.mcp.max_body_bytes;
        let body = host.body(Body::Request, 0, size.min(max.saturating_add(1)));
        let shared = Rc::clone(&self.shared);
        let mut slot = self.slot.borrow_mut();
        match body {
            Err(e) => {
                self.facts.body_unreadable = true;
                if slot.judges {
                    slot.unjudged.get_or_insert(Unjudgeable::unreadable(&e.0));
                }
            }
            Ok(body) if body.len() > max => {
                // Too large to decode: the policy cannot vouch for it.
                self.facts.body_overflow = true;
                if slot.hold_body {
                    slot.unjudged.get_or_insert(Unjudgeable::too_large(max));
                }
            }
            Ok(body) => {
                self.facts.body_len = body.len();
                if let Some(action) = self.read_held_body(host, &body, &mut slot) {
                    return action;
                }
            }
        }
        if slot.phase == Phase::AwaitingAuth {
            return Action::Pause; // the root judges once the keys arrive
        }
        let owner = approval::Owner {
            context_id: self.context_id,
            slot: &self.slot,
        };
        if judge(host, &shared, &mut slot, &owner) {
            return Action::Pause;
        }
        Action::Continue
    }

    /// A callout of this stream answered: an approval check (`filter::approval`).
    pub fn on_http_call_response(
        &mut self,
        host: &dyn Host,
        token: u32,
        num_headers: usize,
        body_size: usize,
    ) {
        approval::answered(host, &self.shared, token, num_headers, body_size);
    }

    /// Reads a held body once, strictly: the decision, the record and any rewriting use this
    /// one reading. Notes in the slot what makes it unjudgeable; masks it when
    /// `masking.requests` is on. `Some` when the request was refused (too large to mask).
    fn read_held_body(&self, host: &dyn Host, body: &[u8], slot: &mut Slot) -> Option<Action> {
        let masking = &self.shared.config.masking;
        let masks = !masking.is_empty();
        let admitted = !masks || masking.admits(body.len());
        if !admitted && masking.on_too_large == OnTooLarge::Block {
            super::deny(host, slot, enforce::too_large_to_mask(masking.max_bytes));
            return Some(Action::Pause);
        }
        let value = jsonrpc::read_body(body);
        if let (Ok(v), true) = (&value, masks && masking.requests && admitted) {
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
            if let Some(u) = judging::check(body, &items, &self.facts.routing) {
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
        let decode = self.shared.config.mcp.decode;
        if !self.in_scope() || !(decode || self.shared.sealer.is_some()) {
            return Action::Continue;
        }
        let h = Snapshot(host.headers(Headers::Response));
        self.session_facts();
        if let Some(issued) = h.get("mcp-session-id") {
            if self.facts.session.is_none() {
                self.facts.session = Some(issued.to_string());
                self.facts.session_from_response = true;
            }
            let slot = self.slot.borrow();
            let started = slot.session.started_ms.unwrap_or(self.facts.started_ms);
            session::seal_reply(host, &self.shared, &slot, issued, started);
        }
        if !decode {
            return Action::Continue;
        }
        self.facts.response_status = h.get(":status").and_then(|s| s.parse().ok());
        self.facts.response_done = end_of_stream;
        let content_type = h.get("content-type").unwrap_or_default();
        let mut resp =
            response::Responses::new(content_type, self.shared.config.mcp.max_body_bytes);
        resp.collect_server = self.shared.config.mcp.record_notifications;
        resp.collect_replies = self.facts.method == "GET";
        resp.keep_results = self.shared.config.mcp.result_preview_bytes > 0;
        if self.listening() {
            // A subscription's answer lasts as long as the subscription: never held whole.
            resp.as_lines();
        }
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
            self.filter_listings = self.facts.method == "GET";
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
        self.facts.resp = Some(resp);
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
            self.facts
                .reply_masked
                .borrow_mut()
                .entry(key)
                .or_default()
                .extend(masked);
            true
        }
    }

    /// Drops the tools a caller may not call from `tools/list` replies: those answering a
    /// `tools/list` of this request, or on a `GET` stream any listing.
    fn tools_filter(&self) -> impl Fn(&mut Value) -> bool + '_ {
        move |reply: &mut Value| {
            let is_target = reply
                .get("id")
                .is_some_and(|id| self.filter_ids.contains(&response::id_key(id)))
                || (self.filter_listings && listing::is_listing(reply));
            if !is_target {
                return false;
            }
            let slot = self.slot.borrow();
            let groups: &[String] = slot.identity.as_ref().map_or(&[], |i| i.groups.as_slice());
            listing::filter_listing(reply, &self.shared.config.policy, groups)
        }
    }

    pub fn on_response_body(
        &mut self,
        host: &dyn Host,
        size: usize,
        end_of_stream: bool,
    ) -> Action {
        if !self.in_scope() {
            return Action::Continue;
        }
        self.facts.response_done |= end_of_stream;
        let Some(mut resp) = self.facts.resp.take() else {
            self.facts.response_bytes = self.facts.response_bytes.saturating_add(size as u64);
            return Action::Continue;
        };
        let rewriting = self.rewriting();
        let mut bytes = self.facts.response_bytes;
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
            // Streams: decoded (and rewritten) event by event or line by line, never held.
            kind @ (response::BodyKind::Sse | response::BodyKind::JsonLines) => {
                bytes = bytes.saturating_add(size as u64);
                let chunk = if size > 0 {
                    read_response(host, &mut resp, size)
                } else {
                    Vec::new()
                };
                let rewrite = rewriting.then_some(&filter as response::Rewrite<'_>);
                replacement = if kind == response::BodyKind::Sse {
                    resp.sse_chunk(&chunk, rewrite)
                } else {
                    resp.lines_chunk(&chunk, end_of_stream, rewrite)
                };
            }
            response::BodyKind::Other => {
                bytes = bytes.saturating_add(size as u64);
            }
        }
        drop(filter);
        if end_of_stream {
            resp.finish();
        }
        self.facts.response_bytes = bytes;
        if let Some(new_body) = replacement {
            replace_body(host, Body::Response, &new_body);
        }
        self.facts.resp = Some(resp);
        self.record_delivered(host);
        action
    }

    /// HTTP/2 responses may end in trailers: finish what the body callbacks left open.
    pub fn on_response_trailers(&mut self, host: &dyn Host) -> Action {
        if !self.in_scope() || self.facts.response_done {
            return Action::Continue;
        }
        self.facts.response_done = true;
        let Some(mut resp) = self.facts.resp.take() else {
            return Action::Continue;
        };
        match resp.kind {
            response::BodyKind::Json if self.rewriting() => {
                // The body was held for rewriting: it is all buffered now.
                let max = self.shared.config.mcp.max_body_bytes;
                let whole = read_response(host, &mut resp, max.saturating_add(1));
                self.facts.response_bytes = whole.len() as u64;
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
            response::BodyKind::Sse | response::BodyKind::JsonLines | response::BodyKind::Other => {
                resp.finish()
            }
        }
        self.facts.resp = Some(resp);
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
        let delivered = match self.facts.resp.as_mut() {
            Some(r) if !r.delivered.is_empty() => std::mem::take(&mut r.delivered),
            _ => return,
        };
        let now = host.now_ms();
        self.learn_route(host);
        let mut records = Vec::with_capacity(delivered.len());
        for d in delivered {
            let session = self.facts.session.as_deref();
            let mut resume = super::process::resumption(host, &self.shared.process);
            if let Some(event_id) = d.event_id.as_deref() {
                if !resume.first_sight(session, event_id) {
                    self.shared.counters.borrow_mut().redelivered_skipped += 1;
                    continue;
                }
            }
            let owed = match (&d.message.kind, d.message.id.as_ref()) {
                (jsonrpc::Kind::Response, Some(id)) => {
                    resume.take_owed(session, &response::id_key(id))
                }
                _ => None,
            };
            let mut r = self.finished(&self.slot.borrow()).delivered(&d, now, owed);
            if r.kind == Kind::Notification {
                r.operation = self.listen_operation();
            }
            records.push(r);
        }
        self.push_records(host, records, now);
    }

    /// Gives each record its id (the operations stage names some records by theirs); the
    /// `subscriptions/listen` call takes the id its notifications already named.
    fn assign_ids(&self, records: &mut [Record]) {
        let mut outbox = self.shared.outbox.borrow_mut();
        for r in records.iter_mut().filter(|r| r.id.is_empty()) {
            let listen = r.kind == Kind::Command
                && r.mcp.as_ref().and_then(|m| m.method.as_deref()) == Some(LISTEN);
            r.id = match self.listen_op.as_ref().filter(|_| listen) {
                Some(op) => op.clone(),
                None => outbox.next_id(),
            };
        }
    }

    /// The stream's request is a `subscriptions/listen` call.
    fn listening(&self) -> bool {
        self.slot.borrow().messages.iter().flatten().any(|m| {
            m.as_ref().is_ok_and(|m| {
                m.kind == jsonrpc::Kind::Request && m.method.as_deref() == Some(LISTEN)
            })
        })
    }

    /// The operation of a notification on this stream: the stream's `subscriptions/listen`
    /// call, if it is one.
    fn listen_operation(&mut self) -> Option<String> {
        if self.listen_op.is_none() && self.listening() {
            self.listen_op = Some(self.shared.outbox.borrow_mut().next_id());
        }
        self.listen_op.clone()
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
            if r.id.is_empty() {
                r.id = outbox.next_id();
            }
            if operation::is_call(r.kind) && r.operation.is_none() {
                r.operation = Some(r.id.clone());
            }
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
        approval::forget(&self.shared, self.context_id);
        if std::mem::take(&mut self.reserved) {
            self.shared.outbox.borrow_mut().release();
        }
        let refused = match self.slot.borrow().phase {
            Phase::Passthrough | Phase::Served => return,
            Phase::Refused(_) => true,
            _ => false,
        };
        if !self.shared.config.mcp.decode && !refused {
            return; // authentication only: nothing to record for admitted requests
        }
        let now = host.now_ms();
        self.session_facts();
        self.learn_route(host);
        self.record_delivered(host);
        let messages = match self.slot.borrow_mut().messages.take() {
            Some(m) => Some(m),
            None if self.facts.body_overflow => None,
            None => self.body.take().map(|b| flatten(jsonrpc::decode_body(&b))),
        };
        let mut records = self.finished(&self.slot.borrow()).records(
            now,
            messages.as_deref(),
            &mut self.shared.sessions.borrow_mut(),
        );
        self.assign_ids(&mut records);
        {
            let slot = self.slot.borrow();
            let exchange = operation::Exchange {
                owner: Owner::of(slot.identity.as_ref()),
                messages: messages.as_deref().unwrap_or_default(),
                replies: self.facts.resp.as_ref().map(|r| &r.replies),
            };
            let links = super::process::links(host, &self.shared.process);
            operation::join(&links, &exchange, &mut records, now);
        }
        let owed = self.finished(&self.slot.borrow()).owed(&records);
        self.remember(host, owed);
        self.push_records(host, records, now);
    }

    /// Remembers the requests cut short before their reply (the reply may come on a
    /// resumed stream), and the events already recorded with their replies.
    fn remember(&self, host: &dyn Host, owed: Vec<(String, Owed)>) {
        let session = self.facts.session.as_deref();
        let mut resume = super::process::resumption(host, &self.shared.process);
        if let Some(resp) = self.facts.resp.as_ref() {
            for event_id in resp.replies.values().filter_map(|r| r.event_id.as_deref()) {
                resume.first_sight(session, event_id);
            }
        }
        for (id_key, o) in owed {
            resume.owe(session, &id_key, o);
        }
    }

    /// The exchange as its records see it.
    fn finished<'a>(&'a self, slot: &'a Slot) -> Finished<'a> {
        let refusal = match &slot.phase {
            Phase::Refused(r) => Some(r),
            _ => None,
        };
        Finished {
            facts: &self.facts,
            config: &self.shared.config,
            identity: slot.identity.as_ref(),
            session: &slot.session,
            refusal,
            approval: slot.approval.as_ref(),
            request_id: slot.request_id.as_deref(),
        }
    }

    /// Reads the route and cluster names once (after routing: when records are built).
    fn learn_route(&mut self, host: &dyn Host) {
        if self.facts.envoy.is_some() {
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
        self.facts.envoy = (info.route.is_some() || info.cluster.is_some()).then_some(info);
    }
}

/// The 2026-07-28 method whose stream carries the caller's subscriptions.
const LISTEN: &str = "subscriptions/listen";

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
