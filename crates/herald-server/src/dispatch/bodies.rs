//! Event bodies recently read for delivery, shared by every worker: when one
//! event goes to many subscriptions it is read and serialized once. Bounded
//! in bytes (events can be large), oldest out first.

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;

use bytes::Bytes;
use herald_core::Position;

pub struct BodyCache {
    capacity_bytes: usize,
    inner: Mutex<Inner>,
}

#[derive(Default)]
struct Inner {
    bodies: HashMap<Position, Bytes>,
    order: VecDeque<Position>,
    bytes: usize,
}

impl BodyCache {
    pub fn new(capacity_bytes: usize) -> Self {
        Self { capacity_bytes, inner: Mutex::default() }
    }

    pub fn get(&self, position: Position) -> Option<Bytes> {
        self.inner.lock().ok()?.bodies.get(&position).cloned()
    }

    pub fn insert(&self, position: Position, body: Bytes) {
        let Ok(mut inner) = self.inner.lock() else { return };
        if body.len() > self.capacity_bytes || inner.bodies.contains_key(&position) {
            return;
        }
        inner.bytes += body.len();
        inner.bodies.insert(position, body);
        inner.order.push_back(position);
        while inner.bytes > self.capacity_bytes {
            let Some(oldest) = inner.order.pop_front() else { break };
            if let Some(evicted) = inner.bodies.remove(&oldest) {
                inner.bytes -= evicted.len();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_the_newest_within_its_byte_budget() {
        let cache = BodyCache::new(10);
        cache.insert(1, Bytes::from_static(b"aaaa"));
        cache.insert(2, Bytes::from_static(b"bbbb"));
        cache.insert(3, Bytes::from_static(b"cccc"));
        assert_eq!(cache.get(1), None, "the oldest went to make room");
        assert_eq!(cache.get(3), Some(Bytes::from_static(b"cccc")));
        cache.insert(4, Bytes::from_static(b"far too large"));
        assert_eq!(cache.get(4), None);
        assert_eq!(cache.get(2), Some(Bytes::from_static(b"bbbb")), "a body too large evicts nothing");
    }
}
