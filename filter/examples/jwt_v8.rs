//! What one token costs to verify, or to refuse, with the verified-token cache off: compiled
//! to `wasm32-wasip1` and run in Node's V8 (`make bench-v8`), the engine Envoy embeds; it
//! runs natively too, for the ratio. Per algorithm, and for forgeries: good claims with a bad
//! signature (a full check), and an expired token or an unknown `kid` (refused before any
//! signature check).

#![allow(clippy::unwrap_used, clippy::panic, clippy::indexing_slicing)]
use std::time::Instant;

use mcptrail::auth::{Authenticator, Outcome};
use mcptrail::testkit::jwt::{self as testkit, NOW, RSA_PEM, TEST_CACHE_KEY};
use serde_json::json;

/// Median µs per `authenticate` of `token` over 5 rounds, and whether it verified.
fn time(token: &str, rounds: u32) -> (f64, bool) {
    let settings = testkit::auth_settings(0);
    let mut auth = Authenticator::new(&settings, TEST_CACHE_KEY);
    let now_ms = NOW as u64 * 1000;
    let verified = matches!(
        auth.authenticate(&settings, token, now_ms, false),
        Outcome::Verified(_)
    );
    let mut runs: Vec<f64> = (0..5)
        .map(|_| {
            let t = Instant::now();
            for _ in 0..rounds {
                std::hint::black_box(auth.authenticate(&settings, token, now_ms, false));
            }
            t.elapsed().as_secs_f64() * 1e6 / f64::from(rounds)
        })
        .collect();
    runs.sort_by(f64::total_cmp);
    (runs[2], verified)
}

fn main() {
    let claims = testkit::claims("alice");
    let mut cases: Vec<(String, String)> = [
        "RS256", "RS384", "RS512", "PS256", "ES256", "ES384", "EdDSA",
    ]
    .iter()
    .map(|alg| (format!("{alg} valid"), testkit::sign(alg, &claims)))
    .collect();
    let rs = testkit::sign("RS256", &claims);
    let (input, _) = rs.rsplit_once('.').unwrap();
    let other = testkit::signature("RS256", b"another message", RSA_PEM);
    cases.push((
        "RS256 forged (good claims)".into(),
        format!("{input}.{}", testkit::b64(&other)),
    ));
    let mut expired = claims.clone();
    expired["exp"] = json!(NOW - 3600);
    let ex = testkit::sign("RS256", &expired);
    let (ex_input, _) = ex.rsplit_once('.').unwrap();
    cases.push((
        "RS256 forged, expired".into(),
        format!("{ex_input}.{}", testkit::b64(&other)),
    ));
    cases.push((
        "RS256 unknown kid".into(),
        testkit::sign_with("RS256", Some("nope"), &claims, RSA_PEM),
    ));
    for (name, token) in cases {
        let (us, verified) = time(&token, 200);
        println!(
            "jwt {name:<28} {us:>9.1} µs per token ({})",
            if verified { "verified" } else { "refused" }
        );
    }
}
