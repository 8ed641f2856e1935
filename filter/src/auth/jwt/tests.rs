#[cfg(all(target_arch = "wasm32", target_os = "unknown"))]
use wasm_bindgen_test::wasm_bindgen_test as test;

use serde_json::json;

use super::*;
use crate::testkit::jwt::*;

fn keys() -> Vec<Jwk> {
    let (k, skipped) = parse_jwks(jwks().to_string().as_bytes()).unwrap();
    assert!(skipped.is_empty(), "{skipped:?}");
    k
}

fn key(kid: &str) -> KeyMaterial {
    keys()
        .into_iter()
        .find(|k| k.kid.as_deref() == Some(kid))
        .unwrap()
        .key
}

fn verify(token: &str, key: &KeyMaterial) -> Result<(), JwtError> {
    let p = parse(token, 8192)?;
    verify_signature(&p, key)
}

#[test]
fn every_algorithm_verifies_with_its_key() {
    let c = claims("alice");
    for (alg, kid) in [
        ("RS256", "rsa"),
        ("RS384", "rsa"),
        ("RS512", "rsa"),
        ("PS256", "rsa"),
        ("PS384", "rsa"),
        ("PS512", "rsa"),
        ("ES256", "ec256"),
        ("ES384", "ec384"),
        ("EdDSA", "ed"),
    ] {
        let t = sign(alg, &c);
        assert_eq!(verify(&t, &key(kid)), Ok(()), "{alg}");
        let p = parse(&t, 8192).unwrap();
        assert_eq!(p.alg.as_str(), alg);
        assert_eq!(p.kid.as_deref(), Some(kid));
    }
    let hs = sign("HS256", &c);
    assert_eq!(
        verify(&hs, &KeyMaterial::Hmac(HMAC_SECRET.to_vec())),
        Ok(())
    );
}

/// Hostile tokens: each must be refused, with the reason given.
#[test]
fn hostile_tokens_are_refused() {
    let c = claims("mallory");
    let good = sign("RS256", &c);
    let (h, rest) = good.split_once('.').unwrap();
    let (p, s) = rest.split_once('.').unwrap();
    let rsa = key("rsa");
    let none = format!(
        "{}.{}.",
        b64(br#"{"alg":"none","typ":"JWT"}"#),
        b64(c.to_string().as_bytes())
    );
    let none_sig = format!("{}.{}.{}", b64(br#"{"alg":"none"}"#), p, s);
    let none_caps = format!("{}.{}.{}", b64(br#"{"alg":"NoNe"}"#), p, s);
    // Algorithm confusion: HS256 "signed" with the RSA public key bytes as the secret.
    let rsa_pub_der = {
        use rsa::traits::PublicKeyParts as _;
        rsa_key(RSA_PEM).to_public_key().n().to_bytes_be()
    };
    let confused = {
        use hmac::Mac as _;
        let input = format!("{}.{}", b64(br#"{"alg":"HS256","kid":"rsa"}"#), p);
        let mut m =
            <hmac::Hmac<sha2::Sha256> as hmac::digest::KeyInit>::new_from_slice(&rsa_pub_der)
                .unwrap();
        m.update(input.as_bytes());
        format!("{input}.{}", b64(&m.finalize().into_bytes()))
    };
    let tampered_payload = {
        let mut evil = c.clone();
        evil["sub"] = json!("admin");
        format!("{h}.{}.{s}", b64(evil.to_string().as_bytes()))
    };
    let tampered_header = format!("{}.{p}.{s}", b64(br#"{"alg":"RS256","kid":"rsa","x":1}"#));
    let other_key = sign_with("RS256", Some("rsa"), &c, RSA2_PEM);
    let cases: Vec<(&str, String, Option<&str>)> = vec![
        ("alg none", none, Some("alg_none")),
        ("alg none with signature", none_sig, Some("alg_none")),
        ("alg none, odd case", none_caps, Some("alg_none")),
        ("alg confusion", confused, Some("bad_signature")),
        ("tampered payload", tampered_payload, Some("bad_signature")),
        ("tampered header", tampered_header, Some("bad_signature")),
        ("signed by another key", other_key, Some("bad_signature")),
        ("two parts", format!("{h}.{p}"), Some("malformed")),
        ("four parts", format!("{good}.x"), Some("malformed")),
        ("bad base64", format!("{h}.{p}.!!!"), Some("malformed")),
        ("padded base64", format!("{h}=.{p}.{s}"), Some("malformed")),
        (
            "header not json",
            format!("{}.{p}.{s}", b64(b"nope")),
            Some("malformed"),
        ),
        (
            "payload array",
            format!("{h}.{}.{s}", b64(b"[1]")),
            Some("malformed"),
        ),
        ("empty signature", format!("{h}.{p}."), Some("malformed")),
        (
            "no alg",
            format!("{}.{p}.{s}", b64(br#"{"kid":"rsa"}"#)),
            Some("malformed"),
        ),
        (
            "unknown alg",
            format!("{}.{p}.{s}", b64(br#"{"alg":"XS999"}"#)),
            Some("unsupported_alg"),
        ),
        (
            "crit",
            format!("{}.{p}.{s}", b64(br#"{"alg":"RS256","crit":["exp"]}"#)),
            Some("critical_header"),
        ),
        (
            "kid not string",
            format!("{}.{p}.{s}", b64(br#"{"alg":"RS256","kid":7}"#)),
            Some("malformed"),
        ),
        ("empty", String::new(), Some("malformed")),
        ("oversized", "a".repeat(9000), Some("token_too_large")),
    ];
    for (name, token, reason) in cases {
        let got = verify(&token, &rsa);
        assert_eq!(
            got.as_ref().err().map(JwtError::reason),
            reason,
            "{name}: {got:?}"
        );
    }
    // An RSA key never verifies EC / EdDSA / HMAC algorithms and vice versa.
    assert_eq!(
        verify(&sign("ES256", &c), &rsa),
        Err(JwtError::BadSignature)
    );
    assert_eq!(verify(&good, &key("ec256")), Err(JwtError::BadSignature));
    assert_eq!(
        verify(&good, &KeyMaterial::Hmac(HMAC_SECRET.to_vec())),
        Err(JwtError::BadSignature)
    );
}

#[test]
fn jwks_parsing_skips_what_it_cannot_use() {
    let doc = json!({"keys": [
        rsa_jwk(RSA_PEM, "ok"),
        {"kty":"oct","k":"c2VjcmV0","kid":"sym"},
        {"kty":"RSA","use":"enc","n":"AQAB","e":"AQAB"},
        rsa_jwk(RSA1024_PEM, "short"),
        {"kty":"EC","crv":"P-521","x":"AA","y":"AA"},
        {"kty":"RSA","alg":"ES256","n":rsa_jwk(RSA_PEM,"x")["n"],"e":"AQAB"},
        {"kty":"OKP","crv":"Ed25519","x":"AAAA"},
        {"kty":"EC","crv":"P-256","x":b64(&[1u8;32]),"y":b64(&[2u8;32])},
    ]});
    let (keys, skipped) = parse_jwks(doc.to_string().as_bytes()).unwrap();
    assert_eq!(keys.len(), 1);
    assert_eq!(keys[0].kid.as_deref(), Some("ok"));
    assert_eq!(skipped.len(), 6, "{skipped:?}"); // the `enc` key is silently not a signing key
    assert!(parse_jwks(b"{}").is_err());
    assert!(parse_jwks(b"garbage").is_err());
}

#[test]
fn claim_checks() {
    let c = |v: serde_json::Value| v.as_object().unwrap().clone();
    let aud = vec![AUD.to_string()];
    assert_eq!(check_claims(&c(claims("a")), &aud, NOW, 60), Ok(NOW + 3600));
    let mut x = claims("a");
    x["exp"] = json!(NOW - 61);
    assert_eq!(
        check_claims(&c(x.clone()), &aud, NOW, 60),
        Err(JwtError::Expired)
    );
    x["exp"] = json!(NOW - 30);
    assert!(check_claims(&c(x), &aud, NOW, 60).is_ok(), "within leeway");
    let mut x = claims("a");
    x.as_object_mut().unwrap().remove("exp");
    assert_eq!(
        check_claims(&c(x), &aud, NOW, 60),
        Err(JwtError::MissingExp)
    );
    let mut x = claims("a");
    x["nbf"] = json!(NOW + 120);
    assert_eq!(
        check_claims(&c(x), &aud, NOW, 60),
        Err(JwtError::NotYetValid)
    );
    let mut x = claims("a");
    x["iat"] = json!(NOW + 120);
    assert_eq!(
        check_claims(&c(x), &aud, NOW, 60),
        Err(JwtError::IssuedInFuture)
    );
    let mut x = claims("a");
    x["aud"] = json!(["other", AUD]);
    assert!(check_claims(&c(x.clone()), &aud, NOW, 60).is_ok());
    x["aud"] = json!("https://mcp.example.com/mcp/");
    assert_eq!(
        check_claims(&c(x.clone()), &aud, NOW, 60),
        Err(JwtError::AudienceMismatch)
    );
    x.as_object_mut().unwrap().remove("aud");
    assert_eq!(
        check_claims(&c(x), &aud, NOW, 60),
        Err(JwtError::AudienceMismatch)
    );
    let mut x = claims("a");
    x["exp"] = json!("tomorrow");
    assert_eq!(
        check_claims(&c(x), &aud, NOW, 60),
        Err(JwtError::BadClaim("exp"))
    );
}

#[test]
fn identity_from_claims() {
    let mut c = claims("alice");
    c["realm_access"] = json!({"roles": ["admins", "eng"]});
    c["scp"] = json!("read write");
    let c = c.as_object().unwrap().clone();
    let id = identity(&c, &ClaimNames::default(), ISS);
    assert_eq!(id.sub.as_deref(), Some("alice"));
    assert_eq!(id.groups, vec!["eng"]);
    assert_eq!(id.email.as_deref(), Some("alice@example.com"));
    assert_eq!(id.client_id.as_deref(), Some("agent-1"));
    let names = ClaimNames {
        groups: "realm_access.roles".into(),
        ..Default::default()
    };
    assert_eq!(identity(&c, &names, ISS).groups, vec!["admins", "eng"]);
    let names = ClaimNames {
        groups: "scp".into(),
        ..Default::default()
    };
    assert_eq!(identity(&c, &names, ISS).groups, vec!["read", "write"]);
}

/// ECDSA as JWS uses it (RFC 7518 3.4): both `s` and `n - s` verify (no low-S rule), and `r`
/// or `s` of zero or not below the group order never do. Pinned so a library upgrade cannot
/// change which ES256/ES384 signatures pass.
#[test]
fn ecdsa_accepts_either_s_and_refuses_out_of_range_scalars() {
    use rsa::BigUint;
    let orders = [
        ("ES256", "ec256", "ffffffff00000000ffffffffffffffffbce6faada7179e84f3b9cac2fc632551"),
        ("ES384", "ec384", "ffffffffffffffffffffffffffffffffffffffffffffffffc7634d81f4372ddf581a0db248b0a77aecec196accc52973"),
    ];
    for (alg, kid, order_hex) in orders {
        let token = sign(alg, &claims("alice"));
        let (input, sig_b64) = token.rsplit_once('.').unwrap();
        let sig = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(sig_b64)
            .unwrap();
        let half = sig.len() / 2;
        let (r, s) = sig.split_at(half);
        let n = BigUint::parse_bytes(order_hex.as_bytes(), 16).unwrap();
        let scalar = |v: &BigUint| {
            let b = v.to_bytes_be();
            let mut out = vec![0u8; half - b.len().min(half)];
            out.extend_from_slice(&b);
            out
        };
        let with = |r: &[u8], s: &[u8]| format!("{input}.{}", b64(&[r, s].concat()));
        let k = key(kid);
        let flipped = scalar(&(&n - BigUint::from_bytes_be(s)));
        assert!(verify(&token, &k).is_ok(), "{alg}");
        assert!(verify(&with(r, &flipped), &k).is_ok(), "{alg}: n - s");
        let zero = vec![0u8; half];
        let order = scalar(&n);
        let s_plus_n = BigUint::from_bytes_be(s) + &n;
        for (what, bad) in [
            ("r = 0", with(&zero, s)),
            ("s = 0", with(r, &zero)),
            ("r = n", with(&order, s)),
            ("s = n", with(r, &order)),
        ] {
            assert!(verify(&bad, &k).is_err(), "{alg}: {what}");
        }
        // s + n does not fit the fixed-size encoding unless it still has `half` bytes.
        if s_plus_n.to_bytes_be().len() == half {
            assert!(
                verify(&with(r, &scalar(&s_plus_n)), &k).is_err(),
                "{alg}: s + n"
            );
        }
    }
}
