//! Caps on open WebSockets per client address and per user (or API key), on this replica.
//! A slot is held by a guard and given back when the socket ends.

use std::{
    collections::HashMap,
    hash::Hash,
    sync::{Arc, Mutex},
};

/// Counts open sockets per key, up to a cap.
pub struct Slots<K: Eq + Hash + Clone> {
    cap: u32,
    open: Mutex<HashMap<K, u32>>,
}

/// One taken slot; dropping it frees the slot.
pub struct Slot<K: Eq + Hash + Clone> {
    slots: Arc<Slots<K>>,
    key: K,
}

impl<K: Eq + Hash + Clone> Drop for Slot<K> {
    fn drop(&mut self) {
        if let Ok(mut open) = self.slots.open.lock()
            && let Some(n) = open.get_mut(&self.key)
        {
            *n = n.saturating_sub(1);
            if *n == 0 {
                open.remove(&self.key);
            }
        }
    }
}

impl<K: Eq + Hash + Clone> Slots<K> {
    pub fn new(cap: u32) -> Arc<Self> {
        Arc::new(Self {
            cap,
            open: Mutex::new(HashMap::new()),
        })
    }

    /// A slot for `key`, or `None` when `key` already holds `cap` of them.
    pub fn take(self: &Arc<Self>, key: K) -> Option<Slot<K>> {
        let mut open = self.open.lock().ok()?;
        let n = open.entry(key.clone()).or_insert(0);
        if *n >= self.cap {
            return None;
        }
        *n += 1;
        Some(Slot {
            slots: Arc::clone(self),
            key,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_are_capped_and_returned() {
        let slots = Slots::new(2);
        let a = slots.take("x");
        let b = slots.take("x");
        assert!(a.is_some() && b.is_some());
        assert!(slots.take("x").is_none());
        assert!(slots.take("y").is_some());
        drop(a);
        assert!(slots.take("x").is_some());
    }
}
