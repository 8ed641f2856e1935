//! Per-process state through Envoy's shared data: what the workers' VMs of one Envoy process
//! (same `vm_id`) reuse instead of each doing it again. A provider's JWKS is fetched by one VM
//! (the one that takes the fetch lease) and adopted by the others; a token verified on one
//! worker is not verified again on another; SSE resumption memory is one for the process. Shared data spans one process, not replicas, and
//! has no delete, so every key written here is bounded: one entry per JWKS URL and a fixed
//! number of token slots (`auth.cache_max_entries`).
//!
//! Entries are only trusted under a MAC keyed from the plugin configuration (which holds the
//! deployment's secrets), so another plugin sharing the `vm_id` cannot plant a verified
//! identity, and VMs of another configuration never read this one's tokens.

use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::audit::resume::{self, Owed};
use crate::auth::{AuthSettings, Authenticator, JwksFetch, SharedVerified, TokenTier};
use crate::host::{Host, Level};

/// What the process-wide helpers need, derived once from the configuration.
#[derive(Debug)]
pub struct Process {
    mac_key: [u8; 32],
    token_slots: u64,
}

impl Process {
    pub fn new(config_bytes: &[u8], token_slots: usize) -> Self {
        let mac_key = Sha256::new()
            .chain_update(b"mcptrail shared data\0")
            .chain_update(config_bytes)
            .finalize()
            .into();
        Self {
            mac_key,
            token_slots: token_slots.max(1) as u64,
        }
    }

    fn mac(&self, data: &[u8]) -> [u8; 32] {
        match <Hmac<Sha256> as Mac>::new_from_slice(&self.mac_key) {
            Ok(mut m) => {
                m.update(data);
                m.finalize().into_bytes().into()
            }
            Err(_) => [0; 32],
        }
    }

    /// `data` with its MAC in front.
    fn seal(&self, data: &[u8]) -> Vec<u8> {
        let mut out = self.mac(data).to_vec();
        out.extend_from_slice(data);
        out
    }

    /// The data of a sealed value, if its MAC holds.
    fn open<'a>(&self, value: &'a [u8]) -> Option<&'a [u8]> {
        let (mac, data) = (value.get(..32)?, value.get(32..)?);
        // Not secret-dependent timing worth hiding: a mismatch only means "do the work".
        (self.mac(data).as_slice() == mac).then_some(data)
    }
}

/// The token tier of one request: process-wide slots keyed by the token's SHA-256.
pub struct SharedTokens<'a> {
    host: &'a dyn Host,
    process: &'a Process,
}

pub fn tokens<'a>(host: &'a dyn Host, process: &'a Process) -> SharedTokens<'a> {
    SharedTokens { host, process }
}

#[derive(Serialize, Deserialize)]
struct TokenEntry {
    /// SHA-256 of the token (hex): the slot may hold another token.
    d: String,
    s: SharedVerified,
}

/// The shared-data key of the slot that `what` falls in (of `slots` under `prefix`), and the
/// hex SHA-256 of `what` that tells whether the slot holds it or another entry.
fn slot_of(prefix: &str, what: &[u8], slots: u64) -> (String, String) {
    let digest = Sha256::digest(what);
    let mut first = [0u8; 8];
    first.copy_from_slice(digest.get(..8).unwrap_or(&[0; 8]));
    let slot = u64::from_le_bytes(first) % slots.max(1);
    (
        format!("mcptrail.{prefix}.{slot}"),
        crate::audit::chain::hex(&digest),
    )
}

impl TokenTier for SharedTokens<'_> {
    fn get(&mut self, token: &str) -> Option<SharedVerified> {
        let (key, digest) = slot_of("tok", token.as_bytes(), self.process.token_slots);
        let (value, _) = self.host.shared_get(&key).ok()?;
        let value = value?;
        let entry: TokenEntry = serde_json::from_slice(self.process.open(&value)?).ok()?;
        (entry.d == digest).then_some(entry.s)
    }

    fn put(&mut self, token: &str, v: &SharedVerified) {
        let (key, digest) = slot_of("tok", token.as_bytes(), self.process.token_slots);
        let entry = TokenEntry {
            d: digest,
            s: v.clone(),
        };
        if let Ok(data) = serde_json::to_vec(&entry) {
            let _ = self.host.shared_set(&key, &self.process.seal(&data), 0);
        }
    }
}

/// A provider's JWKS as the process knows it.
#[derive(Debug, Default, Serialize, Deserialize)]
struct JwksEntry {
    /// When `doc` was fetched (0: never).
    at: u64,
    /// A VM is fetching until then.
    lease_until: u64,
    doc: Option<String>,
}

fn jwks_key(f: &JwksFetch) -> String {
    let d = Sha256::new()
        .chain_update(f.cluster.as_bytes())
        .chain_update([0])
        .chain_update(f.authority.as_bytes())
        .chain_update([0])
        .chain_update(f.path.as_bytes())
        .finalize();
    let hex = crate::audit::chain::hex(&d);
    format!("mcptrail.jwks.{}", hex.get(..16).unwrap_or(&hex))
}

fn parse_jwks_entry(process: &Process, value: &[u8]) -> JwksEntry {
    process
        .open(value)
        .and_then(|d| serde_json::from_slice(d).ok())
        .unwrap_or_default()
}

fn read_jwks(host: &dyn Host, process: &Process, key: &str) -> (JwksEntry, u32) {
    match host.shared_get(key) {
        Ok((Some(v), cas)) => (parse_jwks_entry(process, &v), cas),
        Ok((None, cas)) => (JwksEntry::default(), cas),
        Err(_) => (JwksEntry::default(), 0),
    }
}

fn write_jwks(host: &dyn Host, process: &Process, key: &str, e: &JwksEntry, cas: u32) -> bool {
    let Ok(data) = serde_json::to_vec(e) else {
        return false;
    };
    host.shared_set(key, &process.seal(&data), cas)
        .unwrap_or(false)
}

/// At configuration: creates each provider's JWKS entry where none exists yet. Envoy ignores
/// the version when a key is absent, so two VMs could both "win" a lease on an absent key;
/// once the entry exists, every lease is taken by compare-and-swap and exactly one VM wins.
/// (The workers configure together, a tick before any lease is sought.)
pub fn prepare(host: &dyn Host, process: &Process, settings: &AuthSettings) {
    for f in settings.providers.iter().filter_map(|p| p.fetch.as_ref()) {
        let key = jwks_key(f);
        if let Ok((None, _)) = host.shared_get(&key) {
            write_jwks(host, process, &key, &JwksEntry::default(), 0);
        }
    }
}

/// Before this VM fetches `provider`'s keys: takes a set another VM fetched moments ago, or
/// leaves the fetch to a VM that holds the lease, or takes the lease. `true`: fetch now.
pub fn claim_fetch(
    host: &dyn Host,
    process: &Process,
    auth: &mut Authenticator,
    settings: &AuthSettings,
    provider: usize,
    now: u64,
) -> bool {
    let Some(f) = settings
        .providers
        .get(provider)
        .and_then(|p| p.fetch.as_ref())
    else {
        return false;
    };
    let key = jwks_key(f);
    let (mut entry, cas) = read_jwks(host, process, &key);
    if let Some(doc) = entry.doc.as_deref() {
        let age = now.saturating_sub(entry.at);
        let newer = auth.fetched_at(provider).is_none_or(|t| entry.at > t);
        // Fetched by another VM within the refetch bound: the process does not ask again.
        if age < f.refetch_min_ms || (newer && age < f.refresh_ms) {
            if newer {
                if let Some(line) = auth.adopt(settings, provider, doc.as_bytes(), entry.at) {
                    host.log(
                        Level::Info,
                        &format!("mcptrail: {line} (fetched by another worker)"),
                    );
                }
            }
            auth.fetch_deferred(provider);
            return false;
        }
    }
    if entry.lease_until > now {
        auth.fetch_deferred(provider);
        return false;
    }
    entry.lease_until = now + f.timeout_ms + 500;
    if !write_jwks(host, process, &key, &entry, cas) {
        // Another VM took it between the read and the write.
        auth.fetch_deferred(provider);
        return false;
    }
    true
}

/// After this VM's fetch: publishes the document (or frees the lease after a failure).
pub fn publish_jwks(
    host: &dyn Host,
    process: &Process,
    f: &JwksFetch,
    doc: Option<&[u8]>,
    now: u64,
) {
    let key = jwks_key(f);
    let (mut entry, _) = read_jwks(host, process, &key);
    entry.lease_until = 0;
    if let Some(doc) = doc.and_then(|d| std::str::from_utf8(d).ok()) {
        entry.at = now;
        entry.doc = Some(doc.to_string());
    }
    write_jwks(host, process, &key, &entry, 0);
}

/// On each tick: the key sets other VMs published since this VM last looked. Returns the
/// providers that got new keys (their held requests can be settled now). `seen` holds the
/// shared-data version last read per provider, so an unchanged entry is not parsed again.
pub fn adopt_published(
    host: &dyn Host,
    process: &Process,
    auth: &mut Authenticator,
    settings: &AuthSettings,
    seen: &mut Vec<u32>,
) -> Vec<usize> {
    seen.resize(settings.providers.len(), 0);
    let mut out = Vec::new();
    for (pi, p) in settings.providers.iter().enumerate() {
        let Some(f) = p.fetch.as_ref() else { continue };
        let key = jwks_key(f);
        let Ok((Some(value), version)) = host.shared_get(&key) else {
            continue;
        };
        if seen.get(pi) == Some(&version) {
            continue;
        }
        if let Some(s) = seen.get_mut(pi) {
            *s = version;
        }
        let entry = parse_jwks_entry(process, &value);
        let Some(doc) = entry.doc.as_deref() else {
            continue;
        };
        if let Some(line) = auth.adopt(settings, pi, doc.as_bytes(), entry.at) {
            host.log(
                Level::Info,
                &format!("mcptrail: {line} (fetched by another worker)"),
            );
            out.push(pi);
        }
    }
    out
}

/// Resumption memory in shared data: a `Last-Event-ID` resumption on another worker neither
/// loses an owed reply's record nor records a redelivered event twice. Fixed slots by a
/// digest of (session, event or request id): a slot taken by a newer entry forgets the older
/// one, as the per-VM memory forgets its oldest.
pub struct SharedResume<'a> {
    host: &'a dyn Host,
    process: &'a Process,
}

pub fn resumption<'a>(host: &'a dyn Host, process: &'a Process) -> SharedResume<'a> {
    SharedResume { host, process }
}

#[derive(Serialize, Deserialize)]
struct OwedEntry {
    d: String,
    owed: Option<Owed>,
}

impl SharedResume<'_> {
    /// Notes an event as recorded; `false` when it was recorded before (a redelivery).
    pub fn first_sight(&mut self, session: Option<&str>, event_id: &str) -> bool {
        let what = resume::key(session, event_id);
        let (key, digest) = slot_of("ev", what.as_bytes(), resume::SEEN_EVENTS_MAX as u64);
        let Ok((value, cas)) = self.host.shared_get(&key) else {
            return true;
        };
        if value.as_deref().and_then(|v| self.process.open(v)) == Some(digest.as_bytes()) {
            return false;
        }
        let _ = self
            .host
            .shared_set(&key, &self.process.seal(digest.as_bytes()), cas);
        true
    }

    /// The request a reply (by id key) answers, if a cut stream left it owed; taken once.
    pub fn take_owed(&mut self, session: Option<&str>, id_key: &str) -> Option<Owed> {
        let what = resume::key(session, id_key);
        let (key, digest) = slot_of("owed", what.as_bytes(), resume::OWED_MAX as u64);
        let (value, cas) = self.host.shared_get(&key).ok()?;
        let value = value?;
        let entry: OwedEntry = serde_json::from_slice(self.process.open(&value)?).ok()?;
        if entry.d != digest {
            return None;
        }
        let owed = entry.owed?;
        // Taken once: if another worker took it first, it records the reply.
        let empty = serde_json::to_vec(&OwedEntry {
            d: digest,
            owed: None,
        })
        .ok()?;
        match self.host.shared_set(&key, &self.process.seal(&empty), cas) {
            Ok(true) => Some(owed),
            _ => None,
        }
    }

    /// Remembers a request cut short before its reply.
    pub fn owe(&mut self, session: Option<&str>, id_key: &str, owed: Owed) {
        let what = resume::key(session, id_key);
        let (key, digest) = slot_of("owed", what.as_bytes(), resume::OWED_MAX as u64);
        let entry = OwedEntry {
            d: digest,
            owed: Some(owed),
        };
        if let Ok(data) = serde_json::to_vec(&entry) {
            let _ = self.host.shared_set(&key, &self.process.seal(&data), 0);
        }
    }
}

/// Links between the legs of one operation that the protocol gives nothing to link by
/// across replicas (`filter::operation`): a key (a digest) to the operation it continues.
/// Fixed slots, each entry good for [`LINK_TTL_MS`]: best effort within one Envoy process.
pub struct SharedLinks<'a> {
    host: &'a dyn Host,
    process: &'a Process,
}

pub fn links<'a>(host: &'a dyn Host, process: &'a Process) -> SharedLinks<'a> {
    SharedLinks { host, process }
}

/// How many link slots the process keeps.
pub const LINK_SLOTS: u64 = 1024;
/// How long a link is followed (the Python SDK's `requestState` lives as long by default).
pub const LINK_TTL_MS: u64 = 600_000;

#[derive(Serialize, Deserialize)]
struct LinkEntry {
    d: String,
    op: String,
    until: u64,
}

impl SharedLinks<'_> {
    /// The operation `key` continues, if a leg linked it within the window.
    pub fn follow(&self, key: &str, now: u64) -> Option<String> {
        let (slot, digest) = slot_of("op", key.as_bytes(), LINK_SLOTS);
        let (value, _) = self.host.shared_get(&slot).ok()?;
        let value = value?;
        let e: LinkEntry = serde_json::from_slice(self.process.open(&value)?).ok()?;
        (e.d == digest && e.until > now).then_some(e.op)
    }

    /// Links `key` to `op` (a newer link in the same slot replaces an older one).
    pub fn link(&self, key: &str, op: &str, now: u64) {
        let (slot, digest) = slot_of("op", key.as_bytes(), LINK_SLOTS);
        let e = LinkEntry {
            d: digest,
            op: op.to_string(),
            until: now.saturating_add(LINK_TTL_MS),
        };
        if let Ok(data) = serde_json::to_vec(&e) {
            let _ = self.host.shared_set(&slot, &self.process.seal(&data), 0);
        }
    }
}

/// The shared-data key of a drain request (a stop's first step).
const DRAIN_KEY: &str = "mcptrail.drain";

/// Asks every VM of the process to close its stream and ship what it holds.
pub fn request_drain(host: &dyn Host, process: &Process, now: u64) -> bool {
    host.shared_set(DRAIN_KEY, &process.seal(&now.to_le_bytes()), 0)
        .unwrap_or(false)
}

/// When a drain was asked for, if one was (under this configuration's MAC).
pub fn drain_requested(host: &dyn Host, process: &Process) -> Option<u64> {
    let (value, _) = host.shared_get(DRAIN_KEY).ok()?;
    let value = value?;
    let data: [u8; 8] = process.open(&value)?.try_into().ok()?;
    Some(u64::from_le_bytes(data))
}
