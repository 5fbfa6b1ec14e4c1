//! Framing: `[u32 LE envelope length | postcard envelope | payload]`, with every limit checked.

use serde::Serialize;
use serde::de::DeserializeOwned;

use super::messages::{FromDaemon, ResultStatus, ToDaemon};
use super::{
    MAX_ENVELOPE, MAX_ERROR_TEXT, MAX_FUNCTION_NAME, MAX_SETTINGS, MAX_TOKEN, MAX_TRACE,
    PAYLOAD_ALIGN,
};

/// Bytes of the envelope length prefix.
const LEN_PREFIX: usize = 4;

/// The default of [`Limits::max_message`]: 16 GiB.
///
/// Multi-gigabyte arguments and results (past the 4 GiB mark too) go through without any
/// setting, while a runaway value (an accidental copy of a whole data set, a length gone wrong)
/// is refused at submit with a typed error naming the limit, instead of being pushed through a
/// socket into a daemon that then runs out of memory. Nothing is allocated up front for a
/// limit: a receive buffer grows with the bytes that actually arrive, so a high limit costs
/// nothing until a message that large is sent.
///
/// ```
/// assert_eq!(mirai_dispatch::protocol::DEFAULT_MAX_MESSAGE, 16 << 30);
/// ```
pub const DEFAULT_MAX_MESSAGE: u64 = 16 << 30;

/// Size limits, which the dispatcher and its daemons share: the dispatcher sends its own to
/// every daemon in [`Init::max_message`](super::Init::max_message).
///
/// A message is a task's argument or a result's value (the frame's payload); the frame around it
/// adds at most [`FRAME_OVERHEAD`] bytes of envelope.
///
/// ```
/// use mirai_dispatch::protocol::{FRAME_OVERHEAD, Limits};
/// let limits = Limits::new(1 << 20);
/// assert_eq!(limits.max_message, 1 << 20);
/// assert_eq!(limits.max_frame(), (1 << 20) + FRAME_OVERHEAD);
/// assert_eq!(Limits::default().max_message, mirai_dispatch::protocol::DEFAULT_MAX_MESSAGE);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Largest payload (a task's argument or a result's value) accepted, in bytes.
    pub max_message: u64,
}

/// The most bytes a frame holds besides its payload: the envelope length prefix and the
/// largest envelope ([`MAX_ENVELOPE`]).
pub const FRAME_OVERHEAD: u64 = (LEN_PREFIX + MAX_ENVELOPE) as u64;

impl Limits {
    /// Messages of at most `max_message` bytes.
    pub fn new(max_message: u64) -> Self {
        Self { max_message }
    }

    /// The largest whole frame (envelope and payload) accepted, in bytes.
    pub fn max_frame(&self) -> u64 {
        self.max_message.saturating_add(FRAME_OVERHEAD)
    }
}

impl Default for Limits {
    /// Messages up to [`DEFAULT_MAX_MESSAGE`].
    fn default() -> Self {
        Self::new(DEFAULT_MAX_MESSAGE)
    }
}

/// Why a frame could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    /// Not even the length prefix.
    #[error("frame of {len} bytes is shorter than its envelope length prefix")]
    Short {
        /// The frame's length.
        len: usize,
    },
    /// The frame exceeds [`Limits::max_frame`].
    #[error("frame of {len} bytes exceeds the {max}-byte limit")]
    FrameTooLarge {
        /// The frame's length.
        len: u64,
        /// The limit.
        max: u64,
    },
    /// The payload exceeds [`Limits::max_message`].
    #[error("payload of {len} bytes exceeds the {max}-byte message limit")]
    PayloadTooLarge {
        /// The payload's length.
        len: u64,
        /// The limit.
        max: u64,
    },
    /// The envelope length exceeds [`MAX_ENVELOPE`].
    #[error("envelope of {len} bytes exceeds the {max}-byte limit")]
    EnvelopeTooLarge {
        /// The claimed length.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// The envelope length runs past the frame.
    #[error("envelope claims {claimed} bytes but the frame holds {available}")]
    Truncated {
        /// The claimed length.
        claimed: usize,
        /// What follows the prefix.
        available: usize,
    },
    /// The envelope is not a valid message.
    #[error("malformed envelope: {0}")]
    Envelope(#[from] postcard::Error),
    /// The envelope decoded with bytes left over.
    #[error("{0} stray bytes after the envelope")]
    StrayBytes(usize),
    /// A message that carries no payload had one.
    #[error("{kind} message carries {len} unexpected payload bytes")]
    UnexpectedPayload {
        /// The message's kind.
        kind: &'static str,
        /// The payload's length.
        len: usize,
    },
    /// A field exceeds its limit.
    #[error("{field} of {len} bytes exceeds the {max}-byte limit")]
    FieldTooLarge {
        /// Which field.
        field: &'static str,
        /// Its length.
        len: usize,
        /// The limit.
        max: usize,
    },
}

/// Why a message could not be encoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EncodeError {
    /// Postcard refused the value.
    #[error("cannot encode envelope: {0}")]
    Envelope(#[from] postcard::Error),
    /// A field (or the whole envelope) exceeds its limit; the peer would refuse it.
    #[error("{field} of {len} bytes exceeds the {max}-byte limit")]
    FieldTooLarge {
        /// Which field.
        field: &'static str,
        /// Its length.
        len: usize,
        /// The limit.
        max: usize,
    },
}

fn check_field(
    field: &'static str,
    len: usize,
    max: usize,
) -> Result<(), (&'static str, usize, usize)> {
    if len > max {
        Err((field, len, max))
    } else {
        Ok(())
    }
}

/// Field limits shared by both directions; `Err` names the offending field.
trait Fields {
    fn check_fields(&self) -> Result<(), (&'static str, usize, usize)>;
    fn carries_payload(&self) -> bool;
    fn kind(&self) -> &'static str;
}

impl Fields for ToDaemon {
    fn check_fields(&self) -> Result<(), (&'static str, usize, usize)> {
        match self {
            Self::Init(init) => check_field("settings", init.settings.len(), MAX_SETTINGS),
            Self::Task {
                function, trace, ..
            } => {
                check_field("function name", function.len(), MAX_FUNCTION_NAME)?;
                check_field(
                    "trace context",
                    trace.as_ref().map_or(0, Vec::len),
                    MAX_TRACE,
                )
            }
            _ => Ok(()),
        }
    }

    fn carries_payload(&self) -> bool {
        matches!(self, Self::Task { .. })
    }

    fn kind(&self) -> &'static str {
        Self::kind(self)
    }
}

impl Fields for FromDaemon {
    fn check_fields(&self) -> Result<(), (&'static str, usize, usize)> {
        match self {
            Self::Hello(h) => check_field("join token", h.token.len(), MAX_TOKEN),
            Self::Result {
                status: ResultStatus::Err(e),
                ..
            } => {
                check_field("error message", e.message.len(), MAX_ERROR_TEXT)?;
                check_field("backtrace", e.backtrace.len(), MAX_ERROR_TEXT)
            }
            _ => Ok(()),
        }
    }

    fn carries_payload(&self) -> bool {
        matches!(
            self,
            Self::Result {
                status: ResultStatus::Ok,
                ..
            }
        )
    }

    fn kind(&self) -> &'static str {
        Self::kind(self)
    }
}

/// Lets postcard append to a caller's buffer in place.
struct Append<'a>(&'a mut Vec<u8>);

impl Extend<u8> for Append<'_> {
    fn extend<I: IntoIterator<Item = u8>>(&mut self, iter: I) {
        self.0.extend(iter);
    }
}

fn encode<M: Serialize + Fields>(msg: &M, out: &mut Vec<u8>) -> Result<(), EncodeError> {
    msg.check_fields()
        .map_err(|(field, len, max)| EncodeError::FieldTooLarge { field, len, max })?;
    let start = out.len();
    out.extend_from_slice(&[0; LEN_PREFIX]);
    if let Err(e) = postcard::to_extend(msg, Append(out)) {
        out.truncate(start);
        return Err(EncodeError::Envelope(e));
    }
    if msg.carries_payload() {
        // Zeros up to the next multiple of PAYLOAD_ALIGN from the start of `out`, where the
        // shells put the message's transport header: the payload then starts aligned in the
        // receiver's message buffer, and its numbers can be read where they lie.
        let pad = out.len().next_multiple_of(PAYLOAD_ALIGN) - out.len();
        out.resize(out.len() + pad, 0);
    }
    let len = out.len() - start - LEN_PREFIX;
    if len > MAX_ENVELOPE {
        out.truncate(start);
        return Err(EncodeError::FieldTooLarge {
            field: "envelope",
            len,
            max: MAX_ENVELOPE,
        });
    }
    out[start..start + LEN_PREFIX].copy_from_slice(&(len as u32).to_le_bytes());
    Ok(())
}

fn decode<'a, M: DeserializeOwned + Fields>(
    frame: &'a [u8],
    limits: &Limits,
) -> Result<(M, &'a [u8]), DecodeError> {
    if frame.len() as u64 > limits.max_frame() {
        return Err(DecodeError::FrameTooLarge {
            len: frame.len() as u64,
            max: limits.max_frame(),
        });
    }
    let Some((prefix, rest)) = frame.split_first_chunk::<LEN_PREFIX>() else {
        return Err(DecodeError::Short { len: frame.len() });
    };
    let claimed = u32::from_le_bytes(*prefix) as usize;
    if claimed > MAX_ENVELOPE {
        return Err(DecodeError::EnvelopeTooLarge {
            len: claimed,
            max: MAX_ENVELOPE,
        });
    }
    if claimed > rest.len() {
        return Err(DecodeError::Truncated {
            claimed,
            available: rest.len(),
        });
    }
    let (envelope, payload) = rest.split_at(claimed);
    let (msg, stray) = postcard::take_from_bytes::<M>(envelope)?;
    // Only the alignment padding of a message with a payload may follow the envelope: fewer
    // than PAYLOAD_ALIGN zeros.
    let padding =
        msg.carries_payload() && stray.len() < PAYLOAD_ALIGN && stray.iter().all(|&b| b == 0);
    if !stray.is_empty() && !padding {
        return Err(DecodeError::StrayBytes(stray.len()));
    }
    msg.check_fields()
        .map_err(|(field, len, max)| DecodeError::FieldTooLarge { field, len, max })?;
    if !payload.is_empty() && !msg.carries_payload() {
        return Err(DecodeError::UnexpectedPayload {
            kind: msg.kind(),
            len: payload.len(),
        });
    }
    if payload.len() as u64 > limits.max_message {
        return Err(DecodeError::PayloadTooLarge {
            len: payload.len() as u64,
            max: limits.max_message,
        });
    }
    Ok((msg, payload))
}

/// The variant tag of [`ToDaemon::Task`] (see [`ToDaemon::is_task`]).
const TASK_TAG: u8 = 2;

impl ToDaemon {
    /// Whether `frame` (as [`ToDaemon::decode`] takes it) holds a task message, read from the
    /// envelope's first byte alone: postcard writes an enum's variant index first, as a varint,
    /// and every variant here fits one byte. A reader sorting what it received can then leave
    /// tasks undecoded until it runs them; this is no validation (a malformed frame may say
    /// `true`, and its full decode then fails).
    ///
    /// ```
    /// use mirai_dispatch::TaskId;
    /// use mirai_dispatch::protocol::ToDaemon;
    /// let mut frame = Vec::new();
    /// ToDaemon::Recall { task: TaskId(1) }.encode(&mut frame)?;
    /// assert!(!ToDaemon::is_task(&frame));
    /// # Ok::<(), mirai_dispatch::protocol::EncodeError>(())
    /// ```
    pub fn is_task(frame: &[u8]) -> bool {
        frame.get(LEN_PREFIX) == Some(&TASK_TAG)
    }

    /// Appends `[envelope length | envelope]` to `out`; the payload (for [`ToDaemon::Task`])
    /// goes after it on the wire, written by the caller from its own buffer. For a message that
    /// carries a payload the envelope ends in zeros up to a multiple of [`PAYLOAD_ALIGN`]
    /// counted from the start of `out`.
    pub fn encode(&self, out: &mut Vec<u8>) -> Result<(), EncodeError> {
        encode(self, out)
    }

    /// Decodes a frame into the message and its payload (a slice of `frame`).
    ///
    /// ```
    /// use mirai_dispatch::protocol::{DecodeError, Limits, ToDaemon};
    /// assert_eq!(ToDaemon::decode(&[1, 0], &Limits::default()), Err(DecodeError::Short { len: 2 }));
    /// ```
    pub fn decode<'a>(frame: &'a [u8], limits: &Limits) -> Result<(Self, &'a [u8]), DecodeError> {
        decode(frame, limits)
    }
}

impl FromDaemon {
    /// Appends `[envelope length | envelope]` to `out`; the value (for an `Ok`
    /// [`FromDaemon::Result`]) goes after it on the wire, written by the caller, from a multiple
    /// of [`PAYLOAD_ALIGN`] counted from the start of `out`.
    pub fn encode(&self, out: &mut Vec<u8>) -> Result<(), EncodeError> {
        encode(self, out)
    }

    /// Decodes a frame into the message and its payload (a slice of `frame`).
    ///
    /// ```
    /// use mirai_dispatch::protocol::{FromDaemon, Limits};
    /// let mut frame = Vec::new();
    /// FromDaemon::Heartbeat.encode(&mut frame).unwrap();
    /// assert_eq!(FromDaemon::decode(&frame, &Limits::default()).unwrap().0, FromDaemon::Heartbeat);
    /// frame.push(0); // a heartbeat carries no payload
    /// assert!(FromDaemon::decode(&frame, &Limits::default()).is_err());
    /// ```
    pub fn decode<'a>(frame: &'a [u8], limits: &Limits) -> Result<(Self, &'a [u8]), DecodeError> {
        decode(frame, limits)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::daemon::ExitReason;
    use crate::protocol::{Hello, Init};
    use crate::task::{DaemonId, TaskError, TaskId};
    use proptest::prelude::*;

    fn frame_of(msg: &ToDaemon, payload: &[u8]) -> Vec<u8> {
        let mut f = Vec::new();
        msg.encode(&mut f).unwrap();
        f.extend_from_slice(payload);
        f
    }

    #[test]
    fn rejects_a_frame_over_the_limit_before_reading_it() {
        let task = ToDaemon::Task {
            task: TaskId(1),
            function: "f".into(),
            trace: None,
            rng_seed: None,
            attempt: 0,
        };
        let f = frame_of(&task, &vec![0; 10 + FRAME_OVERHEAD as usize]);
        assert!(matches!(
            ToDaemon::decode(&f, &Limits::new(10)),
            Err(DecodeError::FrameTooLarge { .. })
        ));
    }

    #[test]
    fn a_payload_is_held_to_the_message_limit_exactly() {
        let task = ToDaemon::Task {
            task: TaskId(1),
            function: "f".into(),
            trace: None,
            rng_seed: None,
            attempt: 0,
        };
        let f = frame_of(&task, &[7; 11]);
        assert_eq!(
            ToDaemon::decode(&f, &Limits::new(10)),
            Err(DecodeError::PayloadTooLarge { len: 11, max: 10 })
        );
        assert_eq!(ToDaemon::decode(&f, &Limits::new(11)).unwrap().1, &[7; 11]);
        let mut result = Vec::new();
        FromDaemon::Result {
            task: TaskId(1),
            status: ResultStatus::Ok,
            last: false,
        }
        .encode(&mut result)
        .unwrap();
        result.extend_from_slice(&[1; 5]);
        assert!(matches!(
            FromDaemon::decode(&result, &Limits::new(4)),
            Err(DecodeError::PayloadTooLarge { len: 5, max: 4 })
        ));
    }

    #[test]
    fn rejects_envelope_lengths_past_the_frame_or_the_cap() {
        let mut f = frame_of(&ToDaemon::Exit, &[]);
        f[0] = 200;
        assert!(matches!(
            ToDaemon::decode(&f, &Limits::default()),
            Err(DecodeError::Truncated { claimed: 200, .. })
        ));
        f[..4].copy_from_slice(&u32::MAX.to_le_bytes());
        assert!(matches!(
            ToDaemon::decode(&f, &Limits::default()),
            Err(DecodeError::EnvelopeTooLarge { .. })
        ));
    }

    #[test]
    fn rejects_oversized_fields_both_ways() {
        let msg = ToDaemon::Task {
            task: TaskId(1),
            function: "f".repeat(MAX_FUNCTION_NAME + 1),
            trace: None,
            rng_seed: None,
            attempt: 0,
        };
        assert!(matches!(
            msg.encode(&mut Vec::new()),
            Err(EncodeError::FieldTooLarge {
                field: "function name",
                ..
            })
        ));
        // A hand-built envelope with the long name is refused by the decoder too.
        let envelope = postcard::to_allocvec(&msg).unwrap();
        let mut f = (envelope.len() as u32).to_le_bytes().to_vec();
        f.extend_from_slice(&envelope);
        assert!(matches!(
            ToDaemon::decode(&f, &Limits::default()),
            Err(DecodeError::FieldTooLarge {
                field: "function name",
                ..
            })
        ));
    }

    #[test]
    fn the_task_tag_is_the_first_envelope_byte_of_a_task_and_of_nothing_else() {
        let task = ToDaemon::Task {
            task: TaskId(7),
            function: "f".into(),
            trace: None,
            rng_seed: Some(1),
            attempt: 0,
        };
        assert!(ToDaemon::is_task(&frame_of(&task, &[1, 2])));
        for other in [
            ToDaemon::Cancel { task: TaskId(2) },
            ToDaemon::Recall { task: TaskId(2) },
            ToDaemon::Heartbeat,
            ToDaemon::Exit,
            ToDaemon::Refused(crate::protocol::RefuseReason::Token),
        ] {
            assert!(!ToDaemon::is_task(&frame_of(&other, &[])), "{other:?}");
        }
        assert!(!ToDaemon::is_task(&[]));
    }

    #[test]
    fn rejects_stray_bytes_inside_the_envelope() {
        let mut envelope = postcard::to_allocvec(&ToDaemon::Exit).unwrap();
        envelope.push(0);
        let mut f = (envelope.len() as u32).to_le_bytes().to_vec();
        f.extend_from_slice(&envelope);
        assert_eq!(
            ToDaemon::decode(&f, &Limits::default()),
            Err(DecodeError::StrayBytes(1))
        );
    }

    #[test]
    fn a_payload_starts_aligned_and_only_zero_padding_is_accepted() {
        let task = ToDaemon::Task {
            task: TaskId(9),
            function: "f".into(),
            trace: None,
            rng_seed: None,
            attempt: 0,
        };
        for header in 0..PAYLOAD_ALIGN {
            let mut f = vec![7u8; header];
            task.encode(&mut f).unwrap();
            assert_eq!(f.len() % PAYLOAD_ALIGN, 0, "after {header} header bytes");
            f.extend_from_slice(b"xyz");
            let (back, payload) = ToDaemon::decode(&f[header..], &Limits::default()).unwrap();
            assert_eq!((back, payload), (task.clone(), &b"xyz"[..]));
        }
        let envelope = postcard::to_allocvec(&task).unwrap();
        let with = |pad: &[u8]| {
            let mut f = ((envelope.len() + pad.len()) as u32).to_le_bytes().to_vec();
            f.extend_from_slice(&envelope);
            f.extend_from_slice(pad);
            ToDaemon::decode(&f, &Limits::default()).map(|(m, _)| m)
        };
        assert_eq!(with(&[0; 15]), Ok(task.clone()));
        assert_eq!(with(&[0; 16]), Err(DecodeError::StrayBytes(16)));
        assert_eq!(with(&[0, 1]), Err(DecodeError::StrayBytes(2)));
    }

    #[test]
    fn only_tasks_and_ok_results_carry_payloads() {
        let f = frame_of(&ToDaemon::Cancel { task: TaskId(1) }, &[1]);
        assert!(matches!(
            ToDaemon::decode(&f, &Limits::default()),
            Err(DecodeError::UnexpectedPayload {
                kind: "cancel",
                len: 1
            })
        ));
        let mut f = Vec::new();
        FromDaemon::Result {
            task: TaskId(1),
            status: ResultStatus::Interrupted,
            last: false,
        }
        .encode(&mut f)
        .unwrap();
        f.push(9);
        assert!(FromDaemon::decode(&f, &Limits::default()).is_err());
    }

    fn bytes(max: usize) -> impl Strategy<Value = Vec<u8>> {
        proptest::collection::vec(any::<u8>(), 0..max)
    }

    fn to_daemon() -> impl Strategy<Value = ToDaemon> {
        prop_oneof![
            (
                any::<u64>(),
                any::<u64>(),
                any::<u64>(),
                any::<u64>(),
                bytes(64)
            )
                .prop_map(|(d, r, m, h, s)| ToDaemon::Init(Init {
                    daemon: DaemonId(d),
                    rng_stream: r,
                    max_message: m,
                    heartbeat_ms: h,
                    settings: s,
                })),
            (
                any::<u64>(),
                "[a-z_]{0,40}",
                proptest::option::of(bytes(64)),
                any::<Option<u64>>(),
                any::<u32>()
            )
                .prop_map(|(t, function, trace, rng_seed, attempt)| ToDaemon::Task {
                    task: TaskId(t),
                    function,
                    trace,
                    rng_seed,
                    attempt,
                }),
            any::<u64>().prop_map(|t| ToDaemon::Cancel { task: TaskId(t) }),
            any::<u64>().prop_map(|t| ToDaemon::Recall { task: TaskId(t) }),
            Just(ToDaemon::Heartbeat),
            Just(ToDaemon::Exit),
            any::<u16>().prop_map(|v| ToDaemon::Refused(crate::protocol::RefuseReason::Version(v))),
        ]
    }

    fn from_daemon() -> impl Strategy<Value = FromDaemon> {
        let status = prop_oneof![
            Just(ResultStatus::Ok),
            Just(ResultStatus::Interrupted),
            Just(ResultStatus::NotStarted),
            (".{0,40}", ".{0,40}").prop_map(|(message, backtrace)| ResultStatus::Err(TaskError {
                message,
                backtrace
            })),
        ];
        prop_oneof![
            (any::<u16>(), any::<u64>(), bytes(64)).prop_map(|(version, launch_id, token)| {
                FromDaemon::Hello(Hello {
                    version,
                    launch_id,
                    token,
                })
            }),
            (any::<u64>(), status, any::<bool>()).prop_map(|(t, status, last)| {
                FromDaemon::Result {
                    task: TaskId(t),
                    status,
                    last,
                }
            }),
            Just(FromDaemon::Heartbeat),
            prop_oneof![
                Just(ExitReason::HostGone),
                Just(ExitReason::IdleTime),
                Just(ExitReason::WallTime),
                Just(ExitReason::MaxTasks),
            ]
            .prop_map(|reason| FromDaemon::Retiring { reason }),
        ]
    }

    proptest! {
        #[test]
        fn to_daemon_round_trips(msg in to_daemon(), payload in bytes(256)) {
            let payload = if msg.carries_payload() { payload } else { Vec::new() };
            let f = frame_of(&msg, &payload);
            let (back, body) = ToDaemon::decode(&f, &Limits::default()).unwrap();
            prop_assert_eq!(back, msg);
            prop_assert_eq!(body, &payload[..]);
        }

        #[test]
        fn from_daemon_round_trips(msg in from_daemon(), payload in bytes(256)) {
            let payload = if msg.carries_payload() { payload } else { Vec::new() };
            let mut f = Vec::new();
            msg.encode(&mut f).unwrap();
            f.extend_from_slice(&payload);
            let (back, body) = FromDaemon::decode(&f, &Limits::default()).unwrap();
            prop_assert_eq!(back, msg);
            prop_assert_eq!(body, &payload[..]);
        }

        #[test]
        fn arbitrary_bytes_never_panic(f in bytes(512)) {
            let limits = Limits::new(300);
            let _ = ToDaemon::decode(&f, &limits);
            let _ = FromDaemon::decode(&f, &limits);
        }

        #[test]
        fn arbitrary_envelopes_never_panic(envelope in bytes(128), payload in bytes(16)) {
            let mut f = (envelope.len() as u32).to_le_bytes().to_vec();
            f.extend_from_slice(&envelope);
            f.extend_from_slice(&payload);
            if let Ok((msg, body)) = ToDaemon::decode(&f, &Limits::default()) {
                // Whatever decodes re-encodes to a frame that decodes the same.
                let again = frame_of(&msg, body);
                prop_assert_eq!(ToDaemon::decode(&again, &Limits::default()).unwrap().0, msg);
            }
            let _ = FromDaemon::decode(&f, &Limits::default());
        }
    }
}
