//! Who created a region, and whether that creator is still alive.
//!
//! R's mori decides that a region is orphaned when the pid in its name no longer exists. After
//! pid reuse that reaps nothing wrongly only by luck: an unrelated new process with the old pid
//! keeps a dead creator's orphans alive, and, worse, a region whose creator is alive is safe only
//! because its pid is not reused while it runs. We add an owner record: the creator's start
//! time (`/proc/<pid>/stat` field 22), stored as the extended attribute `user.mori.owner` on the
//! region file, outside the region's bytes, so R reads our regions unchanged. A pid plus its start
//! time names one process for the life of the machine.
//!
//! The rule, kept as a pure function ([`status`]) so it is tested without processes:
//!
//! | pid exists | record | start time of that pid | status |
//! |---|---|---|---|
//! | no | any | - | orphaned |
//! | yes | matches | same | alive |
//! | yes | present | different | orphaned (the pid was reused) |
//! | yes | present | unreadable | alive (cannot tell, keep) |
//! | yes | absent (R's regions, old kernels) | - | alive (R's rule) |
//!
//! Caveat: pids are per PID namespace. A process in another PID namespace that shares
//! `/dev/shm` (containers run with `--ipc=host`, for instance) names regions with a pid that
//! means nothing here, so its live regions look orphaned to `prune` run outside its namespace,
//! exactly as with R's `prune_shared()`. Do not prune a `/dev/shm` shared across PID namespaces.

use crate::sys::proc::Probe;

/// Longest owner record we accept: a `u64` in decimal.
const RECORD_MAX: usize = 20;

/// Whether a region's creator is still running.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    /// The creator is running (or cannot be proved dead): the region is kept.
    Alive,
    /// The creator is gone: `prune` removes the region.
    Orphaned,
}

/// The owner record for a process that started at `start_time` clock ticks after boot.
pub(crate) fn encode_record(start_time: u64) -> Vec<u8> {
    start_time.to_string().into_bytes()
}

/// Parse an owner record; anything that is not a short decimal number is no record at all.
pub(crate) fn decode_record(bytes: &[u8]) -> Option<u64> {
    if bytes.is_empty() || bytes.len() > RECORD_MAX || !bytes.iter().all(u8::is_ascii_digit) {
        return None;
    }
    std::str::from_utf8(bytes).ok()?.parse().ok()
}

/// Decide a region's status from its owner record and a probe of the pid in its name.
pub(crate) fn status(record: Option<u64>, probe: Probe) -> Status {
    match (probe.exists, record, probe.start_time) {
        (false, _, _) => Status::Orphaned,
        (true, Some(recorded), Some(now)) if recorded != now => Status::Orphaned,
        (true, _, _) => Status::Alive,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const fn probe(exists: bool, start_time: Option<u64>) -> Probe {
        Probe { exists, start_time }
    }

    #[test]
    fn the_rule_table_holds() {
        assert_eq!(status(Some(5), probe(false, None)), Status::Orphaned);
        assert_eq!(status(None, probe(false, None)), Status::Orphaned);
        assert_eq!(status(Some(5), probe(true, Some(5))), Status::Alive);
        assert_eq!(status(Some(5), probe(true, Some(6))), Status::Orphaned);
        assert_eq!(status(Some(5), probe(true, None)), Status::Alive);
        assert_eq!(status(None, probe(true, Some(6))), Status::Alive);
    }

    #[test]
    fn records_round_trip_and_junk_is_no_record() {
        assert_eq!(decode_record(&encode_record(123_456)), Some(123_456));
        assert_eq!(decode_record(&encode_record(u64::MAX)), Some(u64::MAX));
        assert_eq!(decode_record(b""), None);
        assert_eq!(decode_record(b"12a"), None);
        assert_eq!(decode_record(b"-1"), None);
        assert_eq!(decode_record(b"99999999999999999999"), None);
        assert_eq!(decode_record(b"123456789012345678901"), None);
    }

    proptest::proptest! {
        #[test]
        fn any_record_bytes_decode_without_panicking(b in proptest::collection::vec(proptest::num::u8::ANY, 0..40)) {
            let _ = decode_record(&b);
        }

        #[test]
        fn every_start_time_round_trips(t in proptest::num::u64::ANY) {
            proptest::prop_assert_eq!(decode_record(&encode_record(t)), Some(t));
        }
    }
}
