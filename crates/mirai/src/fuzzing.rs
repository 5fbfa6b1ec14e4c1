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
