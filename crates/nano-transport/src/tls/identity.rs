//! Certificates and keys: loaded from PEM (user files or memory) or generated at startup, and the
//! SHA-256 fingerprint that lets a launch command pin a certificate in 64 hex digits.
//!
//! Both decoders here take user input (a PEM file, a fingerprint on a command line), so both have
//! size limits, typed errors, a proptest and a fuzz target.

use std::fmt;
use std::path::Path;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};

/// The largest PEM input accepted (a certificate chain or a key), in bytes.
pub const MAX_PEM: usize = 1 << 20;

/// The most certificates accepted in one chain.
pub const MAX_CHAIN: usize = 16;

/// Why certificate or key material was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum IdentityError {
    /// The input is larger than [`MAX_PEM`].
    #[error("PEM input of {0} bytes exceeds the limit of {MAX_PEM} bytes")]
    TooLarge(usize),
    /// The PEM text is malformed.
    #[error("malformed PEM: {0}")]
    Pem(String),
    /// No `CERTIFICATE` block was found.
    #[error("no certificate in the PEM input")]
    NoCertificate,
    /// More than [`MAX_CHAIN`] certificates.
    #[error("more than {MAX_CHAIN} certificates in one chain")]
    ChainTooLong,
    /// No private key block (PKCS#8, PKCS#1 or SEC1) was found.
    #[error("no private key in the PEM input")]
    NoKey,
    /// A file could not be read.
    #[error("cannot read {path}: {reason}")]
    File {
        /// The file.
        path: String,
        /// The operating system's reason.
        reason: String,
    },
    /// The certificate could not be generated.
    #[error("cannot generate a certificate: {0}")]
    Generate(String),
    /// A fingerprint is not 32 bytes written as hex.
    #[error("bad fingerprint: {0}")]
    Fingerprint(&'static str),
}

/// A SHA-256 fingerprint of a DER certificate.
///
/// Written as `sha256:` and 64 lowercase hex digits; [`Fingerprint::parse`] also accepts the
/// bare hex, upper case, and the colon-separated pairs `openssl x509 -fingerprint` prints.
///
/// ```
/// use nano_transport::tls::Fingerprint;
/// let f = Fingerprint::of_der(b"not really a certificate");
/// let text = f.to_string();
/// assert!(text.starts_with("sha256:"));
/// assert_eq!(Fingerprint::parse(&text).unwrap(), f);
/// assert!(Fingerprint::parse("sha256:abcd").is_err());
/// ```
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Fingerprint(pub [u8; 32]);

impl Fingerprint {
    /// The longest text [`parse`](Self::parse) looks at (prefix, 32 pairs and 31 colons, spaces).
    pub const MAX_TEXT: usize = 128;

    /// The fingerprint of a DER-encoded certificate.
    pub fn of_der(der: &[u8]) -> Self {
        let digest = ring::digest::digest(&ring::digest::SHA256, der);
        let mut out = [0; 32];
        out.copy_from_slice(digest.as_ref());
        Self(out)
    }

    /// Parses `sha256:<64 hex>`, `<64 hex>` or `AA:BB:...` (32 pairs), surrounding whitespace
    /// ignored.
    pub fn parse(text: &str) -> Result<Self, IdentityError> {
        if text.len() > Self::MAX_TEXT {
            return Err(IdentityError::Fingerprint("longer than 128 bytes"));
        }
        let text = text.trim();
        let hex = text
            .strip_prefix("sha256:")
            .or_else(|| text.strip_prefix("SHA256:"))
            .unwrap_or(text);
        // The colon form is pairs separated by ':' (a trailing ':' is tolerated); gather its
        // digits so both forms decode in one `hex` call.
        let mut digits = [0u8; 64];
        let digits: &[u8] = if hex.contains(':') {
            let pairs = hex.strip_suffix(':').unwrap_or(hex);
            let mut n = 0;
            for pair in pairs.split(':') {
                if pair.len() != 2 {
                    return Err(IdentityError::Fingerprint("pairs must be separated by ':'"));
                }
                let slot = digits
                    .get_mut(n..n + 2)
                    .ok_or(IdentityError::Fingerprint("more than 32 bytes"))?;
                slot.copy_from_slice(pair.as_bytes());
                n += 2;
            }
            &digits[..n]
        } else {
            hex.as_bytes()
        };
        let mut out = [0u8; 32];
        hex::decode_to_slice(digits, &mut out).map_err(|e| {
            IdentityError::Fingerprint(match e {
                hex::FromHexError::InvalidHexCharacter { .. } => "not a hex digit",
                hex::FromHexError::OddLength => "odd number of hex digits",
                hex::FromHexError::InvalidStringLength if digits.len() > 64 => "more than 32 bytes",
                hex::FromHexError::InvalidStringLength => "fewer than 32 bytes",
            })
        })?;
        Ok(Self(out))
    }
}

impl fmt::Display for Fingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "sha256:{}", hex::encode(self.0))
    }
}

impl fmt::Debug for Fingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl std::str::FromStr for Fingerprint {
    type Err = IdentityError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

/// A certificate chain (leaf first) and its private key: what a listener presents, or a dialer
/// presents for mutual TLS.
///
/// ```
/// use nano_transport::tls::Identity;
/// let id = Identity::generate(&["localhost"]).unwrap();
/// let again = Identity::from_pem(id.cert_pem().as_bytes(), id.key_pem().as_bytes()).unwrap();
/// assert_eq!(again.fingerprint(), id.fingerprint());
/// ```
#[derive(Debug)]
pub struct Identity {
    pub(crate) chain: Vec<CertificateDer<'static>>,
    pub(crate) key: PrivateKeyDer<'static>,
}

impl Clone for Identity {
    fn clone(&self) -> Self {
        Self {
            chain: self.chain.clone(),
            key: self.key.clone_key(),
        }
    }
}

impl Identity {
    /// Generates a self-signed ECDSA P-256 certificate for `names` (DNS names or IP addresses
    /// as subject alternative names); takes milliseconds.
    pub fn generate(names: &[&str]) -> Result<Self, IdentityError> {
        let names: Vec<String> = names.iter().map(|s| (*s).to_owned()).collect();
        let certified = rcgen::generate_simple_self_signed(names)
            .map_err(|e| IdentityError::Generate(e.to_string()))?;
        let key = PrivatePkcs8KeyDer::from(certified.signing_key.serialize_der());
        Ok(Self {
            chain: vec![certified.cert.der().clone()],
            key: PrivateKeyDer::Pkcs8(key),
        })
    }

    /// Loads a certificate chain (leaf first) and a private key from PEM text.
    pub fn from_pem(cert_pem: &[u8], key_pem: &[u8]) -> Result<Self, IdentityError> {
        let chain = certificates_from_pem(cert_pem)?;
        let key = key_from_pem(key_pem)?;
        Ok(Self { chain, key })
    }

    /// Loads [`from_pem`](Self::from_pem) input from two files.
    pub fn from_pem_files(cert: &Path, key: &Path) -> Result<Self, IdentityError> {
        Self::from_pem(&read_limited(cert)?, &read_limited(key)?)
    }

    /// The fingerprint of the leaf certificate, to pin it.
    pub fn fingerprint(&self) -> Fingerprint {
        Fingerprint::of_der(&self.chain[0])
    }

    /// The certificate chain as PEM (e.g. for a peer's `--cacert`).
    pub fn cert_pem(&self) -> String {
        self.chain
            .iter()
            .map(|c| pem_block("CERTIFICATE", c))
            .collect()
    }

    /// The private key as PEM. Keep it secret.
    pub fn key_pem(&self) -> String {
        let (label, der): (&str, &[u8]) = match &self.key {
            PrivateKeyDer::Pkcs1(k) => ("RSA PRIVATE KEY", k.secret_pkcs1_der()),
            PrivateKeyDer::Sec1(k) => ("EC PRIVATE KEY", k.secret_sec1_der()),
            PrivateKeyDer::Pkcs8(k) => ("PRIVATE KEY", k.secret_pkcs8_der()),
            _ => ("PRIVATE KEY", &[]),
        };
        pem_block(label, der)
    }

    /// The DER certificates, leaf first.
    pub fn chain(&self) -> &[CertificateDer<'static>] {
        &self.chain
    }
}

/// Reads the `CERTIFICATE` blocks of PEM text (other blocks are skipped), at most
/// [`MAX_CHAIN`] of them from at most [`MAX_PEM`] bytes.
///
/// ```
/// use nano_transport::tls::{certificates_from_pem, Identity, IdentityError};
/// let id = Identity::generate(&["localhost"]).unwrap();
/// assert_eq!(certificates_from_pem(id.cert_pem().as_bytes()).unwrap().len(), 1);
/// assert_eq!(certificates_from_pem(b"junk"), Err(IdentityError::NoCertificate));
/// ```
pub fn certificates_from_pem(pem: &[u8]) -> Result<Vec<CertificateDer<'static>>, IdentityError> {
    if pem.len() > MAX_PEM {
        return Err(IdentityError::TooLarge(pem.len()));
    }
    let mut chain = Vec::new();
    for cert in CertificateDer::pem_slice_iter(pem) {
        let cert = cert.map_err(|e| IdentityError::Pem(e.to_string()))?;
        if chain.len() == MAX_CHAIN {
            return Err(IdentityError::ChainTooLong);
        }
        chain.push(cert);
    }
    if chain.is_empty() {
        return Err(IdentityError::NoCertificate);
    }
    Ok(chain)
}

/// Reads the first private key block (PKCS#8, PKCS#1 or SEC1) of PEM text.
pub fn key_from_pem(pem: &[u8]) -> Result<PrivateKeyDer<'static>, IdentityError> {
    if pem.len() > MAX_PEM {
        return Err(IdentityError::TooLarge(pem.len()));
    }
    PrivateKeyDer::from_pem_slice(pem).map_err(|e| match e {
        rustls::pki_types::pem::Error::NoItemsFound => IdentityError::NoKey,
        e => IdentityError::Pem(e.to_string()),
    })
}

pub(crate) fn read_limited(path: &Path) -> Result<Vec<u8>, IdentityError> {
    use std::io::Read;
    let file_err = |e: std::io::Error| IdentityError::File {
        path: path.display().to_string(),
        reason: e.to_string(),
    };
    let file = std::fs::File::open(path).map_err(file_err)?;
    let mut out = Vec::new();
    file.take(MAX_PEM as u64 + 1)
        .read_to_end(&mut out)
        .map_err(file_err)?;
    if out.len() > MAX_PEM {
        return Err(IdentityError::TooLarge(out.len()));
    }
    Ok(out)
}

/// RFC 7468 text of one block: base64 in 64-column lines, `\n` line ends (as rcgen writes).
fn pem_block(label: &str, der: &[u8]) -> String {
    let config = pem::EncodeConfig::new().set_line_ending(pem::LineEnding::LF);
    pem::encode_config(&pem::Pem::new(label, der), config)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn fingerprint_forms() {
        let f = Fingerprint([0xab; 32]);
        let bare = "ab".repeat(32);
        let pairs = vec!["AB"; 32].join(":");
        assert_eq!(Fingerprint::parse(&bare).unwrap(), f);
        assert_eq!(Fingerprint::parse(&pairs).unwrap(), f);
        assert_eq!(Fingerprint::parse(&format!(" sha256:{bare}\n")).unwrap(), f);
        assert!(Fingerprint::parse(&"ab".repeat(33)).is_err());
        assert!(Fingerprint::parse(&"ab".repeat(31)).is_err());
        assert!(Fingerprint::parse(&format!("{bare}a")).is_err());
        assert!(Fingerprint::parse(&"zz".repeat(32)).is_err());
        assert!(Fingerprint::parse(&pairs.replacen(':', ";", 1)).is_err());
    }

    #[test]
    fn fingerprint_edge_forms() {
        let f = Fingerprint([0xab; 32]);
        let pairs = vec!["ab"; 32].join(":");
        let bad = |text: &str, why: &'static str| {
            assert_eq!(
                Fingerprint::parse(text),
                Err(IdentityError::Fingerprint(why)),
                "{text:?}"
            );
        };
        // Accepted: either prefix case, mixed case digits, a trailing ':' after the pairs.
        let mixed = "aB".repeat(32);
        assert_eq!(Fingerprint::parse(&format!("SHA256:{mixed}")).unwrap(), f);
        assert_eq!(Fingerprint::parse(&format!("\t{pairs}:\r\n")).unwrap(), f);
        // Refused, each with its reason.
        bad("", "fewer than 32 bytes");
        bad(&format!("{}a", "ab".repeat(32)), "odd number of hex digits");
        bad(&"ab".repeat(33), "more than 32 bytes");
        bad(&format!("{pairs}:ab"), "more than 32 bytes");
        bad(&vec!["ab"; 31].join(":"), "fewer than 32 bytes");
        bad(&format!("{}gg", "ab".repeat(31)), "not a hex digit");
        bad(&format!("{}é", "ab".repeat(31)), "not a hex digit");
        bad(
            &format!("abab:{}", vec!["ab"; 30].join(":")),
            "pairs must be separated by ':'",
        );
        // Refused with several faults at once; which one the reason names may vary.
        for text in [
            format!(":{pairs}"),
            pairs.replacen(':', "::", 1),
            format!("md5:{}", "ab".repeat(32)),
            format!("sha256:{} ab", "ab".repeat(31)),
        ] {
            assert!(
                matches!(
                    Fingerprint::parse(&text),
                    Err(IdentityError::Fingerprint(_))
                ),
                "{text:?}"
            );
        }
        bad(
            &" ".repeat(Fingerprint::MAX_TEXT + 1),
            "longer than 128 bytes",
        );
        // Display is the canonical form: prefix and lowercase digits.
        let g = Fingerprint(std::array::from_fn(|i| i as u8 * 8));
        assert_eq!(
            g.to_string(),
            "sha256:0008101820283038404850586068707880889098a0a8b0b8c0c8d0d8e0e8f0f8"
        );
    }

    #[test]
    fn pem_text_is_base64_in_64_columns() {
        let id = Identity {
            chain: vec![CertificateDer::from((0..49).collect::<Vec<u8>>())],
            key: PrivateKeyDer::Sec1(vec![0xfb, 0xff].into()),
        };
        assert_eq!(
            id.cert_pem(),
            "-----BEGIN CERTIFICATE-----\n\
             AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8gISIjJCUmJygpKissLS4v\n\
             MA==\n\
             -----END CERTIFICATE-----\n"
        );
        assert_eq!(
            id.key_pem(),
            "-----BEGIN EC PRIVATE KEY-----\n+/8=\n-----END EC PRIVATE KEY-----\n"
        );
        assert_eq!(pem_block("X", &[]), "-----BEGIN X-----\n-----END X-----\n");
        // A chain is its blocks one after the other, as read back.
        let two = Identity {
            chain: vec![id.chain[0].clone(), CertificateDer::from(vec![1, 2, 3])],
            key: id.key.clone_key(),
        };
        assert_eq!(
            two.cert_pem(),
            id.cert_pem() + &pem_block("CERTIFICATE", &[1, 2, 3])
        );
        assert_eq!(
            certificates_from_pem(two.cert_pem().as_bytes()).unwrap(),
            two.chain
        );
    }

    #[test]
    fn generated_pem_is_what_rcgen_writes() {
        let names = vec!["localhost".to_owned()];
        let certified = rcgen::generate_simple_self_signed(names).unwrap();
        let id = Identity {
            chain: vec![certified.cert.der().clone()],
            key: PrivateKeyDer::Pkcs8(certified.signing_key.serialize_der().into()),
        };
        assert_eq!(id.cert_pem(), certified.cert.pem());
        assert_eq!(id.key_pem(), certified.signing_key.serialize_pem());
    }

    #[test]
    fn generated_identity_round_trips_through_pem() {
        let id = Identity::generate(&["localhost", "127.0.0.1"]).unwrap();
        let back = Identity::from_pem(id.cert_pem().as_bytes(), id.key_pem().as_bytes()).unwrap();
        assert_eq!(back.chain, id.chain);
        assert_eq!(back.key_pem(), id.key_pem());
        assert_eq!(key_from_pem(b"nothing here"), Err(IdentityError::NoKey));
        let big = vec![b'a'; MAX_PEM + 1];
        assert_eq!(
            certificates_from_pem(&big),
            Err(IdentityError::TooLarge(MAX_PEM + 1))
        );
    }

    proptest! {
        #[test]
        fn fingerprint_display_parses_back(bytes in any::<[u8; 32]>()) {
            let f = Fingerprint(bytes);
            prop_assert_eq!(Fingerprint::parse(&f.to_string()).unwrap(), f);
        }

        #[test]
        fn fingerprint_parse_never_panics(s in ".{0,200}") {
            let _ = Fingerprint::parse(&s);
        }

        #[test]
        fn pem_decoders_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..2048)) {
            let _ = certificates_from_pem(&bytes);
            let _ = key_from_pem(&bytes);
        }

        #[test]
        fn pem_with_noise_around_blocks(prefix in "[a-z \n]{0,40}", suffix in "[a-z \n]{0,40}") {
            let id = Identity::generate(&["localhost"]).unwrap();
            let text = format!("{prefix}\n{}{suffix}", id.cert_pem());
            let chain = certificates_from_pem(text.as_bytes()).unwrap();
            prop_assert_eq!(Fingerprint::of_der(&chain[0]), id.fingerprint());
        }
    }
}
