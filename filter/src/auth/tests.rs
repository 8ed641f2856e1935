#[cfg(all(target_arch = "wasm32", target_os = "unknown"))]
use wasm_bindgen_test::wasm_bindgen_test as test;

use serde_json::json;

use super::*;
use crate::testkit::jwt::*;

fn provider(fetch: bool, inline: bool) -> Provider {
    let (keys, _) = jwt::parse_jwks(jwks().to_string().as_bytes()).unwrap();
    Provider {
        name: "corp".into(),
        issuer: ISS.into(),
        audiences: vec![AUD.into()],
        algorithms: Alg::ASYMMETRIC.to_vec(),
        claims: ClaimNames::default(),
        leeway_s: 60,
        inline_keys: if inline { keys } else { vec![] },
        shared_secret: None,
        fetch: fetch.then(|| JwksFetch {
            cluster: "idp".into(),
            authority: "idp.example.com".into(),
            path: "/jwks".into(),
            refresh_ms: 600_000,
            refetch_min_ms: 5_000,
            timeout_ms: 1_000,
        }),
    }
}

fn settings(p: Provider) -> AuthSettings {
    AuthSettings {
        mode: Mode::Required,
        providers: vec![p],
        ..AuthSettings::off()
    }
}

const NOW_MS: u64 = NOW as u64 * 1000;

#[test]
fn inline_keys_verify_and_cache() {
    let s = settings(provider(false, true));
    let mut a = Authenticator::new(&s, TEST_CACHE_KEY);
    let t = sign("RS256", &claims("alice"));
    let Outcome::Verified(v) = a.authenticate(&s, &t, NOW_MS, true) else {
        panic!("not verified")
    };
    assert_eq!(v.identity.sub.as_deref(), Some("alice"));
    assert_eq!(v.identity.iss.as_deref(), Some(ISS));
    assert_eq!(a.stats().verifications, 1);
    assert!(matches!(
        a.authenticate(&s, &t, NOW_MS + 1000, true),
        Outcome::Verified(_)
    ));
    assert_eq!(a.stats().cache_hits, 1);
    assert_eq!(
        a.stats().verifications,
        1,
        "the second time came from the cache"
    );
    // The cache entry dies with the token.
    let after_exp = (NOW as u64 + 3600 + 61) * 1000; // past exp and the leeway
    assert!(matches!(
        a.authenticate(&s, &t, after_exp, true),
        Outcome::Denied(_)
    ));
}

#[test]
fn denials_carry_reason_issuer_kid() {
    let s = settings(provider(false, true));
    let mut a = Authenticator::new(&s, TEST_CACHE_KEY);
    let mut c = claims("x");
    c["iss"] = json!("https://evil.example.com");
    let Outcome::Denied(d) = a.authenticate(&s, &sign("RS256", &c), NOW_MS, true) else {
        panic!()
    };
    assert_eq!(d.error.reason(), "unknown_issuer");
    let t = sign_with("RS256", Some("nope"), &claims("x"), RSA_PEM);
    let Outcome::Denied(d) = a.authenticate(&s, &t, NOW_MS, true) else {
        panic!()
    };
    assert_eq!(d.error.reason(), "unknown_kid");
    assert_eq!(d.kid.as_deref(), Some("nope"));
    assert_eq!(d.issuer.as_deref(), Some(ISS));
    // HS256 is refused unless the provider configures a shared secret.
    let Outcome::Denied(d) = a.authenticate(&s, &sign("HS256", &claims("x")), NOW_MS, true) else {
        panic!()
    };
    assert_eq!(d.error.reason(), "alg_not_allowed");
    let mut p = provider(false, true);
    p.shared_secret = Some(HMAC_SECRET.to_vec());
    p.algorithms.push(Alg::HS256);
    let s2 = settings(p);
    let mut a2 = Authenticator::new(&s2, TEST_CACHE_KEY);
    assert!(matches!(
        a2.authenticate(&s2, &sign("HS256", &claims("x")), NOW_MS, true),
        Outcome::Verified(_)
    ));
    let mut c = claims("x");
    c["aud"] = json!("https://other");
    let Outcome::Denied(d) = a.authenticate(&s, &sign("ES256", &c), NOW_MS, true) else {
        panic!()
    };
    assert_eq!(d.error.reason(), "audience_mismatch");
}

#[test]
fn fetched_keys_wait_then_verify_and_rotate() {
    let s = settings(provider(true, false));
    let mut a = Authenticator::new(&s, TEST_CACHE_KEY);
    let t = sign("RS256", &claims("alice"));
    assert_eq!(
        a.authenticate(&s, &t, NOW_MS, true),
        Outcome::Wait { provider: 0 }
    );
    assert_eq!(a.due_fetches(&s, NOW_MS), vec![0]);
    assert!(a.due_fetches(&s, NOW_MS).is_empty(), "one fetch at a time");
    assert_eq!(
        a.authenticate(&s, &t, NOW_MS, true),
        Outcome::Wait { provider: 0 }
    );
    let line = a.on_fetch(&s, 0, Ok(jwks().to_string().as_bytes()), NOW_MS + 10);
    assert!(line.contains("4 keys"), "{line}");
    assert!(matches!(
        a.authenticate(&s, &t, NOW_MS + 20, true),
        Outcome::Verified(_)
    ));

    // Rotation: a token with a new kid triggers one re-fetch (rate-limited).
    let rotated = sign_with("RS256", Some("rsa-2"), &claims("alice"), RSA2_PEM);
    let now = NOW_MS + 10_000;
    assert_eq!(
        a.authenticate(&s, &rotated, now, true),
        Outcome::Wait { provider: 0 }
    );
    assert_eq!(a.due_fetches(&s, now), vec![0]);
    let new_set = json!({"keys": [rsa_jwk(RSA2_PEM, "rsa-2")]});
    a.on_fetch(&s, 0, Ok(new_set.to_string().as_bytes()), now + 5);
    assert!(matches!(
        a.authenticate(&s, &rotated, now + 6, true),
        Outcome::Verified(_)
    ));
    // The old key was withdrawn: the cached old token is checked again and refused.
    let Outcome::Denied(d) = a.authenticate(&s, &t, now + 7, false) else {
        panic!()
    };
    assert_eq!(d.error.reason(), "unknown_kid");
    // A flood of bogus kids right after a fetch does not cause another fetch.
    let bogus = sign_with("RS256", Some("bogus"), &claims("x"), RSA_PEM);
    assert!(matches!(
        a.authenticate(&s, &bogus, now + 100, true),
        Outcome::Denied(_)
    ));
    assert!(a.due_fetches(&s, now + 100).is_empty());
}

#[test]
fn failed_fetch_keeps_last_good_set_and_times_out_waiters() {
    let s = settings(provider(true, false));
    let mut a = Authenticator::new(&s, TEST_CACHE_KEY);
    let t = sign("ES256", &claims("alice"));
    assert_eq!(a.due_fetches(&s, NOW_MS), vec![0]);
    let line = a.on_fetch(&s, 0, Err("HTTP 503".into()), NOW_MS);
    assert!(line.contains("HTTP 503"));
    let Outcome::Denied(d) = a.authenticate(&s, &t, NOW_MS, false) else {
        panic!()
    };
    assert_eq!(d.error.reason(), "jwks_unavailable");
    // Retried without waiting for the refresh period.
    assert_eq!(a.due_fetches(&s, NOW_MS + 1000), vec![0]);
    a.on_fetch(&s, 0, Ok(jwks().to_string().as_bytes()), NOW_MS + 1001);
    a.on_fetch(&s, 0, Ok(b"garbage"), NOW_MS + 1002);
    assert!(matches!(
        a.authenticate(&s, &t, NOW_MS + 1003, false),
        Outcome::Verified(_)
    ));
    assert_eq!(a.stats().jwks_failures, 2);
}

#[test]
fn cache_is_bounded() {
    let mut s = settings(provider(false, true));
    s.cache_max_entries = 2;
    let mut a = Authenticator::new(&s, TEST_CACHE_KEY);
    for sub in ["a", "b", "c"] {
        assert!(matches!(
            a.authenticate(&s, &sign("EdDSA", &claims(sub)), NOW_MS, true),
            Outcome::Verified(_)
        ));
    }
    assert_eq!(a.cache_len(), 2);
}

/// A cache hit admits a token without verifying it: only the very same bytes may hit, under
/// any cache key.
#[test]
fn only_the_same_token_hits_the_cache() {
    let s = settings(provider(false, true));
    for key in [TEST_CACHE_KEY, [0, 0], [u64::MAX, 1]] {
        let mut a = Authenticator::new(&s, key);
        let t = sign("RS256", &claims("alice"));
        assert!(matches!(
            a.authenticate(&s, &t, NOW_MS, true),
            Outcome::Verified(_)
        ));
        // The same token with its last signature character changed, or one byte longer.
        let last = t.chars().last().unwrap();
        let flipped = format!(
            "{}{}",
            &t[..t.len() - 1],
            if last == 'A' { 'B' } else { 'A' }
        );
        for other in [flipped, format!("{t}A")] {
            assert!(
                matches!(a.authenticate(&s, &other, NOW_MS, true), Outcome::Denied(_)),
                "{key:?}"
            );
        }
        assert_eq!(a.stats().cache_hits, 0);
        assert_eq!(a.stats().verifications, 3);
    }
}

/// A token whose claims fail is refused before any signature work or key fetch: a flood of
/// expired or foreign-audience tokens (forged or not) costs no verification.
#[test]
fn bad_claims_are_refused_before_the_signature() {
    let s = settings(provider(false, true));
    let mut a = Authenticator::new(&s, TEST_CACHE_KEY);
    // Forged: a valid token's signature on other claims.
    let forge = |c: &serde_json::Value| {
        let good = sign("RS256", &claims("alice"));
        let (head, rest) = good.split_once('.').unwrap();
        let sig = rest.rsplit_once('.').unwrap().1;
        let body = b64(c.to_string().as_bytes());
        format!("{head}.{body}.{sig}")
    };
    let mut expired = claims("mallory");
    expired["exp"] = json!(NOW - 3600);
    let mut foreign = claims("mallory");
    foreign["aud"] = json!("https://elsewhere");
    for (c, reason) in [(&expired, "expired"), (&foreign, "audience_mismatch")] {
        let Outcome::Denied(d) = a.authenticate(&s, &forge(c), NOW_MS, true) else {
            panic!("refused")
        };
        assert_eq!(d.error.reason(), reason);
    }
    assert_eq!(a.stats().verifications, 0, "no signature was checked");
    // Claims that pass: the signature decides, and it is checked.
    let Outcome::Denied(d) = a.authenticate(&s, &forge(&claims("mallory")), NOW_MS, true) else {
        panic!("refused")
    };
    assert_eq!(d.error.reason(), "bad_signature");
    assert_eq!(a.stats().verifications, 1);
    // An expired token naming an unknown key does not make the filter fetch keys.
    let mut fetching = provider(true, false);
    fetching.inline_keys.clear();
    let s = settings(fetching);
    let mut a = Authenticator::new(&s, TEST_CACHE_KEY);
    let t = sign_with("RS256", Some("rotated-away"), &expired, RSA_PEM);
    assert!(matches!(
        a.authenticate(&s, &t, NOW_MS, true),
        Outcome::Denied(ref d) if d.error.reason() == "expired"
    ));
}
