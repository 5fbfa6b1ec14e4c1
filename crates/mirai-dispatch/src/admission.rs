//! Connections that have been accepted but not yet presented a valid hello.
//!
//! Until its hello passes [`check_hello`](crate::protocol::check_hello) a connection is nobody:
//! it is never given a daemon id, so the core cannot send it a task. This table adds the other
//! half, so that connections which never authenticate cannot pile up and exhaust us (each holds
//! a descriptor, buffers, perhaps a TLS session, and a place in the loop's scans):
//!
//! - **A deadline.** A connection that has not been admitted when its hello deadline passes is
//!   closed. The deadline runs from the accept, so it covers the TLS handshake, the SP header
//!   exchange and the hello alike; a peer that stalls any of them is closed by the same rule.
//!   Once admitted, a connection's liveness is the heartbeat's business, never this table's,
//!   so the two limits cannot fight.
//! - **A cap.** At most `cap` connections wait at once; adding one more evicts the oldest.
//!   Oldest first because a daemon sends its hello as soon as it can, so the connection that
//!   has waited longest is the one least likely to be a daemon about to say it; and the newest
//!   connection (perhaps the daemon that was just launched) always gets its chance. The shell
//!   also evicts the oldest when it runs out of descriptors.
//!
//! Sans-IO: keyed by whatever the I/O shell names its connections by, told the time by the
//! caller. Every operation is `O(log n)` in the waiting connections.

use std::collections::{BTreeMap, HashMap};
use std::hash::Hash;
use std::time::{Duration, Instant};

/// The hello deadlines of unauthenticated connections, oldest first.
#[derive(Debug)]
pub(crate) struct Admission<K> {
    timeout: Duration,
    cap: usize,
    /// Each waiting connection's arrival number and deadline (`None`: a timeout too large to
    /// reach).
    pending: HashMap<K, (u64, Option<Instant>)>,
    /// The waiting connections by arrival: deadlines grow with it, as the timeout is fixed.
    order: BTreeMap<u64, K>,
    next: u64,
}

impl<K: Copy + Eq + Hash> Admission<K> {
    /// A table closing connections `timeout` after their accept, holding at most `cap` of them
    /// (at least one).
    pub(crate) fn new(timeout: Duration, cap: usize) -> Self {
        Self {
            timeout,
            cap: cap.max(1),
            pending: HashMap::new(),
            order: BTreeMap::new(),
            next: 0,
        }
    }

    /// A connection was accepted at `now`; its clock starts. If that makes more than the cap,
    /// the oldest connection leaves the table and is returned, for the shell to close.
    pub(crate) fn added(&mut self, key: K, now: Instant) -> Option<K> {
        self.removed(key);
        let seq = self.next;
        self.next += 1;
        self.pending
            .insert(key, (seq, now.checked_add(self.timeout)));
        self.order.insert(seq, key);
        if self.pending.len() > self.cap {
            self.evict_oldest()
        } else {
            None
        }
    }

    /// Takes the connection that has waited longest, if any (the shell closes it).
    pub(crate) fn evict_oldest(&mut self) -> Option<K> {
        let (_, key) = self.order.pop_first()?;
        self.pending.remove(&key);
        Some(key)
    }

    /// The connection's hello was accepted: no deadline any more.
    pub(crate) fn admit(&mut self, key: K) {
        self.removed(key);
    }

    /// The connection is gone.
    pub(crate) fn removed(&mut self, key: K) {
        if let Some((seq, _)) = self.pending.remove(&key) {
            self.order.remove(&seq);
        }
    }

    /// How many connections wait.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.pending.len()
    }

    /// The earliest hello deadline, for the shell's sleep.
    pub(crate) fn next_deadline(&self) -> Option<Instant> {
        let (_, key) = self.order.first_key_value()?;
        self.pending.get(key).and_then(|(_, d)| *d)
    }

    /// Takes the connections whose hello deadline has passed.
    pub(crate) fn expired(&mut self, now: Instant) -> Vec<K> {
        let mut late = Vec::new();
        while let Some((_, key)) = self.order.first_key_value() {
            let key = *key;
            match self.pending.get(&key) {
                Some((_, Some(deadline))) if *deadline <= now => {
                    self.removed(key);
                    late.push(key);
                }
                _ => break,
            }
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
        let mut a = Admission::new(Duration::from_secs(10), 64);
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
        let mut a = Admission::new(Duration::MAX, 64);
        a.added(7u32, t0);
        assert_eq!(a.next_deadline(), None);
        assert!(a.expired(t0 + Duration::from_secs(1 << 40)).is_empty());
    }

    #[test]
    fn past_the_cap_the_oldest_waiting_connection_goes_first() {
        let t0 = Instant::now();
        let mut a = Admission::new(Duration::from_secs(10), 3);
        for k in 0..3 {
            assert_eq!(a.added(k, t0), None);
        }
        // Admitted connections leave room.
        a.admit(0);
        assert_eq!(a.added(3, t0), None);
        // Full: each newcomer evicts whoever has waited longest, never itself.
        assert_eq!(a.added(4, t0), Some(1));
        assert_eq!(a.added(5, t0), Some(2));
        assert_eq!(a.len(), 3);
        assert_eq!(a.evict_oldest(), Some(3));
        assert_eq!(a.evict_oldest(), Some(4));
        assert_eq!(a.evict_oldest(), Some(5));
        assert_eq!(a.evict_oldest(), None);
        // A cap of zero still lets one connection wait.
        let mut one = Admission::new(Duration::from_secs(1), 0);
        assert_eq!(one.added(1, t0), None);
        assert_eq!(one.added(2, t0), Some(1));
        assert_eq!(one.expired(t0 + Duration::from_secs(1)), vec![2]);
    }

    #[test]
    fn a_flood_leaves_at_most_the_cap_behind() {
        let t0 = Instant::now();
        let mut a = Admission::new(Duration::from_secs(10), 64);
        let mut evicted = 0;
        for k in 0..10_000u32 {
            evicted += usize::from(a.added(k, t0 + Duration::from_micros(k.into())).is_some());
        }
        assert_eq!(a.len(), 64);
        assert_eq!(evicted, 10_000 - 64);
        // The survivors are the newest.
        let late = a.expired(t0 + Duration::from_secs(20));
        assert_eq!(late, (10_000 - 64..10_000).collect::<Vec<_>>());
    }
}
