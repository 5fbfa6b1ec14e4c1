//! Admission of a daemon from its [`Hello`].

use super::messages::{Hello, RefuseReason};

/// Why a [`Hello`] was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum HandshakeError {
    /// Version mismatch.
    #[error("daemon speaks protocol version {theirs}, dispatcher speaks {ours}")]
    Version {
        /// The daemon's version.
        theirs: u16,
        /// Ours.
        ours: u16,
    },
    /// Wrong join token.
    #[error("join token does not match")]
    Token,
}

impl HandshakeError {
    /// What to tell the daemon.
    pub fn refuse_reason(&self) -> RefuseReason {
        match self {
            Self::Version { ours, .. } => RefuseReason::Version(*ours),
            Self::Token => RefuseReason::Token,
        }
    }
}

/// Admits a daemon whose hello has our version and the expected token. The token comparison
/// takes the same time wherever the first difference is.
///
/// ```
/// use mirai_dispatch::protocol::{check_hello, HandshakeError, Hello, VERSION};
/// let hello = Hello { version: VERSION, launch_id: 1, token: b"s3cret".to_vec() };
/// assert_eq!(check_hello(&hello, b"s3cret"), Ok(()));
/// assert_eq!(check_hello(&hello, b"other!"), Err(HandshakeError::Token));
/// ```
pub fn check_hello(hello: &Hello, token: &[u8]) -> Result<(), HandshakeError> {
    if hello.version != super::VERSION {
        return Err(HandshakeError::Version {
            theirs: hello.version,
            ours: super::VERSION,
        });
    }
    let same_len = hello.token.len() == token.len();
    let diff = hello
        .token
        .iter()
        .zip(token)
        .fold(0u8, |acc, (a, b)| acc | (a ^ b));
    if same_len && diff == 0 {
        Ok(())
    } else {
        Err(HandshakeError::Token)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refuses_other_versions_and_tokens_of_other_length() {
        let mut hello = Hello {
            version: super::super::VERSION + 1,
            launch_id: 0,
            token: b"abc".to_vec(),
        };
        let err = check_hello(&hello, b"abc").unwrap_err();
        assert_eq!(
            err.refuse_reason(),
            RefuseReason::Version(super::super::VERSION)
        );
        hello.version = super::super::VERSION;
        assert_eq!(check_hello(&hello, b"abcd"), Err(HandshakeError::Token));
        assert_eq!(check_hello(&hello, b"ab"), Err(HandshakeError::Token));
        assert_eq!(check_hello(&hello, b"abc"), Ok(()));
    }
}
