//! What the fuzz targets share: fixed test keys, token minting, the recorded MCP exchanges
//! (`filter/testdata/exchanges/`) as a table of real bodies the glue target can cut into
//! chunks, and small helpers.

use std::sync::OnceLock;

use base64::Engine as _;
use serde_json::{json, Value};

/// Issuer, audience and clock the targets use.
pub const ISS: &str = "https://idp.example.com";
pub const AUD: &str = "https://mcp.example.com/mcp";
/// 2026-11-24T10:00:00Z, seconds.
pub const NOW_S: i64 = 1_795_514_400;
/// The HS256 shared secret (base64 of it goes in the configuration).
pub const HMAC_SECRET: &[u8] = b"a-shared-secret-of-32-bytes-long!";
/// The audit HMAC key of the glue configurations (base64 of `secret-key-for-demo-only`).
pub const AUDIT_KEY_B64: &str = "c2VjcmV0LWtleS1mb3ItZGVtby1vbmx5";
pub const AUDIT_KEY: &[u8] = b"secret-key-for-demo-only";

pub fn b64url(data: &[u8]) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(data)
}

pub fn b64(data: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(data)
}

/// The Ed25519 test key (fixed seed: nothing random in a fuzz target).
pub fn ed_key() -> ed25519_dalek::SigningKey {
    ed25519_dalek::SigningKey::from_bytes(&[9u8; 32])
}

/// A JWK for the Ed25519 test key.
pub fn ed_jwk(kid: &str) -> Value {
    json!({"kty":"OKP","crv":"Ed25519","use":"sig","kid":kid,"x":b64url(ed_key().verifying_key().as_bytes())})
}

/// The RSA test key's public JWK (from the filter's test data), built once.
pub fn rsa_jwk(kid: &str) -> Value {
    static N_E: OnceLock<(String, String)> = OnceLock::new();
    let (n, e) = N_E.get_or_init(|| {
        use rsa::pkcs8::DecodePrivateKey as _;
        use rsa::traits::PublicKeyParts as _;
        let pem = include_str!("../../filter/testdata/rsa-test-key.pem");
        match rsa::RsaPrivateKey::from_pkcs8_pem(pem) {
            Ok(k) => (b64url(&k.n().to_bytes_be()), b64url(&k.e().to_bytes_be())),
            Err(_) => (String::new(), String::new()),
        }
    });
    json!({"kty":"RSA","use":"sig","kid":kid,"n":n,"e":e})
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
    match signer {
        Signer::Hs256 => {
            use hmac::Mac as _;
            match <hmac::Hmac<sha2::Sha256> as hmac::digest::KeyInit>::new_from_slice(HMAC_SECRET)
            {
                Ok(mut m) => {
                    m.update(input);
                    m.finalize().into_bytes().to_vec()
                }
                Err(_) => Vec::new(),
            }
        }
        Signer::EdDsa => {
            use ed25519_dalek::Signer as _;
            ed_key().sign(input).to_bytes().to_vec()
        }
    }
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

/// A small deterministic generator (xorshift64*), for chunk sizes derived from the input.
#[derive(Debug, Clone)]
pub struct Rng(pub u64);

impl Rng {
    pub fn next(&mut self) -> u64 {
        let mut x = self.0 | 1;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
}
