//! [`DispatcherConfig`]: what a dispatcher listens on, whom it admits, and the limits it
//! shares with its daemons.

use std::time::Duration;

#[cfg(feature = "tls")]
use nano_transport::tls::{ClientAuth, Identity};

use super::{HELLO_TIMEOUT, MAX_UNAUTHENTICATED};
use crate::core::Config;
use crate::protocol::Limits;
use crate::secret::Secret;
#[cfg(doc)]
use crate::{core::RejectReason, dispatcher::Dispatcher, secret::MIN_TOKEN_LEN, task::Outcome};

/// Dispatcher settings.
///
/// ```
/// use std::time::Duration;
/// use mirai_dispatch::{Config, DispatcherConfig};
/// let c = DispatcherConfig::new("abstract://example", b"0123456789abcdef".to_vec())
///     .with_core(Config::default().with_max_queued_bytes(1 << 20))
///     .with_heartbeat(Some(Duration::from_millis(250)));
/// assert_eq!(c.core.max_queued_bytes, Some(1 << 20));
/// assert_eq!(c.heartbeat, Some(Duration::from_millis(250)));
/// ```
#[derive(Clone)]
pub struct DispatcherConfig {
    /// Where daemons dial (`tls+tcp://0.0.0.0:0`, `ipc:///path`, `abstract://name`, or
    /// `tcp://...` with [`allow_plain_tcp`](Self::allow_plain_tcp)).
    pub url: String,
    /// The pool token: hand-started daemons present it, launched ones a credential derived from
    /// it ([`Secret::launch_credential`]). At least [`MIN_TOKEN_LEN`] bytes.
    pub token: Secret,
    /// The core's settings.
    pub core: Config,
    /// Size limits, shared with every daemon through its init message: a task whose argument
    /// exceeds [`Limits::max_message`] is refused at submit
    /// ([`RejectReason::MessageTooLarge`]), a result over it is answered
    /// [`Outcome::ResultTooLarge`] by the daemon (which stays connected), and a frame over it
    /// from an admitted daemon is a protocol violation that closes its connection. Default:
    /// [`DEFAULT_MAX_MESSAGE`](crate::protocol::DEFAULT_MAX_MESSAGE).
    ///
    /// ```
    /// use mirai_dispatch::DispatcherConfig;
    /// use mirai_dispatch::protocol::Limits;
    /// let mut c = DispatcherConfig::new("abstract://example", b"0123456789abcdef".to_vec());
    /// c.limits = Limits::new(8 << 30); // 8 GiB arguments and results
    /// assert_eq!(c.limits.max_message, 8 << 30);
    /// ```
    pub limits: Limits,
    /// Opaque settings sent to every daemon in its init message.
    pub settings: Vec<u8>,
    /// Heartbeat interval (default 1 s); `None` disables heartbeats, and with them the detection
    /// of peers lost without a close. See the module docs for the detection bound.
    pub heartbeat: Option<Duration>,
    /// The certificate a `tls+tcp://` listener presents; `None` generates one at start (its
    /// fingerprint is [`Dispatcher::tls_fingerprint`], for the daemons to pin). Feature `tls`.
    #[cfg(feature = "tls")]
    pub tls: Option<Identity>,
    /// Client certificates demanded of daemons on `tls+tcp://` (mutual TLS), on top of the token.
    /// Feature `tls`.
    #[cfg(feature = "tls")]
    pub tls_clients: ClientAuth,
    /// Listen on plain `tcp://` although it carries the token and task data unencrypted.
    pub allow_plain_tcp: bool,
    /// How long a connection may take, from its accept, to finish the TLS handshake (if any),
    /// the SP header exchange and a valid hello before it is closed (default [`HELLO_TIMEOUT`]).
    pub hello_timeout: Duration,
    /// How many connections may wait for their hello at once (default
    /// [`MAX_UNAUTHENTICATED`]; 0 counts as 1). Past it the oldest waiting connection is
    /// closed, so peers that never authenticate hold a bounded number of descriptors and
    /// buffers, while a daemon that just connected always gets its chance.
    pub max_unauthenticated: usize,
}

/// Shows everything but secrets: the token as its length, the TLS identity as its
/// certificate's fingerprint.
///
/// ```
/// use mirai_dispatch::DispatcherConfig;
/// let c = DispatcherConfig::new("abstract://example", b"do-not-print-this-token".to_vec());
/// assert!(!format!("{c:?}").contains("do-not-print"));
/// ```
impl std::fmt::Debug for DispatcherConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut s = f.debug_struct("DispatcherConfig");
        s.field("url", &self.url)
            .field("token", &self.token)
            .field("core", &self.core)
            .field("limits", &self.limits)
            .field("settings", &format_args!("{} bytes", self.settings.len()))
            .field("heartbeat", &self.heartbeat);
        #[cfg(feature = "tls")]
        s.field(
            "tls",
            &self.tls.as_ref().map(|id| id.fingerprint().to_string()),
        )
        .field("tls_clients", &self.tls_clients);
        s.field("allow_plain_tcp", &self.allow_plain_tcp)
            .field("hello_timeout", &self.hello_timeout)
            .field("max_unauthenticated", &self.max_unauthenticated)
            .finish()
    }
}

impl DispatcherConfig {
    /// Defaults for everything but the address and the token.
    pub fn new(url: impl Into<String>, token: impl Into<Secret>) -> Self {
        Self {
            url: url.into(),
            token: token.into(),
            core: Config::default(),
            limits: Limits::default(),
            settings: Vec::new(),
            heartbeat: Some(Duration::from_secs(1)),
            #[cfg(feature = "tls")]
            tls: None,
            #[cfg(feature = "tls")]
            tls_clients: ClientAuth::None,
            allow_plain_tcp: false,
            hello_timeout: HELLO_TIMEOUT,
            max_unauthenticated: MAX_UNAUTHENTICATED,
        }
    }

    /// Allows listening on plain `tcp://` (see [`crate::security`]).
    ///
    /// ```
    /// use mirai_dispatch::DispatcherConfig;
    /// let c = DispatcherConfig::new("tcp://127.0.0.1:0", b"0123456789abcdef".to_vec()).with_plain_tcp(true);
    /// assert!(c.allow_plain_tcp);
    /// ```
    pub fn with_plain_tcp(mut self, allow: bool) -> Self {
        self.allow_plain_tcp = allow;
        self
    }

    /// Sets the certificate `tls+tcp://` listeners present.
    ///
    /// ```
    /// use mirai_dispatch::DispatcherConfig;
    /// use nano_transport::tls::Identity;
    /// let id = Identity::generate(&["pool.example"])?;
    /// let pin = id.fingerprint();
    /// let c = DispatcherConfig::new("tls+tcp://0.0.0.0:0", b"0123456789abcdef".to_vec()).with_tls_identity(id);
    /// assert_eq!(c.tls.map(|i| i.fingerprint()), Some(pin));
    /// # Ok::<(), nano_transport::tls::TlsError>(())
    /// ```
    #[cfg(feature = "tls")]
    pub fn with_tls_identity(mut self, identity: Identity) -> Self {
        self.tls = Some(identity);
        self
    }

    /// Sets [`DispatcherConfig::core`].
    pub fn with_core(mut self, core: Config) -> Self {
        self.core = core;
        self
    }

    /// Sets [`DispatcherConfig::heartbeat`] (a zero interval counts as `None`).
    pub fn with_heartbeat(mut self, interval: Option<Duration>) -> Self {
        self.heartbeat = interval.filter(|d| !d.is_zero());
        self
    }
}
