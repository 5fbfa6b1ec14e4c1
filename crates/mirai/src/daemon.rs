//! The daemon side: turning this process into a daemon, for local children and remote hosts.
//!
//! A local daemon is the current binary run again with [`ENV_URL`] set; the first line of
//! `main` calls [`daemon_main_if_requested`], which serves tasks and exits in that case and
//! returns at once otherwise. This needs no second binary and keeps host and daemon in step.

use std::io::BufRead;
use std::time::Duration;

use mirai_dispatch::daemon::{AutoExit, DaemonConfig, ExitRules, serve};
use mirai_dispatch::secret::Secret;

use crate::Registry;

/// What every variable of the daemon's environment starts with; the daemon removes them all
/// once read.
pub(crate) const ENV_PREFIX: &str = "MIRAI_DAEMON_";
/// The dispatcher address a local daemon dials.
pub(crate) const ENV_URL: &str = "MIRAI_DAEMON_URL";
/// The join credential itself, for daemons started by hand (see [`crate::launch::manual`]).
pub(crate) const ENV_TOKEN: &str = "MIRAI_DAEMON_TOKEN";
/// `1`: the join credential is the first line of the daemon's stdin (every launcher).
pub(crate) const ENV_TOKEN_STDIN: &str = "MIRAI_DAEMON_TOKEN_STDIN";
/// The launch id.
pub(crate) const ENV_LAUNCH_ID: &str = "MIRAI_DAEMON_LAUNCH_ID";
/// Exit rules, as `idletime_ms,walltime_ms,maxtasks` (empty fields: never).
pub(crate) const ENV_RULES: &str = "MIRAI_DAEMON_RULES";
/// The fingerprint of a `tls+tcp://` dispatcher's certificate, which the daemon pins.
pub(crate) const ENV_TLS_PIN: &str = "MIRAI_DAEMON_TLS_PIN";

/// The longest credential line read from stdin (credentials are 64 hex digits; hand-chosen
/// tokens may be longer, but not without bound).
const MAX_CREDENTIAL_LINE: usize = 4096;

/// How long a daemon waits for its credential on stdin before it gives up.
const STDIN_PATIENCE: Duration = Duration::from_secs(60);

/// Why a daemon could not get its join credential.
#[derive(Debug, thiserror::Error)]
enum CredentialError {
    #[error(
        "no credential: stdin ended before a line (launch with MIRAI_DAEMON_TOKEN_STDIN=1 writes one)"
    )]
    Missing,
    #[error("the credential line on stdin exceeds {MAX_CREDENTIAL_LINE} bytes")]
    TooLong,
    #[error("no credential on stdin within {0:?}")]
    TimedOut(Duration),
    #[error("reading the credential from stdin: {0}")]
    Io(#[from] std::io::Error),
}

/// The daemon's settings, read from its environment.
struct DaemonEnv {
    url: String,
    token: Option<String>,
    token_stdin: bool,
    launch_id: u64,
    rules: String,
    tls_pin: Option<String>,
}

impl DaemonEnv {
    /// Reads the settings and removes every `MIRAI_DAEMON_*` variable from the environment, so
    /// the processes tasks spawn inherit none (a task child that is this same program stays an
    /// ordinary process); `None`, leaving the environment alone, when this is no daemon.
    fn take() -> Option<Self> {
        let url = std::env::var(ENV_URL).ok()?;
        let var = |name: &str| std::env::var(name).ok();
        let env = Self {
            url,
            token: var(ENV_TOKEN),
            token_stdin: var(ENV_TOKEN_STDIN).as_deref() == Some("1"),
            launch_id: var(ENV_LAUNCH_ID).and_then(|v| v.parse().ok()).unwrap_or(0),
            rules: var(ENV_RULES).unwrap_or_default(),
            tls_pin: var(ENV_TLS_PIN),
        };
        crate::environment::remove_vars_with_prefix(ENV_PREFIX);
        Some(env)
    }

    /// The join credential: from the environment, or else the first line of stdin.
    fn credential(&self) -> Result<Secret, CredentialError> {
        match &self.token {
            Some(token) => Ok(Secret::from(token.as_str())),
            None if self.token_stdin => credential_from_stdin(STDIN_PATIENCE),
            None => Ok(Secret::default()),
        }
    }
}

/// Reads the first line of stdin, waiting at most `patience` (a launcher that never writes
/// must not leave a daemon waiting forever).
fn credential_from_stdin(patience: Duration) -> Result<Secret, CredentialError> {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::Builder::new()
        .name("mirai-credential".into())
        .spawn(move || {
            let _ = tx.send(read_credential(std::io::stdin().lock()));
        })?;
    rx.recv_timeout(patience)
        .unwrap_or(Err(CredentialError::TimedOut(patience)))
}

/// The first line of `from`, without its line ending, read no further than
/// [`MAX_CREDENTIAL_LINE`] bytes.
fn read_credential(from: impl BufRead) -> Result<Secret, CredentialError> {
    let mut line = Vec::new();
    from.take(MAX_CREDENTIAL_LINE as u64 + 1)
        .read_until(b'\n', &mut line)?;
    let ended = line.last() == Some(&b'\n');
    if ended {
        line.pop();
        if line.last() == Some(&b'\r') {
            line.pop();
        }
    }
    if line.len() > MAX_CREDENTIAL_LINE {
        return Err(CredentialError::TooLong);
    }
    if line.is_empty() {
        return Err(CredentialError::Missing);
    }
    Ok(Secret::from(line))
}

/// If the environment says this process is a daemon (a local child of a pool, or one a launcher
/// started), serves tasks from `registry` and exits the process; otherwise returns at once.
/// Call it first thing in `main`, before the program starts threads: a daemon removes every
/// `MIRAI_DAEMON_*` variable from its environment once read, so the processes its tasks spawn
/// inherit none of them (and a task that runs this same program gets an ordinary process,
/// not a second daemon). A launched daemon reads its join credential from the first line of
/// stdin, never from its command line.
///
/// ```
/// let registry = mirai::Registry::new();
/// mirai::daemon_main_if_requested(&registry); // not a daemon here: returns
/// ```
pub fn daemon_main_if_requested(registry: &Registry) {
    let Some(env) = DaemonEnv::take() else {
        return;
    };
    let token = match env.credential() {
        Ok(token) => token,
        Err(e) => {
            eprintln!("mirai daemon: {e}");
            std::process::exit(10);
        }
    };
    let mut config = DaemonConfig::new(env.url, token);
    config.launch_id = env.launch_id;
    config.rules = parse_rules(&env.rules);
    #[cfg(not(feature = "tls"))]
    if env.tls_pin.is_some() {
        eprintln!("mirai daemon: {ENV_TLS_PIN}: tls+tcp:// needs the `tls` feature of mirai");
        std::process::exit(10);
    }
    #[cfg(feature = "tls")]
    if let Some(pin) = env.tls_pin {
        match mirai_dispatch::security::pinned_dialer(&pin) {
            Ok(tls) => config.tls = Some(tls),
            Err(e) => {
                eprintln!("mirai daemon: {ENV_TLS_PIN}: {e}");
                std::process::exit(10);
            }
        }
    }
    let code = match serve(&config, registry.inner()) {
        Ok(reason) => reason.code(),
        Err(e) => {
            eprintln!("mirai daemon: {e}");
            10
        }
    };
    std::process::exit(code);
}

/// Serves tasks from `registry` for the dispatcher at `url` (a remote host's daemon entry)
/// until the host goes away; returns the process exit code to use.
///
/// On a remote machine this is the whole `main` of the daemon program, with the url and token
/// of a pool started with [`Daemons::url`](crate::Daemons::url) on a plain `tcp://` address
/// (for `tls+tcp://`, see [`run_daemon_tls`]). Here a thread stands in for it:
///
/// ```
/// use mirai::{Daemons, Registry, TaskFn, task};
/// fn add((a, b): (i64, i64)) -> i64 { a + b }
/// const ADD: TaskFn<(i64, i64), i64> = task!(add);
///
/// let pool = Daemons::new().url("tcp://127.0.0.1:0").allow_plain_tcp(true).start()?;
/// let (url, token) = (pool.url().to_owned(), pool.token().to_owned());
/// let daemon = std::thread::spawn(move || {
///     mirai::run_daemon(&url, token.as_bytes(), &Registry::new().with(&ADD))
/// });
/// assert_eq!(pool.submit(&ADD, (2, 2))?.wait()?, 4);
/// drop(pool);
/// assert_eq!(daemon.join().unwrap(), 0); // the host went away
/// # Ok::<(), mirai::Error>(())
/// ```
pub fn run_daemon(url: &str, token: &[u8], registry: &Registry) -> i32 {
    let config = DaemonConfig::new(url, token.to_vec());
    match serve(&config, registry.inner()) {
        Ok(reason) => reason.code(),
        Err(e) => {
            eprintln!("mirai daemon: {e}");
            10
        }
    }
}

/// [`run_daemon`] for a `tls+tcp://` dispatcher: the daemon accepts exactly the certificate
/// whose fingerprint is `tls_pin` (as [`Pool::tls_fingerprint`](crate::Pool::tls_fingerprint)
/// prints it, e.g. carried in the launch command). A malformed pin returns exit code 10, and
/// so does any pin in a build without the `tls` feature (after saying so on stderr).
///
/// ```
/// # #[cfg(feature = "tls")] {
/// use mirai::{Daemons, Registry, TaskFn, task};
/// fn add((a, b): (i64, i64)) -> i64 { a + b }
/// const ADD: TaskFn<(i64, i64), i64> = task!(add);
///
/// let pool = Daemons::new().url("tls+tcp://127.0.0.1:0").start()?;
/// let (url, token) = (pool.url().to_owned(), pool.token().to_owned());
/// let pin = pool.tls_fingerprint().expect("a tls+tcp pool has one");
/// let daemon = std::thread::spawn(move || {
///     mirai::run_daemon_tls(&url, token.as_bytes(), &pin, &Registry::new().with(&ADD))
/// });
/// assert_eq!(pool.submit(&ADD, (2, 2))?.wait()?, 4);
/// drop(pool);
/// assert_eq!(daemon.join().unwrap(), 0); // the host went away
///
/// // A pin that is not a SHA-256 fingerprint never dials.
/// let url = "tls+tcp://10.0.0.1:5555";
/// assert_eq!(mirai::run_daemon_tls(url, b"token", "sha256:00", &Registry::new()), 10);
/// # }
/// # Ok::<(), mirai::Error>(())
/// ```
pub fn run_daemon_tls(url: &str, token: &[u8], tls_pin: &str, registry: &Registry) -> i32 {
    #[cfg(not(feature = "tls"))]
    {
        let _ = (url, token, tls_pin, registry);
        eprintln!("mirai daemon: tls+tcp:// needs the `tls` feature of mirai");
        10
    }
    #[cfg(feature = "tls")]
    run_pinned(url, token, tls_pin, registry)
}

/// [`run_daemon_tls`] with TLS built in.
#[cfg(feature = "tls")]
fn run_pinned(url: &str, token: &[u8], tls_pin: &str, registry: &Registry) -> i32 {
    let mut config = DaemonConfig::new(url, token.to_vec());
    match mirai_dispatch::security::pinned_dialer(tls_pin) {
        Ok(tls) => config.tls = Some(tls),
        Err(e) => {
            eprintln!("mirai daemon: tls pin: {e}");
            return 10;
        }
    }
    match serve(&config, registry.inner()) {
        Ok(reason) => reason.code(),
        Err(e) => {
            eprintln!("mirai daemon: {e}");
            10
        }
    }
}

pub(crate) fn format_rules(rules: &ExitRules) -> String {
    let ms = |d: Option<Duration>| d.map(|d| d.as_millis().to_string()).unwrap_or_default();
    format!(
        "{},{},{}",
        ms(rules.idletime),
        ms(rules.walltime),
        rules.maxtasks.map(|n| n.to_string()).unwrap_or_default()
    )
}

/// The exit rules of [`ENV_RULES`] text; fields that are missing or not numbers mean "never".
pub(crate) fn parse_rules(text: &str) -> ExitRules {
    let mut fields = text.split(',').map(|f| f.parse::<u64>().ok());
    let mut next = || fields.next().flatten();
    let mut rules = ExitRules::default().with_autoexit(AutoExit::Immediately);
    rules.idletime = next().map(Duration::from_millis);
    rules.walltime = next().map(Duration::from_millis);
    rules.maxtasks = next();
    rules
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rules_round_trip_through_the_environment_text() {
        let rules = ExitRules::default()
            .with_idletime(Duration::from_millis(1500))
            .with_maxtasks(7);
        let back = parse_rules(&format_rules(&rules));
        assert_eq!(back.idletime, Some(Duration::from_millis(1500)));
        assert_eq!(back.walltime, None);
        assert_eq!(back.maxtasks, Some(7));
        assert_eq!(back.autoexit, AutoExit::Immediately);
    }

    proptest::proptest! {
        /// Any rules a pool can hand out come back unchanged from their text.
        #[test]
        fn any_rules_round_trip(
            idle in proptest::option::of(proptest::num::u64::ANY),
            wall in proptest::option::of(proptest::num::u64::ANY),
            max in proptest::option::of(proptest::num::u64::ANY),
        ) {
            let rules = ExitRules {
                idletime: idle.map(Duration::from_millis),
                walltime: wall.map(Duration::from_millis),
                maxtasks: max,
                autoexit: AutoExit::Immediately,
            };
            proptest::prop_assert_eq!(parse_rules(&format_rules(&rules)), rules);
        }

        /// Whatever the text, parsing never panics and what it yields round trips.
        #[test]
        fn any_rules_text_parses_safely(text in "\\PC{0,40}", bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..40)) {
            crate::fuzzing::daemon_rules(text.as_bytes());
            crate::fuzzing::daemon_rules(&bytes);
        }
    }

    #[test]
    fn the_credential_is_the_first_line_of_stdin_and_bounded() {
        let read = |bytes: &[u8]| read_credential(bytes).map(|s| s.expose().to_vec());
        assert_eq!(read(b"abc\nrest").unwrap(), b"abc");
        assert_eq!(read(b"abc\r\n").unwrap(), b"abc");
        assert_eq!(read(b"no newline").unwrap(), b"no newline");
        assert!(matches!(read(b""), Err(CredentialError::Missing)));
        assert!(matches!(read(b"\n"), Err(CredentialError::Missing)));
        let mut long = vec![b'x'; MAX_CREDENTIAL_LINE];
        assert_eq!(read(&long).unwrap().len(), MAX_CREDENTIAL_LINE);
        long.push(b'x');
        assert!(matches!(read(&long), Err(CredentialError::TooLong)));
        // A peer that never ends its line is not read past the bound.
        let endless = std::io::BufReader::new(std::io::repeat(b'y'));
        assert!(matches!(
            read_credential(endless),
            Err(CredentialError::TooLong)
        ));
    }
}
