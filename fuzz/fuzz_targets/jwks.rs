//! JWKS documents, from the configuration or fetched: `parse_jwks` never panics; it never
//! yields a symmetric key, an RSA key under 2048 bits, or a key with an `alg` its type cannot
//! verify; and a fetched document that is garbage (or has no usable key) never replaces the
//! last good key set: a token that verified before still does.
//!
//! Input: raw bytes, or a document built from fuzzed keys (any `kty`/`crv`/`alg`/`use`, key
//! material as random bytes or as text that is not base64url). A first byte 0 makes the rest
//! the raw document (the seeds in `corpus/jwks`).
#![no_main]

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use mcptrail::auth::{Authenticator, Outcome};
use mcptrail::testkit::jwt::TEST_CACHE_KEY;
use mcptrail::config::Config;
use mcptrail::auth::jwt::{self, KeyMaterial, MIN_RSA_BITS};
use mcptrail_fuzz::{b64url, ed_jwk, rsa_jwk, valid_token, Signer, AUD, ISS, NOW_S};
use serde_json::{json, Map, Value};

#[derive(Arbitrary, Debug)]
enum Material {
    Bytes(Vec<u8>),
    Text(String),
    Number(i64),
    /// The real test key's value for this member, when there is one.
    Real,
}

#[derive(Arbitrary, Debug)]
struct Key {
    kty: u8,
    kty_other: String,
    crv: u8,
    alg: Option<u8>,
    use_: Option<u8>,
    kid: Option<String>,
    members: Vec<(u8, Material)>,
}

#[derive(Arbitrary, Debug)]
struct Keys {
    keys: Vec<Key>,
    wrap: u8,
}

const KTY: [&str; 5] = ["RSA", "EC", "OKP", "oct", ""];
const CRV: [&str; 5] = ["P-256", "P-384", "Ed25519", "X25519", "secp256k1"];
const ALG: [&str; 8] = ["RS256", "PS384", "ES256", "ES384", "EdDSA", "HS256", "none", "RSA-OAEP"];
const USE: [&str; 3] = ["sig", "enc", ""];
const MEMBERS: [&str; 5] = ["n", "e", "x", "y", "k"];

fn build(k: &Key) -> Value {
    let mut m = Map::new();
    let kty = KTY
        .get(usize::from(k.kty) % 6)
        .map_or(k.kty_other.as_str(), |s| *s);
    m.insert("kty".into(), json!(kty));
    m.insert("crv".into(), json!(CRV[usize::from(k.crv) % CRV.len()]));
    if let Some(a) = k.alg {
        m.insert("alg".into(), json!(ALG[usize::from(a) % ALG.len()]));
    }
    if let Some(u) = k.use_ {
        m.insert("use".into(), json!(USE[usize::from(u) % USE.len()]));
    }
    if let Some(kid) = &k.kid {
        m.insert("kid".into(), json!(kid));
    }
    let real_rsa = rsa_jwk("r");
    let real_ed = ed_jwk("e");
    for (which, mat) in &k.members {
        let name = MEMBERS[usize::from(*which) % MEMBERS.len()];
        let v = match mat {
            Material::Bytes(b) => json!(b64url(b)),
            Material::Text(t) => json!(t),
            Material::Number(n) => json!(n),
            Material::Real => real_rsa
                .get(name)
                .or_else(|| real_ed.get(name))
                .cloned()
                .unwrap_or(Value::Null),
        };
        m.insert(name.into(), v);
    }
    Value::Object(m)
}

fuzz_target!(|data: &[u8]| {
    let Some((mode, rest)) = data.split_first() else {
        return;
    };
    let bytes = if *mode == 0 {
        rest.to_vec()
    } else {
        let Ok(Keys { keys, wrap }) = Keys::arbitrary_take_rest(arbitrary::Unstructured::new(rest))
        else {
            return;
        };
        let keys: Vec<Value> = keys.iter().map(build).collect();
        match wrap % 4 {
            0 => json!({ "keys": keys }),
            1 => json!({ "keys": keys, "extra": {"nested": [1, 2]} }),
            2 => json!(keys),
            _ => json!({ "keys": {"0": keys} }),
        }
        .to_string()
        .into_bytes()
    };
    if let Ok((keys, _skipped)) = jwt::parse_jwks(&bytes) {
        for k in &keys {
            if let Some(a) = k.alg {
                assert!(k.key.allows(a), "alg {a:?} taken for {:?}", k.key);
            }
            match &k.key {
                KeyMaterial::Hmac(_) => panic!("a symmetric key came from a JWKS"),
                KeyMaterial::Rsa(r) => assert!(r.bits() >= MIN_RSA_BITS),
                _ => {}
            }
        }
    }

    // The last good set survives whatever the next fetch brings.
    let cfg = json!({"audit": {"cluster": "c"}, "auth": {"mode": "required", "providers": [
        {"issuer": ISS, "audiences": [AUD], "jwks_uri": "https://idp.example.com/jwks",
         "jwks_cluster": "idp", "jwks_refetch_min_s": 0}]}});
    let Ok(config) = Config::parse(cfg.to_string().as_bytes()) else {
        panic!("the target's own configuration is refused");
    };
    let s = config.auth;
    let mut auth = Authenticator::new(&s, TEST_CACHE_KEY);
    let now = NOW_S as u64 * 1000;
    let good = json!({"keys": [ed_jwk("ed")]}).to_string();
    let _ = auth.on_fetch(&s, 0, Ok(good.as_bytes()), now);
    let token = valid_token("alice", &["eng"], NOW_S + 3600, Signer::EdDsa);
    assert!(matches!(
        auth.authenticate(&s, &token, now, false),
        Outcome::Verified(_)
    ));
    let usable = jwt::parse_jwks(&bytes).is_ok_and(|(keys, _)| !keys.is_empty());
    let _ = auth.on_fetch(&s, 0, Ok(&bytes), now + 1000);
    let _ = auth.on_fetch(&s, 0, Err("HTTP 500".into()), now + 2000);
    if !usable {
        // Another token (the first one is in the verified-token cache).
        let token = valid_token("bob", &["eng"], NOW_S + 3600, Signer::EdDsa);
        let again = auth.authenticate(&s, &token, now + 3000, false);
        assert!(
            matches!(again, Outcome::Verified(_)),
            "a bad JWKS dropped the last good keys: {again:?}"
        );
    }
});
