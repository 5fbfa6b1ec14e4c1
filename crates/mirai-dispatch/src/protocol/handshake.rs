//! Admission of a daemon from its [`Hello`].

use super::messages::{Hello, RefuseReason};
use crate::secret::Secret;

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

/// Admits a daemon whose hello has our version and the credential of the launch it names: the
/// pool token itself for launch id 0 (a daemon started by hand), else
/// [`Secret::launch_credential`] of its launch id. The comparison takes the same time wherever
/// the first difference is.
///
/// ```
/// use mirai_dispatch::protocol::{check_hello, HandshakeError, Hello, VERSION};
/// use mirai_dispatch::secret::Secret;
/// let token = Secret::from("0123456789abcdef");
/// let hello = Hello { version: VERSION, launch_id: 0, token: b"0123456789abcdef".to_vec() };
/// assert_eq!(check_hello(&hello, &token), Ok(()));
/// // A launched daemon presents its own credential, never the token.
/// let cred = token.launch_credential(5);
/// let launched = Hello { version: VERSION, launch_id: 5, token: cred.expose().to_vec() };
/// assert_eq!(check_hello(&launched, &token), Ok(()));
/// let other = Hello { launch_id: 6, ..launched.clone() };
/// assert_eq!(check_hello(&other, &token), Err(HandshakeError::Token));
/// let raw = Hello { launch_id: 5, ..hello };
/// assert_eq!(check_hello(&raw, &token), Err(HandshakeError::Token));
/// ```
pub fn check_hello(hello: &Hello, token: &Secret) -> Result<(), HandshakeError> {
    if hello.version != super::VERSION {
        return Err(HandshakeError::Version {
            theirs: hello.version,
            ours: super::VERSION,
        });
    }
    if token
        .launch_credential(hello.launch_id)
        .matches(&hello.token)
    {
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
        let err = check_hello(&hello, &Secret::from("abc")).unwrap_err();
        assert_eq!(
            err.refuse_reason(),
            RefuseReason::Version(super::super::VERSION)
        );
        hello.version = super::super::VERSION;
        let check = |t: &str| check_hello(&hello, &Secret::from(t));
        assert_eq!(check("abcd"), Err(HandshakeError::Token));
        assert_eq!(check("ab"), Err(HandshakeError::Token));
        assert_eq!(check("abc"), Ok(()));
    }
}
