//! The benchmark's workload, in one place for `make bench` (through Envoy) and the exchange
//! benches (`make bench-exchange`, natively; `make bench-v8`, in V8): the same plugin
//! configurations at each depth, the same `tools/call` and the same answers.

use std::fmt::Write as _;

use serde_json::{json, Value};

/// Text with what maskers look for (an e-mail address, a card number, an IPv4 address every
/// 80 bytes), as tool results carry it.
pub fn filler(n: usize) -> String {
    let unit = "Customer alice@example.com paid with 4111 1111 1111 1111 from 10.1.2.3; note: ";
    unit.repeat(n / unit.len() + 1).chars().take(n).collect()
}

/// The benchmark's request: a `tools/call` of about 950 bytes.
pub fn request() -> String {
    json!({"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": {"name": "lookup_customer",
        "arguments": {"query": filler(800), "api_key": "sk-bench-0123456789", "limit": 10}}})
    .to_string()
}

/// A JSON answer to [`request`] of about `bytes` bytes.
pub fn json_reply(bytes: usize) -> String {
    let text = filler(bytes.saturating_sub(80));
    json!({"jsonrpc": "2.0", "id": 1, "result": {"content": [{"type": "text", "text": text}], "isError": false}})
        .to_string()
}

/// An SSE answer to [`request`]: `events - 1` progress notifications, then the result.
pub fn sse_reply(events: usize) -> String {
    let mut s = String::new();
    for i in 1..events {
        let _ = write!(
            s,
            "id: {i}\ndata: {}\n\n",
            json!({"jsonrpc": "2.0", "method": "notifications/progress", "params": {"progressToken": 1, "progress": i, "total": events, "message": "working"}})
        );
    }
    let _ = write!(s, "id: {events}\ndata: {}\n\n", json_reply(200));
    s
}

/// One rung of the depth ladder.
pub struct Depth {
    pub name: &'static str,
    pub config: Value,
    /// The full pipeline less one part: measured by the exchange benches only (time).
    pub ablation: bool,
}

/// The plugin configurations by depth, for a token issuer, its audience and JWKS, and the
/// audit HMAC key (standard base64).
pub fn ladder(issuer: &str, audience: &str, jwks: &Value, hmac_key_b64: &str) -> Vec<Depth> {
    let auth = json!({"mode": "required", "providers": [{"issuer": issuer, "audiences": [audience], "jwks": jwks}]});
    let audit = json!({"cluster": "audit_collector", "authority": "collector"});
    let chained =
        json!({"cluster": "audit_collector", "authority": "collector", "hmac_key": hmac_key_b64});
    let masks = |responses: bool| {
        json!({
            "fields": ["password", "secret", "token", "api_key", "authorization"],
            "detectors": ["email", "credit_card", "us_ssn", "iban", "phone", "ipv4", "jwt", "bearer_token",
                          "aws_access_key", "gcp_api_key", "github_token", "slack_token", "private_key"],
            "responses": responses,
        })
    };
    let (masking, answers) = (masks(false), masks(true));
    let policy = json!({"default": "allow", "rules": [
        {"tools": ["delete_*"], "groups": ["admins"], "action": "allow"},
        {"tools": ["delete_*"], "action": "deny"}]});
    let decoded = json!({"paths": ["/mcp"]});
    let depth = |name, config, ablation| Depth {
        name,
        config,
        ablation,
    };
    vec![
        depth(
            "out of scope",
            json!({"audit": audit, "mcp": {"paths": ["/elsewhere"]}}),
            false,
        ),
        depth(
            "VM only",
            json!({"audit": audit, "mcp": {"paths": ["/mcp"], "decode": false}}),
            false,
        ),
        depth(
            "auth",
            json!({"audit": audit, "auth": auth, "mcp": {"paths": ["/mcp"], "decode": false}}),
            false,
        ),
        depth(
            "auth+decode",
            json!({"audit": audit, "auth": auth, "mcp": decoded}),
            false,
        ),
        depth(
            "+mask",
            json!({"audit": audit, "auth": auth, "mcp": decoded, "masking": masking}),
            false,
        ),
        depth(
            "full",
            json!({"audit": chained, "auth": auth, "mcp": decoded, "masking": answers, "policy": policy}),
            false,
        ),
        depth(
            "full less the policy",
            json!({"audit": chained, "auth": auth, "mcp": decoded, "masking": answers}),
            true,
        ),
        depth(
            "full less answer masking",
            json!({"audit": chained, "auth": auth, "mcp": decoded, "masking": masking, "policy": policy}),
            true,
        ),
        depth(
            "full less the HMAC",
            json!({"audit": audit, "auth": auth, "mcp": decoded, "masking": answers, "policy": policy}),
            true,
        ),
    ]
}

#[cfg(test)]
mod tests {
    #[cfg(all(target_arch = "wasm32", target_os = "unknown"))]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    use super::*;
    use crate::config::Config;
    use crate::testkit::jwt::{jwks, AUD, ISS};

    #[test]
    fn every_depth_is_a_valid_configuration() {
        let depths = ladder(ISS, AUD, &jwks(), "AAECAwQFBgcICQoLDA0ODw==");
        assert_eq!(depths.iter().filter(|d| !d.ablation).count(), 6);
        for d in depths {
            if let Err(e) = Config::parse(d.config.to_string().as_bytes()) {
                panic!("{}: {e}", d.name);
            }
        }
        let reply: serde_json::Value = serde_json::from_str(&json_reply(1024)).unwrap();
        assert_eq!(reply["id"], 1);
        assert!(sse_reply(3).ends_with("\n\n"));
    }
}
