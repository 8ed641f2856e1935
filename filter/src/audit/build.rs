//! Records from a finished exchange: what the stream saw (its [`Facts`]), the caller, the
//! filter's own answer, and the decoded messages, mapped onto the record schema. Decoding
//! knows nothing of records; this is where its outcomes become record fields.

use std::cell::RefCell;
use std::collections::HashMap;

use serde_json::Value;

use crate::audit::record::{
    Approval, AuthInfo, EnvoyInfo, Identity, Kind, Mcp, Outcome, PolicyInfo, Record,
    SessionSummary, Source, Status,
};
use crate::audit::resume::Owed;
use crate::config::Config;
use crate::mcp::jsonrpc::{self, DecodeError, Message};
use crate::mcp::response::{self, BodyKind, Reply, Responses};
use crate::mcp::routing::Routing;
use crate::mcp::sessions::Sessions;
use crate::time::rfc3339_ms;

/// A request the filter answered itself (auth, judge, policy), as its record tells it.
#[derive(Debug, Clone, PartialEq)]
pub struct Refusal {
    pub kind: Kind,
    pub status: u32,
    pub reason: String,
    pub auth: Option<AuthInfo>,
    /// Policy denials: (index of the message, rule).
    pub policy: Vec<(usize, Option<usize>)>,
}

/// What a stream learnt of its exchange, for its records.
#[derive(Debug, Default)]
pub struct Facts {
    pub started_ms: u64,
    /// The HTTP method.
    pub method: String,
    pub session: Option<String>,
    /// The session id came from the response (a new session), not the request.
    pub session_from_response: bool,
    pub protocol_version: Option<String>,
    pub source: Option<String>,
    /// Route and cluster, read from Envoy once the request was routed.
    pub envoy: Option<EnvoyInfo>,
    /// 2026-07-28 standard headers.
    pub routing: Routing,
    /// `Last-Event-ID` of a resumed stream.
    pub last_event_id: Option<String>,
    /// Request body bytes seen.
    pub body_len: usize,
    /// The request body was over `mcp.max_body_bytes` (not decoded).
    pub body_overflow: bool,
    /// A request body chunk could not be read from the host.
    pub body_unreadable: bool,
    pub request_done: bool,
    pub response_status: Option<u32>,
    pub response_bytes: u64,
    pub response_done: bool,
    /// The answers, decoded as they came.
    pub resp: Option<Responses>,
    /// What masking changed in the replies the client received, by reply id.
    pub reply_masked: RefCell<HashMap<String, Vec<String>>>,
}

/// What the session stage learnt of a request's session (`filter::session` fills it, on
/// whichever path admitted the caller).
#[derive(Debug, Default, Clone, PartialEq)]
pub struct SessionView {
    /// The `Mcp-Session-Id` the client sent, as sent.
    pub presented: Option<String>,
    /// What the server knows the session as (what is forwarded and recorded).
    pub server_id: Option<String>,
    /// When the session started, where the sealed id says (known on every VM).
    pub started_ms: Option<u64>,
    /// The presented id was sealed (and opened).
    pub sealed: bool,
    /// Presented bare while keys are configured, and let through (`unsealed_sessions: pass`).
    pub unsealed: bool,
    /// Opened by another identity.
    pub mismatch: bool,
}

/// A reply's outcome onto a record's.
pub fn settle(reply: &Reply, outcome: &mut Outcome) {
    if let Some(e) = reply.error.as_ref() {
        outcome.status = Status::Error;
        outcome.error = Some(e.clone());
    } else if reply.is_error {
        outcome.status = Status::Error;
        outcome.is_error = true;
    } else if reply.result_type.as_deref() == Some("input_required") {
        outcome.status = Status::InputRequired;
    } else if reply.created_task {
        outcome.status = Status::Task;
    } else {
        outcome.status = Status::Ok;
    }
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

/// An exchange at its end, with what its records need besides its facts.
pub struct Finished<'a> {
    pub facts: &'a Facts,
    pub config: &'a Config,
    pub identity: Option<&'a Identity>,
    /// What the session stage learnt of the request's session.
    pub session: &'a SessionView,
    pub refusal: Option<&'a Refusal>,
    /// What the approval service said of the request's call under `review`.
    pub approval: Option<&'a Approval>,
    /// `x-request-id` as Envoy assigned it.
    pub request_id: Option<&'a str>,
}

impl Finished<'_> {
    /// The records of the request: one per message (or one refusal), `decode.error`s for
    /// what could not be decoded, and the session's start or end.
    pub fn records(
        &self,
        now: u64,
        messages: Option<&[Result<Message, DecodeError>]>,
        sessions: &mut Sessions,
    ) -> Vec<Record> {
        let mut out = self.exchange_records(now, messages, sessions);
        if let Some(a) = self.approval {
            // A call under review comes alone: its record is the one naming a method.
            let call = |r: &Record| {
                matches!(
                    r.kind,
                    Kind::Command | Kind::ApprovalRequested | Kind::PolicyDenied
                ) && r.mcp.as_ref().is_some_and(|m| m.method.is_some())
            };
            for r in out.iter_mut().filter(|r| call(r)) {
                r.approval = Some(a.clone());
            }
        }
        out
    }

    fn exchange_records(
        &self,
        now: u64,
        messages: Option<&[Result<Message, DecodeError>]>,
        sessions: &mut Sessions,
    ) -> Vec<Record> {
        let outcome = self.outcome(now);
        if let Some(refusal) = self.refusal {
            return self.refusal_records(refusal, messages, now, outcome);
        }
        let f = self.facts;
        if f.body_overflow {
            let why = format!(
                "request body larger than mcp.max_body_bytes ({} bytes); passed through undecoded",
                self.config.mcp.max_body_bytes
            );
            return vec![self.decode_error(&why, now, outcome)];
        }
        if f.body_unreadable {
            let why = "request body could not be read from the host; passed through undecoded";
            return vec![self.decode_error(why, now, outcome)];
        }
        if messages.is_some() && !f.request_done && f.response_status.is_none() {
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
                self.config.masking.max_bytes
            );
            out.push(self.decode_error(&why, now, outcome.clone()));
        }
        if let Some(problem) = self.response_problem(messages) {
            out.push(self.decode_error(&problem, now, outcome.clone()));
        }
        self.session_records(sessions, &mut out, now, &outcome);
        out
    }

    /// The requests among `records` cut short before their reply (a resumed stream may still
    /// deliver it), by reply id key.
    pub fn owed(&self, records: &[Record]) -> Vec<(String, Owed)> {
        if self.facts.session.is_none() {
            return Vec::new();
        }
        records
            .iter()
            .filter(|r| {
                r.kind == Kind::Command
                    && r.mcp.as_ref().is_some_and(|m| m.method.is_some())
                    && r.outcome
                        .as_ref()
                        .is_some_and(|o| o.status == Status::Aborted)
            })
            .filter_map(|r| {
                let id = r.mcp.as_ref()?.id.as_ref()?;
                Some((
                    response::id_key(id),
                    Owed {
                        record: r.clone(),
                        started_ms: self.facts.started_ms,
                    },
                ))
            })
            .collect()
    }

    /// The record of a message delivered on the stream that deserves its own: a server
    /// notification or request, or a reply (owed to a cut stream when `owed` is given).
    pub fn delivered(&self, d: &response::Delivered, now: u64, owed: Option<Owed>) -> Record {
        let m = &d.message;
        if m.kind != jsonrpc::Kind::Response {
            let mut r = self.base(Kind::Notification, now);
            r.mcp = Some(Mcp {
                method: m.method.clone(),
                id: m.id.clone(),
                protocol_version: self.facts.protocol_version.clone(),
                direction: Some("server_to_client".into()),
                event_id: d.event_id.clone(),
                last_event_id: self.facts.last_event_id.clone(),
                ..Mcp::default()
            });
            // Delivered intact; how the stream ends belongs to the command it served.
            r.outcome = Some(Outcome {
                status: Status::Ok,
                http_status: self.facts.response_status,
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
                    protocol_version: self.facts.protocol_version.clone(),
                    ..Mcp::default()
                });
                r.reason = Some("reply to a request this VM did not see (resumed stream)".into());
                outcome.duration_ms = None;
                r
            }
        };
        settle(&response::Reply::of(m, d.event_id.as_deref()), &mut outcome);
        if let Some(mcp) = r.mcp.as_mut() {
            mcp.event_id = d.event_id.clone();
            mcp.last_event_id = self.facts.last_event_id.clone();
        }
        r.outcome = Some(outcome);
        r
    }

    pub fn outcome(&self, now: u64) -> Outcome {
        let refused = self.refusal.is_some();
        let status = match self.facts.response_status {
            _ if refused => Status::Denied,
            None => Status::Aborted,
            Some(s) if s >= 500 => Status::UpstreamError,
            Some(s) if s >= 400 => Status::Error,
            Some(_) if !self.facts.response_done => Status::Aborted,
            Some(_) => Status::Ok,
        };
        Outcome {
            status,
            http_status: self.facts.response_status,
            is_error: false,
            error: None,
            duration_ms: Some(now.saturating_sub(self.facts.started_ms)),
            response_bytes: Some(self.facts.response_bytes),
            notifications: self.facts.resp.as_ref().map_or(0, |r| r.notifications),
            server_requests: self.facts.resp.as_ref().map_or(0, |r| r.server_requests),
            result_preview: None,
        }
    }

    pub fn base(&self, kind: Kind, now: u64) -> Record {
        let mut r = Record::new(kind, rfc3339_ms(now), String::new());
        r.session = self.facts.session.clone();
        r.request_id = self.request_id.map(str::to_string);
        r.identity = self.identity.cloned();
        r.source = Some(Source {
            address: self.facts.source.clone(),
        });
        r.envoy = self.facts.envoy.clone();
        r
    }

    /// A successful answer with a body MCP never uses (an HTML error page, say).
    pub fn unexpected_content_type(&self) -> bool {
        let status = self.facts.response_status.unwrap_or(0);
        self.facts.resp.as_ref().is_some_and(|r| {
            r.kind == BodyKind::Other
                && r.problem.is_none()
                && (200..300).contains(&status)
                && status != 202
                && status != 204
                && self.facts.response_bytes > 0
        })
    }

    /// Why the answer to decoded requests could not be decoded, if it could not.
    pub fn response_problem(&self, messages: &[Result<Message, DecodeError>]) -> Option<String> {
        let resp = self.facts.resp.as_ref()?;
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
    /// `session.end` on `DELETE` (on whichever VM it lands), or on a 404 for a session known
    /// to have started (this VM saw it, or its sealed id says when). `commands` counts what
    /// this VM saw; totals over every VM come from `mcptrail query --sessions`.
    pub fn session_records(
        &self,
        sessions: &mut Sessions,
        out: &mut Vec<Record>,
        now: u64,
        outcome: &Outcome,
    ) {
        let Some(session) = self.facts.session.as_deref() else {
            return;
        };

        let started = out
            .iter()
            .find(|r| {
                r.kind == Kind::Command
                    && r.mcp.as_ref().and_then(|m| m.method.as_deref()) == Some("initialize")
                    && r.outcome.as_ref().is_some_and(|o| o.status == Status::Ok)
            })
            .cloned();
        if let Some(mut start) = started.filter(|_| self.facts.session_from_response) {
            start.kind = Kind::SessionStart;
            let sub = start.identity.as_ref().and_then(|i| i.sub.clone());
            sessions.start(session, self.facts.started_ms, sub);
            out.insert(0, start);
            return;
        }
        for _ in out.iter().filter(|r| r.kind == Kind::Command) {
            sessions.touch(session);
        }
        let ended_by_client = self.facts.method == "DELETE";
        // A session known to have started: this VM saw it, or its sealed id says so.
        let known_start = self.session.started_ms.is_some() || sessions.get(session).is_some();
        let gone = self.facts.response_status == Some(404) && known_start;
        if !(ended_by_client || gone) {
            return;
        }
        let known = sessions.end(session);
        let started_ms = self
            .session
            .started_ms
            .or(known.as_ref().map(|e| e.started_ms));
        let mut r = self.base(Kind::SessionEnd, now);
        r.outcome = Some(outcome.clone());
        r.reason = Some(if ended_by_client {
            "closed by the client (DELETE)".into()
        } else {
            "unknown or expired at the server (404)".into()
        });
        r.session_summary = Some(SessionSummary {
            started: started_ms.map(rfc3339_ms),
            duration_ms: started_ms.map(|t| now.saturating_sub(t)),
            commands: known.map_or(0, |e| e.commands),
        });
        out.push(r);
    }

    pub fn refusal_records(
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
        r.reason = Some(self.config.masking.mask_text(&refusal.reason).into_owned());
        r.auth = refusal.auth.clone();
        vec![r]
    }

    /// A `decode.error` record; the reason goes through masking (it may quote a body).
    pub fn decode_error(&self, why: &str, now: u64, outcome: Outcome) -> Record {
        let mut r = self.base(Kind::DecodeError, now);
        r.reason = Some(self.config.masking.mask_text(why).into_owned());
        r.outcome = Some(outcome);
        r
    }

    /// The outcome of one request: its reply when one was seen, else the HTTP exchange's.
    pub fn outcome_of(&self, m: &Message, mut outcome: Outcome) -> Outcome {
        if m.kind != jsonrpc::Kind::Request || outcome.status == Status::Denied {
            return outcome;
        }
        let reply =
            m.id.as_ref()
                .and_then(|id| self.facts.resp.as_ref()?.replies.get(&response::id_key(id)));
        match reply {
            Some(r) => settle(r, &mut outcome),
            // Not an MCP answer at all: the upstream failed the protocol.
            None if self.unexpected_content_type() => outcome.status = Status::UpstreamError,
            // A 2xx answer that ended without this request's reply was cut short (unless it
            // could not be decoded at all: a decode.error says why, the HTTP outcome stands).
            None if outcome.status == Status::Ok
                && self
                    .facts
                    .resp
                    .as_ref()
                    .is_some_and(|r| r.kind != BodyKind::Other && r.problem.is_none()) =>
            {
                outcome.status = Status::Aborted;
            }
            None => {}
        }
        outcome
    }

    pub fn message_record(&self, m: &Message, now: u64, outcome: Outcome) -> Record {
        let kind = match m.kind {
            jsonrpc::Kind::Notification => Kind::Notification,
            jsonrpc::Kind::Request | jsonrpc::Kind::Response => Kind::Command,
        };
        let mut r = self.base(kind, now);
        let outcome = self.outcome_of(m, outcome);
        let protocol_version = if m.method.as_deref() == Some("initialize") {
            // The negotiated version is the server's answer; the request's is the offer.
            let negotiated = m.id.as_ref().and_then(|id| {
                self.facts
                    .resp
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
            // The stateless generation's server goes by the body's version; the header only
            // has to agree (the server refuses a disagreement).
            m.meta_protocol_version()
                .map(str::to_string)
                .or_else(|| self.facts.protocol_version.clone())
        };
        let header_mismatch = self.facts.routing.mismatch(m).is_some();
        // What the record keeps of the message, masked: never a secret in the trail.
        let masking = &self.config.masking;
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
        let input_responses = if self.arguments_too_large() {
            None
        } else {
            masked_part(m.input_responses_at())
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
        let reply =
            m.id.as_ref()
                .and_then(|id| self.facts.resp.as_ref()?.replies.get(&response::id_key(id)));
        let preview_bytes = self.config.mcp.result_preview_bytes;
        let result = reply
            .filter(|_| preview_bytes > 0)
            .and_then(|r| r.result.as_ref());
        if let Some(result) = result {
            // Masked whole, then cut: a secret is never cut in half before the detectors see it.
            let mut v = result.clone();
            masked.extend(masking.mask_value_at(&mut v, "/result"));
            outcome.result_preview = Some(preview(&v.to_string(), preview_bytes));
        }
        if let Some(id) = m.id.as_ref() {
            if let Some(p) = self.facts.reply_masked.borrow().get(&response::id_key(id)) {
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
            session_identity_mismatch: self.session.mismatch,
            session_unsealed: self.session.unsealed,
            input_requests: reply.and_then(|r| r.input_requests.clone()),
            input_responses,
            task_id: m
                .task_id()
                .map(str::to_string)
                .or_else(|| reply.and_then(|r| r.task_id.clone())),
            task_status: reply.and_then(|r| r.task_status.clone()),
            ..Mcp::default()
        });
        r.outcome = Some(outcome);
        r.masked = masked;
        r
    }

    /// The request is larger than masking can vouch for: its arguments stay out of the
    /// record (a `decode.error` says so).
    pub fn arguments_too_large(&self) -> bool {
        let m = &self.config.masking;
        !m.is_empty() && !m.admits(self.facts.body_len)
    }
}
