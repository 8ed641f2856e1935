//! Whether a held request can be judged at all, before policy looks at it.
//!
//! The filter judges exactly what the server will execute. When a decision depends on the
//! body (a rule may deny, or the body is rewritten), a body that cannot be read completely and
//! unambiguously never goes upstream: it is refused here with a JSON-RPC error, and recorded
//! as a `decode.error` with `outcome.status: denied`. The same reading (one strict parse)
//! feeds the decision, the record and any rewriting.

use base64::Engine;
use serde::Deserialize;
use serde_json::value::RawValue;
use serde_json::{json, Value};

use crate::mcp::jsonrpc::{self, DecodeError, Message};

/// JSON-RPC 2.0 parse error: the body is not JSON the filter reads unambiguously.
pub const PARSE_ERROR: i64 = -32700;
/// JSON-RPC 2.0 invalid request: JSON, but not a JSON-RPC message.
pub const INVALID_REQUEST: i64 = -32600;
/// JSON-RPC 2.0 invalid params: the member a decision reads is missing or not a string.
pub const INVALID_PARAMS: i64 = -32602;
/// MCP 2026-07-28: the standard headers disagree with the body.
pub const HEADER_MISMATCH: i64 = -32020;

/// The stateless protocol's version, carried in each request's `_meta`.
const VERSION_META: &str = "/_meta/io.modelcontextprotocol~1protocolVersion";

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

/// The 2026-07-28 standard headers of a request, as sent.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Routing {
    pub method: Option<String>,
    pub name: Option<String>,
    pub version: Option<String>,
    /// `Mcp-Param-*` headers: (the part after the prefix, lowercase; value).
    pub params: Vec<(String, String)>,
    /// A routing header sent more than once (readers of the first and last copy disagree).
    pub duplicated: Option<String>,
}

const PARAM_PREFIX: &str = "mcp-param-";

impl Routing {
    /// From a request's header pairs (names as Envoy hands them: lowercase).
    pub fn from_headers<'a>(pairs: impl IntoIterator<Item = (&'a str, &'a str)>) -> Self {
        let mut r = Routing::default();
        for (k, v) in pairs {
            let k = k.to_ascii_lowercase();
            let slot = match k.as_str() {
                "mcp-method" => &mut r.method,
                "mcp-name" => &mut r.name,
                "mcp-protocol-version" => &mut r.version,
                _ => {
                    if let Some(p) = k.strip_prefix(PARAM_PREFIX) {
                        if r.params.iter().any(|(q, _)| q == p) {
                            r.duplicated.get_or_insert(k.clone());
                        }
                        r.params.push((p.to_string(), v.to_string()));
                    }
                    continue;
                }
            };
            if slot.is_some() {
                r.duplicated.get_or_insert(k.clone());
            }
            slot.get_or_insert_with(|| v.to_string());
        }
        r
    }

    /// Whether any standard header was sent (a client of the stateless generation).
    pub fn present(&self) -> bool {
        self.method.is_some() || self.name.is_some() || !self.params.is_empty()
    }

    /// Why the headers disagree with `m`, if they do.
    pub fn mismatch(&self, m: &Message) -> Option<String> {
        if let Some(h) = &self.duplicated {
            return Some(format!("header `{h}` sent more than once"));
        }
        let method = m.method.as_deref();
        if let Some(h) = self.method.as_deref() {
            if Some(h) != method {
                return Some("Mcp-Method header does not match the body's method".into());
            }
        }
        let named = method.and_then(jsonrpc::name_member).map(|key| {
            let v = m.params.as_ref().and_then(|p| p.get(key));
            (key, v.and_then(Value::as_str))
        });
        match (&named, self.name.as_deref()) {
            (Some((key, body)), Some(h)) if decode_header_value(h).as_deref() != *body => {
                return Some(format!("Mcp-Name header does not match the body's `{key}`"));
            }
            // A client that sends the standard headers names what it calls.
            (Some((key, _)), None) if self.method.is_some() => {
                return Some(format!("Mcp-Name header missing for the body's `{key}`"));
            }
            _ => {}
        }
        let body_version = m
            .params
            .as_ref()
            .and_then(|p| p.pointer(VERSION_META))
            .and_then(Value::as_str);
        if let (Some(h), Some(b)) = (self.version.as_deref(), body_version) {
            if h != b {
                return Some(
                    "MCP-Protocol-Version header does not match the body's protocol version".into(),
                );
            }
        }
        self.param_mismatch(m)
    }

    /// `Mcp-Param-*` headers mirror arguments declared with `x-mcp-header` in the tool's
    /// schema. Without the schema at hand, each header must equal (decoded) the rendering of
    /// some scalar among the arguments, reached through objects: a header that matches no
    /// argument at all disagrees with the body.
    fn param_mismatch(&self, m: &Message) -> Option<String> {
        if self.params.is_empty() {
            return None;
        }
        let args = m.arguments();
        for (name, value) in &self.params {
            let found = decode_header_value(value)
                .is_some_and(|v| args.is_some_and(|a| renders_somewhere(a, &v, 0)));
            if !found {
                let shown: String = name.chars().take(32).collect();
                return Some(format!(
                    "Mcp-Param-{shown} header matches no argument of the body"
                ));
            }
        }
        None
    }
}

/// Whether a scalar inside `v` (through objects, as `x-mcp-header` paths go) renders as `s`.
fn renders_somewhere(v: &Value, s: &str, depth: usize) -> bool {
    match v {
        Value::String(x) => x == s,
        Value::Bool(b) => s == if *b { "true" } else { "false" },
        Value::Number(n) => n.to_string() == s,
        Value::Object(o) if depth < 16 => o.values().any(|x| renders_somewhere(x, s, depth + 1)),
        _ => false,
    }
}

/// A header value as the client encoded it: verbatim, or `=?base64?…?=` (canonical base64
/// of UTF-8). A malformed encoding decodes to nothing, so it never matches.
pub fn decode_header_value(v: &str) -> Option<String> {
    let Some(payload) = v
        .strip_prefix("=?base64?")
        .and_then(|r| r.strip_suffix("?="))
    else {
        return Some(v.to_string());
    };
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(payload)
        .ok()?;
    // Non-canonical base64 (stray trailing bits) is refused, as the SDKs refuse it.
    if base64::engine::general_purpose::STANDARD.encode(&bytes) != payload {
        return None;
    }
    String::from_utf8(bytes).ok()
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
        if routing.present() || routing.duplicated.is_some() {
            let why = if single {
                routing.mismatch(m)
            } else {
                Some("standard headers on a batch: they cannot mirror several messages".into())
            };
            if let Some(why) = why {
                return Some(Unjudgeable::new(400, HEADER_MISMATCH, id, why));
            }
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
