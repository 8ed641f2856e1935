//! The approvals stage: a call a `review` rule names reaches the server only with a person's
//! approval. The stream asks the approval service (`approvals`: one callout; the stream is
//! paused, never the worker) and acts on its answer: `approved` goes on, and its record says
//! by whom; `pending` answers `-32042` with a URL elicitation (MCP 2025-11-25) where the caller
//! asks for it; `denied`, no answer, a late one or one it cannot read refuse the call
//! (`-32003`). Never fails open.
//!
//! The service is shown the arguments masked; the digest that binds an approval to them is
//! over the unmasked arguments, so an approval cannot be spent on other arguments.

use std::cell::RefCell;
use std::rc::Rc;

use serde::Deserialize;
use serde_json::{json, Value};
use sha2::{Digest as _, Sha256};

use super::{deny, Phase, Shared, Slot};
use crate::audit::build::Refusal;
use crate::audit::chain::hex;
use crate::audit::record::{Approval, Kind};
use crate::host::{Body, Headers, Host, Level};
use crate::mcp::jsonrpc::Message;
use crate::policy::enforce::{Denied, POLICY_DENIED_CODE};

/// JSON-RPC error of MCP 2025-11-25: the call needs the user to visit a URL first.
pub const URL_ELICITATION_REQUIRED: i64 = -32042;

/// The most of the service's answer that is read.
const MAX_ANSWER_BYTES: usize = 16 * 1024;

/// A check in flight, and the stream that waits for it.
#[derive(Debug)]
pub(super) struct Check {
    token: u32,
    context_id: u32,
    slot: Rc<RefCell<Slot>>,
    /// The reviewed message's index in the body, and the rule that asked.
    index: usize,
    rule: Option<usize>,
}

/// The stream a judged request belongs to: where a check's answer is taken back.
pub(super) struct Owner<'a> {
    pub context_id: u32,
    pub slot: &'a Rc<RefCell<Slot>>,
}

/// Asks the service about the held body's message `index` for `slot`'s caller. The stream
/// then waits (`Phase::Reviewing`); a check that cannot be sent refuses the call at once.
pub(super) fn ask(
    host: &dyn Host,
    shared: &Shared,
    slot: &mut Slot,
    owner: &Owner<'_>,
    index: usize,
    rule: Option<usize>,
) {
    let Some(settings) = shared.config.approvals.as_ref() else {
        // Configuration refuses `review` without `approvals`; never let such a call through.
        deny(
            host,
            slot,
            refused(slot, index, rule, "no approval service configured"),
        );
        return;
    };
    let Some(m) = message(slot, index) else {
        deny(
            host,
            slot,
            refused(slot, index, rule, "the call could not be read"),
        );
        return;
    };
    let body = check_body(shared, slot, m).to_string();
    let len = body.len().to_string();
    let mut headers: Vec<(&str, &str)> = vec![
        (":method", "POST"),
        (":path", &settings.path),
        (":authority", &settings.authority),
        ("content-type", "application/json"),
        ("content-length", &len),
    ];
    headers.extend(
        settings
            .headers
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str())),
    );
    match host.http_call(
        &settings.cluster,
        &headers,
        body.as_bytes(),
        settings.timeout_ms,
    ) {
        Ok(token) => {
            slot.phase = Phase::Reviewing;
            shared.counters.borrow_mut().approval_checks += 1;
            shared.checks.borrow_mut().push(Check {
                token,
                context_id: owner.context_id,
                slot: Rc::clone(owner.slot),
                index,
                rule,
            });
        }
        Err(e) => {
            host.log(
                Level::Warn,
                &format!(
                    "mcptrail: approval check to cluster `{}` failed: {}",
                    settings.cluster, e.0
                ),
            );
            shared.counters.borrow_mut().approval_failures += 1;
            let why = "the approval service is unreachable";
            deny(host, slot, refused(slot, index, rule, why));
        }
    }
}

/// Whether `token` is a check's; if so, settles the stream that waits for it. `num_headers ==
/// 0` is a transport failure (no route, reset, `approvals.timeout_ms` passed).
pub(super) fn answered(
    host: &dyn Host,
    shared: &Shared,
    token: u32,
    num_headers: usize,
    body_size: usize,
) -> bool {
    let check = {
        let mut checks = shared.checks.borrow_mut();
        let Some(at) = checks.iter().position(|c| c.token == token) else {
            return false;
        };
        checks.swap_remove(at)
    };
    if host.set_effective_context(check.context_id).is_err() {
        return true; // the stream is gone; its record says the client went away
    }
    let mut slot = check.slot.borrow_mut();
    if slot.phase != Phase::Reviewing {
        return true;
    }
    let answer = read_answer(host, num_headers, body_size);
    if answer.is_err() {
        shared.counters.borrow_mut().approval_failures += 1;
    }
    match answer {
        Ok(Answer {
            decision: Decision::Approved,
            id,
            approved_by,
            mode,
            ..
        }) => {
            slot.approval = Some(Approval {
                id,
                approved_by,
                mode,
                ..Approval::default()
            });
            slot.phase = Phase::Upstream;
            if let Err(e) = host.resume_request() {
                host.log(Level::Warn, &format!("mcptrail: cannot resume: {}", e.0));
            }
        }
        Ok(Answer {
            decision: Decision::Pending,
            id,
            url,
            ..
        }) => match url.filter(|u| valid_url(u)) {
            Some(url) => {
                let pending = pending(&slot, check.index, &id, &url);
                slot.approval = Some(Approval {
                    id,
                    url: Some(url),
                    ..Approval::default()
                });
                deny(host, &mut slot, pending);
            }
            None => {
                let why = "the approval service answered `pending` without a usable URL";
                let denied = refused(&slot, check.index, check.rule, why);
                deny(host, &mut slot, denied);
            }
        },
        Ok(Answer {
            decision: Decision::Denied,
            id,
            decided_by,
            ..
        }) => {
            let why = match decided_by.as_deref() {
                Some(by) => format!("approval `{id}` was denied by `{by}`"),
                None => format!("approval `{id}` was denied"),
            };
            slot.approval = Some(Approval {
                id,
                ..Approval::default()
            });
            let denied = refused(&slot, check.index, check.rule, &why);
            deny(host, &mut slot, denied);
        }
        Err(why) => {
            host.log(Level::Warn, &format!("mcptrail: approval check: {why}"));
            let denied = refused(&slot, check.index, check.rule, &why);
            deny(host, &mut slot, denied);
        }
    }
    true
}

/// Forgets the checks of a stream that ended (their answers have no one to settle).
pub(super) fn forget(shared: &Shared, context_id: u32) {
    shared
        .checks
        .borrow_mut()
        .retain(|c| c.context_id != context_id);
}

fn message(slot: &Slot, index: usize) -> Option<&Message> {
    slot.messages.as_ref()?.get(index)?.as_ref().ok()
}

/// What the service is asked: who calls what, with the arguments masked, and the digest of
/// the unmasked ones. A call that names no tool (a `review` rule on `methods`) is bound by
/// its whole `params` but `_meta` instead: its name, URI or prompt is the call, and `{}`
/// would let one approval cover every such call.
fn check_body(shared: &Shared, slot: &Slot, m: &Message) -> Value {
    let masking = &shared.config.masking;
    let (arguments, digest) = match (m.tool(), m.arguments_at(), m.params.as_ref()) {
        (Some(_), Some((at, v)), _) => {
            let mut masked = v.clone();
            masking.mask_value_at(&mut masked, at);
            (masked, arguments_sha256(Some(v)))
        }
        (Some(_), None, _) => (Value::Null, arguments_sha256(None)),
        (None, _, Some(Value::Object(params))) => {
            let mut bound = params.clone();
            bound.remove("_meta");
            let bound = Value::Object(bound);
            let mut masked = bound.clone();
            masking.mask_value_at(&mut masked, "/params");
            (masked, arguments_sha256(Some(&bound)))
        }
        (None, _, _) => (Value::Null, arguments_sha256(None)),
    };
    json!({
        "subject": slot.identity,
        "method": m.method,
        "tool": m.tool(),
        "arguments": arguments,
        "arguments_sha256": digest,
        "session": slot.session.server_id,
        "request_id": slot.request_id,
    })
}

/// Lowercase hex SHA-256 of the arguments as compact JSON with object keys sorted (absent
/// arguments count as `{}`: the server runs the tool the same way).
pub fn arguments_sha256(arguments: Option<&Value>) -> String {
    let mut out = String::new();
    match arguments {
        Some(v) => canonical(v, &mut out),
        None => out.push_str("{}"),
    }
    hex(&Sha256::digest(out.as_bytes()))
}

/// Compact JSON with sorted object keys, whatever order the map keeps. Depth is bounded by
/// the parser that built the value.
fn canonical(v: &Value, out: &mut String) {
    match v {
        Value::Object(map) => {
            let mut keys: Vec<&String> = map.keys().collect();
            keys.sort();
            out.push('{');
            for (i, k) in keys.into_iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                out.push_str(&Value::from(k.as_str()).to_string());
                out.push(':');
                if let Some(item) = map.get(k) {
                    canonical(item, out);
                }
            }
            out.push('}');
        }
        Value::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                canonical(item, out);
            }
            out.push(']');
        }
        scalar => out.push_str(&scalar.to_string()),
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
enum Decision {
    Approved,
    Pending,
    Denied,
}

/// The service's answer (`200 {"decision", "id", "url", "approved_by", "mode"}`).
#[derive(Debug, Deserialize)]
struct Answer {
    decision: Decision,
    id: String,
    #[serde(default)]
    url: Option<String>,
    #[serde(default)]
    approved_by: Option<String>,
    #[serde(default)]
    mode: Option<String>,
    /// On `denied`: who denied it (an extension; absent from other services).
    #[serde(default)]
    decided_by: Option<String>,
}

fn read_answer(host: &dyn Host, num_headers: usize, body_size: usize) -> Result<Answer, String> {
    if num_headers == 0 {
        return Err(
            "the approval service did not answer in time (approvals.timeout_ms) or is unreachable"
                .into(),
        );
    }
    let status = host
        .header(Headers::CallResponse, ":status")
        .and_then(|s| s.parse::<u32>().ok());
    if status != Some(200) {
        let shown = status.map_or_else(|| "no status".to_string(), |s| format!("HTTP {s}"));
        return Err(format!("the approval service answered {shown}"));
    }
    if body_size > MAX_ANSWER_BYTES {
        return Err(format!(
            "the approval service's answer is larger than {MAX_ANSWER_BYTES} bytes"
        ));
    }
    let body = host
        .body(Body::CallResponse, 0, body_size)
        .map_err(|e| format!("the approval service's answer could not be read ({})", e.0))?;
    let answer: Answer = serde_json::from_slice(&body)
        .map_err(|_| "the approval service's answer is not a decision".to_string())?;
    let printable = |s: &str| s.chars().all(|c| !c.is_control());
    let fields_ok = !answer.id.is_empty()
        && answer.id.len() <= 128
        && printable(&answer.id)
        && [&answer.approved_by, &answer.decided_by]
            .iter()
            .all(|b| b.as_deref().is_none_or(|b| b.len() <= 256 && printable(b)))
        && answer
            .mode
            .as_deref()
            .is_none_or(|m| m == "once" || m == "window");
    if !fields_ok {
        return Err("the approval service's answer has an unusable id, approver or mode".into());
    }
    Ok(answer)
}

fn valid_url(url: &str) -> bool {
    (url.starts_with("https://") || url.starts_with("http://"))
        && url.len() <= 2048
        && !url.chars().any(|c| c.is_control() || c.is_whitespace())
}

/// The call answered here with JSON-RPC `error` (HTTP 200), recorded as `kind`.
fn answer(slot: &Slot, index: usize, error: Value, refusal: Refusal) -> Denied {
    let id = message(slot, index)
        .and_then(|m| m.id.clone())
        .unwrap_or(Value::Null);
    Denied {
        status: 200,
        body: json!({"jsonrpc": "2.0", "id": id, "error": error}).to_string(),
        refusal,
    }
}

fn what(slot: &Slot, index: usize) -> String {
    message(slot, index).map_or_else(|| "this call".to_string(), Message::describe)
}

/// The call refused (`-32003`, a `policy.denied` record saying why).
fn refused(slot: &Slot, index: usize, rule: Option<usize>, why: &str) -> Denied {
    let error = json!({
        "code": POLICY_DENIED_CODE,
        "message": format!("Forbidden: {} needs approval; {why}", what(slot, index)),
    });
    answer(
        slot,
        index,
        error,
        Refusal {
            kind: Kind::PolicyDenied,
            status: 200,
            reason: format!("needs approval: {why}"),
            auth: None,
            policy: vec![(index, rule)],
        },
    )
}

/// The call held for approval: `-32042` with a URL elicitation, and the URL in the message
/// for clients that show only messages. Recorded as `approval.requested`.
fn pending(slot: &Slot, index: usize, id: &str, url: &str) -> Denied {
    let text = format!(
        "The call to {} needs approval. Ask for it at {url} and retry the call once it is approved.",
        what(slot, index)
    );
    let error = json!({
        "code": URL_ELICITATION_REQUIRED,
        "message": text,
        "data": {"elicitations": [{
            "mode": "url",
            "elicitationId": id,
            "url": url,
            "message": text,
        }]},
    });
    answer(
        slot,
        index,
        error,
        Refusal {
            kind: Kind::ApprovalRequested,
            status: 200,
            reason: format!("held for approval `{id}`"),
            auth: None,
            policy: Vec::new(),
        },
    )
}

#[cfg(test)]
mod tests {
    #[cfg(all(target_arch = "wasm32", target_os = "unknown"))]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    use super::*;

    #[test]
    fn digest_is_over_sorted_compact_json() {
        let a: Value = serde_json::from_str(r#"{"b": [1, {"y": 2, "x": "é"}], "a": null}"#)
            .unwrap_or_default();
        let b: Value =
            serde_json::from_str(r#"{"a":null,"b":[1,{"x":"é","y":2}]}"#).unwrap_or_default();
        let mut out = String::new();
        canonical(&a, &mut out);
        assert_eq!(out, r#"{"a":null,"b":[1,{"x":"é","y":2}]}"#);
        assert_eq!(arguments_sha256(Some(&a)), arguments_sha256(Some(&b)));
        // Python: hashlib.sha256(json.dumps({}, separators=(",", ":")).encode()).hexdigest()
        assert_eq!(
            arguments_sha256(None),
            "44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a"
        );
        let other: Value =
            serde_json::from_str(r#"{"a":null,"b":[1,{"x":"e","y":2}]}"#).unwrap_or_default();
        assert_ne!(arguments_sha256(Some(&a)), arguments_sha256(Some(&other)));
    }

    #[test]
    fn urls_the_client_is_sent_to() {
        assert!(valid_url("http://127.0.0.1:8787/requests/apr_1"));
        assert!(valid_url("https://approvals.example/requests/x"));
        assert!(!valid_url("javascript:alert(1)"));
        assert!(!valid_url("http://a/b c"));
        assert!(!valid_url("http://a/\nb"));
    }
}
