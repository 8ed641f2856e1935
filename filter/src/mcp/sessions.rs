//! Sessions this VM has seen start: who started them, when, and how many commands followed.

use crate::bounded::Bounded;

/// One session as seen by this VM.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub started_ms: u64,
    pub sub: Option<String>,
    pub commands: u64,
}

/// A bounded table of sessions (oldest forgotten first).
#[derive(Debug)]
pub struct Sessions(Bounded<Entry>);

impl Sessions {
    pub fn new(cap: usize) -> Self {
        Self(Bounded::new(cap))
    }

    pub fn start(&mut self, id: &str, now_ms: u64, sub: Option<String>) {
        let fresh = Entry {
            started_ms: now_ms,
            sub,
            commands: 0,
        };
        self.0.insert(id, fresh);
    }

    pub fn get(&self, id: &str) -> Option<&Entry> {
        self.0.get(id)
    }

    /// Counts a command in the session, if known.
    pub fn touch(&mut self, id: &str) {
        if let Some(e) = self.0.get_mut(id) {
            e.commands += 1;
        }
    }

    /// Forgets a session, returning what was known of it.
    pub fn end(&mut self, id: &str) -> Option<Entry> {
        self.0.remove(id)
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

#[cfg(test)]
mod tests {
    #[cfg(all(target_arch = "wasm32", target_os = "unknown"))]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    use super::*;

    #[test]
    fn start_touch_end_and_bound() {
        let mut s = Sessions::new(2);
        s.start("a", 10, Some("alice".into()));
        s.touch("a");
        s.touch("a");
        s.touch("zz");
        assert_eq!(s.get("a").unwrap().commands, 2);
        s.start("b", 11, None);
        s.start("c", 12, None);
        assert_eq!(s.len(), 2);
        assert!(s.get("a").is_none(), "oldest forgotten");
        assert_eq!(s.end("b").unwrap().started_ms, 11);
        assert!(s.end("b").is_none());
    }
}
