//! Entry points for the fuzz targets in `fuzz/fuzz_targets/`, kept in the library so they
//! always compile against the current parsers.

use crate::daemon::{format_rules, parse_rules};

/// Parses arbitrary bytes as the daemon's exit-rules text (`MIRAI_DAEMON_RULES`): it never
/// panics, and the rules it yields format to text that parses back to the same rules.
///
/// ```
/// mirai::fuzzing::daemon_rules(b"1500,,7");
/// mirai::fuzzing::daemon_rules(b"\xff,18446744073709551615,-1,,,");
/// ```
pub fn daemon_rules(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let rules = parse_rules(&text);
    let again = parse_rules(&format_rules(&rules));
    assert_eq!(again, rules, "rules parsed from {text:?} do not round trip");
}

/// Decodes arbitrary bytes as a task payload of the facade's format (a value with
/// [`Bytes`](crate::Bytes) and [`Array`](crate::Array) buffers beside it): it never panics, never
/// allocates more than the input's size suggests, and whatever decodes encodes back to a
/// payload that decodes to the same value.
///
/// ```
/// mirai::fuzzing::task_payload(&[1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
/// mirai::fuzzing::task_payload(&[0, 2, 7, 1, 2]);
/// ```
pub fn task_payload(data: &[u8]) {
    type Value = (Vec<crate::Bytes>, crate::Array<f64>, String);
    let Ok(value) = crate::wire::decode::<Value>(bytes::Bytes::copy_from_slice(data)) else {
        return;
    };
    let again = crate::wire::encode(&value).expect("a decoded value encodes");
    let back: Value = crate::wire::decode(again.to_bytes()).expect("and decodes again");
    assert!(back.0 == value.0 && back.2 == value.2);
    assert_eq!(back.1.as_bytes(), value.1.as_bytes());
}

/// Parses arbitrary bytes as a W3C `traceparent` (a task's trace context): it never panics,
/// and what parses formats to a value that parses back to it.
///
/// ```
/// mirai::fuzzing::traceparent(b"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01");
/// mirai::fuzzing::traceparent(b"ff-\xff");
/// ```
pub fn traceparent(data: &[u8]) {
    crate::trace::fuzz(data);
}
