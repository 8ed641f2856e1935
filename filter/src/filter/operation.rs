//! The operations stage: every `command` record names the logical operation it belongs to
//! (`../shared/DESIGN.md`, "Stateless protocol"). The 2026-07-28 generation has no session to
//! tell one story by, so the legs of a multi-round-trip request and a task's calls are linked
//! here, after the records are built and before they are shipped.
//!
//! Wherever the protocol carries something to link by, the operation is derived from it and
//! is the same on every worker and replica with no store: the digest of the `requestState` a
//! leg received and the next one echoes, or the task id. Only what the protocol leaves
//! unlinked goes through the process's shared data (`process::SharedLinks`): a third leg
//! that echoes a newer `requestState`, and a retry without any state (linked by caller, call,
//! arguments and the answered input keys). Those links are followed within one Envoy process;
//! across replicas each such leg names its own derived id, and the leg before it names that id
//! as its `mcp.next_operation`, so `mcptrail query --operations` joins them from the trail.

use std::collections::HashMap;

use serde_json::{Map, Value};
use sha2::{Digest, Sha256};

use super::process::SharedLinks;
use crate::audit::chain::hex;
use crate::audit::record::{Kind, Record};
use crate::mcp::jsonrpc::{self, DecodeError, Message};
use crate::mcp::response::{self, Reply};
use crate::mcp::seal::Owner;

/// What one exchange's operations are judged from.
pub(super) struct Exchange<'a> {
    pub owner: Owner,
    pub messages: &'a [Result<Message, DecodeError>],
    pub replies: Option<&'a HashMap<String, Reply>>,
}

/// The records of a call (a `command`, or the `session.start` an `initialize` became).
pub(super) fn is_call(kind: Kind) -> bool {
    matches!(kind, Kind::Command | Kind::SessionStart)
}

/// Fills `operation` on the exchange's call records that answer a request of the exchange
/// (ids already assigned). Any other call record is an operation of its own: the outbox's
/// hand-over names it by its id.
pub(super) fn join(links: &SharedLinks<'_>, ex: &Exchange<'_>, records: &mut [Record], now: u64) {
    for r in records.iter_mut().filter(|r| is_call(r.kind)) {
        if r.operation.is_some() {
            continue;
        }
        let request = r.mcp.as_ref().and_then(|mcp| {
            ex.messages
                .iter()
                .filter_map(|m| m.as_ref().ok())
                .find(|m| {
                    m.kind == jsonrpc::Kind::Request && m.id == mcp.id && m.method == mcp.method
                })
        });
        let Some(m) = request else { continue };
        let reply =
            m.id.as_ref()
                .and_then(|id| ex.replies?.get(&response::id_key(id)));
        let (op, next) = leg(links, ex.owner, m, reply, &r.id, now);
        r.operation = Some(op);
        if let Some(mcp) = r.mcp.as_mut() {
            mcp.next_operation = next;
        }
    }
}

/// The operation of one request, and the operation id its next leg will derive when that
/// differs (what the answer handed out: a newer `requestState`, a task id, input keys).
fn leg(
    links: &SharedLinks<'_>,
    owner: Owner,
    m: &Message,
    reply: Option<&Reply>,
    own: &str,
    now: u64,
) -> (String, Option<String>) {
    let followed = |key: String| links.follow(&key, now).unwrap_or(key);
    let answered = m
        .input_responses_at()
        .and_then(|(_, v)| v.as_object())
        .map(|keys| input_key(owner, m, keys));
    let op = if let Some(t) = m.task_id() {
        followed(derived("task", owner, t))
    } else if let Some(s) = m.request_state() {
        followed(derived("st", owner, &response::state_digest(s)))
    } else if let Some(k) = answered {
        followed(k)
    } else if let Some(d) = reply.and_then(|r| r.state_digest.as_deref()) {
        // The first leg: the retry will echo this state.
        derived("st", owner, d)
    } else if let Some(t) = reply
        .filter(|r| r.created_task)
        .and_then(|r| r.task_id.as_deref())
    {
        derived("task", owner, t)
    } else {
        own.to_string()
    };
    let next = reply
        .and_then(|r| next_key(owner, m, r))
        .filter(|k| *k != op);
    if let Some(k) = next.as_deref() {
        // Within the process the next leg follows this link; across replicas the record's
        // `next_operation` lets the trail's reader join the two.
        links.link(k, &op, now);
    }
    (op, next)
}

/// The operation id the next leg will derive from what `reply` handed out.
fn next_key(owner: Owner, m: &Message, reply: &Reply) -> Option<String> {
    if reply.result_type.as_deref() == Some("input_required") {
        return match (reply.state_digest.as_deref(), reply.input_requests.as_ref()) {
            (Some(d), _) => Some(derived("st", owner, d)),
            (None, Some(Value::Object(keys))) => Some(input_key(owner, m, keys)),
            _ => None,
        };
    }
    let task = reply.task_id.as_deref().filter(|_| reply.created_task)?;
    Some(derived("task", owner, task))
}

/// An operation id derived from what the protocol carries, bound to the caller (another
/// identity echoing the same state or task id is another story).
fn derived(tag: &str, owner: Owner, what: &str) -> String {
    let d = Sha256::new()
        .chain_update(b"mcptrail operation\0")
        .chain_update(tag.as_bytes())
        .chain_update([0])
        .chain_update(owner.bytes())
        .chain_update([0])
        .chain_update(what.as_bytes())
        .finalize();
    let h = hex(&d);
    format!("{tag}-{}", h.get(..32).unwrap_or(&h))
}

/// The key a retry without `requestState` is linked by: caller, method, name, arguments and
/// the input keys (asked by the answer, answered by the retry).
fn input_key(owner: Owner, m: &Message, keys: &Map<String, Value>) -> String {
    let mut what = String::new();
    for part in [
        m.method.as_deref().unwrap_or_default(),
        m.tool().or(m.prompt()).unwrap_or_default(),
    ] {
        what.push_str(part);
        what.push('\0');
    }
    if let Some(a) = m.arguments() {
        what.push_str(&a.to_string());
    }
    let mut names: Vec<&str> = keys.keys().map(String::as_str).collect();
    names.sort_unstable();
    for k in names {
        what.push('\0');
        what.push_str(k);
    }
    derived("in", owner, &what)
}
