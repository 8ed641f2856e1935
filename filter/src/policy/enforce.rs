//! Enforcement: a decided request body either goes on or is answered here, with the replies
//! the client gets and the refusal its records carry.

use serde_json::{json, Value};

use crate::audit::build::Refusal;
use crate::audit::record::Kind;
use crate::mcp::jsonrpc::{self, DecodeError, Message};
use crate::policy::judge::Unjudgeable;
use crate::policy::{Effect, Policy};

/// JSON-RPC error code of a policy denial (implementation-defined server error range).
pub const POLICY_DENIED_CODE: i64 = -32003;

/// A request refused here: the answer (status, JSON body) and the record's refusal.
#[derive(Debug, Clone, PartialEq)]
pub struct Denied {
    pub status: u32,
    pub body: String,
    pub refusal: Refusal,
}

/// A request that cannot be judged, refused.
pub fn unjudgeable(u: &Unjudgeable) -> Denied {
    Denied {
        status: u.status,
        body: u.reply(),
        refusal: Refusal {
            kind: Kind::DecodeError,
            status: u.status,
            reason: format!(
                "{}; refused because policy could not be evaluated",
                u.reason
            ),
            auth: None,
            policy: Vec::new(),
        },
    }
}

/// A held body larger than `masking.max_bytes` with `masking.on_too_large: block`: it cannot
/// be masked before the server, so it does not go there.
pub fn too_large_to_mask(max_bytes: usize) -> Denied {
    Denied {
        status: 413,
        body: r#"{"error":"request body too large to mask (masking.max_bytes)"}"#.into(),
        refusal: Refusal {
            kind: Kind::DecodeError,
            status: 413,
            reason: format!(
                "request body larger than masking.max_bytes ({max_bytes} bytes); refused (masking.on_too_large: block)"
            ),
            auth: None,
            policy: Vec::new(),
        },
    }
}

/// What the policy makes of a decoded body.
#[derive(Debug, Clone, PartialEq)]
pub enum Verdict {
    /// Nothing in it is refused: it goes on.
    Pass,
    /// Refused here: nothing of it reaches the server.
    Denied(Denied),
    /// One call that a `review` rule names: it goes on only with an approval
    /// (`filter::approval` asks the service).
    Review { index: usize, rule: Option<usize> },
}

/// Applies the policy to a decoded body for a caller in `groups`. One denied element refuses
/// the whole request: nothing of it reaches the server. A call under `review` must come
/// alone: a batch holding one is refused rather than split (the approval covers one call).
pub fn enforce(
    policy: &Policy,
    messages: &[Result<Message, DecodeError>],
    groups: &[String],
) -> Verdict {
    let mut denied = Vec::new();
    let mut reviewed = Vec::new();
    for (i, m) in messages.iter().enumerate() {
        let Ok(m) = m else { continue };
        let Some(method) = m.method.as_deref() else {
            continue;
        };
        let d = policy.decide(method, m.tool(), groups);
        match d.effect {
            Effect::Deny => denied.push((i, d.rule)),
            // Only a request can be answered "ask for approval"; a notification cannot wait.
            Effect::Review if m.kind == jsonrpc::Kind::Request => reviewed.push((i, d.rule)),
            Effect::Review => denied.push((i, d.rule)),
            Effect::Allow => {}
        }
    }
    let reason = match (denied.is_empty(), reviewed.as_slice()) {
        (true, []) => return Verdict::Pass,
        (true, [(index, rule)]) if messages.len() == 1 => {
            return Verdict::Review {
                index: *index,
                rule: *rule,
            }
        }
        (true, _) => {
            denied = reviewed;
            "a call that needs approval must be sent alone, not in a batch"
        }
        (false, _) => "denied by policy",
    };
    let error_for = |i: usize, m: &Message| {
        let what = m.describe();
        let message = match denied.iter().any(|(d, _)| *d == i) {
            true if reason == "denied by policy" => {
                format!("Forbidden: {what} is not allowed for this caller")
            }
            true => format!("Forbidden: {what} needs approval and must be sent alone"),
            false => "Not executed: the batch contains a call that is not allowed".to_string(),
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
    // Only notifications were denied: there is no id to answer, so the refusal is HTTP 403.
    let status = if replies.is_empty() { 403 } else { 200 };
    let body = match (messages.len(), replies.first()) {
        (1, Some(one)) => one.to_string(),
        (_, Some(_)) => Value::Array(replies).to_string(),
        (_, None) => r#"{"error":"forbidden","error_description":"denied by policy"}"#.to_string(),
    };
    Verdict::Denied(Denied {
        status,
        body,
        refusal: Refusal {
            kind: Kind::PolicyDenied,
            status,
            reason: reason.to_string(),
            auth: None,
            policy: denied,
        },
    })
}
