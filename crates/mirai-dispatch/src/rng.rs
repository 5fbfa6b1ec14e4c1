//! Reproducible random-number streams, one per task, independent of which daemon runs it.
//!
//! With a dispatcher seed `s`, the task with sequence number `n` (0 for the first accepted ordinary
//! submission, counting neither `everywhere` copies nor refused submissions) gets the stream seed
//! `splitmix64(s + (n + 1) * 0x9E37_79B9_7F4A_7C15)` (wrapping arithmetic), i.e. the `(n + 1)`-th
//! output of a SplitMix64 generator seeded with `s`, computed directly. The daemon seeds its
//! generator for that task from this value, so results are identical whatever the number of
//! daemons or the order they run tasks in.
//!
//! Daemons also get a per-connection stream in their init message, derived the same way from
//! `s ^ DAEMON_DOMAIN` and the connection's sequence number, so task and daemon streams differ.

/// The SplitMix64 increment (the golden ratio in 64-bit fixed point).
pub const GAMMA: u64 = 0x9E37_79B9_7F4A_7C15;

/// Mixed into the seed for per-daemon streams so they never equal per-task streams.
pub const DAEMON_DOMAIN: u64 = 0xD1B5_4A32_D192_ED03;

/// The SplitMix64 output function (Steele, Lea and Flood 2014).
///
/// ```
/// // The first output of SplitMix64 seeded with 0, a published test vector.
/// assert_eq!(mirai_dispatch::rng::mix(mirai_dispatch::rng::GAMMA), 0xE220_A839_7B1D_CDAF);
/// ```
pub fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// The stream seed of the task numbered `sequence` by a dispatcher seeded with `seed`.
///
/// ```
/// use mirai_dispatch::rng::stream_seed;
/// assert_eq!(stream_seed(42, 3), stream_seed(42, 3));
/// assert_ne!(stream_seed(42, 3), stream_seed(42, 4));
/// assert_ne!(stream_seed(42, 3), stream_seed(43, 3));
/// ```
pub fn stream_seed(seed: u64, sequence: u64) -> u64 {
    mix(seed.wrapping_add(sequence.wrapping_add(1).wrapping_mul(GAMMA)))
}

/// The init-message stream of the daemon connection numbered `connection` (0-based).
///
/// ```
/// use mirai_dispatch::rng::{daemon_stream, stream_seed};
/// assert_ne!(daemon_stream(42, 0), stream_seed(42, 0));
/// ```
pub fn daemon_stream(seed: u64, connection: u64) -> u64 {
    stream_seed(seed ^ DAEMON_DOMAIN, connection)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The same values as stepping a SplitMix64 generator one output at a time.
    #[test]
    fn stream_seed_is_the_nth_splitmix_output() {
        let seed = 0x1234_5678_9ABC_DEF0_u64;
        let mut state = seed;
        for n in 0..100 {
            state = state.wrapping_add(GAMMA);
            assert_eq!(stream_seed(seed, n), mix(state));
        }
    }

    /// Published SplitMix64 outputs for seed 1234567.
    #[test]
    fn matches_reference_vectors() {
        assert_eq!(stream_seed(1_234_567, 0), 6_457_827_717_110_365_317);
        assert_eq!(stream_seed(1_234_567, 1), 3_203_168_211_198_807_973);
        assert_eq!(stream_seed(1_234_567, 2), 9_817_491_932_198_370_423);
    }
}
