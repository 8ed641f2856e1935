//! Sealed session ids: what binds a session to the identity that opened it on every worker
//! and replica, with no shared store.
//!
//! The server's `Mcp-Session-Id` never reaches the client. The filter hands out
//! `mcpt1_<base64url(nonce || XChaCha20-Poly1305(payload))>` instead, where the payload is the
//! server's id, when the session started and a digest of the owner's `iss` and `sub`; it opens
//! that id on every later request and forwards exactly the server's id. Every VM configured
//! with the same `mcp.session_keys` opens what any of them sealed, so the owner check holds
//! wherever a request lands; an id that does not open (tampered, sealed under another key, or
//! made up) is answered as the server answers an unknown session. The payload is encrypted,
//! not only signed, so the server's id cannot be read out of a sealed id and presented bare.

use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use base64::Engine as _;
use chacha20poly1305::aead::{Aead, KeyInit};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use sha2::{Digest, Sha256};

use crate::audit::record::Identity;

/// What every sealed id starts with.
pub const PREFIX: &str = "mcpt1_";
const NONCE: usize = 24;
const VERSION: u8 = 1;

/// The owner of a session: a digest of the issuer and subject, or nobody (no identity, or no
/// subject): a session without an owner is open to any caller, as the server would allow.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Owner(Option<[u8; 16]>);

impl Owner {
    pub fn of(identity: Option<&Identity>) -> Self {
        let Some((iss, sub)) = identity.and_then(|i| Some((i.iss.as_deref(), i.sub.as_deref()?)))
        else {
            return Owner(None);
        };
        let mut h = Sha256::new();
        h.update(b"mcptrail session owner\0");
        h.update(iss.unwrap_or_default().as_bytes());
        h.update([0]);
        h.update(sub.as_bytes());
        let d = h.finalize();
        let mut out = [0u8; 16];
        out.copy_from_slice(d.get(..16).unwrap_or(&[0; 16]));
        Owner(Some(out))
    }

    /// The digest's bytes (none for nobody).
    pub fn bytes(&self) -> &[u8] {
        self.0.as_ref().map_or(&[], |d| d.as_slice())
    }

    /// Whether `caller` may use a session this owner opened.
    pub fn admits(&self, caller: &Owner) -> bool {
        self.0.is_none() || self == caller
    }
}

/// A sealed id, opened.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Opened {
    /// Exactly what the server issued.
    pub server_id: String,
    pub started_ms: u64,
    pub owner: Owner,
}

/// What a presented `Mcp-Session-Id` is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Presented {
    Sealed(Opened),
    /// Not of the sealed form: issued before the filter sealed ids, or made up.
    Bare,
    /// Of the sealed form, but it does not open under any configured key.
    Invalid,
}

/// The configured keys: the first seals, every one opens (rotation: put the new key first,
/// drop the old one once the sessions it sealed have ended).
pub struct Sealer {
    keys: Vec<XChaCha20Poly1305>,
}

impl std::fmt::Debug for Sealer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Sealer({} keys)", self.keys.len())
    }
}

impl Sealer {
    /// From 32-byte keys (longer secrets are hashed down to 32 bytes).
    pub fn new(secrets: &[Vec<u8>]) -> Self {
        let keys = secrets
            .iter()
            .map(|s| {
                let k: [u8; 32] = Sha256::new()
                    .chain_update(b"mcptrail session seal v1\0")
                    .chain_update(s)
                    .finalize()
                    .into();
                XChaCha20Poly1305::new(&k.into())
            })
            .collect();
        Self { keys }
    }

    /// Seals the server's id for its owner. `nonce` must be fresh random bytes.
    pub fn seal(&self, opened: &Opened, nonce: [u8; NONCE]) -> Option<String> {
        let key = self.keys.first()?;
        let mut payload = Vec::with_capacity(26 + opened.server_id.len());
        payload.push(VERSION);
        match opened.owner.0 {
            Some(o) => {
                payload.push(1);
                payload.extend_from_slice(&o);
            }
            None => payload.extend_from_slice(&[0; 17]),
        }
        payload.extend_from_slice(&opened.started_ms.to_be_bytes());
        payload.extend_from_slice(opened.server_id.as_bytes());
        let sealed = key
            .encrypt(XNonce::from_slice(&nonce), payload.as_slice())
            .ok()?;
        let mut raw = Vec::with_capacity(NONCE + sealed.len());
        raw.extend_from_slice(&nonce);
        raw.extend_from_slice(&sealed);
        Some(format!("{PREFIX}{}", B64.encode(&raw)))
    }

    /// Reads a presented id.
    pub fn open(&self, presented: &str) -> Presented {
        let Some(rest) = presented.strip_prefix(PREFIX) else {
            return Presented::Bare;
        };
        let Ok(raw) = B64.decode(rest) else {
            return Presented::Invalid;
        };
        let (Some(nonce), Some(sealed)) = (raw.get(..NONCE), raw.get(NONCE..)) else {
            return Presented::Invalid;
        };
        let nonce = XNonce::from_slice(nonce);
        let Some(payload) = self.keys.iter().find_map(|k| k.decrypt(nonce, sealed).ok()) else {
            return Presented::Invalid;
        };
        read_payload(&payload).map_or(Presented::Invalid, Presented::Sealed)
    }
}

fn read_payload(p: &[u8]) -> Option<Opened> {
    let (&version, rest) = p.split_first()?;
    let (&bound, rest) = rest.split_first()?;
    if version != VERSION || bound > 1 {
        return None;
    }
    let owner: [u8; 16] = rest.get(..16)?.try_into().ok()?;
    let started: [u8; 8] = rest.get(16..24)?.try_into().ok()?;
    let server_id = String::from_utf8(rest.get(24..)?.to_vec()).ok()?;
    Some(Opened {
        server_id,
        started_ms: u64::from_be_bytes(started),
        owner: Owner((bound == 1).then_some(owner)),
    })
}

#[cfg(test)]
mod tests {
    #[cfg(all(target_arch = "wasm32", target_os = "unknown"))]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    use super::*;

    fn who(iss: &str, sub: &str) -> Identity {
        Identity {
            iss: Some(iss.into()),
            sub: Some(sub.into()),
            ..Default::default()
        }
    }

    fn opened(owner: Owner) -> Opened {
        Opened {
            server_id: "0f3c9a52-1b7e-4d0a-9c65-3e2f8b1d7a44".into(),
            started_ms: 1_796_000_000_123,
            owner,
        }
    }

    #[test]
    fn seals_and_opens_under_any_configured_key() {
        let alice = Owner::of(Some(&who("https://idp", "alice")));
        let old = Sealer::new(&[b"old key".to_vec()]);
        let rotated = Sealer::new(&[b"new key".to_vec(), b"old key".to_vec()]);
        let id = old.seal(&opened(alice), [7; NONCE]).unwrap();
        assert!(id.starts_with(PREFIX));
        assert!(
            id.bytes().all(|b| (0x21..=0x7e).contains(&b)),
            "visible ASCII"
        );
        assert!(!id.contains("0f3c9a52"), "the server's id is not readable");
        assert_eq!(old.open(&id), Presented::Sealed(opened(alice)));
        assert_eq!(rotated.open(&id), Presented::Sealed(opened(alice)));
        // Sealed by the new key: the old configuration cannot open it.
        let newer = rotated.seal(&opened(alice), [8; NONCE]).unwrap();
        assert_eq!(old.open(&newer), Presented::Invalid);
        // Another deployment's key.
        assert_eq!(
            Sealer::new(&[b"other".to_vec()]).open(&id),
            Presented::Invalid
        );
    }

    #[test]
    fn tampered_and_bare_ids() {
        let s = Sealer::new(&[b"k".to_vec()]);
        let id = s.seal(&opened(Owner(None)), [1; NONCE]).unwrap();
        assert_eq!(
            s.open("0f3c9a52-1b7e-4d0a-9c65-3e2f8b1d7a44"),
            Presented::Bare
        );
        assert_eq!(s.open(""), Presented::Bare);
        for bad in [
            PREFIX.to_string(),
            format!("{PREFIX}!!"),
            format!("{PREFIX}AAAA"),
        ] {
            assert_eq!(s.open(&bad), Presented::Invalid, "{bad}");
        }
        // Every single-character change of the sealed part is caught.
        let body = id.get(PREFIX.len()..).unwrap();
        for i in 0..body.len() {
            let mut b = body.as_bytes().to_vec();
            b[i] = if b[i] == b'A' { b'B' } else { b'A' };
            let t = format!("{PREFIX}{}", String::from_utf8(b).unwrap());
            if t != id {
                assert_eq!(s.open(&t), Presented::Invalid, "position {i}");
            }
        }
    }

    #[test]
    fn owners() {
        let alice = Owner::of(Some(&who("https://idp", "alice")));
        let bob = Owner::of(Some(&who("https://idp", "bob")));
        let other_alice = Owner::of(Some(&who("https://other", "alice")));
        let nobody = Owner::of(None);
        assert!(alice.admits(&alice));
        assert!(!alice.admits(&bob));
        assert!(
            !alice.admits(&other_alice),
            "the issuer is part of the owner"
        );
        assert!(!alice.admits(&nobody));
        assert!(
            nobody.admits(&bob),
            "a session opened without identity binds no one"
        );
        assert_eq!(Owner::of(Some(&Identity::default())), nobody);
    }
}
