//! Message sizes: the limit is the user's (`Daemons::max_message_bytes`), arguments over it are
//! refused at submit and handed back, results over it resolve with a typed error while the
//! daemon serves on, and payloads past the 4 GiB mark travel both ways when the limit allows.
//!
//! The 1.5 GB round trip runs with the default tests; the 5 GB one (`soak_*`) with
//! `cargo xtask soak`. Each prints the host's and the daemon's peak resident memory.

use std::time::{Duration, Instant};

use mirai::{Daemons, Error, Registry, TaskFn, TaskOptions, task};
use serde::de::{Deserializer, Error as _, Visitor};
use serde::{Deserialize, Serialize, Serializer};

mod common;

/// Bytes encoded as one block (postcard: a length and the bytes, one `memcpy`), as
/// `serde_bytes::ByteBuf` does.
#[derive(Debug, Default, PartialEq, Eq)]
struct Blob(Vec<u8>);

impl Serialize for Blob {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_bytes(&self.0)
    }
}

impl<'de> Deserialize<'de> for Blob {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Bytes;
        impl Visitor<'_> for Bytes {
            type Value = Blob;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("bytes")
            }
            fn visit_bytes<E: serde::de::Error>(self, v: &[u8]) -> Result<Blob, E> {
                let mut out = Vec::new();
                out.try_reserve_exact(v.len()).map_err(E::custom)?;
                out.extend_from_slice(v);
                Ok(Blob(out))
            }
            fn visit_byte_buf<E: serde::de::Error>(self, v: Vec<u8>) -> Result<Blob, E> {
                Ok(Blob(v))
            }
        }
        d.deserialize_byte_buf(Bytes).map_err(D::Error::custom)
    }
}

/// Hands the blob back with its first byte inverted, so the value is the daemon's.
fn mark(mut b: Blob) -> Blob {
    if let Some(first) = b.0.first_mut() {
        *first = !*first;
    }
    b
}

/// `n` zero bytes.
fn zeros(n: u64) -> Blob {
    Blob(vec![0; usize::try_from(n).expect("fits")])
}

fn pid((): ()) -> u32 {
    std::process::id()
}

const MARK: TaskFn<Blob, Blob> = task!(mark);
const ZEROS: TaskFn<u64, Blob> = task!(zeros);
const PID: TaskFn<(), u32> = task!(pid);

fn registry() -> Registry {
    Registry::new().with(&MARK).with(&ZEROS).with(&PID)
}

const LIMIT: u64 = 64 << 10;
const PATIENCE: Duration = Duration::from_secs(60);

/// A chunk of the test pattern; chunk `k` of a blob is this with `k` in its first 8 bytes, so
/// a lost, repeated or reordered chunk is seen.
const CHUNK: usize = 1 << 20;

fn pattern() -> Vec<u8> {
    (0..CHUNK).map(|i| (i.wrapping_mul(31) + 7) as u8).collect()
}

/// A blob of `len` bytes of the pattern, written chunk by chunk (a `memcpy` each, fast in
/// debug builds too).
fn patterned(len: usize) -> Blob {
    let pattern = pattern();
    let mut v = Vec::with_capacity(len);
    let mut k = 0u64;
    while v.len() < len {
        let take = CHUNK.min(len - v.len());
        let start = v.len();
        v.extend_from_slice(&pattern[..take]);
        let tag = k.to_le_bytes();
        let tag_len = tag.len().min(take);
        v[start..start + tag_len].copy_from_slice(&tag[..tag_len]);
        k += 1;
    }
    Blob(v)
}

/// Whether `b` is [`patterned`]`(len)` marked by [`mark`].
fn is_marked_pattern(b: &Blob, len: usize) -> bool {
    if b.0.len() != len {
        return false;
    }
    let pattern = pattern();
    b.0.chunks(CHUNK).enumerate().all(|(k, chunk)| {
        let mut tag = (k as u64).to_le_bytes();
        if k == 0 {
            tag[0] = !tag[0];
        }
        let tag_len = tag.len().min(chunk.len());
        chunk[..tag_len] == tag[..tag_len] && chunk[tag_len..] == pattern[tag_len..chunk.len()]
    })
}

fn gib(bytes: u64) -> f64 {
    bytes as f64 / (1u64 << 30) as f64
}

/// `len` bytes to a daemon and back; prints the time and the peaks.
fn round_trip(len: usize) {
    let pool = Daemons::new().local(1).start().expect("start");
    assert!(
        pool.max_message_bytes() > len as u64 + 16,
        "the default allows it"
    );
    let daemon = pool.submit(&PID, ()).unwrap().wait().unwrap();
    let blob = patterned(len);
    let start = Instant::now();
    let back = pool
        .submit(&MARK, blob)
        .unwrap()
        .wait()
        .expect("the round trip");
    let took = start.elapsed();
    assert!(is_marked_pattern(&back, len), "the bytes came back changed");
    drop(back);
    let (host, daemon_peak) = (
        common::peak_rss("self"),
        common::peak_rss(&daemon.to_string()),
    );
    println!(
        "round trip of {:.2} GiB: {took:.1?}; peak RSS host {:.2} GiB ({:.2}x), daemon {:.2} GiB ({:.2}x)",
        gib(len as u64),
        gib(host),
        host as f64 / len as f64,
        gib(daemon_peak),
        daemon_peak as f64 / len as f64,
    );
    // The daemon is still the same one, connected.
    assert_eq!(pool.submit(&PID, ()).unwrap().wait().unwrap(), daemon);
    assert_eq!(pool.status().cumulative, 1);
}

/// 1.5 GB: past the old 1 GiB frame limit, through a pool left at its defaults.
fn a_1_5_gb_argument_and_result_round_trip() {
    round_trip(1_500_000_000);
}

/// 5 GB: past the 4 GiB mark, both ways.
fn soak_a_5_gb_argument_and_result_round_trip() {
    round_trip(5_000_000_000);
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

fn an_argument_over_the_limit_is_refused_by_every_submit() {
    let pool = Daemons::new()
        .local(1)
        .max_message_bytes(LIMIT)
        .start()
        .unwrap();
    assert_eq!(pool.max_message_bytes(), LIMIT);
    let over = patterned(LIMIT as usize);
    // A format byte and a 3-byte length prefix come with the bytes.
    let size = LIMIT + 4;
    let expected = |e: &Error| matches!(e, Error::ArgumentTooLarge { size: s, limit } if *s == size && *limit == LIMIT);
    let (err, back) = pool.try_submit(&MARK, over).unwrap_err();
    assert!(expected(&err), "{err:?}");
    assert_eq!(
        back.0.len(),
        LIMIT as usize,
        "try_submit hands the argument back"
    );
    let err = pool.submit(&MARK, back).unwrap_err();
    assert!(expected(&err), "{err:?}");
    let over = patterned(LIMIT as usize);
    let err = pool
        .submit_with(&MARK, over, TaskOptions::new().retries(1))
        .unwrap_err();
    assert!(expected(&err), "{err:?}");
    let err = runtime()
        .block_on(pool.submit_async(&MARK, patterned(LIMIT as usize)))
        .unwrap_err();
    assert!(expected(&err), "{err:?}");
    let err = pool
        .everywhere(&MARK, patterned(LIMIT as usize), 1)
        .unwrap_err();
    assert!(expected(&err), "{err:?}");
    assert_eq!(pool.status().submitted, 0, "nothing was queued");
    // Just under the limit goes through, both ways.
    let fits = (LIMIT - 4) as usize;
    let back = pool.submit(&MARK, patterned(fits)).unwrap().wait().unwrap();
    assert!(is_marked_pattern(&back, fits));
}

fn a_result_over_the_limit_is_a_typed_error_and_the_daemon_serves_on() {
    let pool = Daemons::new()
        .local(1)
        .max_message_bytes(LIMIT)
        .start()
        .unwrap();
    let daemon = pool.submit(&PID, ()).unwrap().wait().unwrap();
    let err = pool.submit(&ZEROS, LIMIT).unwrap().wait().unwrap_err();
    assert!(
        matches!(err, Error::ResultTooLarge { size, limit: LIMIT } if size == LIMIT + 4),
        "{err:?}"
    );
    let deadline = Instant::now() + PATIENCE;
    let fits = pool.submit(&ZEROS, LIMIT - 4).unwrap();
    assert_eq!(fits.wait().unwrap().0.len() as u64, LIMIT - 4);
    assert!(Instant::now() < deadline);
    assert_eq!(pool.submit(&PID, ()).unwrap().wait().unwrap(), daemon);
    assert_eq!(pool.local_pids(), [daemon]);
    assert_eq!(pool.status().cumulative, 1, "the daemon never left");
}

fn main() {
    mirai::daemon_main_if_requested(&registry());
    use common::Test;
    common::run(&[
        Test::new(
            "an_argument_over_the_limit_is_refused_by_every_submit",
            an_argument_over_the_limit_is_refused_by_every_submit,
        ),
        Test::new(
            "a_result_over_the_limit_is_a_typed_error_and_the_daemon_serves_on",
            a_result_over_the_limit_is_a_typed_error_and_the_daemon_serves_on,
        ),
        Test::new(
            "a_1_5_gb_argument_and_result_round_trip",
            a_1_5_gb_argument_and_result_round_trip,
        ),
        Test::ignored(
            "soak_a_5_gb_argument_and_result_round_trip",
            soak_a_5_gb_argument_and_result_round_trip,
        ),
    ]);
}
