//! What the fuzz targets share: fixed test keys, token minting, the recorded MCP exchanges
//! (`filter/testdata/exchanges/`) as a table of real bodies the glue target can cut into
//! chunks, and small helpers.

use std::sync::OnceLock;

use base64::Engine as _;
use serde_json::{json, Value};

// The filter's test keys, issuer, audience and clock (one copy, in its testkit).
pub use mcptrail::testkit::jwt::{
    b64 as b64url, ed_jwk, ed_key, HMAC_SECRET, ISS, AUD, NOW as NOW_S,
};
use mcptrail::testkit::jwt::RSA_PEM;

/// The audit HMAC key of the glue configurations (base64 of `secret-key-for-demo-only`).
pub const AUDIT_KEY_B64: &str = "c2VjcmV0LWtleS1mb3ItZGVtby1vbmx5";
pub const AUDIT_KEY: &[u8] = b"secret-key-for-demo-only";

pub fn b64(data: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(data)
}

/// The RSA test key's public JWK, built once (parsing the key for every input would slow
/// the targets down).
pub fn rsa_jwk(kid: &str) -> Value {
    static JWK: OnceLock<Value> = OnceLock::new();
    let mut jwk = JWK
        .get_or_init(|| mcptrail::testkit::jwt::rsa_jwk(RSA_PEM, "rsa"))
        .clone();
    jwk["kid"] = json!(kid);
    jwk
}

/// The JWKS the targets trust: an RSA key (`rsa`) and the Ed25519 key (`ed`).
pub fn jwks() -> Value {
    json!({"keys":[rsa_jwk("rsa"), ed_jwk("ed")]})
}

/// How a token is signed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Signer {
    Hs256,
    EdDsa,
}

/// The signature of `input` (`header.payload`).
pub fn signature(signer: Signer, input: &[u8]) -> Vec<u8> {
    let alg = match signer {
        Signer::Hs256 => "HS256",
        Signer::EdDsa => "EdDSA",
    };
    mcptrail::testkit::jwt::signature(alg, input, RSA_PEM)
}

/// A compact JWS of `header` and `claims` (raw bytes), signed by `signer`.
pub fn token(header: &[u8], claims: &[u8], signer: Signer) -> String {
    let input = format!("{}.{}", b64url(header), b64url(claims));
    let sig = signature(signer, input.as_bytes());
    format!("{input}.{}", b64url(&sig))
}

/// A valid token for `sub` in `groups`, expiring at `exp_s`.
pub fn valid_token(sub: &str, groups: &[&str], exp_s: i64, signer: Signer) -> String {
    let header = match signer {
        Signer::Hs256 => json!({"alg":"HS256","typ":"JWT"}),
        Signer::EdDsa => json!({"alg":"EdDSA","typ":"JWT","kid":"ed"}),
    };
    let claims = json!({"iss": ISS, "aud": AUD, "sub": sub, "groups": groups,
        "email": format!("{sub}@example.com"), "azp": "agent-1",
        "iat": NOW_S - 10, "exp": exp_s});
    token(
        header.to_string().as_bytes(),
        claims.to_string().as_bytes(),
        signer,
    )
}

/// One recorded HTTP exchange, reduced to what the glue target replays.
#[derive(Debug, Clone)]
pub struct Exchange {
    pub method: String,
    pub request_headers: Vec<(String, String)>,
    pub request_body: Vec<u8>,
    pub status: u16,
    pub response_headers: Vec<(String, String)>,
    pub response_body: Vec<u8>,
}

const FIXTURES: [&str; 6] = [
    include_str!("../../filter/testdata/exchanges/server-everything.json"),
    include_str!("../../filter/testdata/exchanges/python-sdk-sse.json"),
    include_str!("../../filter/testdata/exchanges/python-sdk-json.json"),
    include_str!("../../filter/testdata/exchanges/python-sdk-stateless.json"),
    include_str!("../../filter/testdata/exchanges/rmcp-sse.json"),
    include_str!("../../filter/testdata/exchanges/rmcp-json.json"),
];

fn headers_of(v: &Value) -> Vec<(String, String)> {
    v.as_object()
        .map(|m| {
            m.iter()
                .filter_map(|(k, v)| Some((k.clone(), v.as_str()?.to_string())))
                .collect()
        })
        .unwrap_or_default()
}

/// Every recorded exchange (parsed once).
pub fn exchanges() -> &'static [Exchange] {
    static ALL: OnceLock<Vec<Exchange>> = OnceLock::new();
    ALL.get_or_init(|| {
        let mut out = Vec::new();
        for doc in FIXTURES {
            let Ok(doc) = serde_json::from_str::<Value>(doc) else {
                continue;
            };
            for ex in doc["exchanges"].as_array().into_iter().flatten() {
                let req = &ex["request"];
                let resp = &ex["response"];
                out.push(Exchange {
                    method: req["method"].as_str().unwrap_or("POST").to_string(),
                    request_headers: headers_of(&req["headers"]),
                    request_body: req["body"].as_str().unwrap_or("").as_bytes().to_vec(),
                    status: resp["status"].as_u64().unwrap_or(200) as u16,
                    response_headers: headers_of(&resp["headers"]),
                    response_body: resp["body"].as_str().unwrap_or("").as_bytes().to_vec(),
                });
            }
        }
        out
    })
}

/// `bytes[start..start+len]`, clamped (a fuzzer-chosen slice of a real body).
pub fn slice(bytes: &[u8], start: u16, len: u16) -> &[u8] {
    if bytes.is_empty() {
        return bytes;
    }
    let start = start as usize % bytes.len();
    let end = start.saturating_add(len as usize).min(bytes.len());
    bytes.get(start..end).unwrap_or_default()
}

