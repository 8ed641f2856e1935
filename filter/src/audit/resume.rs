//! Resumption memory: what a stream cut short still owes, and which SSE events were recorded
//! already, so that a resumed stream (`Last-Event-ID`) neither loses a reply's record nor
//! records an event twice. It is kept in shared data (`filter::process::SharedResume`), so a
//! resumption on another worker of the process sees it.

use crate::audit::record::Record;

/// SSE event ids remembered (per process in Envoy).
pub const SEEN_EVENTS_MAX: usize = 4096;
/// Replies still owed, remembered (per process in Envoy).
pub const OWED_MAX: usize = 1024;

/// A request still owed its reply: its record, and when it started.
#[derive(Debug, serde::Serialize, serde::Deserialize)]
pub struct Owed {
    pub record: Record,
    pub started_ms: u64,
}

/// Key of an SSE event or a JSON-RPC id within a session.
pub fn key(session: Option<&str>, what: &str) -> String {
    format!("{}\u{1f}{what}", session.unwrap_or(""))
}
