//! Approvers' tokens, verified natively with the filter's own JWT functions (the same
//! checks the filter makes: issuer, audience, exp/nbf/iat, the signature by the JWKS key the
//! `kid` names, no `alg: none`, no symmetric key from a JWKS).

use std::time::{Duration, Instant};

use anyhow::Context as _;
use mcptrail::audit::record::Identity;
use mcptrail::auth::jwt::{self, Alg, ClaimNames, Jwk, JwtError, KeyMaterial};
use serde_json::Value;
use tokio::sync::{Mutex, RwLock};

use super::Config;

/// Longest token accepted.
const MAX_TOKEN_BYTES: usize = 16 * 1024;
/// Clock skew tolerated on exp/nbf/iat.
const LEEWAY_S: i64 = 30;
/// Fetches of `jwks_uri` are at most this frequent (an unknown `kid` asks for one).
const REFETCH_MIN: Duration = Duration::from_secs(30);

/// A verified approver (or caller of the page).
#[derive(Debug, Clone)]
pub struct Verified {
    pub identity: Identity,
    pub exp_s: i64,
}

/// Why a token was refused (401).
#[derive(Debug, Clone)]
pub struct Refused {
    pub reason: &'static str,
    pub message: String,
}

impl Refused {
    fn jwt(e: &JwtError) -> Refused {
        Refused {
            reason: e.reason(),
            message: e.to_string(),
        }
    }
}

#[derive(Default)]
struct Fetched {
    keys: Vec<Jwk>,
    at: Option<Instant>,
}

/// The issuer's keys: inline, or fetched from `jwks_uri` (again on an unknown `kid`, at most
/// every 30 s).
pub struct Keys {
    issuer: String,
    audiences: Vec<String>,
    claims: ClaimNames,
    inline: Vec<Jwk>,
    uri: Option<String>,
    fetched: RwLock<Fetched>,
    fetching: Mutex<()>,
    http: reqwest::Client,
}

impl Keys {
    pub fn new(config: &Config, http: reqwest::Client) -> anyhow::Result<Keys> {
        let inline = match &config.jwks {
            Some(doc) => {
                let (keys, skipped) = jwt::parse_jwks(doc.to_string().as_bytes())
                    .map_err(|e| anyhow::anyhow!("`jwks`: {e}"))?;
                for s in skipped {
                    eprintln!("approvals: jwks: skipped {s}");
                }
                if keys.is_empty() {
                    anyhow::bail!("`jwks` holds no usable signature key");
                }
                keys
            }
            None => Vec::new(),
        };
        Ok(Keys {
            issuer: config.issuer.clone(),
            audiences: config.audiences.clone(),
            claims: ClaimNames {
                subject: config.subject_claim.clone(),
                groups: config.groups_claim.clone(),
                ..ClaimNames::default()
            },
            inline,
            uri: config.jwks_uri.clone(),
            fetched: RwLock::new(Fetched::default()),
            fetching: Mutex::new(()),
            http,
        })
    }

    /// Fetches `jwks_uri` unless it was fetched less than 30 s ago.
    async fn refresh(&self) -> anyhow::Result<()> {
        let Some(uri) = &self.uri else {
            return Ok(());
        };
        // One fetch at a time; those who waited see its result.
        let _one = self.fetching.lock().await;
        if self
            .fetched
            .read()
            .await
            .at
            .is_some_and(|t| t.elapsed() < REFETCH_MIN)
        {
            return Ok(());
        }
        self.fetched.write().await.at = Some(Instant::now());
        let body = self
            .http
            .get(uri)
            .send()
            .await
            .and_then(reqwest::Response::error_for_status)
            .with_context(|| format!("fetching {uri}"))?
            .bytes()
            .await?;
        let (keys, skipped) = jwt::parse_jwks(&body).map_err(|e| anyhow::anyhow!("{uri}: {e}"))?;
        for s in skipped {
            eprintln!("approvals: jwks_uri: skipped {s}");
        }
        self.fetched.write().await.keys = keys;
        Ok(())
    }

    /// The keys that may have signed a token with this `kid` and `alg` (the filter's rule).
    async fn candidates(&self, kid: Option<&str>, alg: Alg) -> Vec<KeyMaterial> {
        let fetched = self.fetched.read().await;
        jwt::candidates(self.inline.iter().chain(fetched.keys.iter()), kid, alg)
            .take(jwt::MAX_CANDIDATES)
            .cloned()
            .collect()
    }

    /// Verifies a bearer token of the configured issuer, for one of `audiences`.
    pub async fn verify(&self, token: &str, now_s: i64) -> Result<Verified, Refused> {
        let parsed = jwt::parse(token, MAX_TOKEN_BYTES).map_err(|e| Refused::jwt(&e))?;
        if parsed.claims.get("iss").and_then(Value::as_str) != Some(self.issuer.as_str()) {
            return Err(Refused::jwt(&JwtError::UnknownIssuer));
        }
        // Claims first (as the filter does): expired or foreign-audience tokens cost no
        // signature check and no key fetch.
        let exp_s = jwt::check_claims(&parsed.claims, &self.audiences, now_s, LEEWAY_S)
            .map_err(|e| Refused::jwt(&e))?;
        let kid = parsed.kid.clone();
        let mut keys = self.candidates(kid.as_deref(), parsed.alg).await;
        if keys.is_empty() && self.uri.is_some() {
            if let Err(e) = self.refresh().await {
                eprintln!("approvals: jwks_uri: {e:#}");
            }
            keys = self.candidates(kid.as_deref(), parsed.alg).await;
        }
        if keys.is_empty() {
            return Err(Refused::jwt(&JwtError::UnknownKid(kid)));
        }
        if !keys
            .iter()
            .any(|k| jwt::verify_signature(&parsed, k).is_ok())
        {
            return Err(Refused::jwt(&JwtError::BadSignature));
        }
        let identity = jwt::identity(&parsed.claims, &self.claims, &self.issuer);
        if identity.sub.as_deref().is_none_or(str::is_empty) {
            return Err(Refused {
                reason: "no_subject",
                message: "token has no sub".into(),
            });
        }
        Ok(Verified { identity, exp_s })
    }
}

/// Whether `identity` belongs to one of the approver groups.
pub fn is_approver(identity: &Identity, approver_groups: &[String]) -> bool {
    identity.groups.iter().any(|g| approver_groups.contains(g))
}

/// Constant-time equality (for API keys): the time taken does not tell how much matched.
pub fn ct_eq(a: &[u8], b: &[u8]) -> bool {
    use sha2::{Digest, Sha256};
    // Compare fixed-length digests so the length of the key does not leak either.
    let (x, y) = (Sha256::digest(a), Sha256::digest(b));
    x.iter()
        .zip(y.iter())
        .fold(0u8, |acc, (p, q)| acc | (p ^ q))
        == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ct_eq_compares() {
        assert!(ct_eq(b"abc", b"abc"));
        assert!(!ct_eq(b"abc", b"abd"));
        assert!(!ct_eq(b"abc", b"abcd"));
    }
}
