//! Whether a held request can be judged at all, before policy looks at it.
//!
//! The filter judges exactly what the server will execute. When a decision depends on the
//! body (a rule may deny, or the body is rewritten), a body that cannot be read completely and
//! unambiguously never goes upstream: it is refused here with a JSON-RPC error, and recorded
//! as a `decode.error` with `outcome.status: denied`. The same reading (one strict parse)
//! feeds the decision, the record and any rewriting.

use serde::Deserialize;
use serde_json::value::RawValue;
use serde_json::{json, Value};

use crate::mcp::jsonrpc::{self, DecodeError, Message};
use crate::mcp::routing::Routing;

/// JSON-RPC 2.0 parse error: the body is not JSON the filter reads unambiguously.
pub const PARSE_ERROR: i64 = -32700;
/// JSON-RPC 2.0 invalid request: JSON, but not a JSON-RPC message.
pub const INVALID_REQUEST: i64 = -32600;
/// JSON-RPC 2.0 invalid params: the member a decision reads is missing or not a string.
pub const INVALID_PARAMS: i64 = -32602;
/// MCP 2026-07-28: the standard headers disagree with the body.
pub const HEADER_MISMATCH: i64 = -32020;

/// A request refused because the filter cannot judge it.
#[derive(Debug, Clone, PartialEq)]
pub struct Unjudgeable {
    /// HTTP status of the refusal.
    pub status: u32,
    /// JSON-RPC error code.
    pub code: i64,
    /// The request's id when one could be read, else null.
    pub id: Value,
    /// Why, for the client and the record (never quotes a value of the body).
    pub reason: String,
}

impl Unjudgeable {
    fn new(status: u32, code: i64, id: Value, reason: impl Into<String>) -> Self {
        Self {
            status,
            code,
            id,
            reason: reason.into(),
        }
    }

    /// The body could not be read from the host.
    pub fn unreadable(detail: &str) -> Self {
        Self::new(
            400,
            PARSE_ERROR,
            Value::Null,
            format!("the request body could not be read ({detail})"),
        )
    }

    /// The body is encoded (`Content-Encoding`); the filter does not decode it.
    pub fn encoded(encoding: &str) -> Self {
        let shown: String = encoding.chars().take(32).collect();
        Self::new(
            415,
            INVALID_REQUEST,
            Value::Null,
            format!("request body with Content-Encoding `{shown}` is not decoded by the filter"),
        )
    }

    /// Larger than `mcp.max_body_bytes`.
    pub fn too_large(max: usize) -> Self {
        Self::new(
            413,
            INVALID_REQUEST,
            Value::Null,
            format!("request body larger than mcp.max_body_bytes ({max} bytes)"),
        )
    }

    /// The JSON-RPC error answer.
    pub fn reply(&self) -> String {
        json!({"jsonrpc": "2.0", "id": self.id, "error": {"code": self.code,
            "message": format!("Refused by mcptrail: {}", self.reason)}})
        .to_string()
    }
}

/// Judges a held body's reading: `Some` when the request must be refused.
pub fn check(
    body: &[u8],
    items: &Result<Vec<Result<Message, DecodeError>>, DecodeError>,
    routing: &Routing,
) -> Option<Unjudgeable> {
    let items = match items {
        Ok(items) => items,
        Err(e) => return Some(undecodable(body, e, true)),
    };
    let single = items.len() == 1;
    for item in items {
        let m = match item {
            Ok(m) => m,
            Err(e) => return Some(undecodable(body, e, single)),
        };
        let id = m.id.clone().unwrap_or(Value::Null);
        if let Some(key) = m.method.as_deref().and_then(jsonrpc::name_member) {
            let named = m.params.as_ref().and_then(|p| p.get(key));
            if !named.is_some_and(Value::is_string) {
                return Some(Unjudgeable::new(
                    400,
                    INVALID_PARAMS,
                    id,
                    format!("`params.{key}` is missing or not a string"),
                ));
            }
        }
        let why = if single {
            routing.mismatch(m)
        } else {
            (routing.present() || routing.duplicated.is_some()).then(|| {
                "standard headers on a batch: they cannot mirror several messages".to_string()
            })
        };
        if let Some(why) = why {
            return Some(Unjudgeable::new(400, HEADER_MISMATCH, id, why));
        }
    }
    None
}

fn undecodable(body: &[u8], e: &DecodeError, single: bool) -> Unjudgeable {
    let code = match e {
        DecodeError::Json(_) => PARSE_ERROR,
        DecodeError::NotJsonRpc(_) => INVALID_REQUEST,
    };
    let id = if single { peek_id(body) } else { Value::Null };
    Unjudgeable::new(400, code, id, e.to_string())
}

/// The `id` of a single message, read leniently for the error answer only (no decision
/// reads it): null when even that fails.
fn peek_id(body: &[u8]) -> Value {
    #[derive(Deserialize)]
    struct Id<'a> {
        #[serde(borrow)]
        id: Option<&'a RawValue>,
    }
    serde_json::from_slice::<Id<'_>>(body)
        .ok()
        .and_then(|i| i.id)
        .and_then(|raw| serde_json::from_str::<Value>(raw.get()).ok())
        .filter(|v| v.is_string() || v.is_number())
        .unwrap_or(Value::Null)
}

#[cfg(test)]
mod tests;
