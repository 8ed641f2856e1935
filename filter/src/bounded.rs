//! A map with a fixed capacity that forgets its oldest entries first: per-VM memory of
//! sessions, redelivered SSE events and replies still owed, which must never grow without
//! bound however long the VM lives.

use std::collections::{HashMap, VecDeque};

/// A string-keyed map holding at most `cap` entries (the oldest inserted is evicted first).
#[derive(Debug)]
pub struct Bounded<V> {
    map: HashMap<String, V>,
    order: VecDeque<String>,
    cap: usize,
}

impl<V> Bounded<V> {
    pub fn new(cap: usize) -> Self {
        Self {
            map: HashMap::new(),
            order: VecDeque::new(),
            cap: cap.max(1),
        }
    }

    /// Inserts or replaces; a new key may evict the oldest entry.
    pub fn insert(&mut self, key: &str, value: V) {
        if let Some(v) = self.map.get_mut(key) {
            *v = value;
            return;
        }
        while self.map.len() >= self.cap {
            match self.order.pop_front() {
                Some(old) => {
                    self.map.remove(&old);
                }
                None => break,
            }
        }
        self.map.insert(key.to_string(), value);
        self.order.push_back(key.to_string());
    }

    pub fn get(&self, key: &str) -> Option<&V> {
        self.map.get(key)
    }

    pub fn get_mut(&mut self, key: &str) -> Option<&mut V> {
        self.map.get_mut(key)
    }

    pub fn contains(&self, key: &str) -> bool {
        self.map.contains_key(key)
    }

    pub fn remove(&mut self, key: &str) -> Option<V> {
        let v = self.map.remove(key)?;
        self.order.retain(|k| k != key);
        Some(v)
    }

    pub fn len(&self) -> usize {
        self.map.len()
    }

    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }
}

#[cfg(test)]
mod tests {
    #[cfg(all(target_arch = "wasm32", target_os = "unknown"))]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    use super::*;

    #[test]
    fn oldest_first_and_replace_keeps_place() {
        let mut b = Bounded::new(2);
        b.insert("a", 1);
        b.insert("b", 2);
        b.insert("a", 3);
        assert_eq!(b.len(), 2);
        b.insert("c", 4);
        assert!(!b.contains("a"), "oldest inserted goes first");
        assert_eq!(b.get("b"), Some(&2));
        assert_eq!(b.remove("b"), Some(2));
        assert_eq!(b.remove("b"), None);
        b.insert("d", 5);
        b.insert("e", 6);
        assert_eq!(b.len(), 2);
        assert!(b.contains("d") && b.contains("e"));
    }
}
