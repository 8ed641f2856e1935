//! The 1 KB `tools/call` exchange of `make bench`, set up for the glue's fake host: shared by
//! the criterion bench (`benches/exchange.rs`, native) and the V8 run
//! (`examples/exchange_v8.rs`, the same code compiled to wasm and run by Node's V8).

use base64::Engine as _;
use mcptrail::glue::fake::{Exchange, FakeHost};
use mcptrail::glue::Root;
use mcptrail::host::Headers;
use rsa::pkcs8::DecodePrivateKey as _;
use rsa::signature::{SignatureEncoding as _, Signer as _};
use rsa::traits::PublicKeyParts as _;
use serde_json::{json, Value};

const PEM: &str = include_str!("../../testdata/rsa-test-key.pem");
const ISS: &str = "https://idp.example.com";
const AUD: &str = "https://mcp.example.com/mcp";
const NOW_S: u64 = 1_795_514_400;

fn b64(d: &[u8]) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(d)
}

fn filler(n: usize) -> String {
    let unit = "Customer alice@example.com paid with 4111 1111 1111 1111 from 10.1.2.3; note: ";
    unit.repeat(n / unit.len() + 1).chars().take(n).collect()
}

/// The plugin configurations of `make bench` (integration/src/bin/bench.rs), by depth.
fn variants(jwks: &Value) -> Vec<(&'static str, Value)> {
    let auth = json!({"mode": "required", "providers": [{"issuer": ISS, "audiences": [AUD], "jwks": jwks}]});
    let audit = json!({"cluster": "audit_collector", "authority": "collector"});
    let masking = json!({
        "fields": ["password", "secret", "token", "api_key", "authorization"],
        "detectors": ["email", "credit_card", "us_ssn", "iban", "phone", "ipv4", "jwt", "bearer_token",
                      "aws_access_key", "gcp_api_key", "github_token", "slack_token", "private_key"],
    });
    let mut full_masking = masking.clone();
    full_masking["responses"] = json!(true);
    let mut full_audit = audit.clone();
    full_audit["hmac_key"] = json!(base64::engine::general_purpose::STANDARD.encode([7u8; 32]));
    let policy = json!({"default": "allow", "rules": [
        {"tools": ["delete_*"], "groups": ["admins"], "action": "allow"},
        {"tools": ["delete_*"], "action": "deny"}]});
    vec![
        (
            "vm_only",
            json!({"audit": audit, "mcp": {"paths": ["/mcp"], "decode": false}}),
        ),
        (
            "auth",
            json!({"audit": audit, "auth": auth, "mcp": {"paths": ["/mcp"], "decode": false}}),
        ),
        (
            "auth_decode",
            json!({"audit": audit, "auth": auth, "mcp": {"paths": ["/mcp"]}}),
        ),
        (
            "mask",
            json!({"audit": audit, "auth": auth, "mcp": {"paths": ["/mcp"]}, "masking": masking}),
        ),
        (
            "full",
            json!({"audit": full_audit, "auth": auth, "mcp": {"paths": ["/mcp"]}, "masking": full_masking,
                   "policy": policy}),
        ),
        // The full pipeline less one of its parts, to see what each costs.
        (
            "full-policy",
            json!({"audit": full_audit, "auth": auth, "mcp": {"paths": ["/mcp"]}, "masking": full_masking}),
        ),
        (
            "full-answers",
            json!({"audit": full_audit, "auth": auth, "mcp": {"paths": ["/mcp"]}, "masking": masking,
                   "policy": policy}),
        ),
        (
            "full-hmac",
            json!({"audit": audit, "auth": auth, "mcp": {"paths": ["/mcp"]}, "masking": full_masking,
                   "policy": policy}),
        ),
    ]
}

/// The request and answer of one exchange.
pub struct Traffic {
    bearer: String,
    request: String,
    reply: String,
}

impl Traffic {
    pub fn new() -> (Traffic, Vec<(&'static str, Value)>) {
        let key = rsa::RsaPrivateKey::from_pkcs8_pem(PEM).unwrap();
        let public = key.to_public_key();
        let jwks = json!({"keys": [{"kty": "RSA", "kid": "rsa", "alg": "RS256",
            "n": b64(&public.n().to_bytes_be()), "e": b64(&public.e().to_bytes_be())}]});
        let signer = rsa::pkcs1v15::SigningKey::<sha2::Sha256>::new(key);
        let header = b64(json!({"alg": "RS256", "kid": "rsa", "typ": "JWT"})
            .to_string()
            .as_bytes());
        let claims = json!({"iss": ISS, "aud": AUD, "sub": "alice", "exp": NOW_S + 10 * 365 * 86_400,
            "iat": NOW_S, "groups": ["eng"]});
        let input = format!("{header}.{}", b64(claims.to_string().as_bytes()));
        let token = format!("{input}.{}", b64(&signer.sign(input.as_bytes()).to_vec()));
        let traffic = Traffic {
            bearer: format!("Bearer {token}"),
            request: json!({"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": {"name": "lookup_customer",
                "arguments": {"query": filler(800), "api_key": "sk-bench-0123456789", "limit": 10}}})
            .to_string(),
            reply: json!({"jsonrpc": "2.0", "id": 1, "result": {"content": [{"type": "text", "text": filler(944)}], "isError": false}})
                .to_string(),
        };
        (traffic, variants(&jwks))
    }
}

/// A configured root and its host, driving exchanges; every 100th ships a batch.
pub struct Rig {
    pub host: FakeHost,
    root: Root,
    n: u32,
}

impl Rig {
    pub fn new(name: &str, config: &Value) -> Rig {
        let host = FakeHost::default();
        host.now.set(NOW_S * 1000);
        host.properties
            .borrow_mut()
            .insert("source.address".into(), b"127.0.0.1:50000".to_vec());
        let mut root = Root::default();
        assert!(
            root.configure(&host, config.to_string().as_bytes()),
            "{name}: {:?}",
            host.logs.borrow()
        );
        Rig { host, root, n: 0 }
    }

    pub fn exchange(&mut self, t: &Traffic) {
        let headers = [
            ("authorization", t.bearer.as_str()),
            ("content-type", "application/json"),
            ("accept", "application/json, text/event-stream"),
            ("x-request-id", "3f0c2a8e-5b1d-4c7a-9e2f-8d6b4a1c0e9f"),
            (":authority", "mcp.example.com"),
        ];
        let chunks: [&[u8]; 1] = [t.reply.as_bytes()];
        let ex = Exchange {
            headers: &headers,
            body: &t.request,
            response_headers: &[
                ("content-type", "application/json"),
                ("content-length", "1024"),
            ],
            chunks: &chunks,
            ..Exchange::default()
        };
        let done = self.host.exchange(&self.root, &ex);
        assert!(!done.answered_locally, "{:?}", self.host.responses.borrow());
        self.n += 1;
        if self.n % 100 == 0 {
            // Ship and acknowledge the batch, as the root's tick does under load.
            let host = &self.host;
            host.advance(10_000);
            self.root.on_tick(host);
            let calls = host.calls.borrow().len() as u32;
            host.set_header(Headers::CallResponse, ":status", "200");
            self.root.on_http_call_response(host, calls, 1, 0);
            host.calls.borrow_mut().clear();
        }
    }
}
