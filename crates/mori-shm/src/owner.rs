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
//! A region handed to another process (a task result, see [`Shared`](crate::Shared)) names its
//! creator's pid but belongs to the receiver: the receiver rewrites the record as
//! `<start time>@<pid>`, its own, and the rule above then reads that pid instead of the name's.
//! The rewrite is one `fsetxattr`, so a concurrent prune sees either the creator's side or the
//! receiver, and a receiver that dies makes the region an orphan. Between the hand-over and the
//! take-over (in `mirai`, a result waits in its host until it is decoded, at `wait`), the
//! creator's side is its *parent*: handing over writes the parent's `<start time>@<pid>`, so a
//! creator that exits first (a daemon retiring after its last task) leaves the region to the
//! process that started it, which for a pool's local daemons is the host. A creator whose parent
//! is not the receiver (a daemon started by `ssh` on the same machine) still leaves the region to
//! the next prune once that parent is gone.
//!
//! Caveat: pids are per PID namespace. A process in another PID namespace that shares
//! `/dev/shm` (containers run with `--ipc=host`, for instance) names regions with a pid that
//! means nothing here, so its live regions look orphaned to `prune` run outside its namespace,
//! exactly as with R's `prune_shared()`. Do not prune a `/dev/shm` shared across PID namespaces.

use crate::sys::proc::Probe;

/// Longest owner record we accept: a `u64`, `@` and a `u32` in decimal.
const RECORD_MAX: usize = 31;

/// Whether a region's creator is still running.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    /// The creator is running (or cannot be proved dead): the region is kept.
    Alive,
    /// The creator is gone: `prune` removes the region.
    Orphaned,
}

/// An owner record: the owning process's start time and, for a region handed over by its
/// creator, the owner's pid (otherwise the pid in the region's name).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Record {
    /// The owner's start time, clock ticks after boot.
    pub(crate) start_time: u64,
    /// The owner's pid when it is not the creator named in the region's name.
    pub(crate) pid: Option<u32>,
}

/// The owner record for the creator, which started at `start_time` clock ticks after boot.
pub(crate) fn encode_record(start_time: u64) -> Vec<u8> {
    start_time.to_string().into_bytes()
}

/// The owner record for process `pid`, started at `start_time`, which took the region over.
pub(crate) fn encode_handed_record(start_time: u64, pid: u32) -> Vec<u8> {
    format!("{start_time}@{pid}").into_bytes()
}

/// Parse a short decimal number; `None` for anything else.
fn decimal<T: std::str::FromStr>(bytes: &[u8]) -> Option<T> {
    if bytes.is_empty() || !bytes.iter().all(u8::is_ascii_digit) {
        return None;
    }
    std::str::from_utf8(bytes).ok()?.parse().ok()
}

/// Parse an owner record; anything that is not `<start>` or `<start>@<pid>` in short decimal
/// numbers is no record at all.
pub(crate) fn decode_record(bytes: &[u8]) -> Option<Record> {
    if bytes.len() > RECORD_MAX {
        return None;
    }
    match bytes.iter().position(|&b| b == b'@') {
        None => Some(Record {
            start_time: decimal(bytes)?,
            pid: None,
        }),
        Some(at) => Some(Record {
            start_time: decimal(&bytes[..at])?,
            pid: Some(decimal(&bytes[at + 1..])?),
        }),
    }
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
        let plain = |start_time| {
            Some(Record {
                start_time,
                pid: None,
            })
        };
        assert_eq!(decode_record(&encode_record(123_456)), plain(123_456));
        assert_eq!(decode_record(&encode_record(u64::MAX)), plain(u64::MAX));
        assert_eq!(
            decode_record(&encode_handed_record(u64::MAX, u32::MAX)),
            Some(Record {
                start_time: u64::MAX,
                pid: Some(u32::MAX)
            })
        );
        assert_eq!(decode_record(b"12@"), None);
        assert_eq!(decode_record(b"@12"), None);
        assert_eq!(decode_record(b"1@2@3"), None);
        assert_eq!(decode_record(b"1@4294967296"), None);
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
            proptest::prop_assert_eq!(decode_record(&encode_record(t)).map(|r| r.start_time), Some(t));
        }

        #[test]
        fn every_handed_record_round_trips(t in proptest::num::u64::ANY, pid in proptest::num::u32::ANY) {
            proptest::prop_assert_eq!(
                decode_record(&encode_handed_record(t, pid)),
                Some(Record { start_time: t, pid: Some(pid) })
            );
        }
    }
}
