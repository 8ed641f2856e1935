//! `tools/list` filtering: a caller sees only the tools the policy lets it call (those under
//! `review` too: they are callable once approved).

use serde_json::Value;

use crate::policy::{Effect, Policy};

/// Whether a reply is a tool listing (`result.tools` an array): how a listing is known on a
/// `GET` stream, where the request that asked is elsewhere (a cut POST, another worker).
pub fn is_listing(reply: &Value) -> bool {
    reply.pointer("/result/tools").is_some_and(Value::is_array)
}

/// Drops from a `tools/list` reply the tools a caller in `groups` may not call; `true` when
/// it dropped any.
pub fn filter_listing(reply: &mut Value, policy: &Policy, groups: &[String]) -> bool {
    let Some(tools) = reply
        .pointer_mut("/result/tools")
        .and_then(Value::as_array_mut)
    else {
        return false;
    };
    let before = tools.len();
    tools.retain(|t| {
        let name = t.get("name").and_then(Value::as_str);
        policy.decide("tools/call", name, groups).effect != Effect::Deny
    });
    tools.len() != before
}
