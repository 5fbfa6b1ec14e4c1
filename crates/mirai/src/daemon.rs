//! The daemon side: turning this process into a daemon, for local children and remote hosts.
//!
//! A local daemon is the current binary run again with [`ENV_URL`] set; the first line of
//! `main` calls [`daemon_main_if_requested`], which serves tasks and exits in that case and
//! returns at once otherwise. This needs no second binary and keeps host and daemon in step.

use std::time::Duration;

use mirai_dispatch::daemon::{AutoExit, DaemonConfig, ExitRules, serve};

use crate::Registry;

/// The dispatcher address a local daemon dials.
pub(crate) const ENV_URL: &str = "MIRAI_DAEMON_URL";
/// The join token.
pub(crate) const ENV_TOKEN: &str = "MIRAI_DAEMON_TOKEN";
/// The launch id.
pub(crate) const ENV_LAUNCH_ID: &str = "MIRAI_DAEMON_LAUNCH_ID";
/// Exit rules, as `idletime_ms,walltime_ms,maxtasks` (empty fields: never).
pub(crate) const ENV_RULES: &str = "MIRAI_DAEMON_RULES";
/// The fingerprint of a `tls+tcp://` dispatcher's certificate, which the daemon pins.
pub(crate) const ENV_TLS_PIN: &str = "MIRAI_DAEMON_TLS_PIN";

/// If the environment says this process is a local daemon, serves tasks from `registry` and
/// exits the process; otherwise returns at once. Call it first thing in `main`.
///
/// ```
/// let registry = mirai::Registry::new();
/// mirai::daemon_main_if_requested(&registry); // not a daemon here: returns
/// ```
pub fn daemon_main_if_requested(registry: &Registry) {
    let Ok(url) = std::env::var(ENV_URL) else {
        return;
    };
    let mut config = DaemonConfig::new(
        url,
        std::env::var(ENV_TOKEN).unwrap_or_default().into_bytes(),
    );
    config.launch_id = std::env::var(ENV_LAUNCH_ID)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    config.rules = parse_rules(&std::env::var(ENV_RULES).unwrap_or_default());
    if let Ok(pin) = std::env::var(ENV_TLS_PIN) {
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
/// prints it, e.g. carried in the launch command). A malformed pin returns exit code 10.
///
/// ```
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
/// # Ok::<(), mirai::Error>(())
/// ```
pub fn run_daemon_tls(url: &str, token: &[u8], tls_pin: &str, registry: &Registry) -> i32 {
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

fn parse_rules(text: &str) -> ExitRules {
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
}
