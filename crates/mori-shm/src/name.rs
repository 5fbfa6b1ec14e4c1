//! OS names of regions: `/mori_<pid hex>_<counter hex>`, as R's mori 0.2.2 makes them.
//!
//! The first hex run is the creator's pid, which is what `prune` (ours and R's) reads to decide
//! whether the creator is still alive. The counter starts at a per-process pseudo-random value
//! so that a process that inherits a crashed process's pid does not regenerate the names of its
//! orphans, and increments atomically, so threads never share a name.

use std::sync::OnceLock;
use std::sync::atomic::{AtomicU32, Ordering};

use mori_format::Identifier;

/// The file-name prefix of every region under `/dev/shm`.
pub(crate) const FILE_PREFIX: &str = "mori_";

static COUNTER: OnceLock<AtomicU32> = OnceLock::new();

/// The well-known splitmix64 finaliser: spreads any 64-bit seed over all bits.
fn splitmix64(seed: u64) -> u64 {
    let mut z = seed.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// A per-process starting counter from the monotonic clock, the pid and a stack address.
fn initial_counter() -> u32 {
    let now = rustix::time::clock_gettime(rustix::time::ClockId::Monotonic);
    let clock = (now.tv_sec as u64)
        .wrapping_mul(1_000_000_000)
        .wrapping_add(now.tv_nsec as u64);
    let local = 0u8;
    let address = std::ptr::addr_of!(local) as usize as u64;
    let seed = clock ^ (u64::from(std::process::id()) << 32) ^ address.rotate_left(17);
    (splitmix64(seed) >> 32) as u32
}

/// The next region file name of this process: `mori_<pid hex>_<counter hex>`.
pub(crate) fn next_file_name() -> String {
    let counter = COUNTER
        .get_or_init(|| AtomicU32::new(initial_counter()))
        .fetch_add(1, Ordering::Relaxed);
    format!("{FILE_PREFIX}{:x}_{counter:x}", std::process::id())
}

/// The pid recorded in a region file name, if `file_name` (without the leading `/`) is one:
/// `mori_<hex>_<hex>` by R's grammar, short enough for R to accept.
pub(crate) fn creator_pid(file_name: &str) -> Option<u32> {
    if !file_name.starts_with(FILE_PREFIX) {
        return None;
    }
    let id = Identifier::parse(&format!("/{file_name}")).ok()?;
    id.path.is_empty().then_some(id.region.pid)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_carry_our_pid_and_never_repeat() {
        let a = next_file_name();
        let b = next_file_name();
        assert_ne!(a, b);
        assert_eq!(creator_pid(&a), Some(std::process::id()));
        assert!(a.starts_with(&format!("mori_{:x}_", std::process::id())));
        assert!(a.len() < mori_format::path::MAX_NAME - 1);
    }

    #[test]
    fn only_r_shaped_names_are_regions() {
        assert_eq!(creator_pid("mori_4d1b_1"), Some(0x4d1b));
        assert_eq!(creator_pid("mori_4D1B_1"), None);
        assert_eq!(creator_pid("mori_4d1b"), None);
        assert_eq!(creator_pid("mori__1"), None);
        assert_eq!(creator_pid("mori_1_"), None);
        assert_eq!(creator_pid("mori_1_2_3"), None);
        assert_eq!(creator_pid("mori_1_2[1]"), None);
        assert_eq!(creator_pid(".mori_1_2"), None);
        assert_eq!(creator_pid("mori_ffffffffff_1"), None);
        assert_eq!(creator_pid("mori_1_ffffffffffffffffffffff"), None);
    }

    #[test]
    fn splitmix_spreads_neighbouring_seeds() {
        assert_ne!(splitmix64(1) >> 32, splitmix64(2) >> 32);
    }

    proptest::proptest! {
        #[test]
        fn any_file_name_is_classified_without_panicking(s in ".{0,40}") {
            let _ = creator_pid(&s);
        }
    }
}
