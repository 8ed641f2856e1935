//! The 2026-07-28 standard headers (`Mcp-Method`, `Mcp-Name`, `MCP-Protocol-Version`,
//! `Mcp-Param-*`): read from a request, and checked against the message they mirror.

use base64::Engine;
use serde_json::Value;

use crate::mcp::jsonrpc::{self, Message};

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
    /// From a request's header pairs, in any case. Runs for every request in scope, so
    /// only the standard headers are copied (no allocation for the others).
    pub fn from_headers<'a>(pairs: impl IntoIterator<Item = (&'a str, &'a str)>) -> Self {
        let mut r = Routing::default();
        for (k, v) in pairs {
            let slot = if k.eq_ignore_ascii_case("mcp-method") {
                &mut r.method
            } else if k.eq_ignore_ascii_case("mcp-name") {
                &mut r.name
            } else if k.eq_ignore_ascii_case("mcp-protocol-version") {
                &mut r.version
            } else {
                let param = k
                    .get(..PARAM_PREFIX.len())
                    .filter(|p| p.eq_ignore_ascii_case(PARAM_PREFIX))
                    .and_then(|_| k.get(PARAM_PREFIX.len()..));
                if let Some(p) = param.map(str::to_ascii_lowercase) {
                    if r.params.iter().any(|(q, _)| *q == p) {
                        r.duplicated.get_or_insert(k.to_ascii_lowercase());
                    }
                    r.params.push((p, v.to_string()));
                }
                continue;
            };
            if slot.is_some() {
                r.duplicated.get_or_insert(k.to_ascii_lowercase());
            }
            slot.get_or_insert_with(|| v.to_string());
        }
        r
    }

    /// Whether any standard header was sent (a client of the stateless generation).
    pub fn present(&self) -> bool {
        self.method.is_some() || self.name.is_some() || !self.params.is_empty()
    }

    /// Why the headers disagree with `m`, if they do (nothing to compare when none was sent,
    /// the common case: it is asked for every recorded message).
    pub fn mismatch(&self, m: &Message) -> Option<String> {
        if *self == Routing::default() {
            return None;
        }
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
        let body_version = m.meta_protocol_version();
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

#[cfg(test)]
mod tests;
