//! POSIX shell quoting: every launcher ends in a shell line (ssh runs the remote command through
//! the login shell, sbatch runs a script, templates run through `sh -c`), so every value put in
//! one goes through [`quote`], which makes it exactly one word with exactly its bytes.

use super::Error;

/// Characters that never need quoting in a POSIX shell word.
fn is_plain(c: char) -> bool {
    c.is_ascii_alphanumeric() || "_@%+=:,./-".contains(c)
}

/// `s` as one POSIX shell word: as is if it is made only of characters no shell treats
/// specially, else in single quotes (a `'` inside becomes `'\''`). Refuses NUL, which no
/// command-line word can hold.
///
/// ```
/// use mirai::launch::quote;
/// assert_eq!(quote("tcp://10.0.0.1:5555")?, "tcp://10.0.0.1:5555");
/// assert_eq!(quote("it's $HOME")?, r"'it'\''s $HOME'");
/// assert_eq!(quote("")?, "''");
/// assert!(quote("a\0b").is_err());
/// # Ok::<(), mirai::launch::Error>(())
/// ```
pub fn quote(s: &str) -> Result<String, Error> {
    if s.contains('\0') {
        return Err(Error::Invalid(format!("{s:?} contains a NUL byte")));
    }
    if !s.is_empty() && s.chars().all(is_plain) {
        return Ok(s.to_owned());
    }
    let mut out = String::with_capacity(s.len() + 2);
    out.push('\'');
    for c in s.chars() {
        if c == '\'' {
            out.push_str("'\\''");
        } else {
            out.push(c);
        }
    }
    out.push('\'');
    Ok(out)
}

/// A value that must stay on one line of a script (an `#SBATCH` option, a module name).
pub(crate) fn one_line<'a>(what: &str, s: &'a str) -> Result<&'a str, Error> {
    if s.contains(['\n', '\r', '\0']) {
        return Err(Error::Invalid(format!(
            "{what} {s:?} must be a single line without NUL"
        )));
    }
    Ok(s)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::process::Command;

    /// What `sh` makes of `line`: the words it passes to `printf '%s\n'`.
    fn sh_words(line: &str) -> String {
        let out = Command::new("sh")
            .arg("-c")
            .arg(format!("printf '%s\\n' {line}"))
            .output()
            .expect("run sh");
        assert!(out.status.success(), "sh failed on {line:?}");
        String::from_utf8(out.stdout).expect("utf-8 back")
    }

    #[test]
    fn plain_words_stay_readable_and_specials_are_quoted() {
        assert_eq!(quote("user@host").unwrap(), "user@host");
        assert_eq!(quote("a b").unwrap(), "'a b'");
        assert_eq!(quote("$(rm -rf /)").unwrap(), "'$(rm -rf /)'");
        assert_eq!(quote("'").unwrap(), r"''\'''");
        assert_eq!(
            sh_words(&quote("x'; echo pwned; '").unwrap()),
            "x'; echo pwned; '\n"
        );
    }

    #[test]
    fn lines_must_be_lines() {
        assert!(one_line("option", "--time=1:00:00").is_ok());
        assert!(one_line("option", "--time=1\n#SBATCH --x").is_err());
        assert!(one_line("module", "r\r").is_err());
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]

        /// Any text without NUL comes out of the shell as exactly one word, byte for byte,
        /// also when the quoted word is quoted again for a second shell (as for ssh).
        #[test]
        fn the_shell_reads_back_exactly_one_word(s in "[^\u{0}\n]{0,24}", t in "[^\u{0}]{0,12}") {
            let words = format!("{} {}", quote(&s).unwrap(), quote(&t).unwrap());
            prop_assert_eq!(sh_words(&words), format!("{s}\n{t}\n"));
            let inner = format!("printf '%s\\n' {words}");
            let out = Command::new("sh").arg("-c").arg(format!("sh -c {}", quote(&inner).unwrap()))
                .output().unwrap();
            prop_assert_eq!(String::from_utf8(out.stdout).unwrap(), format!("{s}\n{t}\n"));
        }
    }
}
