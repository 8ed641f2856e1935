//! The filter's behaviour over the [`Host`] trait: the root (one per VM) configures and
//! ships, streams (one per request) decode and hand records to the root's outbox.
//!
//! The proxy-wasm contexts in `proxy.rs` only forward callbacks here.

use std::cell::RefCell;
use std::rc::Rc;

use serde_json::Value;

use crate::audit::outbox::{Outbox, Pushed};
use crate::audit::record::{Kind, Mcp, Outcome, Record, Source, Status};
use crate::config::Config;
use crate::host::{Action, Body, Headers, Host, Level};
use crate::jsonrpc::{self, DecodeError, Message};
use crate::time::rfc3339_ms;

/// What streams share with their root: the compiled config and the outbox.
#[derive(Debug)]
pub struct Shared {
    pub config: Config,
    pub outbox: RefCell<Outbox>,
}

/// Per-VM state.
#[derive(Debug, Default)]
pub struct Root {
    shared: Option<Rc<Shared>>,
    inflight_token: Option<u32>,
}

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
        let stream = format!("{:016x}", host.random_u64());
        let outbox = Outbox::new(config.audit.clone(), stream, host.random_u64());
        if let Err(e) = host.set_tick_period_ms(config.audit.flush_interval_ms) {
            host.log(
                Level::Error,
                &format!("mcptrail: cannot set the flush tick: {}", e.0),
            );
            return false;
        }
        self.shared = Some(Rc::new(Shared {
            config,
            outbox: RefCell::new(outbox),
        }));
        true
    }

    pub fn shared(&self) -> Option<&Rc<Shared>> {
        self.shared.as_ref()
    }

    /// A new stream, once configured.
    pub fn new_stream(&self) -> Option<Stream> {
        self.shared.as_ref().map(|s| Stream::new(Rc::clone(s)))
    }

    /// The flush tick: ships whatever is queued (or retries the batch in flight when due).
    pub fn on_tick(&mut self, host: &dyn Host) {
        self.ship(host, true);
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
            }
        }
    }

    /// A callout answered. `num_headers == 0` is a transport failure (reset, timeout).
    pub fn on_http_call_response(&mut self, host: &dyn Host, token: u32, num_headers: usize) {
        if self.inflight_token != Some(token) {
            return;
        }
        self.inflight_token = None;
        let Some(shared) = self.shared.as_ref() else {
            return;
        };
        let status = if num_headers == 0 {
            None
        } else {
            host.header(Headers::CallResponse, ":status")
                .and_then(|s| s.parse::<u32>().ok())
        };
        let ok = status.is_some_and(|s| (200..300).contains(&s));
        if !ok {
            let what = status.map_or_else(|| "no response".to_string(), |s| format!("HTTP {s}"));
            host.log(
                Level::Warn,
                &format!(
                    "mcptrail: audit collector (cluster `{}`) answered {what}; will retry",
                    shared.config.audit.cluster
                ),
            );
        }
        shared.outbox.borrow_mut().on_result(ok, host.now_ms());
        // Keep a busy outbox moving without waiting for the next tick.
        self.ship(host, false);
    }
}

/// Per-request state.
#[derive(Debug)]
pub struct Stream {
    shared: Rc<Shared>,
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
    request_done: bool,
    response_status: Option<u32>,
    response_bytes: u64,
    response_done: bool,
    rejected: bool,
}

impl Stream {
    fn new(shared: Rc<Shared>) -> Self {
        Self {
            shared,
            in_scope: false,
            started_ms: 0,
            method: String::new(),
            request_id: None,
            session: None,
            protocol_version: None,
            source: None,
            body: None,
            body_overflow: false,
            request_done: false,
            response_status: None,
            response_bytes: 0,
            response_done: false,
            rejected: false,
        }
    }

    pub fn on_request_headers(&mut self, host: &dyn Host, end_of_stream: bool) -> Action {
        let path = host.header(Headers::Request, ":path").unwrap_or_default();
        if !self.shared.config.mcp.in_scope(&path) {
            return Action::Continue;
        }
        self.in_scope = true;
        self.started_ms = host.now_ms();
        self.method = host.header(Headers::Request, ":method").unwrap_or_default();
        self.request_id = host.header(Headers::Request, "x-request-id");
        self.session = host.header(Headers::Request, "mcp-session-id");
        self.protocol_version = host.header(Headers::Request, "mcp-protocol-version");
        self.source = host
            .property(&["source", "address"])
            .and_then(|b| String::from_utf8(b).ok());
        if self.method == "POST" && !end_of_stream {
            self.body = Some(Vec::new());
        }
        self.request_done = end_of_stream;
        if self.shared.outbox.borrow().must_reject() {
            // Compliance mode: nothing happens that is not recorded.
            self.rejected = true;
            let body = br#"{"error":"audit buffer full: request refused because it could not be recorded"}"#;
            if let Err(e) = host.send_response(
                503,
                &[("content-type", "application/json"), ("retry-after", "1")],
                body,
            ) {
                host.log(Level::Error, &format!("mcptrail: cannot send 503: {}", e.0));
            }
            return Action::Pause;
        }
        Action::Continue
    }

    pub fn on_request_body(&mut self, host: &dyn Host, size: usize, end_of_stream: bool) -> Action {
        if let Some(buf) = self.body.as_mut() {
            if buf.len().saturating_add(size) > self.shared.config.mcp.max_body_bytes {
                self.body = None;
                self.body_overflow = true;
            } else if size > 0 {
                match host.body(Body::Request, 0, size) {
                    Some(chunk) => buf.extend_from_slice(&chunk),
                    None => {
                        host.log(Level::Warn, "mcptrail: request body chunk unavailable");
                    }
                }
            }
        }
        if end_of_stream {
            self.request_done = true;
        }
        Action::Continue
    }

    pub fn on_response_headers(&mut self, host: &dyn Host, end_of_stream: bool) -> Action {
        if !self.in_scope {
            return Action::Continue;
        }
        self.response_status = host
            .header(Headers::Response, ":status")
            .and_then(|s| s.parse().ok());
        if self.session.is_none() {
            self.session = host.header(Headers::Response, "mcp-session-id");
        }
        self.response_done = end_of_stream;
        Action::Continue
    }

    pub fn on_response_body(
        &mut self,
        _host: &dyn Host,
        size: usize,
        end_of_stream: bool,
    ) -> Action {
        if self.in_scope {
            self.response_bytes = self.response_bytes.saturating_add(size as u64);
            self.response_done |= end_of_stream;
        }
        Action::Continue
    }

    /// Stream end (always called, also on resets): build the records and hand them over.
    pub fn on_log(&mut self, host: &dyn Host) {
        if !self.in_scope || self.rejected {
            return;
        }
        let now = host.now_ms();
        let records = self.records(now);
        let mut outbox = self.shared.outbox.borrow_mut();
        for mut r in records {
            r.id = outbox.next_id();
            if outbox.push(&r, now) == Pushed::Dropped {
                host.log(
                    Level::Warn,
                    "mcptrail: audit buffer full, record dropped (counted)",
                );
            }
        }
    }

    fn outcome(&self, now: u64) -> Outcome {
        let status = match self.response_status {
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
        }
    }

    fn base(&self, kind: Kind, now: u64) -> Record {
        let mut r = Record::new(kind, rfc3339_ms(now), String::new());
        r.session = self.session.clone();
        r.request_id = self.request_id.clone();
        r.source = Some(Source {
            address: self.source.clone(),
        });
        r
    }

    fn records(&mut self, now: u64) -> Vec<Record> {
        if self.body_overflow {
            let mut r = self.base(Kind::DecodeError, now);
            r.reason = Some(format!(
                "request body larger than mcp.max_body_bytes ({} bytes); passed through undecoded",
                self.shared.config.mcp.max_body_bytes
            ));
            r.outcome = Some(self.outcome(now));
            return vec![r];
        }
        let Some(body) = self.body.take() else {
            return Vec::new();
        };
        if !self.request_done && self.response_status.is_none() {
            // The client went away before its request was complete.
            let mut r = self.base(Kind::DecodeError, now);
            r.reason = Some("request body incomplete: the client went away".into());
            r.outcome = Some(self.outcome(now));
            return vec![r];
        }
        let outcome = self.outcome(now);
        match jsonrpc::decode_body(&body) {
            Err(e) => vec![self.decode_error(&e, now, outcome)],
            Ok(items) => items
                .into_iter()
                .map(|item| match item {
                    Ok(m) => self.message_record(&m, now, outcome.clone()),
                    Err(e) => self.decode_error(&e, now, outcome.clone()),
                })
                .collect(),
        }
    }

    fn decode_error(&self, e: &DecodeError, now: u64, outcome: Outcome) -> Record {
        let mut r = self.base(Kind::DecodeError, now);
        r.reason = Some(e.to_string());
        r.outcome = Some(outcome);
        r
    }

    fn message_record(&self, m: &Message, now: u64, outcome: Outcome) -> Record {
        let kind = match m.kind {
            jsonrpc::Kind::Notification => Kind::Notification,
            jsonrpc::Kind::Request | jsonrpc::Kind::Response => Kind::Command,
        };
        let mut r = self.base(kind, now);
        let protocol_version = if m.method.as_deref() == Some("initialize") {
            m.params
                .as_ref()
                .and_then(|p| p.get("protocolVersion"))
                .and_then(Value::as_str)
                .map(str::to_string)
        } else {
            self.protocol_version.clone()
        };
        r.mcp = Some(Mcp {
            method: m.method.clone(),
            id: m.id.clone(),
            tool: m.tool().map(str::to_string),
            arguments: m.arguments().cloned(),
            protocol_version,
        });
        r.outcome = Some(outcome);
        r
    }
}

#[cfg(test)]
pub mod fake;

#[cfg(test)]
mod tests;
