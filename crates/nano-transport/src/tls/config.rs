//! What a socket needs to listen or dial over TLS: the rustls configurations, built from an
//! [`Identity`] and a rule for the peer ([`ServerAuth`], [`ClientAuth`]).
//!
//! Every configuration uses the ring provider explicitly (no process-wide default to install)
//! and offers TLS 1.3 and 1.2: NNG built on mbedTLS 2.28 (Debian's nngcat) speaks only 1.2.

use std::sync::Arc;

use rustls::crypto::CryptoProvider;
use rustls::pki_types::CertificateDer;
use rustls::server::WebPkiClientVerifier;
use rustls::{ClientConfig, RootCertStore, ServerConfig};

use super::verify::Pinned;
use super::{Fingerprint, Identity, IdentityError};

/// Why a TLS configuration could not be built.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TlsError {
    /// Certificate or key material was refused.
    #[error(transparent)]
    Identity(#[from] IdentityError),
    /// rustls refused the configuration (e.g. a key that does not match the certificate).
    #[error("tls: {0}")]
    Rustls(#[from] rustls::Error),
    /// A root store or verifier could not be built.
    #[error("cannot build the verifier: {0}")]
    Verifier(String),
}

/// How a dialer decides that the listener is the right one.
#[derive(Debug, Clone)]
pub enum ServerAuth {
    /// Exactly the certificate with this fingerprint (e.g. one the host generated at startup).
    Pinned(Fingerprint),
    /// A certificate chaining to one of these roots, valid for the URL's host name (or the name
    /// set with [`TlsConfig::with_server_name`]).
    Roots(Vec<CertificateDer<'static>>),
}

/// Whether a listener demands a certificate from each dialer (mutual TLS).
#[derive(Debug, Clone, Default)]
pub enum ClientAuth {
    /// No client certificate (NNG's default for servers).
    #[default]
    None,
    /// A client certificate with one of these fingerprints is required.
    Pinned(Vec<Fingerprint>),
    /// A client certificate chaining to one of these roots is required.
    Roots(Vec<CertificateDer<'static>>),
}

/// The TLS settings of a socket: a listener side, a dialer side, or both.
///
/// ```
/// use nano_transport::tls::{ClientAuth, Identity, ServerAuth, TlsConfig};
/// let host = Identity::generate(&["localhost"])?;
/// let pin = host.fingerprint();
/// let listen = TlsConfig::new().with_listener(host, ClientAuth::None)?;
/// let dial = TlsConfig::new().with_dialer(ServerAuth::Pinned(pin), None)?;
/// assert!(listen.has_listener() && !listen.has_dialer());
/// assert!(dial.has_dialer());
/// # Ok::<(), nano_transport::tls::TlsError>(())
/// ```
#[derive(Debug, Clone, Default)]
pub struct TlsConfig {
    pub(crate) server: Option<Arc<ServerConfig>>,
    pub(crate) client: Option<Arc<ClientConfig>>,
    pub(crate) server_name: Option<String>,
}

pub(crate) fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn roots(certs: &[CertificateDer<'static>]) -> Result<RootCertStore, TlsError> {
    let mut store = RootCertStore::empty();
    for c in certs {
        store.add(c.clone())?;
    }
    if store.is_empty() {
        return Err(TlsError::Verifier("no root certificate".into()));
    }
    Ok(store)
}

impl TlsConfig {
    /// No TLS settings yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// Listeners present `identity` and check dialers as `clients` says.
    pub fn with_listener(
        mut self,
        identity: Identity,
        clients: ClientAuth,
    ) -> Result<Self, TlsError> {
        let provider = provider();
        let builder = ServerConfig::builder_with_provider(Arc::clone(&provider))
            .with_safe_default_protocol_versions()?;
        let builder = match clients {
            ClientAuth::None => builder.with_no_client_auth(),
            ClientAuth::Pinned(pins) => {
                builder.with_client_cert_verifier(Arc::new(Pinned::new(pins, provider)))
            }
            ClientAuth::Roots(certs) => {
                let verifier =
                    WebPkiClientVerifier::builder_with_provider(Arc::new(roots(&certs)?), provider)
                        .build()
                        .map_err(|e| TlsError::Verifier(e.to_string()))?;
                builder.with_client_cert_verifier(verifier)
            }
        };
        let config = builder.with_single_cert(identity.chain, identity.key)?;
        self.server = Some(Arc::new(config));
        Ok(self)
    }

    /// Dialers check listeners as `server` says, and present `identity` when the listener asks
    /// for a client certificate.
    pub fn with_dialer(
        mut self,
        server: ServerAuth,
        identity: Option<Identity>,
    ) -> Result<Self, TlsError> {
        let provider = provider();
        let builder = ClientConfig::builder_with_provider(Arc::clone(&provider))
            .with_safe_default_protocol_versions()?;
        let builder = match server {
            ServerAuth::Pinned(pin) => builder
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(Pinned::new(vec![pin], provider))),
            ServerAuth::Roots(certs) => builder.with_root_certificates(roots(&certs)?),
        };
        let config = match identity {
            Some(id) => builder.with_client_auth_cert(id.chain, id.key)?,
            None => builder.with_no_client_auth(),
        };
        self.client = Some(Arc::new(config));
        Ok(self)
    }

    /// The name dialers verify and send as SNI instead of the URL's host.
    pub fn with_server_name(mut self, name: impl Into<String>) -> Self {
        self.server_name = Some(name.into());
        self
    }

    /// Uses a rustls server configuration built by the caller.
    pub fn with_rustls_server(mut self, config: Arc<ServerConfig>) -> Self {
        self.server = Some(config);
        self
    }

    /// Uses a rustls client configuration built by the caller.
    pub fn with_rustls_client(mut self, config: Arc<ClientConfig>) -> Self {
        self.client = Some(config);
        self
    }

    /// Whether `tls+tcp://` listeners can be opened with this configuration.
    pub fn has_listener(&self) -> bool {
        self.server.is_some()
    }

    /// Whether `tls+tcp://` addresses can be dialed with this configuration.
    pub fn has_dialer(&self) -> bool {
        self.client.is_some()
    }
}
