//! Hostile tokens against the authenticator: never a panic; never `Verified` without a real
//! signature by a trusted key under the algorithm that key is for; `alg: none` never passes;
//! a verified token always has a matching issuer, audience and an `exp` in the future; a
//! provider with no keys yet never verifies anything.
//!
//! Tokens are either raw text or built from fuzzed header and claims, signed for real (HS256
//! with the configured secret, EdDSA with the key in the inline JWKS) or not (random bytes,
//! empty, one bit flipped, not base64url).
//!
//! Input: a first byte 0 makes the rest a raw token (the seeds in `corpus/jwt` are real
//! tokens); anything else builds one from the rest.
#![no_main]

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use mcptrail::auth::{Authenticator, Outcome};
use mcptrail::testkit::jwt::TEST_CACHE_KEY;
use mcptrail::config::Config;
use mcptrail::auth::jwt::{self, ClaimNames};
use mcptrail_fuzz::{b64, b64url, jwks, signature, Signer, AUD, HMAC_SECRET, ISS, NOW_S};
use serde_json::{json, Map, Value};

const FETCHED_ISS: &str = "https://fetched.example.com";

#[derive(Arbitrary, Debug)]
enum AlgPick {
    Hs256,
    EdDsa,
    Rs256,
    Es256,
    Ps512,
    None(u8),
    Other(String),
    NotString(i64),
}

#[derive(Arbitrary, Debug)]
enum KidPick {
    Rsa,
    Ed,
    Other(String),
    NotString(i64),
}

#[derive(Arbitrary, Debug)]
struct Header {
    alg: Option<AlgPick>,
    kid: Option<KidPick>,
    crit: bool,
    typ: Option<String>,
    raw: Option<Vec<u8>>,
}

#[derive(Arbitrary, Debug)]
enum IssPick {
    Ours,
    Fetched,
    Missing,
    Other(String),
    Number(i64),
}

#[derive(Arbitrary, Debug)]
enum AudPick {
    Ours,
    List(Vec<String>, bool),
    Other(String),
    Missing,
    Number(i64),
}

#[derive(Arbitrary, Debug)]
enum Num {
    Missing,
    Rel(i32),
    Float(f64),
    Text(String),
    Null,
    Huge(bool),
}

#[derive(Arbitrary, Debug)]
enum GroupsPick {
    Missing,
    List(Vec<String>),
    Text(String),
    Nested(Vec<String>),
    Other(i64),
}

#[derive(Arbitrary, Debug)]
struct Claims {
    iss: IssPick,
    aud: AudPick,
    exp: Num,
    nbf: Num,
    iat: Num,
    sub: Option<String>,
    groups: GroupsPick,
    scope: Option<String>,
    raw: Option<Vec<u8>>,
}

#[derive(Arbitrary, Debug, Clone, PartialEq)]
enum Sig {
    Hs256,
    EdDsa,
    Raw(Vec<u8>),
    Empty,
    Flip(u16, bool),
    NotBase64(String),
}

#[derive(Arbitrary, Debug)]
enum Input {
    Built {
        header: Header,
        claims: Claims,
        sig: Sig,
        now: i32,
        names: (String, String),
    },
}

fn num(n: &Num) -> Option<Value> {
    Some(match n {
        Num::Missing => return None,
        Num::Rel(r) => json!(NOW_S + i64::from(*r)),
        Num::Float(f) => json!(f),
        Num::Text(t) => json!(t),
        Num::Null => Value::Null,
        Num::Huge(neg) => {
            if *neg {
                json!(i64::MIN)
            } else {
                json!(u64::MAX)
            }
        }
    })
}

fn header_bytes(h: &Header) -> Vec<u8> {
    if let Some(raw) = &h.raw {
        return raw.clone();
    }
    let mut m = Map::new();
    if let Some(a) = &h.alg {
        let v = match a {
            AlgPick::Hs256 => json!("HS256"),
            AlgPick::EdDsa => json!("EdDSA"),
            AlgPick::Rs256 => json!("RS256"),
            AlgPick::Es256 => json!("ES256"),
            AlgPick::Ps512 => json!("PS512"),
            AlgPick::None(i) => json!(["none", "None", "NONE", "nOnE"][*i as usize % 4]),
            AlgPick::Other(s) => json!(s),
            AlgPick::NotString(n) => json!(n),
        };
        m.insert("alg".into(), v);
    }
    if let Some(k) = &h.kid {
        let v = match k {
            KidPick::Rsa => json!("rsa"),
            KidPick::Ed => json!("ed"),
            KidPick::Other(s) => json!(s),
            KidPick::NotString(n) => json!(n),
        };
        m.insert("kid".into(), v);
    }
    if h.crit {
        m.insert("crit".into(), json!(["exp"]));
    }
    if let Some(t) = &h.typ {
        m.insert("typ".into(), json!(t));
    }
    Value::Object(m).to_string().into_bytes()
}

fn claims_bytes(c: &Claims) -> Vec<u8> {
    if let Some(raw) = &c.raw {
        return raw.clone();
    }
    let mut m = Map::new();
    match &c.iss {
        IssPick::Ours => {
            m.insert("iss".into(), json!(ISS));
        }
        IssPick::Fetched => {
            m.insert("iss".into(), json!(FETCHED_ISS));
        }
        IssPick::Missing => {}
        IssPick::Other(s) => {
            m.insert("iss".into(), json!(s));
        }
        IssPick::Number(n) => {
            m.insert("iss".into(), json!(n));
        }
    }
    match &c.aud {
        AudPick::Ours => {
            m.insert("aud".into(), json!(AUD));
        }
        AudPick::List(l, ours) => {
            let mut l: Vec<Value> = l.iter().map(|s| json!(s)).collect();
            if *ours {
                l.push(json!(AUD));
            }
            m.insert("aud".into(), Value::Array(l));
        }
        AudPick::Other(s) => {
            m.insert("aud".into(), json!(s));
        }
        AudPick::Missing => {}
        AudPick::Number(n) => {
            m.insert("aud".into(), json!(n));
        }
    }
    for (k, n) in [("exp", &c.exp), ("nbf", &c.nbf), ("iat", &c.iat)] {
        if let Some(v) = num(n) {
            m.insert(k.into(), v);
        }
    }
    if let Some(s) = &c.sub {
        m.insert("sub".into(), json!(s));
    }
    match &c.groups {
        GroupsPick::Missing => {}
        GroupsPick::List(l) => {
            m.insert("groups".into(), json!(l));
        }
        GroupsPick::Text(t) => {
            m.insert("groups".into(), json!(t));
        }
        GroupsPick::Nested(l) => {
            m.insert("realm_access".into(), json!({"roles": l}));
        }
        GroupsPick::Other(n) => {
            m.insert("groups".into(), json!(n));
        }
    }
    if let Some(s) = &c.scope {
        m.insert("scope".into(), json!(s));
    }
    Value::Object(m).to_string().into_bytes()
}

fn settings() -> mcptrail::auth::AuthSettings {
    let cfg = json!({
        "audit": {"cluster": "c"},
        "auth": {"mode": "required", "providers": [
            {"name": "corp", "issuer": ISS, "audiences": [AUD], "jwks": jwks(),
             "shared_secret": b64(HMAC_SECRET), "claims": {"groups": "realm_access.roles"}},
            {"name": "fetched", "issuer": FETCHED_ISS, "audiences": [AUD],
             "jwks_uri": "https://fetched.example.com/jwks", "jwks_cluster": "idp"}
        ]}
    });
    match Config::parse(cfg.to_string().as_bytes()) {
        Ok(c) => c.auth,
        Err(e) => panic!("the target's own configuration is refused: {e}"),
    }
}

fn now_ms(rel_s: i32) -> u64 {
    ((NOW_S + i64::from(rel_s)).max(0) as u64) * 1000
}

fuzz_target!(|data: &[u8]| {
    let s = settings();
    let mut auth = Authenticator::new(&s, TEST_CACHE_KEY);
    let Some((mode, rest)) = data.split_first() else {
        return;
    };
    if *mode == 0 {
        let token = String::from_utf8_lossy(rest);
        let _ = jwt::parse(&token, 256);
        for may_wait in [true, false] {
            let outcome = auth.authenticate(&s, &token, now_ms(0), may_wait);
            if let Outcome::Verified(v) = outcome {
                assert_eq!(v.provider, 0, "the keyless provider verified: {token}");
            }
        }
        return;
    }
    let Ok(input) = Input::arbitrary_take_rest(arbitrary::Unstructured::new(rest)) else {
        return;
    };
    match input {
        Input::Built {
            header,
            claims,
            sig,
            now,
            names,
        } => {
            let h = header_bytes(&header);
            let c = claims_bytes(&claims);
            let input = format!("{}.{}", b64url(&h), b64url(&c));
            let sig_part = match &sig {
                Sig::Hs256 => b64url(&signature(Signer::Hs256, input.as_bytes())),
                Sig::EdDsa => b64url(&signature(Signer::EdDsa, input.as_bytes())),
                Sig::Raw(b) => b64url(b),
                Sig::Empty => String::new(),
                Sig::Flip(bit, ed) => {
                    let signer = if *ed { Signer::EdDsa } else { Signer::Hs256 };
                    let mut b = signature(signer, input.as_bytes());
                    let len = b.len().max(1);
                    let i = usize::from(*bit / 8) % len;
                    if let Some(x) = b.get_mut(i) {
                        *x ^= 1 << (bit % 8);
                    }
                    b64url(&b)
                }
                Sig::NotBase64(t) => t.clone(),
            };
            let token = format!("{input}.{sig_part}");
            let now_ms = now_ms(now);
            let parsed = jwt::parse(&token, s.max_token_bytes);
            if let Ok(p) = &parsed {
                let names = ClaimNames {
                    subject: names.0.clone(),
                    groups: names.1.clone(),
                    ..ClaimNames::default()
                };
                let _ = jwt::identity(&p.claims, &names, ISS);
                let _ = jwt::check_claims(&p.claims, &[AUD.to_string()], now_ms as i64 / 1000, 60);
            }
            for may_wait in [true, false, true] {
                let outcome = auth.authenticate(&s, &token, now_ms, may_wait);
                let Outcome::Verified(v) = outcome else {
                    continue;
                };
                let p = match &parsed {
                    Ok(p) => p,
                    Err(e) => panic!("verified a token that does not parse ({e}): {token}"),
                };
                let signer = match &sig {
                    Sig::Hs256 => Signer::Hs256,
                    Sig::EdDsa => Signer::EdDsa,
                    other => panic!("verified without a real signature ({other:?}): {token}"),
                };
                let expected_alg = match signer {
                    Signer::Hs256 => "HS256",
                    Signer::EdDsa => "EdDSA",
                };
                assert_eq!(p.alg.as_str(), expected_alg, "algorithm confusion: {token}");
                assert_eq!(v.provider, 0, "the keyless provider verified: {token}");
                assert_eq!(v.identity.iss.as_deref(), Some(ISS));
                assert_eq!(p.claims.get("iss").and_then(Value::as_str), Some(ISS));
                let exp = jwt::check_claims(&p.claims, &[AUD.to_string()], now_ms as i64 / 1000, 60);
                assert!(exp.is_ok(), "verified with bad claims ({exp:?}): {token}");
            }
        }
    }
});
