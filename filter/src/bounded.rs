//! A map with a fixed capacity that forgets its oldest entries first: per-VM memory of
//! sessions, redelivered SSE events, replies still owed and verified tokens, which must never
//! grow without bound however long the VM lives.

use std::borrow::Borrow;
use std::collections::{HashMap, VecDeque};
use std::hash::Hash;

/// A map holding at most `cap` entries (the oldest inserted is evicted first).
#[derive(Debug)]
pub struct Bounded<V, K = String> {
    map: HashMap<K, V>,
    order: VecDeque<K>,
    cap: usize,
}

impl<V, K: Hash + Eq + Clone> Bounded<V, K> {
    pub fn new(cap: usize) -> Self {
        Self {
            map: HashMap::new(),
            order: VecDeque::new(),
            cap: cap.max(1),
        }
    }

    /// Inserts or replaces; a new key may evict the oldest entry.
    pub fn insert<Q>(&mut self, key: &Q, value: V)
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ToOwned<Owned = K> + ?Sized,
    {
        if let Some(v) = self.map.get_mut(key) {
            *v = value;
            return;
        }
        while self.map.len() >= self.cap {
            match self.order.pop_front() {
                Some(old) => {
                    self.map.remove::<K>(&old);
                }
                None => break,
            }
        }
        self.map.insert(key.to_owned(), value);
        self.order.push_back(key.to_owned());
    }

    pub fn get<Q: Hash + Eq + ?Sized>(&self, key: &Q) -> Option<&V>
    where
        K: Borrow<Q>,
    {
        self.map.get(key)
    }

    pub fn get_mut<Q: Hash + Eq + ?Sized>(&mut self, key: &Q) -> Option<&mut V>
    where
        K: Borrow<Q>,
    {
        self.map.get_mut(key)
    }

    pub fn contains<Q: Hash + Eq + ?Sized>(&self, key: &Q) -> bool
    where
        K: Borrow<Q>,
    {
        self.map.contains_key(key)
    }

    pub fn remove<Q: Hash + Eq + ?Sized>(&mut self, key: &Q) -> Option<V>
    where
        K: Borrow<Q>,
    {
        let v = self.map.remove(key)?;
        self.order.retain(|k| k.borrow() != key);
        Some(v)
    }

    pub fn clear(&mut self) {
        self.map.clear();
        self.order.clear();
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
