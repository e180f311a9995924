//! Who a request comes from, and what each client may hold at once: its
//! connections ([`crate::connections`]) and its answers' bytes
//! ([`crate::response`]) are counted per client, so one client cannot take
//! what every other needs.

use std::collections::HashMap;
use std::collections::hash_map::Entry;
use std::convert::Infallible;
use std::hash::Hash;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::sync::{Arc, Mutex, PoisonError};

use axum::extract::FromRequestParts;
use axum::http::request::Parts;

/// A client: an IPv4 address or an IPv6 /64 (a host is usually given a
/// whole /64, so counting its addresses one by one would not limit it).
/// Each connection's requests carry theirs; a request that came through no
/// connection (the router called in-process) is the unspecified address's.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Client(IpAddr);

impl Client {
    /// The client a peer address counts as.
    pub fn of(peer: IpAddr) -> Self {
        Self(match peer {
            IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
                Some(v4) => IpAddr::V4(v4),
                None => IpAddr::V6(Ipv6Addr::from(u128::from(v6) & !u128::from(u64::MAX))),
            },
            v4 => v4,
        })
    }
}

impl Default for Client {
    fn default() -> Self {
        Self(IpAddr::V4(Ipv4Addr::UNSPECIFIED))
    }
}

impl<S: Send + Sync> FromRequestParts<S> for Client {
    type Rejection = Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Infallible> {
        Ok(parts.extensions.get::<Client>().copied().unwrap_or_default())
    }
}

/// An amount (connections, bytes) each client holds, within one limit per
/// client. Only clients holding something have an entry.
pub type PerClient = PerKey<Client>;

/// An amount each key (a client, a webhook target) holds, within one limit
/// per key. Only keys holding something have an entry.
pub struct PerKey<K> {
    limit: usize,
    held: Mutex<HashMap<K, usize>>,
}

impl<K: Eq + Hash + Clone> PerKey<K> {
    pub fn new(limit: usize) -> Self {
        Self { limit, held: Mutex::default() }
    }

    /// The most one key may hold.
    pub fn limit(&self) -> usize {
        self.limit
    }

    /// What `key` holds now.
    pub fn held(&self, key: &K) -> usize {
        self.lock().get(key).copied().unwrap_or(0)
    }

    /// Adds `n` to what `key` holds, if that stays within the limit.
    pub fn try_add(&self, key: &K, n: usize) -> bool {
        if n == 0 {
            return true;
        }
        let mut held = self.lock();
        let now = held.get(key).copied().unwrap_or(0);
        if now + n > self.limit {
            return false;
        }
        held.insert(key.clone(), now + n);
        true
    }

    /// Gives back `n` of what `key` holds.
    pub fn remove(&self, key: &K, n: usize) {
        if n == 0 {
            return;
        }
        if let Entry::Occupied(mut held) = self.lock().entry(key.clone()) {
            *held.get_mut() -= n;
            if *held.get() == 0 {
                held.remove();
            }
        }
    }

    /// Whether no key holds anything.
    pub fn is_empty(&self) -> bool {
        self.lock().is_empty()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<K, usize>> {
        self.held.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// One unit (a connection, a live stream, a delivery in flight) of what a
/// key holds, taken within its limit; given back when dropped.
pub struct Slot<K: Eq + Hash + Clone> {
    held: Arc<PerKey<K>>,
    key: K,
}

/// One of a client's connections or live streams.
pub type ClientSlot = Slot<Client>;

impl<K: Eq + Hash + Clone> Slot<K> {
    pub fn try_take(held: &Arc<PerKey<K>>, key: K) -> Option<Self> {
        held.try_add(&key, 1).then(|| Self { held: held.clone(), key })
    }
}

impl<K: Eq + Hash + Clone> Drop for Slot<K> {
    fn drop(&mut self) {
        self.held.remove(&self.key, 1);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_client_is_an_ipv4_address_or_an_ipv6_slash_64() {
        let client = |s: &str| Client::of(s.parse().unwrap());
        let ip = |s: &str| Client(s.parse().unwrap());
        assert_eq!(client("192.0.2.7"), ip("192.0.2.7"));
        assert_eq!(client("::ffff:192.0.2.7"), ip("192.0.2.7"));
        assert_eq!(client("2001:db8:1:2:aaaa::1"), ip("2001:db8:1:2::"));
        assert_eq!(client("2001:db8:1:2:ffff:ffff:ffff:ffff"), client("2001:db8:1:2::9"));
        assert_ne!(client("2001:db8:1:3::1"), client("2001:db8:1:2::1"));
    }
}
