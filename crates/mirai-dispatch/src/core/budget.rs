//! Exact byte accounting for the queue.
//!
//! Reservation and release happen in the same state machine that queues the task, so the cap is
//! exact: `used` never exceeds `capacity`. (R's mirai checks the cap on one thread and counts the
//! bytes on another, which lets a burst overshoot by up to 60%.)

use std::fmt;

/// Why bytes could not be reserved.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Shortfall {
    /// The bytes would fit in an empty budget, but not now.
    Full,
    /// The bytes exceed the whole capacity and can never fit.
    TooLarge,
}

/// Bytes reserved against an optional capacity, with a high-water mark.
#[derive(Clone, PartialEq, Eq)]
pub(crate) struct Budget {
    capacity: Option<u64>,
    used: u64,
    peak: u64,
}

impl Budget {
    /// A budget of `capacity` bytes; `None` is unbounded.
    pub(crate) fn new(capacity: Option<u64>) -> Self {
        Self {
            capacity,
            used: 0,
            peak: 0,
        }
    }

    /// Reserves `bytes` if they fit; all or nothing.
    pub(crate) fn reserve(&mut self, bytes: u64) -> Result<(), Shortfall> {
        if let Some(cap) = self.capacity {
            if bytes > cap {
                return Err(Shortfall::TooLarge);
            }
            if bytes > cap - self.used {
                return Err(Shortfall::Full);
            }
        }
        self.used += bytes;
        self.peak = self.peak.max(self.used);
        Ok(())
    }

    /// Gives back `bytes` reserved earlier.
    pub(crate) fn release(&mut self, bytes: u64) {
        debug_assert!(bytes <= self.used, "released more than reserved");
        self.used = self.used.saturating_sub(bytes);
    }

    pub(crate) fn used(&self) -> u64 {
        self.used
    }

    pub(crate) fn peak(&self) -> u64 {
        self.peak
    }

    pub(crate) fn capacity(&self) -> Option<u64> {
        self.capacity
    }
}

impl fmt::Debug for Budget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "Budget({}/{:?}, peak {})",
            self.used, self.capacity, self.peak
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reserves_up_to_the_exact_capacity() {
        let mut b = Budget::new(Some(10));
        assert_eq!(b.reserve(6), Ok(()));
        assert_eq!(b.reserve(5), Err(Shortfall::Full));
        assert_eq!(b.reserve(4), Ok(()));
        assert_eq!(b.used(), 10);
        assert_eq!(b.reserve(1), Err(Shortfall::Full));
        b.release(6);
        assert_eq!(b.used(), 4);
        assert_eq!(b.peak(), 10);
    }

    #[test]
    fn larger_than_capacity_is_too_large_even_when_empty() {
        let mut b = Budget::new(Some(10));
        assert_eq!(b.reserve(11), Err(Shortfall::TooLarge));
        assert_eq!(b.used(), 0);
        assert_eq!(b.reserve(10), Ok(()));
    }

    #[test]
    fn unbounded_accepts_anything() {
        let mut b = Budget::new(None);
        assert_eq!(b.reserve(u64::MAX / 2), Ok(()));
        assert_eq!(b.capacity(), None);
    }
}
