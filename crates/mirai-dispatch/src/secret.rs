//! The pool's join secret and the per-launch credentials derived from it.
//!
//! A dispatcher holds one [`Secret`], the *pool token*. Nobody else needs it:
//!
//! - every daemon the pool launches gets a [`launch credential`](Secret::launch_credential), an
//!   HMAC-SHA-256 of its launch id under the pool token. The daemon presents it in its hello
//!   together with that launch id, and the dispatcher recomputes it. A credential is worth one
//!   launch id: a peer that read one daemon's credential cannot join as another launch, and a
//!   peer without one cannot make the dispatcher say anything about any launch.
//! - a daemon started by hand (launch id 0) presents the pool token itself.
//!
//! Secrets come from the operating system's CSPRNG ([`getrandom`]), are compared in constant time
//! ([`subtle`]), and never print: `Debug` shows only their length.

use subtle::ConstantTimeEq;

/// The shortest pool token a dispatcher accepts, in bytes (128 bits).
pub const MIN_TOKEN_LEN: usize = 16;

/// Bytes of randomness in a [`Secret::generate`]d token (256 bits), before hex encoding.
const GENERATED_BYTES: usize = 32;

/// What the HMAC of a launch credential covers besides the launch id, so a credential can never
/// be mistaken for any other MAC made with the same key.
const LAUNCH_DOMAIN: &[u8] = b"mirai launch credential v1\0";

/// A join token or a launch credential: bytes that never appear in `Debug` output and compare
/// in constant time.
///
/// ```
/// use mirai_dispatch::secret::Secret;
/// let s = Secret::from("correct horse battery staple");
/// assert_eq!(format!("{s:?}"), "Secret(<28 bytes>)");
/// assert_eq!(s, Secret::from(b"correct horse battery staple".to_vec()));
/// assert_ne!(s, Secret::from("correct horse battery stapler"));
/// ```
#[derive(Clone, Default)]
pub struct Secret(Vec<u8>);

/// The operating system's random source failed (it does not on any supported system once booted).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the operating system's random number generator failed: {0}")]
pub struct RandomError(getrandom::Error);

impl Secret {
    /// A fresh pool token: 256 bits from the operating system's CSPRNG, hex-encoded (64 ASCII
    /// characters), so it can travel as text.
    ///
    /// ```
    /// use mirai_dispatch::secret::Secret;
    /// let (a, b) = (Secret::generate()?, Secret::generate()?);
    /// assert_eq!(a.len(), 64);
    /// assert_ne!(a, b);
    /// # Ok::<(), mirai_dispatch::secret::RandomError>(())
    /// ```
    pub fn generate() -> Result<Self, RandomError> {
        let mut raw = [0u8; GENERATED_BYTES];
        getrandom::fill(&mut raw).map_err(RandomError)?;
        Ok(Self(hex(&raw).into_bytes()))
    }

    /// The secret's bytes, to send in a hello or hand to a launcher.
    pub fn expose(&self) -> &[u8] {
        &self.0
    }

    /// The secret as text, when it is UTF-8 (generated tokens and credentials always are).
    pub fn expose_str(&self) -> Option<&str> {
        std::str::from_utf8(&self.0).ok()
    }

    /// Its length in bytes.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether it has no bytes.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Whether `other` is this secret, in time that does not depend on where they differ.
    ///
    /// ```
    /// use mirai_dispatch::secret::Secret;
    /// let s = Secret::from("0123456789abcdef");
    /// assert!(s.matches(b"0123456789abcdef"));
    /// assert!(!s.matches(b"0123456789abcdeF"));
    /// assert!(!s.matches(b"0123"));
    /// ```
    pub fn matches(&self, other: &[u8]) -> bool {
        bool::from(self.0.as_slice().ct_eq(other))
    }

    /// The credential of the daemon launched with `launch_id` by a pool whose token this is:
    /// HMAC-SHA-256 of the id under the token, hex-encoded. Launch id 0 is the hand-started
    /// daemon's, whose credential is the token itself.
    ///
    /// ```
    /// use mirai_dispatch::secret::Secret;
    /// let token = Secret::from("0123456789abcdef0123456789abcdef");
    /// let one = token.launch_credential(1);
    /// assert_eq!(one.len(), 64);
    /// assert_eq!(one, token.launch_credential(1));
    /// assert_ne!(one, token.launch_credential(2));
    /// assert_eq!(token.launch_credential(0), token);
    /// ```
    pub fn launch_credential(&self, launch_id: u64) -> Self {
        if launch_id == 0 {
            return self.clone();
        }
        let mut mac = hmac_sha256::HMAC::new(&self.0);
        mac.update(LAUNCH_DOMAIN);
        mac.update(launch_id.to_be_bytes());
        Self(hex(&mac.finalize()).into_bytes())
    }
}

impl PartialEq for Secret {
    fn eq(&self, other: &Self) -> bool {
        self.matches(&other.0)
    }
}

impl Eq for Secret {}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Secret(<{} bytes>)", self.0.len())
    }
}

impl From<Vec<u8>> for Secret {
    fn from(bytes: Vec<u8>) -> Self {
        Self(bytes)
    }
}

impl From<&[u8]> for Secret {
    fn from(bytes: &[u8]) -> Self {
        Self(bytes.to_vec())
    }
}

impl From<String> for Secret {
    fn from(text: String) -> Self {
        Self(text.into_bytes())
    }
}

impl From<&str> for Secret {
    fn from(text: &str) -> Self {
        Self(text.as_bytes().to_vec())
    }
}

fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write;
    bytes
        .iter()
        .fold(String::with_capacity(bytes.len() * 2), |mut s, b| {
            let _ = write!(s, "{b:02x}");
            s
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credentials_are_the_hmac_of_the_domain_and_id() {
        // The HMAC of the domain and the big-endian id, computed in one call by ring (which
        // computed the credentials before hmac-sha256 did: they have not changed).
        let token = Secret::from(vec![0x0b; 20]);
        let cred = token.launch_credential(7);
        let mut msg = LAUNCH_DOMAIN.to_vec();
        msg.extend_from_slice(&7u64.to_be_bytes());
        let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, &[0x0b; 20]);
        let tag = ring::hmac::sign(&key, &msg);
        assert_eq!(cred.expose(), hex(tag.as_ref()).as_bytes());
        // A credential for another pool's token differs.
        assert_ne!(cred, Secret::from(vec![0x0c; 20]).launch_credential(7));
    }

    #[test]
    fn generated_tokens_are_hex_of_256_bits_and_distinct() {
        let tokens: Vec<Secret> = (0..64).map(|_| Secret::generate().unwrap()).collect();
        for t in &tokens {
            assert!(t.expose().iter().all(u8::is_ascii_hexdigit));
            assert_eq!(t.len(), 2 * GENERATED_BYTES);
            assert!(t.len() >= MIN_TOKEN_LEN);
        }
        for (i, a) in tokens.iter().enumerate() {
            assert!(tokens[i + 1..].iter().all(|b| a != b));
        }
    }

    #[test]
    fn debug_never_shows_the_bytes() {
        let s = Secret::from("hunter2hunter2hunter2");
        let shown = format!("{s:?} {:?}", s.launch_credential(3));
        assert!(!shown.contains("hunter2"), "{shown}");
    }
}
