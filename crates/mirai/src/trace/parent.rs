//! The W3C `traceparent` value, parsed and formatted without allocation.
//!
//! Why its own module: the trace context comes from a peer (or a caller's option), so it is
//! untrusted input; a pure parser with a size limit and typed errors can be fuzzed and
//! property-tested on its own, apart from the spans that use it.
//!
//! Format (W3C Trace Context, level 1): `VV-TTTTTTTTTTTTTTTTTTTTTTTTTTTTTTTT-SSSSSSSSSSSSSSSS-FF`,
//! lowercase hex: a version, a 16-byte trace id, an 8-byte parent span id and 8 bits of flags.
//! Version `00` is exactly 55 bytes; a later version may append `-...` after the flags, which
//! is ignored as the specification asks; version `ff` is invalid.

use std::fmt;
use std::str::FromStr;

/// Longest `traceparent` accepted, in bytes: a version `00` value is 55, and later versions
/// may only append fields; anything past this is refused before it is looked at.
pub const MAX_TRACEPARENT: usize = 256;

/// The length of a version `00` `traceparent`.
const LEN_V0: usize = 55;

/// A W3C `traceparent`: which trace a span belongs to and which span is its parent.
///
/// It is what crosses to the daemon with each task (as text, in the task's trace field), what
/// [`TaskOptions::trace_parent`](crate::TaskOptions::trace_parent) takes, and what
/// [`current`](crate::trace::current) returns.
///
/// ```
/// use mirai::trace::TraceParent;
///
/// let text = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
/// let parent: TraceParent = text.parse()?;
/// assert_eq!(parent.trace_id()[0], 0x4b);
/// assert_eq!(parent.span_id(), [0x00, 0xf0, 0x67, 0xaa, 0x0b, 0xa9, 0x02, 0xb7]);
/// assert!(parent.sampled());
/// assert_eq!(parent.to_string(), text);
/// # Ok::<(), mirai::trace::TraceParentError>(())
/// ```
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct TraceParent {
    trace_id: [u8; 16],
    span_id: [u8; 8],
    flags: u8,
}

/// Why a `traceparent` was refused.
///
/// ```
/// use mirai::trace::{TraceParent, TraceParentError};
///
/// let zero = "00-00000000000000000000000000000000-00f067aa0ba902b7-01";
/// assert_eq!(zero.parse::<TraceParent>(), Err(TraceParentError::ZeroTraceId));
/// assert!(matches!(TraceParent::parse(b"00-4bf9"), Err(TraceParentError::Length { len: 7 })));
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum TraceParentError {
    /// Shorter than 55 bytes, longer than a version `00` value may be, or longer than
    /// [`MAX_TRACEPARENT`].
    #[error("a traceparent of {len} bytes (version 00 has 55, at most {MAX_TRACEPARENT} are read)")]
    Length {
        /// The length seen, in bytes.
        len: usize,
    },
    /// A byte that must be a lowercase hexadecimal digit is not one.
    #[error("byte {at} of the traceparent is not a lowercase hex digit")]
    NotHex {
        /// Its offset.
        at: usize,
    },
    /// A byte that must be `-` is not one.
    #[error("byte {at} of the traceparent is not the '-' separator")]
    Separator {
        /// Its offset.
        at: usize,
    },
    /// Version `ff`, which the specification forbids.
    #[error("traceparent version ff is invalid")]
    Version,
    /// The trace id is all zeros, which the specification forbids.
    #[error("the traceparent's trace id is all zeros")]
    ZeroTraceId,
    /// The parent span id is all zeros, which the specification forbids.
    #[error("the traceparent's span id is all zeros")]
    ZeroSpanId,
}

impl TraceParent {
    /// A context from its parts; all-zero ids are invalid.
    ///
    /// ```
    /// use mirai::trace::{TraceParent, TraceParentError};
    ///
    /// let parent = TraceParent::new([1; 16], [2; 8], 0x01)?;
    /// assert_eq!(parent.to_string(), format!("00-{}-{}-01", "01".repeat(16), "02".repeat(8)));
    /// assert_eq!(TraceParent::new([1; 16], [0; 8], 1), Err(TraceParentError::ZeroSpanId));
    /// # Ok::<(), TraceParentError>(())
    /// ```
    pub fn new(trace_id: [u8; 16], span_id: [u8; 8], flags: u8) -> Result<Self, TraceParentError> {
        if trace_id == [0; 16] {
            return Err(TraceParentError::ZeroTraceId);
        }
        if span_id == [0; 8] {
            return Err(TraceParentError::ZeroSpanId);
        }
        Ok(Self {
            trace_id,
            span_id,
            flags,
        })
    }

    /// Parses a `traceparent` value (as bytes, e.g. a task's trace field).
    ///
    /// ```
    /// use mirai::trace::{TraceParent, TraceParentError};
    ///
    /// let upper = b"00-4BF92F3577B34DA6A3CE929D0E0E4736-00F067AA0BA902B7-01";
    /// assert_eq!(TraceParent::parse(upper), Err(TraceParentError::NotHex { at: 4 }));
    /// // A later version may append fields; they are ignored.
    /// let later = b"01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-what-comes";
    /// assert!(TraceParent::parse(later)?.sampled());
    /// # Ok::<(), TraceParentError>(())
    /// ```
    pub fn parse(text: &[u8]) -> Result<Self, TraceParentError> {
        let len = text.len();
        if !(LEN_V0..=MAX_TRACEPARENT).contains(&len) {
            return Err(TraceParentError::Length { len });
        }
        let version = hex_byte(text, 0)?;
        if version == 0xff {
            return Err(TraceParentError::Version);
        }
        // Version 00 is exactly 55 bytes; later versions may go on after a '-'.
        if len > LEN_V0 && (version == 0 || text[LEN_V0] != b'-') {
            return Err(if version == 0 {
                TraceParentError::Length { len }
            } else {
                TraceParentError::Separator { at: LEN_V0 }
            });
        }
        for at in [2, 35, 52] {
            if text[at] != b'-' {
                return Err(TraceParentError::Separator { at });
            }
        }
        let mut trace_id = [0; 16];
        for (i, b) in trace_id.iter_mut().enumerate() {
            *b = hex_byte(text, 3 + 2 * i)?;
        }
        let mut span_id = [0; 8];
        for (i, b) in span_id.iter_mut().enumerate() {
            *b = hex_byte(text, 36 + 2 * i)?;
        }
        let flags = hex_byte(text, 53)?;
        Self::new(trace_id, span_id, flags)
    }

    /// The 16-byte id of the whole trace.
    ///
    /// ```
    /// let parent = mirai::trace::TraceParent::new([7; 16], [8; 8], 1)?;
    /// assert_eq!(parent.trace_id(), [7; 16]);
    /// # Ok::<(), mirai::trace::TraceParentError>(())
    /// ```
    pub fn trace_id(&self) -> [u8; 16] {
        self.trace_id
    }

    /// The 8-byte id of the parent span.
    ///
    /// ```
    /// let parent = mirai::trace::TraceParent::new([7; 16], [8; 8], 1)?;
    /// assert_eq!(parent.span_id(), [8; 8]);
    /// # Ok::<(), mirai::trace::TraceParentError>(())
    /// ```
    pub fn span_id(&self) -> [u8; 8] {
        self.span_id
    }

    /// The trace flags byte (bit 0: sampled).
    ///
    /// ```
    /// let parent = mirai::trace::TraceParent::new([7; 16], [8; 8], 0x03)?;
    /// assert_eq!(parent.flags(), 0x03);
    /// # Ok::<(), mirai::trace::TraceParentError>(())
    /// ```
    pub fn flags(&self) -> u8 {
        self.flags
    }

    /// Whether the caller sampled (records) this trace: bit 0 of the flags.
    ///
    /// ```
    /// let parent = mirai::trace::TraceParent::new([7; 16], [8; 8], 0)?;
    /// assert!(!parent.sampled());
    /// # Ok::<(), mirai::trace::TraceParentError>(())
    /// ```
    pub fn sampled(&self) -> bool {
        self.flags & 1 == 1
    }

    /// The same trace with `span_id` as the parent span (a child span's context).
    pub(crate) fn with_span_id(self, span_id: [u8; 8]) -> Self {
        Self { span_id, ..self }
    }
}

/// The two hex digits at `at` as a byte.
fn hex_byte(text: &[u8], at: usize) -> Result<u8, TraceParentError> {
    let digit = |at: usize| match text[at] {
        c @ b'0'..=b'9' => Ok(c - b'0'),
        c @ b'a'..=b'f' => Ok(c - b'a' + 10),
        _ => Err(TraceParentError::NotHex { at }),
    };
    Ok(digit(at)? << 4 | digit(at + 1)?)
}

/// Lowercase hex of `bytes`, as the `trace_id` and `span_id` span fields show them.
pub(crate) struct Hex<'a>(pub(crate) &'a [u8]);

impl fmt::Display for Hex<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.iter().try_for_each(|b| write!(f, "{b:02x}"))
    }
}

impl fmt::Display for TraceParent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "00-{}-{}-{:02x}",
            Hex(&self.trace_id),
            Hex(&self.span_id),
            self.flags
        )
    }
}

impl fmt::Debug for TraceParent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "TraceParent({self})")
    }
}

impl TryFrom<&str> for TraceParent {
    type Error = TraceParentError;

    fn try_from(s: &str) -> Result<Self, Self::Error> {
        Self::parse(s.as_bytes())
    }
}

impl TryFrom<String> for TraceParent {
    type Error = TraceParentError;

    fn try_from(s: String) -> Result<Self, Self::Error> {
        Self::parse(s.as_bytes())
    }
}

impl TryFrom<&[u8]> for TraceParent {
    type Error = TraceParentError;

    fn try_from(s: &[u8]) -> Result<Self, Self::Error> {
        Self::parse(s)
    }
}

/// A [`TraceParent`] converts to itself without failing, so
/// [`TaskOptions::trace_parent`](crate::TaskOptions::trace_parent) takes one as well as text.
impl From<std::convert::Infallible> for TraceParentError {
    fn from(never: std::convert::Infallible) -> Self {
        match never {}
    }
}

impl FromStr for TraceParent {
    type Err = TraceParentError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s.as_bytes())
    }
}

/// Parses arbitrary bytes as a `traceparent`: never panics, and a value that parses formats to
/// 55 bytes that parse back to it (the same bytes, for a version `00` input).
pub(crate) fn fuzz(data: &[u8]) {
    let Ok(parent) = TraceParent::parse(data) else {
        return;
    };
    let text = parent.to_string();
    assert_eq!(text.len(), LEN_V0);
    assert_eq!(TraceParent::parse(text.as_bytes()), Ok(parent));
    if data.starts_with(b"00") {
        assert_eq!(
            text.as_bytes(),
            data,
            "a version 00 value formats back to itself"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const GOOD: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

    #[test]
    fn each_malformed_part_has_its_error() {
        let with = |at: usize, c: u8| {
            let mut v = GOOD.as_bytes().to_vec();
            v[at] = c;
            TraceParent::parse(&v)
        };
        assert_eq!(with(2, b'_'), Err(TraceParentError::Separator { at: 2 }));
        assert_eq!(with(35, b'0'), Err(TraceParentError::Separator { at: 35 }));
        assert_eq!(with(52, b'x'), Err(TraceParentError::Separator { at: 52 }));
        assert_eq!(with(10, b'g'), Err(TraceParentError::NotHex { at: 10 }));
        assert_eq!(with(54, b'F'), Err(TraceParentError::NotHex { at: 54 }));
        let ff = GOOD.replacen("00", "ff", 1);
        assert_eq!(ff.parse::<TraceParent>(), Err(TraceParentError::Version));
        let zero_span = format!("{}0000000000000000-01", &GOOD[..36]);
        assert_eq!(
            zero_span.parse::<TraceParent>(),
            Err(TraceParentError::ZeroSpanId)
        );
        assert_eq!(
            format!("{GOOD}-x").parse::<TraceParent>(),
            Err(TraceParentError::Length { len: 57 })
        );
        let long = format!("01{}-{}", &GOOD[2..], "a".repeat(MAX_TRACEPARENT));
        assert_eq!(
            long.parse::<TraceParent>(),
            Err(TraceParentError::Length { len: long.len() })
        );
        let no_dash = format!("01{}x", &GOOD[2..]);
        assert_eq!(
            no_dash.parse::<TraceParent>(),
            Err(TraceParentError::Separator { at: 55 })
        );
        assert_eq!(
            TraceParent::parse(b""),
            Err(TraceParentError::Length { len: 0 })
        );
    }

    proptest! {
        #[test]
        fn a_context_formats_and_parses_back(
            trace_id in any::<[u8; 16]>(),
            span_id in any::<[u8; 8]>(),
            flags in any::<u8>(),
        ) {
            match TraceParent::new(trace_id, span_id, flags) {
                Ok(parent) => {
                    let text = parent.to_string();
                    prop_assert_eq!(text.len(), LEN_V0);
                    prop_assert_eq!(text.parse::<TraceParent>(), Ok(parent));
                }
                Err(e) => prop_assert!(trace_id == [0; 16] || span_id == [0; 8], "{e}"),
            }
        }

        #[test]
        fn any_bytes_parse_or_fail_without_panicking(data in proptest::collection::vec(any::<u8>(), 0..300)) {
            fuzz(&data);
        }

        #[test]
        fn a_changed_byte_is_refused_or_read_as_is(at in 0..LEN_V0, c in any::<u8>()) {
            let mut v = GOOD.as_bytes().to_vec();
            v[at] = c;
            fuzz(&v);
            if let Ok(parent) = TraceParent::parse(&v) {
                // Only a version byte may change the meaning without changing the format.
                prop_assert!(parent.to_string().as_bytes() == v.as_slice() || at < 2);
            }
        }
    }
}
