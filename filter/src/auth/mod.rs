//! Authentication state per VM: providers, their key sets (inline and fetched), and the
//! verified-token cache. Pure logic: the glue performs the JWKS callouts it asks for.

use crate::bounded::Bounded;

use serde_json::{Map, Value};

use crate::audit::record::Identity;
use jwt::{Alg, ClaimNames, Jwk, JwtError, KeyMaterial};

/// `auth.mode`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// No token or an invalid one: 401.
    Required,
    /// Anonymous allowed (recorded as such); a presented token must still be valid.
    Optional,
    Off,
}

/// Where a provider's JWKS is fetched from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JwksFetch {
    pub cluster: String,
    pub authority: String,
    pub path: String,
    pub refresh_ms: u64,
    pub refetch_min_ms: u64,
    pub timeout_ms: u64,
}

/// A compiled identity provider.
#[derive(Debug, Clone)]
pub struct Provider {
    pub name: String,
    pub issuer: String,
    pub audiences: Vec<String>,
    pub algorithms: Vec<Alg>,
    pub claims: ClaimNames,
    pub leeway_s: i64,
    pub inline_keys: Vec<Jwk>,
    /// Explicit shared secret: the only way HS* tokens are accepted.
    pub shared_secret: Option<Vec<u8>>,
    pub fetch: Option<JwksFetch>,
}

/// Compiled `auth` section.
#[derive(Debug, Clone)]
pub struct AuthSettings {
    pub mode: Mode,
    pub providers: Vec<Provider>,
    /// RFC 9728 metadata served at `/.well-known/oauth-protected-resource[...]`.
    pub resource_metadata: Option<Map<String, Value>>,
    pub required_scopes: Vec<String>,
    /// Set `x-mcptrail-*` identity headers on requests sent upstream.
    pub forward_identity: bool,
    /// Keep the `Authorization` header on requests sent upstream.
    pub forward_token: bool,
    pub max_token_bytes: usize,
    pub cache_max_entries: usize,
    /// How long a request may wait for keys (first fetch, or an unknown `kid`).
    pub jwks_wait_ms: u64,
}

impl AuthSettings {
    pub fn off() -> Self {
        AuthSettings {
            mode: Mode::Off,
            providers: Vec::new(),
            resource_metadata: None,
            required_scopes: Vec::new(),
            forward_identity: false,
            forward_token: true,
            max_token_bytes: 8192,
            cache_max_entries: 1024,
            jwks_wait_ms: 3000,
        }
    }
}

/// A verified caller.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Verified {
    pub identity: Identity,
    pub scopes: Vec<String>,
    pub exp_s: i64,
    pub provider: usize,
}

/// Why a token was refused, with what can be said about it (never the token).
#[derive(Debug, Clone, PartialEq)]
pub struct Denial {
    pub error: DenyReason,
    pub issuer: Option<String>,
    pub kid: Option<String>,
}

#[derive(Debug, Clone, PartialEq)]
pub enum DenyReason {
    Jwt(JwtError),
    /// No key set could be obtained for the provider (fetch failed or timed out).
    KeysUnavailable,
}

impl DenyReason {
    pub fn reason(&self) -> &'static str {
        match self {
            DenyReason::Jwt(e) => e.reason(),
            DenyReason::KeysUnavailable => "jwks_unavailable",
        }
    }
}

impl std::fmt::Display for DenyReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            DenyReason::Jwt(e) => e.fmt(f),
            DenyReason::KeysUnavailable => f.write_str("the provider's keys are unavailable"),
        }
    }
}

/// The result of authenticating one token.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    Verified(Verified),
    Denied(Denial),
    /// Keys are being fetched for this provider: hold the request and ask again.
    Wait {
        provider: usize,
    },
}

/// A verified token as another VM of the process may reuse it: valid only while the
/// provider's key set is the one it was verified under.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct SharedVerified {
    pub verified: Verified,
    /// [`Authenticator::keyset`] of the provider when it was verified.
    pub keyset: u64,
}

/// A cache level beyond this VM (the other workers of the Envoy process): asked on a miss
/// of the VM's own cache, told of every token verified here.
pub trait TokenTier {
    fn get(&mut self, token: &str) -> Option<SharedVerified>;
    fn put(&mut self, token: &str, v: &SharedVerified);
}

/// No second level (tests, benches, `auth.cache_max_entries: 0`).
pub struct NoTier;

impl TokenTier for NoTier {
    fn get(&mut self, _: &str) -> Option<SharedVerified> {
        None
    }
    fn put(&mut self, _: &str, _: &SharedVerified) {}
}

#[derive(Debug, Clone, Default)]
struct KeyState {
    fetched: Vec<Jwk>,
    /// Which key set `fetched` is, the same on every VM that holds the same keys.
    keyset: u64,
    fetched_at_ms: Option<u64>,
    last_attempt_ms: Option<u64>,
    in_flight: bool,
    refetch_wanted: bool,
    failures: u64,
}

/// Counters, published as metrics on the root's tick.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct AuthStats {
    pub cache_hits: u64,
    pub verifications: u64,
    pub jwks_fetches: u64,
    pub jwks_failures: u64,
    /// Tokens another worker of the process had verified (not verified again here).
    pub shared_hits: u64,
    /// Key sets another worker of the process had fetched (not fetched again here).
    pub jwks_adopted: u64,
}

/// Per-VM authentication state.
#[derive(Debug)]
pub struct Authenticator {
    keys: Vec<KeyState>,
    /// Verified tokens by keyed hash; `None` when `auth.cache_max_entries` is 0.
    cache: Option<Bounded<Verified, u128>>,
    /// Keys of the cache's token hash, random per VM.
    cache_key: [u64; 2],
    stats: AuthStats,
}

fn scopes_of(claims: &Map<String, Value>) -> Vec<String> {
    let mut out = Vec::new();
    for name in ["scope", "scp"] {
        match claims.get(name) {
            Some(Value::String(s)) => out.extend(s.split_whitespace().map(str::to_string)),
            Some(Value::Array(a)) => {
                out.extend(a.iter().filter_map(Value::as_str).map(str::to_string))
            }
            _ => {}
        }
    }
    out
}

impl Authenticator {
    /// `cache_key`: random per VM (from the host), so nobody outside the VM can make two
    /// tokens share a cache entry.
    pub fn new(settings: &AuthSettings, cache_key: [u64; 2]) -> Self {
        Self {
            keys: vec![KeyState::default(); settings.providers.len()],
            cache: (settings.cache_max_entries > 0)
                .then(|| Bounded::new(settings.cache_max_entries)),
            cache_key,
            stats: AuthStats::default(),
        }
    }

    pub fn stats(&self) -> AuthStats {
        self.stats
    }

    /// Authenticates a bearer token. `may_wait` false turns a `Wait` into a denial (used when
    /// a held request's wait is over).
    pub fn authenticate(
        &mut self,
        settings: &AuthSettings,
        token: &str,
        now_ms: u64,
        may_wait: bool,
    ) -> Outcome {
        self.authenticate_with(settings, token, now_ms, may_wait, &mut NoTier)
    }

    /// [`Self::authenticate`] with a second cache level shared with other VMs.
    pub fn authenticate_with(
        &mut self,
        settings: &AuthSettings,
        token: &str,
        now_ms: u64,
        may_wait: bool,
        tier: &mut dyn TokenTier,
    ) -> Outcome {
        let now_s = (now_ms / 1000) as i64;
        let digest = self.token_key(token);
        if let Some(cache) = self.cache.as_mut() {
            if let Some(v) = cache.get(&digest) {
                if v.exp_s > now_s {
                    self.stats.cache_hits += 1;
                    return Outcome::Verified(v.clone());
                }
                cache.remove(&digest);
            }
            // Verified by another worker under the key set this VM holds too.
            if let Some(s) = tier.get(token) {
                let provider = settings.providers.get(s.verified.provider);
                let same_keys = self
                    .keys
                    .get(s.verified.provider)
                    .is_some_and(|k| k.keyset == s.keyset);
                if same_keys && provider.is_some() && s.verified.exp_s > now_s {
                    self.stats.shared_hits += 1;
                    self.remember(digest, s.verified.clone());
                    return Outcome::Verified(s.verified);
                }
            }
        }
        let deny = |error: JwtError, issuer: Option<String>, kid: Option<String>| {
            Outcome::Denied(Denial {
                error: DenyReason::Jwt(error),
                issuer,
                kid,
            })
        };
        let parsed = match jwt::parse(token, settings.max_token_bytes) {
            Ok(p) => p,
            Err(e) => return deny(e, None, None),
        };
        let issuer = parsed
            .claims
            .get("iss")
            .and_then(Value::as_str)
            .map(str::to_string);
        let kid = parsed.kid.clone();
        let Some(pi) = issuer
            .as_deref()
            .and_then(|iss| settings.providers.iter().position(|p| p.issuer == iss))
        else {
            return deny(JwtError::UnknownIssuer, None, kid);
        };
        let Some(provider) = settings.providers.get(pi) else {
            return deny(JwtError::UnknownIssuer, None, kid);
        };
        if !provider.algorithms.contains(&parsed.alg) {
            return deny(JwtError::AlgNotAllowed(parsed.alg), issuer, kid);
        }
        // The claims before the signature (as Envoy's jwt_authn does): an expired token, or one
        // for another audience, is refused without a signature check or a key fetch, so a flood
        // of such tokens costs no verification. The answer is the same either way: refused.
        let exp_s = match jwt::check_claims(
            &parsed.claims,
            &provider.audiences,
            now_s,
            provider.leeway_s,
        ) {
            Ok(exp) => exp,
            Err(e) => return deny(e, issuer, kid),
        };
        let secret = provider
            .shared_secret
            .as_ref()
            .map(|s| KeyMaterial::Hmac(s.clone()));
        let fetched: &[Jwk] = self.keys.get(pi).map_or(&[], |k| k.fetched.as_slice());
        let candidates: Vec<&KeyMaterial> = jwt::candidates(
            provider.inline_keys.iter().chain(fetched.iter()),
            kid.as_deref(),
            parsed.alg,
        )
        .chain(secret.iter().filter(|s| s.allows(parsed.alg)))
        .take(jwt::MAX_CANDIDATES)
        .collect();
        if candidates.is_empty() {
            let Some(state) = self.keys.get_mut(pi) else {
                return deny(JwtError::UnknownKid(kid.clone()), issuer, kid);
            };
            if let Some(fetch) = &provider.fetch {
                let never_fetched = state.fetched_at_ms.is_none();
                let rate_ok = state
                    .last_attempt_ms
                    .is_none_or(|t| now_ms.saturating_sub(t) >= fetch.refetch_min_ms);
                if may_wait && (state.in_flight || never_fetched || rate_ok) {
                    if !state.in_flight {
                        state.refetch_wanted = true;
                    }
                    return Outcome::Wait { provider: pi };
                }
                if never_fetched && provider.inline_keys.is_empty() {
                    return Outcome::Denied(Denial {
                        error: DenyReason::KeysUnavailable,
                        issuer,
                        kid,
                    });
                }
            }
            return deny(JwtError::UnknownKid(kid.clone()), issuer, kid);
        }
        self.stats.verifications += 1;
        if !candidates
            .iter()
            .any(|k| jwt::verify_signature(&parsed, k).is_ok())
        {
            return deny(JwtError::BadSignature, issuer, kid);
        }
        let verified = Verified {
            identity: jwt::identity(&parsed.claims, &provider.claims, &provider.issuer),
            scopes: scopes_of(&parsed.claims),
            exp_s,
            provider: pi,
        };
        self.remember(digest, verified.clone());
        if self.cache.is_some() {
            let keyset = self.keys.get(pi).map_or(0, |k| k.keyset);
            tier.put(
                token,
                &SharedVerified {
                    verified: verified.clone(),
                    keyset,
                },
            );
        }
        Outcome::Verified(verified)
    }

    /// The cache key of a token: a keyed 128-bit SipHash-2-4. A cache hit admits a token
    /// without verifying it, so the key must not collide for two tokens an attacker can
    /// choose: the hash keys are random per VM and never leave it.
    fn token_key(&self, token: &str) -> u128 {
        use std::hash::Hasher as _;
        let [k0, k1] = self.cache_key;
        let mut h = siphasher::sip128::SipHasher24::new_with_keys(k0, k1);
        h.write(token.as_bytes());
        siphasher::sip128::Hasher128::finish128(&h).as_u128()
    }

    fn remember(&mut self, digest: u128, v: Verified) {
        if let Some(cache) = self.cache.as_mut() {
            cache.insert(&digest, v);
        }
    }

    /// Cached verified tokens.
    pub fn cache_len(&self) -> usize {
        self.cache.as_ref().map_or(0, Bounded::len)
    }

    /// Providers whose keys should be fetched now; each is marked in flight.
    pub fn due_fetches(&mut self, settings: &AuthSettings, now_ms: u64) -> Vec<usize> {
        let mut due = Vec::new();
        for (i, (p, st)) in settings
            .providers
            .iter()
            .zip(self.keys.iter_mut())
            .enumerate()
        {
            let Some(f) = &p.fetch else { continue };
            if st.in_flight {
                continue;
            }
            let since_attempt = st.last_attempt_ms.map(|t| now_ms.saturating_sub(t));
            let start = match st.fetched_at_ms {
                // Never fetched: try now, then keep retrying at the refetch rate.
                None => since_attempt.is_none_or(|d| d >= f.refetch_min_ms.min(1000)),
                Some(at) => {
                    now_ms.saturating_sub(at) >= f.refresh_ms
                        || (st.refetch_wanted
                            && since_attempt.is_none_or(|d| d >= f.refetch_min_ms))
                }
            };
            if start {
                st.in_flight = true;
                st.refetch_wanted = false;
                st.last_attempt_ms = Some(now_ms);
                due.push(i);
            }
        }
        due
    }

    /// A fetch ended. `body` is the JWKS on a 2xx answer; `Err` says what went wrong.
    /// Failures keep the last good key set. Returns a line worth logging.
    pub fn on_fetch(
        &mut self,
        settings: &AuthSettings,
        provider: usize,
        body: Result<&[u8], String>,
        now_ms: u64,
    ) -> String {
        let name = settings
            .providers
            .get(provider)
            .map_or("?", |p| p.name.as_str());
        let Some(st) = self.keys.get_mut(provider) else {
            return format!("JWKS answer for unknown provider {provider}");
        };
        st.in_flight = false;
        self.stats.jwks_fetches += 1;
        self.load(name, provider, body, now_ms)
    }

    /// Takes a key set another VM of the process fetched at `fetched_at_ms` (the same JWKS
    /// document), when it is newer than this VM's. Returns a line worth logging when taken.
    pub fn adopt(
        &mut self,
        settings: &AuthSettings,
        provider: usize,
        doc: &[u8],
        fetched_at_ms: u64,
    ) -> Option<String> {
        let name = settings.providers.get(provider)?.name.clone();
        let st = self.keys.get_mut(provider)?;
        if st.fetched_at_ms.is_some_and(|t| t >= fetched_at_ms) {
            return None;
        }
        st.in_flight = false;
        self.stats.jwks_adopted += 1;
        Some(self.load(&name, provider, Ok(doc), fetched_at_ms))
    }

    /// A fetch this VM asked for was left to another VM of the process (it holds the
    /// lease): not in flight here; its keys are adopted when they come.
    pub fn fetch_deferred(&mut self, provider: usize) {
        if let Some(st) = self.keys.get_mut(provider) {
            st.in_flight = false;
        }
    }

    /// When this VM's keys of `provider` were fetched (by it or another VM).
    pub fn fetched_at(&self, provider: usize) -> Option<u64> {
        self.keys.get(provider).and_then(|k| k.fetched_at_ms)
    }

    /// Which key set of `provider` this VM holds (a tag shared by every VM holding it).
    pub fn keyset(&self, provider: usize) -> u64 {
        self.keys.get(provider).map_or(0, |k| k.keyset)
    }

    fn load(
        &mut self,
        name: &str,
        provider: usize,
        body: Result<&[u8], String>,
        now_ms: u64,
    ) -> String {
        let Some(st) = self.keys.get_mut(provider) else {
            return format!("JWKS answer for unknown provider {provider}");
        };
        let parsed = body.and_then(jwt::parse_jwks);
        match parsed {
            Ok((keys, skipped)) if !keys.is_empty() => {
                let changed = keys.len() != st.fetched.len()
                    || keys.iter().zip(&st.fetched).any(|(a, b)| a.kid != b.kid);
                st.keyset = keyset_tag(&keys);
                st.fetched = keys;
                st.fetched_at_ms = Some(now_ms);
                if changed {
                    // A key may have been withdrawn: tokens it signed must be checked again.
                    if let Some(cache) = self.cache.as_mut() {
                        cache.clear();
                    }
                }
                let mut line = format!(
                    "provider `{name}`: JWKS loaded, {} keys",
                    self.keys.get(provider).map_or(0, |s| s.fetched.len())
                );
                if !skipped.is_empty() {
                    line.push_str(&format!(" (skipped: {})", skipped.join("; ")));
                }
                line
            }
            Ok(_) => {
                st.failures += 1;
                self.stats.jwks_failures += 1;
                format!(
                    "provider `{name}`: JWKS has no usable signing key; keeping the last good set"
                )
            }
            Err(e) => {
                st.failures += 1;
                self.stats.jwks_failures += 1;
                format!("provider `{name}`: JWKS fetch failed ({e}); keeping the last good set")
            }
        }
    }
}

/// A tag of a key set: its key ids and algorithms, hashed with fixed keys so every VM holding
/// the same set computes the same tag.
fn keyset_tag(keys: &[Jwk]) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut h = siphasher::sip::SipHasher13::new_with_keys(0x6d63_7074, 0x6b65_7973);
    keys.len().hash(&mut h);
    for k in keys {
        k.kid.hash(&mut h);
        k.alg.map(|a| a.as_str()).hash(&mut h);
    }
    h.finish().max(1)
}

pub mod http;
pub mod jwt;

#[cfg(test)]
mod tests;
