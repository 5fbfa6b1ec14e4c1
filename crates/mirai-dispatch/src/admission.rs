//! Pipes that have connected but not yet presented a valid hello.
//!
//! Until its hello passes [`check_hello`](crate::protocol::check_hello) a pipe is nobody: it is
//! never given a daemon id, so the core cannot send it a task. This table adds the other half:
//! a pipe that stays silent past the hello timeout is closed, so unauthenticated connections
//! cannot pile up. Pipe events and messages travel on different channels, so a hello may be
//! seen before the pipe's "added" event; an admitted pipe is remembered so that late event
//! does not start its clock.

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use nano_transport::PipeId;

/// The hello deadlines of unauthenticated pipes.
#[derive(Debug)]
pub(crate) struct Admission {
    timeout: Duration,
    pending: HashMap<PipeId, Instant>,
    admitted: HashSet<PipeId>,
}

impl Admission {
    pub(crate) fn new(timeout: Duration) -> Self {
        Self {
            timeout,
            pending: HashMap::new(),
            admitted: HashSet::new(),
        }
    }

    /// A pipe connected at `now`.
    pub(crate) fn added(&mut self, pipe: PipeId, now: Instant) {
        if !self.admitted.contains(&pipe) {
            self.pending
                .insert(pipe, now.checked_add(self.timeout).unwrap_or(now));
        }
    }

    /// The pipe's hello was accepted.
    pub(crate) fn admit(&mut self, pipe: PipeId) {
        self.pending.remove(&pipe);
        self.admitted.insert(pipe);
    }

    /// Whether the pipe's hello was accepted.
    pub(crate) fn is_admitted(&self, pipe: PipeId) -> bool {
        self.admitted.contains(&pipe)
    }

    /// The pipe is gone.
    pub(crate) fn removed(&mut self, pipe: PipeId) {
        self.pending.remove(&pipe);
        self.admitted.remove(&pipe);
    }

    /// Takes the pipes whose hello deadline has passed.
    pub(crate) fn expired(&mut self, now: Instant) -> Vec<PipeId> {
        let late: Vec<PipeId> = self
            .pending
            .iter()
            .filter(|(_, deadline)| **deadline <= now)
            .map(|(pipe, _)| *pipe)
            .collect();
        for pipe in &late {
            self.pending.remove(pipe);
        }
        late
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn silent_pipes_expire_and_admitted_ones_never_do() {
        let t0 = Instant::now();
        let mut a = Admission::new(Duration::from_secs(10));
        a.added(PipeId(1), t0);
        a.added(PipeId(2), t0);
        // Pipe 3's hello overtook its "added" event.
        a.admit(PipeId(3));
        a.added(PipeId(3), t0);
        a.admit(PipeId(2));
        assert!(a.expired(t0 + Duration::from_secs(9)).is_empty());
        assert_eq!(a.expired(t0 + Duration::from_secs(10)), vec![PipeId(1)]);
        assert!(a.expired(t0 + Duration::from_secs(99)).is_empty());
        assert!(a.is_admitted(PipeId(2)) && a.is_admitted(PipeId(3)));
        a.removed(PipeId(2));
        assert!(!a.is_admitted(PipeId(2)));
    }
}
