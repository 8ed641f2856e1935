//! The filter layer: the proxy-wasm contexts (`host::proxy`) forward each callback here.
//! `Root` (one per VM) configures, fetches keys, settles held requests and ships records;
//! `Stream` (one per request) runs the pipeline stages (auth, mcp, policy, mask, audit) by
//! its [`Phase`]. Everything here reaches the host through the [`Host`] trait.

use std::cell::RefCell;

use crate::audit::build::Refusal;
use crate::audit::outbox::Outbox;
use crate::audit::record::Identity;
use crate::auth::http::{Admission, Refused};
use crate::auth::Authenticator;
use crate::config::Config;
use crate::host::{Body, Headers, Host, Level};
use crate::mcp::jsonrpc::{DecodeError, Message};
use crate::mcp::seal::Sealer;
use crate::mcp::sessions::Sessions;
use crate::policy::enforce::{self, Denied};
use crate::policy::judge::Unjudgeable;

mod approval;
pub mod metrics;
mod operation;
mod process;
mod root;
mod session;
mod stream;

pub use root::Root;
pub use stream::Stream;

/// What streams share with their root: config, outbox, authenticator, held requests.
#[derive(Debug)]
pub struct Shared {
    pub config: Config,
    pub outbox: RefCell<Outbox>,
    pub auth: RefCell<Authenticator>,
    pub sessions: RefCell<Sessions>,
    /// Seals and opens session ids (`mcp.session_keys`).
    sealer: Option<Sealer>,
    /// What the VMs of this Envoy process share (keys fetched, tokens verified).
    process: process::Process,
    waiters: RefCell<Vec<root::Waiter>>,
    /// Approval checks in flight, with the streams that wait for them.
    checks: RefCell<Vec<approval::Check>>,
    /// Counted here, published as metrics on the root's tick.
    pub counters: RefCell<metrics::Counters>,
}

/// Where a request stands. Every stream callback is a match on it; the root moves a request
/// out of `AwaitingAuth`.
#[derive(Debug, Clone, Default, PartialEq)]
pub enum Phase {
    /// Not MCP traffic (outside `mcp.paths`): untouched, unrecorded.
    #[default]
    Passthrough,
    /// Answered by the filter with nothing to record (protected-resource metadata, the
    /// buffer-full 503).
    Served,
    /// The headers wait for the provider's keys; the root settles it.
    AwaitingAuth,
    /// The body is held until complete, then judged (`policy::judge`, `policy::enforce`).
    Holding,
    /// A complete body with a call under `review`: the approval service is asked
    /// (`filter::approval`); its answer moves the request on or refuses it.
    Reviewing,
    /// On its way to the server; its body is copied for decoding as it passes.
    Upstream,
    /// Refused by the filter: answered locally, recorded.
    Refused(Refusal),
}

/// Per-request state the root may settle while the stream waits.
#[derive(Debug, Default)]
struct Slot {
    phase: Phase,
    identity: Option<Identity>,
    /// The request's session, once the session stage has run.
    session: crate::audit::build::SessionView,
    /// The body will be held whole before any of it goes upstream (policy or rewriting
    /// needs it): the phase after authentication is `Holding`, not `Upstream`.
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
    /// `x-request-id` (the approval check and the records).
    request_id: Option<String>,
    /// What the approval service said of a call under `review`.
    approval: Option<crate::audit::record::Approval>,
}

impl Slot {
    /// The phase once authenticated.
    fn admitted(&self) -> Phase {
        if self.hold_body {
            Phase::Holding
        } else {
            Phase::Upstream
        }
    }
}

/// What authentication decided, once applied to the current stream.
enum Admit {
    Proceed,
    Refused,
    Wait(usize),
}

/// Applies an admission to the current stream: headers, identity, phase, the refusal.
fn apply(host: &dyn Host, slot: &mut Slot, admission: Admission) -> Admit {
    match admission {
        Admission::Wait(provider) => {
            slot.phase = Phase::AwaitingAuth;
            Admit::Wait(provider)
        }
        Admission::Refuse(refused, identity) => {
            if identity.is_some() {
                slot.identity = identity;
            }
            refuse(host, slot, *refused);
            Admit::Refused
        }
        Admission::Admit { identity, headers } => {
            for (name, value) in headers {
                host.set_header(Headers::Request, name, value.as_deref());
            }
            slot.identity = Some(identity);
            slot.phase = slot.admitted();
            Admit::Proceed
        }
    }
}

/// Answers the current stream with an auth refusal.
fn refuse(host: &dyn Host, slot: &mut Slot, refused: Refused) {
    let headers: Vec<(&str, &str)> = refused
        .reply
        .headers
        .iter()
        .map(|(k, v)| (*k, v.as_str()))
        .collect();
    send(
        host,
        refused.reply.status,
        &headers,
        refused.reply.body.as_bytes(),
    );
    slot.phase = Phase::Refused(refused.refusal);
}

/// Answers the current stream with a judge or policy refusal.
fn deny(host: &dyn Host, slot: &mut Slot, denied: Denied) {
    send(
        host,
        denied.status,
        &[("content-type", "application/json")],
        denied.body.as_bytes(),
    );
    slot.phase = Phase::Refused(denied.refusal);
}

/// After authentication: whether the request may be resumed now. The session stage runs
/// first (its refusal answers the request). A held body that is
/// complete is judged here. One partly seen is finished by its last body callback. One not
/// seen yet is judged in the body callbacks after the headers go on: without
/// `allow_on_headers_stop_iteration` (Istio, Envoy Gateway) they come only once resumed.
fn proceed_after_auth(
    host: &dyn Host,
    shared: &Shared,
    slot: &mut Slot,
    owner: &approval::Owner<'_>,
) -> bool {
    if session::bind(host, shared, slot) {
        return false;
    }
    if slot.phase != Phase::Holding {
        return true;
    }
    if judge(host, shared, slot, owner) {
        return false;
    }
    slot.messages.is_some() || !slot.body_started
}

/// Settles a held request once its caller is known: refuses what cannot be judged, then
/// applies the policy to a complete body (which then goes `Upstream`, or waits for the
/// approval service). Returns `true` when the request does not go on now (refused, or
/// `Reviewing`).
fn judge(host: &dyn Host, shared: &Shared, slot: &mut Slot, owner: &approval::Owner<'_>) -> bool {
    if let Some(u) = slot.unjudged.take() {
        deny(host, slot, enforce::unjudgeable(&u));
        return true;
    }
    let Some(messages) = slot.messages.as_deref() else {
        return false;
    };
    let groups: &[String] = slot.identity.as_ref().map_or(&[], |i| i.groups.as_slice());
    match enforce::enforce(&shared.config.policy, messages, groups) {
        enforce::Verdict::Denied(denied) => {
            deny(host, slot, denied);
            true
        }
        enforce::Verdict::Review { index, rule } => {
            approval::ask(host, shared, slot, owner, index, rule);
            true
        }
        enforce::Verdict::Pass => {
            slot.phase = Phase::Upstream;
            false
        }
    }
}

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

/// What the filter's tests reach through `use super::*`.
#[cfg(test)]
use crate::{host::Action, policy::enforce::POLICY_DENIED_CODE};
#[cfg(test)]
use root::FAST_TICK_MS;

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

#[cfg(test)]
mod operation_tests;

#[cfg(test)]
mod lifecycle_tests;

#[cfg(test)]
mod approval_tests;
