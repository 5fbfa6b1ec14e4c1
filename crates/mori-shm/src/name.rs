//! OS names of regions: `/mori_<pid hex>_<random hex>`, in the shape R's mori 0.2.2 makes them.
//!
//! The first hex run is the creator's pid, which is what `prune` (ours and R's) reads to decide
//! whether the creator is still alive. The second run, a counter in R's mori, is here 32 fresh
//! bits from the operating system's CSPRNG for every name: `/dev/shm` is world-readable, so
//! anyone can see the names a process has used, and a name that followed from them (R's counter
//! increments) could be created first by another user, to make our exclusive creation fail.
//! Fresh random bits cannot be predicted, and creation (`region::create`) retries a name that
//! exists with another one. The run stays at most 8 hex digits: R's mori and `mori-format`
//! parse it as a 32-bit value.

use mori_format::Identifier;

/// The file-name prefix of every region under `/dev/shm`.
pub(crate) const FILE_PREFIX: &str = "mori_";

/// The file name (without the leading `/`) of region `counter` of this process.
pub(crate) fn file_name(counter: u32) -> String {
    format!("{FILE_PREFIX}{:x}_{counter:x}", std::process::id())
}

/// A new region file name of this process, `mori_<pid hex>_<random hex>`, whose random part
/// comes from the operating system's CSPRNG.
pub(crate) fn next_file_name() -> std::io::Result<String> {
    let counter = getrandom::u32().map_err(std::io::Error::other)?;
    Ok(file_name(counter))
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
    fn names_carry_our_pid_and_a_random_part() {
        let a = next_file_name().unwrap();
        let b = next_file_name().unwrap();
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

    /// R's counter (and ours before) made each name the previous one plus one, so every future
    /// name followed from one seen in `/dev/shm`. Fresh random parts never do, in practice: 64
    /// consecutive names all off by one from their predecessor by chance is 2^-2016 likely, and
    /// any one pair is 2^-32 likely.
    #[test]
    fn the_next_name_does_not_follow_from_the_last() {
        let counters: Vec<u32> = (0..64)
            .map(|_| {
                let name = next_file_name().unwrap();
                u32::from_str_radix(name.rsplit('_').next().unwrap(), 16).unwrap()
            })
            .collect();
        let sequential = counters
            .windows(2)
            .filter(|w| w[1] == w[0].wrapping_add(1))
            .count();
        assert!(
            sequential <= 1,
            "{sequential} sequential names: {counters:x?}"
        );
        let distinct: std::collections::HashSet<_> = counters.iter().collect();
        assert!(distinct.len() >= 63, "{counters:x?}");
    }

    proptest::proptest! {
        #[test]
        fn any_file_name_is_classified_without_panicking(s in ".{0,40}") {
            let _ = creator_pid(&s);
        }
    }
}
