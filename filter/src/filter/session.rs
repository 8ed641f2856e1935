//! The session stage. Once the caller is known, a presented `Mcp-Session-Id` is opened
//! (`mcp::seal`), its owner checked, and the server's own id forwarded; on the way back, the
//! id the server issues is sealed for the caller. It runs on whichever path admits the caller:
//! at once in the headers callback, or when the root settles a request that waited for keys.

use super::{refuse, Shared, Slot};
use crate::auth::http::{self, Refused};
use crate::config::Unsealed;
use crate::host::{Headers, Host, Level};
use crate::mcp::seal::{Opened, Owner, Presented};

/// Opens and checks the presented session id; `true` when the request was refused.
pub(super) fn bind(host: &dyn Host, shared: &Shared, slot: &mut Slot) -> bool {
    let Some(presented) = slot.session.presented.clone() else {
        return false;
    };
    let mcp = &shared.config.mcp;
    let opened = match shared.sealer.as_ref().map(|s| s.open(&presented)) {
        Some(Presented::Sealed(opened)) => opened,
        Some(Presented::Invalid) => return refused(host, slot, http::session_unknown()),
        Some(Presented::Bare) if mcp.unsealed_sessions == Unsealed::Refuse => {
            return refused(host, slot, http::session_unknown());
        }
        Some(Presented::Bare) | None => {
            // Unsealed: only this VM can know the owner (a session it saw start).
            slot.session.unsealed = shared.sealer.is_some();
            slot.session.server_id = Some(presented.clone());
            let owner = shared
                .sessions
                .borrow()
                .get(&presented)
                .and_then(|e| e.sub.clone());
            let sub = slot.identity.as_ref().and_then(|i| i.sub.as_deref());
            let foreign = owner.is_some_and(|o| Some(o.as_str()) != sub);
            return foreign && mismatch(host, shared, slot);
        }
    };
    // The server gets exactly the id it issued.
    host.set_header(
        Headers::Request,
        "mcp-session-id",
        Some(opened.server_id.as_str()),
    );
    slot.session.server_id = Some(opened.server_id);
    slot.session.started_ms = Some(opened.started_ms);
    slot.session.sealed = true;
    let caller = Owner::of(slot.identity.as_ref());
    !opened.owner.admits(&caller) && mismatch(host, shared, slot)
}

/// Another identity's session: flagged, and refused when so configured.
fn mismatch(host: &dyn Host, shared: &Shared, slot: &mut Slot) -> bool {
    slot.session.mismatch = true;
    if !shared.config.mcp.reject_session_identity_mismatch {
        return false;
    }
    refused(host, slot, http::session_mismatch())
}

fn refused(host: &dyn Host, slot: &mut Slot, r: Refused) -> bool {
    refuse(host, slot, r);
    true
}

/// Seals the session id the server answered with (`issued`), for the caller: the id the
/// client presented when it names the same session, else a fresh one. Without randomness
/// for the nonce the id is withheld (the client cannot go on with a session it cannot
/// prove it owns), never handed out bare.
pub(super) fn seal_reply(
    host: &dyn Host,
    shared: &Shared,
    slot: &Slot,
    issued: &str,
    started_ms: u64,
) {
    let Some(sealer) = shared.sealer.as_ref() else {
        return;
    };
    let view = &slot.session;
    if view.sealed && view.server_id.as_deref() == Some(issued) {
        host.set_header(
            Headers::Response,
            "mcp-session-id",
            view.presented.as_deref(),
        );
        return;
    }
    let opened = Opened {
        server_id: issued.to_string(),
        started_ms,
        owner: Owner::of(slot.identity.as_ref()),
    };
    let sealed = nonce(host).and_then(|n| sealer.seal(&opened, n));
    if sealed.is_none() {
        host.log(
            Level::Error,
            "mcptrail: cannot seal the session id (no randomness from the host): withheld",
        );
    }
    host.set_header(Headers::Response, "mcp-session-id", sealed.as_deref());
}

/// 24 fresh random bytes from the host (once per session, so a host call is cheap enough).
fn nonce(host: &dyn Host) -> Option<[u8; 24]> {
    let mut n = [0u8; 24];
    for chunk in n.chunks_exact_mut(8) {
        chunk.copy_from_slice(&host.random_u64().ok()?.to_le_bytes());
    }
    Some(n)
}
