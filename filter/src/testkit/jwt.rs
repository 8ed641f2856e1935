//! Token minting with fixed keys for tests and benches (no randomness, so it also runs in
//! wasm); exposed by the `testkit` feature. Never part of the filter module.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use base64::Engine as _;
use rsa::pkcs8::DecodePrivateKey as _;
use rsa::signature::{RandomizedSigner as _, SignatureEncoding as _, Signer as _};
use rsa::traits::PublicKeyParts as _;
use serde_json::{json, Value};
use sha2::{Sha256, Sha384, Sha512};

pub const RSA_PEM: &str = include_str!("../../testdata/rsa-test-key.pem");
pub const RSA2_PEM: &str = include_str!("../../testdata/rsa-test-key-2.pem");
pub const RSA1024_PEM: &str = include_str!("../../testdata/rsa-test-key-1024.pem");
pub const HMAC_SECRET: &[u8] = b"a-shared-secret-of-32-bytes-long!";
pub const ISS: &str = "https://idp.example.com";
pub const AUD: &str = "https://mcp.example.com/mcp";
pub const NOW: i64 = 1_795_514_400;
/// A fixed verified-token cache key for tests, benches and fuzzing (a VM draws its own from
/// the host).
pub const TEST_CACHE_KEY: [u64; 2] = [0x6d63_7074_7261_696c, 0x746f_6b65_6e73];

pub fn b64(data: &[u8]) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(data)
}

/// A deterministic "RNG" for PSS salts in tests only.
struct Counter(u8);
impl rsa::rand_core::RngCore for Counter {
    fn next_u32(&mut self) -> u32 {
        self.next_u64() as u32
    }
    fn next_u64(&mut self) -> u64 {
        let mut b = [0u8; 8];
        self.fill_bytes(&mut b);
        u64::from_le_bytes(b)
    }
    fn fill_bytes(&mut self, dest: &mut [u8]) {
        for d in dest {
            self.0 = self.0.wrapping_add(1);
            *d = self.0;
        }
    }
    fn try_fill_bytes(&mut self, dest: &mut [u8]) -> Result<(), rsa::rand_core::Error> {
        self.fill_bytes(dest);
        Ok(())
    }
}
impl rsa::rand_core::CryptoRng for Counter {}

pub fn rsa_key(pem: &str) -> rsa::RsaPrivateKey {
    rsa::RsaPrivateKey::from_pkcs8_pem(pem).unwrap()
}

pub fn p256_key() -> p256::ecdsa::SigningKey {
    p256::ecdsa::SigningKey::from_slice(&[7u8; 32]).unwrap()
}

pub fn p384_key() -> p384::ecdsa::SigningKey {
    p384::ecdsa::SigningKey::from_slice(&[5u8; 48]).unwrap()
}

pub fn ed_key() -> ed25519_dalek::SigningKey {
    ed25519_dalek::SigningKey::from_bytes(&[9u8; 32])
}

/// JWK (public) for each test key.
pub fn rsa_jwk(pem: &str, kid: &str) -> Value {
    let k = rsa_key(pem).to_public_key();
    json!({"kty":"RSA","kid":kid,"use":"sig","n":b64(&k.n().to_bytes_be()),"e":b64(&k.e().to_bytes_be())})
}

pub fn p256_jwk(kid: &str) -> Value {
    let p = p256_key().verifying_key().to_sec1_point(false);
    json!({"kty":"EC","crv":"P-256","kid":kid,"x":b64(p.x().unwrap()),"y":b64(p.y().unwrap())})
}

pub fn p384_jwk(kid: &str) -> Value {
    let p = p384_key().verifying_key().to_sec1_point(false);
    json!({"kty":"EC","crv":"P-384","kid":kid,"x":b64(p.x().unwrap()),"y":b64(p.y().unwrap())})
}

pub fn ed_jwk(kid: &str) -> Value {
    json!({"kty":"OKP","crv":"Ed25519","kid":kid,"x":b64(ed_key().verifying_key().as_bytes())})
}

/// The JWKS with every test key: kids `rsa`, `ec256`, `ec384`, `ed`.
pub fn jwks() -> Value {
    json!({"keys":[rsa_jwk(RSA_PEM, "rsa"), p256_jwk("ec256"), p384_jwk("ec384"), ed_jwk("ed")]})
}

/// Standard valid claims for `sub`.
pub fn claims(sub: &str) -> Value {
    json!({"iss": ISS, "aud": AUD, "sub": sub, "iat": NOW - 10, "nbf": NOW - 10, "exp": NOW + 3600,
           "groups": ["eng"], "email": format!("{sub}@example.com"), "azp": "agent-1"})
}

/// Signs `claims` with `alg` using the matching test key (`pem` for RSA algorithms).
pub fn sign_with(alg: &str, kid: Option<&str>, claims: &Value, pem: &str) -> String {
    let mut header = json!({"alg": alg, "typ": "JWT"});
    if let Some(k) = kid {
        header["kid"] = json!(k);
    }
    let input = format!(
        "{}.{}",
        b64(header.to_string().as_bytes()),
        b64(claims.to_string().as_bytes())
    );
    let sig = signature(alg, input.as_bytes(), pem);
    format!("{input}.{}", b64(&sig))
}

/// The signature of `msg` (a JWS signing input) by `alg` with the matching test key (`pem`
/// for RSA algorithms).
pub fn signature(alg: &str, msg: &[u8], pem: &str) -> Vec<u8> {
    match alg {
        "RS256" => rsa::pkcs1v15::SigningKey::<Sha256>::new(rsa_key(pem))
            .sign(msg)
            .to_vec(),
        "RS384" => rsa::pkcs1v15::SigningKey::<Sha384>::new(rsa_key(pem))
            .sign(msg)
            .to_vec(),
        "RS512" => rsa::pkcs1v15::SigningKey::<Sha512>::new(rsa_key(pem))
            .sign(msg)
            .to_vec(),
        "PS256" => rsa::pss::SigningKey::<Sha256>::new(rsa_key(pem))
            .sign_with_rng(&mut Counter(0), msg)
            .to_vec(),
        "PS384" => rsa::pss::SigningKey::<Sha384>::new(rsa_key(pem))
            .sign_with_rng(&mut Counter(0), msg)
            .to_vec(),
        "PS512" => rsa::pss::SigningKey::<Sha512>::new(rsa_key(pem))
            .sign_with_rng(&mut Counter(0), msg)
            .to_vec(),
        "ES256" => {
            let s: p256::ecdsa::Signature = p256::ecdsa::signature::Signer::sign(&p256_key(), msg);
            s.to_bytes().to_vec()
        }
        "ES384" => {
            let s: p384::ecdsa::Signature = p384::ecdsa::signature::Signer::sign(&p384_key(), msg);
            s.to_bytes().to_vec()
        }
        "EdDSA" => {
            use ed25519_dalek::Signer as _;
            ed_key().sign(msg).to_bytes().to_vec()
        }
        "HS256" => {
            use hmac::Mac as _;
            let mut m =
                <hmac::Hmac<Sha256> as hmac::digest::KeyInit>::new_from_slice(HMAC_SECRET).unwrap();
            m.update(msg);
            m.finalize().into_bytes().to_vec()
        }
        other => panic!("no test signer for {other}"),
    }
}

/// Signs with the default test key of the algorithm, kid set to match [`jwks`].
pub fn sign(alg: &str, claims: &Value) -> String {
    let kid = match alg {
        "ES256" => Some("ec256"),
        "ES384" => Some("ec384"),
        "EdDSA" => Some("ed"),
        "HS256" => None,
        _ => Some("rsa"),
    };
    sign_with(alg, kid, claims, RSA_PEM)
}

/// Required auth with one provider trusting every test key ([`jwks`]) for every asymmetric
/// algorithm, and a verified-token cache of `cache` entries (0: every token is verified).
pub fn auth_settings(cache: usize) -> crate::auth::AuthSettings {
    use crate::auth::jwt::{parse_jwks, Alg, ClaimNames};
    use crate::auth::{AuthSettings, Mode, Provider};
    let (keys, _) = parse_jwks(jwks().to_string().as_bytes()).unwrap();
    AuthSettings {
        mode: Mode::Required,
        providers: vec![Provider {
            name: "bench".into(),
            issuer: ISS.into(),
            audiences: vec![AUD.into()],
            algorithms: Alg::ASYMMETRIC.to_vec(),
            claims: ClaimNames::default(),
            leeway_s: 60,
            inline_keys: keys,
            shared_secret: None,
            fetch: None,
        }],
        cache_max_entries: cache,
        ..AuthSettings::off()
    }
}
