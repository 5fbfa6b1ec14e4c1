//! Connections that have been accepted but not yet presented a valid hello.
//!
//! Until its hello passes [`check_hello`](crate::protocol::check_hello) a connection is nobody:
//! it is never given a daemon id, so the core cannot send it a task. This table adds the other
//! half: a connection that has not been admitted when its hello deadline passes is closed, so
//! unauthenticated connections cannot pile up. The deadline runs from the accept, so it covers
//! the TLS handshake, the SP header exchange and the hello alike; a peer that stalls any of them
//! is closed by the same rule. Once admitted, a connection's liveness is the heartbeat's
//! business, never this table's, so the two limits cannot fight.
//!
//! Sans-IO: keyed by whatever the I/O shell names its connections by, told the time by the
//! caller.

use std::collections::HashMap;
use std::hash::Hash;
use std::time::{Duration, Instant};

/// The hello deadlines of unauthenticated connections.
#[derive(Debug)]
pub(crate) struct Admission<K> {
    timeout: Duration,
    /// Each waiting connection's deadline (`None`: a timeout too large to reach).
    pending: HashMap<K, Option<Instant>>,
}

impl<K: Copy + Eq + Hash> Admission<K> {
    pub(crate) fn new(timeout: Duration) -> Self {
        Self {
            timeout,
            pending: HashMap::new(),
        }
    }

    /// A connection was accepted at `now`; its clock starts.
    pub(crate) fn added(&mut self, key: K, now: Instant) {
        self.pending.insert(key, now.checked_add(self.timeout));
    }

    /// The connection's hello was accepted: no deadline any more.
    pub(crate) fn admit(&mut self, key: K) {
        self.pending.remove(&key);
    }

    /// The connection is gone.
    pub(crate) fn removed(&mut self, key: K) {
        self.pending.remove(&key);
    }

    /// The earliest hello deadline, for the shell's sleep.
    pub(crate) fn next_deadline(&self) -> Option<Instant> {
        self.pending.values().flatten().min().copied()
    }

    /// Takes the connections whose hello deadline has passed.
    pub(crate) fn expired(&mut self, now: Instant) -> Vec<K> {
        let late: Vec<K> = self
            .pending
            .iter()
            .filter(|(_, deadline)| deadline.is_some_and(|d| d <= now))
            .map(|(key, _)| *key)
            .collect();
        for key in &late {
            self.pending.remove(key);
        }
        late
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn silent_connections_expire_and_admitted_ones_never_do() {
        let t0 = Instant::now();
        let mut a = Admission::new(Duration::from_secs(10));
        a.added(1, t0);
        a.added(2, t0 + Duration::from_secs(1));
        a.added(3, t0 + Duration::from_secs(2));
        assert_eq!(a.next_deadline(), Some(t0 + Duration::from_secs(10)));
        a.admit(1);
        assert_eq!(a.next_deadline(), Some(t0 + Duration::from_secs(11)));
        assert!(a.expired(t0 + Duration::from_secs(10)).is_empty());
        assert_eq!(a.expired(t0 + Duration::from_secs(11)), vec![2]);
        // Taken once: an expired connection is not reported again.
        assert!(a.expired(t0 + Duration::from_secs(11)).is_empty());
        a.removed(3);
        assert!(a.expired(t0 + Duration::from_secs(99)).is_empty());
        assert_eq!(a.next_deadline(), None);
    }

    #[test]
    fn a_huge_timeout_means_never() {
        let t0 = Instant::now();
        let mut a = Admission::new(Duration::MAX);
        a.added(7u32, t0);
        assert_eq!(a.next_deadline(), None);
        assert!(a.expired(t0 + Duration::from_secs(1 << 40)).is_empty());
    }
}
