//! What the kernel says about a process: does it exist, and when did it start.

use std::io;

/// What a look at process `pid` found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Probe {
    /// `kill(pid, 0)` succeeded or failed with `EPERM`: some process has this pid.
    pub(crate) exists: bool,
    /// Its start time (`/proc/<pid>/stat` field 22), if it could be read.
    pub(crate) start_time: Option<u64>,
}

/// Look at process `pid`.
pub(crate) fn probe(pid: u32) -> Probe {
    let Some(p) = i32::try_from(pid)
        .ok()
        .and_then(rustix::process::Pid::from_raw)
    else {
        return Probe {
            exists: false,
            start_time: None,
        };
    };
    let exists = match rustix::process::test_kill_process(p) {
        Ok(()) => true,
        Err(e) => e == rustix::io::Errno::PERM,
    };
    let start_time = if exists { start_time(pid).ok() } else { None };
    Probe { exists, start_time }
}

/// The start time of process `pid` in clock ticks after boot.
pub(crate) fn start_time(pid: u32) -> io::Result<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    parse_start_time(&stat)
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, "malformed /proc stat"))
}

/// The start time of the current process.
pub(crate) fn own_start_time() -> io::Result<u64> {
    start_time(std::process::id())
}

/// Field 22 (`starttime`) of a `/proc/<pid>/stat` line. The command name (field 2) is in
/// parentheses and may itself contain spaces and parentheses, so fields are counted from the
/// last `)`.
pub(crate) fn parse_start_time(stat: &str) -> Option<u64> {
    let after_comm = &stat[stat.rfind(')')? + 1..];
    // Field 3 (state) is the first token after the command name, so field 22 is the 20th.
    after_comm.split_ascii_whitespace().nth(19)?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn start_time_is_field_22_even_with_parentheses_in_the_name() {
        let line = "1234 (a) b (c)) S 1 1234 1234 0 -1 4194560 100 0 0 0 1 2 0 0 20 0 1 0 987654 \
                    1000 100 18446744073709551615";
        assert_eq!(parse_start_time(line), Some(987_654));
    }

    #[test]
    fn short_or_garbled_stat_lines_give_none() {
        assert_eq!(parse_start_time(""), None);
        assert_eq!(parse_start_time("1 (x) S 1 2 3"), None);
        assert_eq!(parse_start_time("no parenthesis at all"), None);
    }

    #[test]
    fn own_start_time_is_readable_and_stable() {
        let a = own_start_time().unwrap();
        assert_eq!(a, own_start_time().unwrap());
        assert!(probe(std::process::id()).exists);
        assert_eq!(probe(std::process::id()).start_time, Some(a));
    }

    #[test]
    fn pids_that_cannot_exist_are_not_alive() {
        assert!(!probe(0).exists);
        assert!(!probe(u32::MAX).exists);
    }

    proptest::proptest! {
        #[test]
        fn any_text_parses_without_panicking(s in ".{0,200}") {
            let _ = parse_start_time(&s);
        }
    }
}
