//! Resumption memory (per VM): what a stream cut short still owes, and which SSE events were
//! recorded already, so that a resumed stream (`Last-Event-ID`) neither loses a reply's record
//! nor records an event twice.

use crate::audit::record::Record;
use crate::bounded::Bounded;

/// SSE event ids remembered per VM.
const SEEN_EVENTS_MAX: usize = 4096;
/// Replies still owed, remembered per VM.
const OWED_MAX: usize = 1024;

/// A request still owed its reply: its record, and when it started.
#[derive(Debug)]
pub struct Owed {
    pub record: Record,
    pub started_ms: u64,
}

/// What this VM remembers across streams.
#[derive(Debug)]
pub struct Resumption {
    /// SSE events already recorded, by session and event id.
    seen_events: Bounded<()>,
    /// Requests whose stream was cut before their reply, by session and JSON-RPC id.
    owed: Bounded<Owed>,
}

impl Default for Resumption {
    fn default() -> Self {
        Self {
            seen_events: Bounded::new(SEEN_EVENTS_MAX),
            owed: Bounded::new(OWED_MAX),
        }
    }
}

/// Key of an SSE event or a JSON-RPC id within a session.
fn key(session: Option<&str>, what: &str) -> String {
    format!("{}\u{1f}{what}", session.unwrap_or(""))
}

impl Resumption {
    /// Notes an event as recorded; `false` when it was recorded before (a redelivery).
    pub fn first_sight(&mut self, session: Option<&str>, event_id: &str) -> bool {
        let k = key(session, event_id);
        if self.seen_events.contains(&k) {
            return false;
        }
        self.seen_events.insert(&k, ());
        true
    }

    /// The request a reply (by id key) answers, if a cut stream left it owed.
    pub fn take_owed(&mut self, session: Option<&str>, id_key: &str) -> Option<Owed> {
        self.owed.remove(&key(session, id_key))
    }

    /// Remembers a request cut short before its reply.
    pub fn owe(&mut self, session: Option<&str>, id_key: &str, owed: Owed) {
        self.owed.insert(&key(session, id_key), owed);
    }
}
