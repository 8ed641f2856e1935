//! JWT (JWS compact serialisation) verification against JWKS keys.
//!
//! Deliberately strict: the key type decides which algorithms it can verify (so an HS* token
//! can never be checked with an RSA or EC public key), `alg: none` and `crit` headers are
//! refused, HMAC keys only come from explicit configuration (never from a JWKS), and `exp` is
//! required.

use base64::Engine as _;
use serde_json::{Map, Value};

use crate::audit::record::Identity;

/// Signature algorithms.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Alg {
    RS256,
    RS384,
    RS512,
    PS256,
    PS384,
    PS512,
    ES256,
    ES384,
    EdDSA,
    HS256,
    HS384,
    HS512,
}

impl Alg {
    pub fn parse(s: &str) -> Option<Alg> {
        Some(match s {
            "RS256" => Alg::RS256,
            "RS384" => Alg::RS384,
            "RS512" => Alg::RS512,
            "PS256" => Alg::PS256,
            "PS384" => Alg::PS384,
            "PS512" => Alg::PS512,
            "ES256" => Alg::ES256,
            "ES384" => Alg::ES384,
            "EdDSA" => Alg::EdDSA,
            "HS256" => Alg::HS256,
            "HS384" => Alg::HS384,
            "HS512" => Alg::HS512,
            _ => return None,
        })
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Alg::RS256 => "RS256",
            Alg::RS384 => "RS384",
            Alg::RS512 => "RS512",
            Alg::PS256 => "PS256",
            Alg::PS384 => "PS384",
            Alg::PS512 => "PS512",
            Alg::ES256 => "ES256",
            Alg::ES384 => "ES384",
            Alg::EdDSA => "EdDSA",
            Alg::HS256 => "HS256",
            Alg::HS384 => "HS384",
            Alg::HS512 => "HS512",
        }
    }

    /// Every asymmetric algorithm: the default when a provider names none.
    pub const ASYMMETRIC: [Alg; 9] = [
        Alg::RS256,
        Alg::RS384,
        Alg::RS512,
        Alg::PS256,
        Alg::PS384,
        Alg::PS512,
        Alg::ES256,
        Alg::ES384,
        Alg::EdDSA,
    ];
}

/// Public key material (or an explicitly configured HMAC secret).
#[derive(Clone)]
pub enum KeyMaterial {
    Rsa(RsaKey),
    P256(p256::ecdsa::VerifyingKey),
    P384(p384::ecdsa::VerifyingKey),
    Ed25519(ed25519_dalek::VerifyingKey),
    Hmac(Vec<u8>),
}

impl std::fmt::Debug for KeyMaterial {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print secrets.
        f.write_str(match self {
            KeyMaterial::Rsa(_) => "Rsa",
            KeyMaterial::P256(_) => "P256",
            KeyMaterial::P384(_) => "P384",
            KeyMaterial::Ed25519(_) => "Ed25519",
            KeyMaterial::Hmac(_) => "Hmac(..)",
        })
    }
}

impl KeyMaterial {
    /// Whether this key type can verify `alg` (the algorithm-confusion defence).
    pub fn allows(&self, alg: Alg) -> bool {
        matches!(
            (self, alg),
            (
                KeyMaterial::Rsa(_),
                Alg::RS256 | Alg::RS384 | Alg::RS512 | Alg::PS256 | Alg::PS384 | Alg::PS512
            ) | (KeyMaterial::P256(_), Alg::ES256)
                | (KeyMaterial::P384(_), Alg::ES384)
                | (KeyMaterial::Ed25519(_), Alg::EdDSA)
                | (KeyMaterial::Hmac(_), Alg::HS256 | Alg::HS384 | Alg::HS512)
        )
    }
}

/// One verification key.
#[derive(Debug, Clone)]
pub struct Jwk {
    pub kid: Option<String>,
    pub alg: Option<Alg>,
    pub key: KeyMaterial,
}

/// The most keys one token is tried against (a key set full of one `kid` costs no more).
pub const MAX_CANDIDATES: usize = 8;

/// The keys of `keys` that may have signed a token with `kid` and `alg`: the same `kid` (any,
/// when the token names none), an `alg` that is the token's or unset, and a key type that can
/// verify it (the algorithm-confusion defence).
pub fn candidates<'k, 'a, I: IntoIterator<Item = &'k Jwk>>(
    keys: I,
    kid: Option<&'a str>,
    alg: Alg,
) -> impl Iterator<Item = &'k KeyMaterial> + use<'k, 'a, I> {
    keys.into_iter()
        .filter(move |k| kid.is_none() || k.kid.as_deref() == kid)
        .filter(move |k| k.alg.is_none_or(|a| a == alg) && k.key.allows(alg))
        .map(|k| &k.key)
}

/// Smallest RSA modulus accepted.
pub const MIN_RSA_BITS: usize = 2048;

fn b64url(s: &str) -> Option<Vec<u8>> {
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(s)
        .ok()
}

/// Parses a JWKS document. Keys that are not signature keys, of unknown types, or malformed
/// are skipped and described in the second element; symmetric (`oct`) keys are never taken
/// from a JWKS.
pub fn parse_jwks(bytes: &[u8]) -> Result<(Vec<Jwk>, Vec<String>), String> {
    let v: Value = serde_json::from_slice(bytes).map_err(|e| format!("JWKS is not JSON: {e}"))?;
    let keys = v
        .get("keys")
        .and_then(Value::as_array)
        .ok_or("JWKS has no `keys` array")?;
    let mut out = Vec::new();
    let mut skipped = Vec::new();
    for (i, k) in keys.iter().enumerate() {
        match parse_jwk(k) {
            Ok(Some(jwk)) => out.push(jwk),
            Ok(None) => {}
            Err(e) => skipped.push(format!("key {i}: {e}")),
        }
    }
    Ok((out, skipped))
}

fn parse_jwk(k: &Value) -> Result<Option<Jwk>, String> {
    let s = |name: &str| k.get(name).and_then(Value::as_str);
    if s("use").is_some_and(|u| u != "sig") {
        return Ok(None);
    }
    let alg = match s("alg") {
        None => None,
        Some(a) => Some(Alg::parse(a).ok_or_else(|| format!("unsupported alg `{a}`"))?),
    };
    let field = |name: &str| -> Result<Vec<u8>, String> {
        s(name)
            .and_then(b64url)
            .ok_or_else(|| format!("missing or bad `{name}`"))
    };
    let key = match s("kty") {
        Some("RSA") => {
            let n = field("n")?;
            if rsa::BigUint::from_bytes_be(&n).bits() < MIN_RSA_BITS {
                return Err(format!("RSA key shorter than {MIN_RSA_BITS} bits"));
            }
            KeyMaterial::Rsa(RsaKey::new(&n, &field("e")?)?)
        }
        Some("EC") => {
            let (x, y) = (field("x")?, field("y")?);
            let mut sec1 = Vec::with_capacity(1 + x.len() + y.len());
            sec1.push(4u8);
            sec1.extend_from_slice(&x);
            sec1.extend_from_slice(&y);
            match s("crv") {
                Some("P-256") if x.len() == 32 && y.len() == 32 => KeyMaterial::P256(
                    p256::ecdsa::VerifyingKey::from_sec1_bytes(&sec1)
                        .map_err(|_| "bad P-256 point".to_string())?,
                ),
                Some("P-384") if x.len() == 48 && y.len() == 48 => KeyMaterial::P384(
                    p384::ecdsa::VerifyingKey::from_sec1_bytes(&sec1)
                        .map_err(|_| "bad P-384 point".to_string())?,
                ),
                other => return Err(format!("unsupported EC curve {other:?}")),
            }
        }
        Some("OKP") => {
            if s("crv") != Some("Ed25519") {
                return Err(format!("unsupported OKP curve {:?}", s("crv")));
            }
            let x: [u8; 32] = field("x")?
                .try_into()
                .map_err(|_| "Ed25519 key is not 32 bytes".to_string())?;
            KeyMaterial::Ed25519(
                ed25519_dalek::VerifyingKey::from_bytes(&x)
                    .map_err(|_| "bad Ed25519 key".to_string())?,
            )
        }
        Some("oct") => return Err("symmetric keys are not accepted from a JWKS".into()),
        other => return Err(format!("unsupported kty {other:?}")),
    };
    if let Some(a) = alg {
        if !key.allows(a) {
            return Err(format!("alg {} does not fit the key type", a.as_str()));
        }
    }
    Ok(Some(Jwk {
        kid: s("kid").map(str::to_string),
        alg,
        key,
    }))
}

/// Why a token was refused. `reason()` is the short code recorded in `auth.denied`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JwtError {
    TooLarge,
    Malformed(&'static str),
    AlgNone,
    UnsupportedAlg(String),
    AlgNotAllowed(Alg),
    CriticalHeader,
    UnknownIssuer,
    UnknownKid(Option<String>),
    BadSignature,
    MissingExp,
    Expired,
    NotYetValid,
    IssuedInFuture,
    AudienceMismatch,
    BadClaim(&'static str),
}

impl JwtError {
    pub fn reason(&self) -> &'static str {
        match self {
            JwtError::TooLarge => "token_too_large",
            JwtError::Malformed(_) => "malformed",
            JwtError::AlgNone => "alg_none",
            JwtError::UnsupportedAlg(_) => "unsupported_alg",
            JwtError::AlgNotAllowed(_) => "alg_not_allowed",
            JwtError::CriticalHeader => "critical_header",
            JwtError::UnknownIssuer => "unknown_issuer",
            JwtError::UnknownKid(_) => "unknown_kid",
            JwtError::BadSignature => "bad_signature",
            JwtError::MissingExp => "missing_exp",
            JwtError::Expired => "expired",
            JwtError::NotYetValid => "not_yet_valid",
            JwtError::IssuedInFuture => "issued_in_future",
            JwtError::AudienceMismatch => "audience_mismatch",
            JwtError::BadClaim(_) => "bad_claim",
        }
    }
}

impl std::fmt::Display for JwtError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            JwtError::TooLarge => write!(f, "token too large"),
            JwtError::Malformed(what) => write!(f, "malformed token: {what}"),
            JwtError::AlgNone => write!(f, "unsigned token (alg none)"),
            JwtError::UnsupportedAlg(a) => write!(f, "unsupported alg {a:?}"),
            JwtError::AlgNotAllowed(a) => write!(f, "alg {} not allowed", a.as_str()),
            JwtError::CriticalHeader => write!(f, "unsupported critical header"),
            JwtError::UnknownIssuer => write!(f, "issuer not configured"),
            JwtError::UnknownKid(k) => write!(f, "no key for kid {k:?}"),
            JwtError::BadSignature => write!(f, "signature does not verify"),
            JwtError::MissingExp => write!(f, "token has no exp"),
            JwtError::Expired => write!(f, "token expired"),
            JwtError::NotYetValid => write!(f, "token not yet valid (nbf)"),
            JwtError::IssuedInFuture => write!(f, "token issued in the future (iat)"),
            JwtError::AudienceMismatch => write!(f, "audience does not match"),
            JwtError::BadClaim(c) => write!(f, "claim {c} has the wrong type"),
        }
    }
}

/// A token split and decoded, not yet verified.
#[derive(Debug, Clone)]
pub struct Parsed<'a> {
    pub alg: Alg,
    pub kid: Option<String>,
    pub claims: Map<String, Value>,
    pub signing_input: &'a str,
    pub signature: Vec<u8>,
}

/// Splits and decodes a compact JWS. Checks size, shape, base64url, JSON and the header.
pub fn parse(token: &str, max_len: usize) -> Result<Parsed<'_>, JwtError> {
    if token.len() > max_len {
        return Err(JwtError::TooLarge);
    }
    let mut parts = token.split('.');
    let (Some(h), Some(p), Some(s), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(JwtError::Malformed("not three dot-separated parts"));
    };
    let header = b64url(h).ok_or(JwtError::Malformed("header is not base64url"))?;
    let payload = b64url(p).ok_or(JwtError::Malformed("payload is not base64url"))?;
    let signature = b64url(s).ok_or(JwtError::Malformed("signature is not base64url"))?;
    let header: Map<String, Value> = serde_json::from_slice(&header)
        .map_err(|_| JwtError::Malformed("header is not a JSON object"))?;
    let claims: Map<String, Value> = serde_json::from_slice(&payload)
        .map_err(|_| JwtError::Malformed("payload is not a JSON object"))?;
    let alg = match header.get("alg").and_then(Value::as_str) {
        None => return Err(JwtError::Malformed("header has no alg")),
        Some(a) if a.eq_ignore_ascii_case("none") => return Err(JwtError::AlgNone),
        Some(a) => {
            Alg::parse(a).ok_or_else(|| JwtError::UnsupportedAlg(a.chars().take(16).collect()))?
        }
    };
    if header.contains_key("crit") {
        return Err(JwtError::CriticalHeader);
    }
    if signature.is_empty() {
        return Err(JwtError::Malformed("empty signature"));
    }
    let kid = match header.get("kid") {
        None => None,
        Some(Value::String(k)) => Some(k.clone()),
        Some(_) => return Err(JwtError::Malformed("kid is not a string")),
    };
    let signing_input = token
        .get(..h.len() + 1 + p.len())
        .ok_or(JwtError::Malformed("bad layout"))?;
    Ok(Parsed {
        alg,
        kid,
        claims,
        signing_input,
        signature,
    })
}

fn verify_hmac<M: hmac::Mac + hmac::digest::KeyInit>(key: &[u8], msg: &[u8], sig: &[u8]) -> bool {
    match <M as hmac::digest::KeyInit>::new_from_slice(key) {
        Ok(mut m) => {
            m.update(msg);
            m.verify_slice(sig).is_ok()
        }
        Err(_) => false,
    }
}

/// Checks the signature of `parsed` with `key`.
pub fn verify_signature(parsed: &Parsed<'_>, key: &KeyMaterial) -> Result<(), JwtError> {
    use rsa::signature::Verifier as _;
    use sha2::{Sha256, Sha384, Sha512};
    if !key.allows(parsed.alg) {
        return Err(JwtError::BadSignature);
    }
    let msg = parsed.signing_input.as_bytes();
    let sig = parsed.signature.as_slice();
    let ok = match (key, parsed.alg) {
        (KeyMaterial::Rsa(k), Alg::RS256 | Alg::RS384 | Alg::RS512) => {
            k.verify_rs(parsed.alg, msg, sig)
        }
        (KeyMaterial::Rsa(k), _) => {
            let Ok(s) = rsa::pss::Signature::try_from(sig) else {
                return Err(JwtError::BadSignature);
            };
            match parsed.alg {
                Alg::PS256 => {
                    rsa::pss::VerifyingKey::<Sha256>::new(k.public().clone()).verify(msg, &s)
                }
                Alg::PS384 => {
                    rsa::pss::VerifyingKey::<Sha384>::new(k.public().clone()).verify(msg, &s)
                }
                _ => rsa::pss::VerifyingKey::<Sha512>::new(k.public().clone()).verify(msg, &s),
            }
            .is_ok()
        }
        (KeyMaterial::P256(k), _) => p256::ecdsa::Signature::from_slice(sig)
            .map(|s| p256::ecdsa::signature::Verifier::verify(k, msg, &s).is_ok())
            .unwrap_or(false),
        (KeyMaterial::P384(k), _) => p384::ecdsa::Signature::from_slice(sig)
            .map(|s| p384::ecdsa::signature::Verifier::verify(k, msg, &s).is_ok())
            .unwrap_or(false),
        (KeyMaterial::Ed25519(k), _) => ed25519_dalek::Signature::from_slice(sig)
            .map(|s| k.verify_strict(msg, &s).is_ok())
            .unwrap_or(false),
        (KeyMaterial::Hmac(secret), Alg::HS256) => {
            verify_hmac::<hmac::Hmac<Sha256>>(secret, msg, sig)
        }
        (KeyMaterial::Hmac(secret), Alg::HS384) => {
            verify_hmac::<hmac::Hmac<Sha384>>(secret, msg, sig)
        }
        (KeyMaterial::Hmac(secret), _) => verify_hmac::<hmac::Hmac<Sha512>>(secret, msg, sig),
    };
    if ok {
        Ok(())
    } else {
        Err(JwtError::BadSignature)
    }
}

/// Which claims carry the identity; dotted names reach into nested objects.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClaimNames {
    pub subject: String,
    pub groups: String,
    pub email: String,
    pub client_id: String,
}

impl Default for ClaimNames {
    fn default() -> Self {
        Self {
            subject: "sub".into(),
            groups: "groups".into(),
            email: "email".into(),
            client_id: "azp".into(),
        }
    }
}

/// A claim by dotted path (`realm_access.roles`). A key that itself contains dots wins.
pub fn claim<'a>(claims: &'a Map<String, Value>, path: &str) -> Option<&'a Value> {
    if let Some(v) = claims.get(path) {
        return Some(v);
    }
    let mut parts = path.split('.');
    let mut cur = claims.get(parts.next()?)?;
    for p in parts {
        cur = cur.get(p)?;
    }
    Some(cur)
}

fn groups_of(v: Option<&Value>) -> Vec<String> {
    match v {
        Some(Value::Array(a)) => a
            .iter()
            .filter_map(Value::as_str)
            .map(str::to_string)
            .collect(),
        Some(Value::String(s)) => s.split_whitespace().map(str::to_string).collect(),
        _ => Vec::new(),
    }
}

/// The identity the claims describe.
pub fn identity(claims: &Map<String, Value>, names: &ClaimNames, issuer: &str) -> Identity {
    let text = |path: &str| {
        claim(claims, path)
            .and_then(Value::as_str)
            .map(str::to_string)
    };
    Identity {
        sub: text(&names.subject),
        iss: Some(issuer.to_string()),
        email: text(&names.email),
        groups: groups_of(claim(claims, &names.groups)),
        client_id: text(&names.client_id).or_else(|| text("client_id")),
    }
}

fn numeric(claims: &Map<String, Value>, name: &'static str) -> Result<Option<i64>, JwtError> {
    match claims.get(name) {
        None => Ok(None),
        Some(Value::Number(n)) => n
            .as_i64()
            .or_else(|| n.as_f64().map(|f| f as i64))
            .map(Some)
            .ok_or(JwtError::BadClaim(name)),
        Some(_) => Err(JwtError::BadClaim(name)),
    }
}

/// Checks `exp` (required), `nbf` and `iat` against `now_s` with `leeway_s`, and that `aud`
/// holds one of `audiences`. Returns `exp`.
pub fn check_claims(
    claims: &Map<String, Value>,
    audiences: &[String],
    now_s: i64,
    leeway_s: i64,
) -> Result<i64, JwtError> {
    let exp = numeric(claims, "exp")?.ok_or(JwtError::MissingExp)?;
    if now_s - leeway_s >= exp {
        return Err(JwtError::Expired);
    }
    if let Some(nbf) = numeric(claims, "nbf")? {
        if nbf > now_s + leeway_s {
            return Err(JwtError::NotYetValid);
        }
    }
    if let Some(iat) = numeric(claims, "iat")? {
        if iat > now_s + leeway_s {
            return Err(JwtError::IssuedInFuture);
        }
    }
    if !audiences.is_empty() {
        let ok = match claims.get("aud") {
            Some(Value::String(a)) => audiences.iter().any(|x| x == a),
            Some(Value::Array(list)) => list
                .iter()
                .filter_map(Value::as_str)
                .any(|a| audiences.iter().any(|x| x == a)),
            _ => false,
        };
        if !ok {
            return Err(JwtError::AudienceMismatch);
        }
    }
    Ok(exp)
}

mod rsa_key;
pub use rsa_key::RsaKey;

#[cfg(test)]
mod tests;
