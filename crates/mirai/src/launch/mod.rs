//! Launchers for daemons on other machines: over `ssh`, as a Slurm job, or through any command
//! template, plus the launch commands as text for copy and paste.
//!
//! Why a module of its own: a remote daemon is the same program as a local one (it calls
//! [`daemon_main_if_requested`](crate::daemon_main_if_requested) first thing in `main`), told
//! where to dial by its environment. Starting it elsewhere is therefore only a matter of
//! building the right shell line, which is pure text and tested as such; the runners that
//! spawn `ssh`, `sbatch` or `sh -c` are thin shells around it.
//!
//! A [`Pool`](crate::Pool) runs them with its own address, token and fresh launch ids
//! ([`Pool::launch`](crate::Pool::launch), [`Pool::launch_slurm`](crate::Pool::launch_slurm),
//! [`Pool::launch_with`](crate::Pool::launch_with), [`Pool::remote_command`](crate::Pool::remote_command))
//! and waits for the daemons to join; the types here build the same lines for any dispatcher.
//!
//! Every value (address, token, paths, arguments) is put into those lines through [`quote`],
//! so it reaches the daemon as exactly the bytes given, whatever shell characters it holds.
//!
//! ```
//! use mirai::launch::{Join, Program, Ssh};
//! let join = Join::new("tcp://10.0.0.1:5555", "s3cret");
//! let ssh = Ssh::new("alice@node1:2222")?.program(Program::new("/opt/app/worker"));
//! // What would run, for copy and paste (the R `launch_remote()` of an empty config):
//! let line = ssh.command_line(&join, 0)?;
//! assert!(line.starts_with("ssh -o BatchMode=yes -p 2222 alice@node1 "));
//! assert!(line.contains("MIRAI_DAEMON_URL=tcp://10.0.0.1:5555"));
//! # Ok::<(), mirai::launch::Error>(())
//! ```
//!
//! The join token travels in the daemon's environment, set on its command line, so other
//! users of either machine can read it in the process list while the daemon starts. Treat it
//! as a join ticket on a trusted network, not as authentication across an untrusted one.

mod quote;
pub(crate) mod remote;
mod slurm;
mod ssh;
mod template;

use std::process::{Child, Command};
use std::time::Duration;

use mirai_dispatch::daemon::ExitRules;

use crate::daemon::{ENV_LAUNCH_ID, ENV_RULES, ENV_TLS_PIN, ENV_TOKEN, ENV_URL, format_rules};

pub use quote::quote;
pub use slurm::{Slurm, SlurmJob};
pub use ssh::Ssh;
pub use template::Template;

/// Why a launch could not be built or started.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A value cannot be put into a command or script (a NUL byte, a line break in a
    /// one-line option, an address a tunnel cannot carry, ...).
    #[error("cannot build the launch command: {0}")]
    Invalid(String),
    /// The launching program could not be started.
    #[error("cannot run {program}: {source}")]
    Spawn {
        /// The program (`ssh`, `sbatch`, `sh`).
        program: String,
        /// The system error.
        #[source]
        source: std::io::Error,
    },
    /// The launching program is not installed (not found on `PATH`, or no such file).
    #[error("{program} not found: install it or give its path")]
    NotFound {
        /// The program looked for.
        program: String,
    },
    /// The launching program ran and refused: `sbatch` rejecting a script, `ssh` failing to
    /// log in (status 255), or a daemon that exited before it joined (its status, through
    /// `ssh`), with what it printed on stderr.
    #[error("{program} failed ({status}): {stderr}")]
    Refused {
        /// The program.
        program: String,
        /// Its exit status.
        status: std::process::ExitStatus,
        /// What it printed on stderr.
        stderr: String,
    },
    /// The daemon reached the dispatcher, which refused it (a wrong join token, say).
    #[error("daemon {launch_id} was refused by the dispatcher: {reason}")]
    Rejected {
        /// The daemon's launch id.
        launch_id: u64,
        /// Why, as the dispatcher said.
        reason: String,
    },
    /// The daemon did not join within the launch timeout; its launching process was killed.
    #[error("daemon {launch_id} did not join within {waited:?}; its launcher was stopped")]
    NotJoined {
        /// The daemon's launch id.
        launch_id: u64,
        /// How long the pool waited.
        waited: Duration,
    },
}

impl Error {
    /// The error for a program that could not be started: [`Error::NotFound`] when it does not
    /// exist, [`Error::Spawn`] otherwise.
    pub(crate) fn spawn(program: &str, source: std::io::Error) -> Self {
        if source.kind() == std::io::ErrorKind::NotFound {
            Self::NotFound {
                program: program.to_owned(),
            }
        } else {
            Self::Spawn {
                program: program.to_owned(),
                source,
            }
        }
    }
}

/// What a daemon needs to join a dispatcher: its address, its join token and the exit rules,
/// all handed to the daemon through its environment.
///
/// ```
/// use std::time::Duration;
/// let join = mirai::launch::Join::new("tcp://10.0.0.1:5555", "t0ken")
///     .idletime(Duration::from_secs(600))
///     .maxtasks(1000);
/// assert_eq!(join.url(), "tcp://10.0.0.1:5555");
/// assert!(!format!("{join:?}").contains("t0ken"), "Debug hides the token");
/// ```
#[derive(Clone)]
pub struct Join {
    url: String,
    token: String,
    rules: ExitRules,
    tls_pin: Option<String>,
}

impl std::fmt::Debug for Join {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Join")
            .field("url", &self.url)
            .field("token", &"<hidden>")
            .field("tls_pin", &self.tls_pin)
            .finish()
    }
}

impl Join {
    /// Daemons dial `url` (as the daemon's machine reaches the dispatcher) with `token`. A pool
    /// gives its own with [`Pool::join`](crate::Pool::join).
    ///
    /// ```
    /// let join = mirai::launch::Join::new("tcp://10.0.0.1:5555", "t0ken");
    /// assert_eq!(join.url(), "tcp://10.0.0.1:5555");
    /// ```
    pub fn new(url: impl Into<String>, token: impl Into<String>) -> Self {
        Self {
            url: url.into(),
            token: token.into(),
            rules: ExitRules::default(),
            tls_pin: None,
        }
    }

    /// A join with the exit rules a pool gives its own daemons.
    pub(crate) fn with_rules(url: &str, token: &str, rules: ExitRules) -> Self {
        Self {
            url: url.to_owned(),
            token: token.to_owned(),
            rules,
            tls_pin: None,
        }
    }

    /// Daemons dial a `tls+tcp://` address and accept exactly the certificate with this
    /// fingerprint (`sha256:` and 64 hex digits, as [`Pool::tls_fingerprint`] gives it), so no
    /// certificate authority is needed. A pool's own [`Pool::join`] sets it.
    ///
    /// [`Pool::tls_fingerprint`]: crate::Pool::tls_fingerprint
    /// [`Pool::join`]: crate::Pool::join
    ///
    /// ```
    /// use mirai::launch::{Join, Program, manual};
    /// let pin = format!("sha256:{}", "ab".repeat(32));
    /// let join = Join::new("tls+tcp://h:1", "t").tls_pin(&pin);
    /// assert!(manual(&join, 0, &Program::new("w"))?.contains(&format!(" MIRAI_DAEMON_TLS_PIN={pin} ")));
    /// # Ok::<(), mirai::launch::Error>(())
    /// ```
    pub fn tls_pin(mut self, fingerprint: impl Into<String>) -> Self {
        self.tls_pin = Some(fingerprint.into());
        self
    }

    /// Daemons exit after this long without a task.
    ///
    /// ```
    /// use mirai::launch::{Join, Program, manual};
    /// let join = Join::new("tcp://h:1", "t").idletime(std::time::Duration::from_secs(60));
    /// assert!(manual(&join, 0, &Program::new("w"))?.contains(" MIRAI_DAEMON_RULES=60000,, "));
    /// # Ok::<(), mirai::launch::Error>(())
    /// ```
    pub fn idletime(mut self, d: Duration) -> Self {
        self.rules.idletime = Some(d);
        self
    }

    /// Daemons exit between tasks once they have run this long.
    ///
    /// ```
    /// use mirai::launch::{Join, Program, manual};
    /// let join = Join::new("tcp://h:1", "t").walltime(std::time::Duration::from_secs(3600));
    /// assert!(manual(&join, 0, &Program::new("w"))?.contains(" MIRAI_DAEMON_RULES=,3600000, "));
    /// # Ok::<(), mirai::launch::Error>(())
    /// ```
    pub fn walltime(mut self, d: Duration) -> Self {
        self.rules.walltime = Some(d);
        self
    }

    /// Daemons exit after this many tasks.
    ///
    /// ```
    /// use mirai::launch::{Join, Program, manual};
    /// let join = Join::new("tcp://h:1", "t").maxtasks(10);
    /// assert!(manual(&join, 0, &Program::new("w"))?.contains(" MIRAI_DAEMON_RULES=,,10 "));
    /// # Ok::<(), mirai::launch::Error>(())
    /// ```
    pub fn maxtasks(mut self, n: u64) -> Self {
        self.rules.maxtasks = Some(n);
        self
    }

    /// The address daemons dial.
    ///
    /// ```
    /// assert_eq!(mirai::launch::Join::new("tcp://h:1", "t").url(), "tcp://h:1");
    /// ```
    pub fn url(&self) -> &str {
        &self.url
    }
}

/// The daemon program on the machine that runs it: a path there, and its arguments.
///
/// ```
/// let p = mirai::launch::Program::new("/opt/app/worker").arg("--quiet");
/// assert_eq!(p.words()?, "/opt/app/worker --quiet");
/// # Ok::<(), mirai::launch::Error>(())
/// ```
#[derive(Debug, Clone)]
pub struct Program {
    path: String,
    args: Vec<String>,
}

impl Program {
    /// The program at `path` on the daemon's machine.
    ///
    /// ```
    /// assert_eq!(mirai::launch::Program::new("/opt/my app/w").words()?, "'/opt/my app/w'");
    /// # Ok::<(), mirai::launch::Error>(())
    /// ```
    pub fn new(path: impl Into<String>) -> Self {
        Self {
            path: path.into(),
            args: Vec::new(),
        }
    }

    /// This process's own executable, for machines that share its file system (a cluster's
    /// shared home, or this machine).
    ///
    /// ```
    /// let me = mirai::launch::Program::current()?;
    /// assert!(me.words()?.starts_with('/'));
    /// # Ok::<(), mirai::launch::Error>(())
    /// ```
    pub fn current() -> Result<Self, Error> {
        let exe = std::env::current_exe().map_err(|source| Error::Spawn {
            program: "current executable".into(),
            source,
        })?;
        let path = exe
            .to_str()
            .ok_or_else(|| Error::Invalid(format!("{} is not UTF-8", exe.display())))?;
        Ok(Self::new(path))
    }

    /// Adds an argument.
    ///
    /// ```
    /// let p = mirai::launch::Program::new("w").arg("--name").arg("it's");
    /// assert_eq!(p.words()?, r"w --name 'it'\''s'");
    /// # Ok::<(), mirai::launch::Error>(())
    /// ```
    pub fn arg(mut self, arg: impl Into<String>) -> Self {
        self.args.push(arg.into());
        self
    }

    /// The program and its arguments as shell words.
    ///
    /// ```
    /// assert_eq!(mirai::launch::Program::new("w").arg("a b").words()?, "w 'a b'");
    /// # Ok::<(), mirai::launch::Error>(())
    /// ```
    pub fn words(&self) -> Result<String, Error> {
        let mut words = vec![quote(&self.path)?];
        for a in &self.args {
            words.push(quote(a)?);
        }
        Ok(words.join(" "))
    }
}

/// The command that starts daemon `launch_id` of `program` when typed (or pasted) into a shell
/// on the daemon's machine: the launcher for machines none of the others reach, as R's
/// `launch_remote()` prints with an empty remote configuration.
///
/// ```
/// use mirai::launch::{Join, Program, manual};
/// let line = manual(&Join::new("tcp://10.0.0.1:5555", "t"), 0, &Program::new("/opt/w"))?;
/// assert_eq!(
///     line,
///     "env MIRAI_DAEMON_URL=tcp://10.0.0.1:5555 MIRAI_DAEMON_TOKEN=t \
///      MIRAI_DAEMON_LAUNCH_ID=0 MIRAI_DAEMON_RULES=,, /opt/w"
/// );
/// # Ok::<(), mirai::launch::Error>(())
/// ```
pub fn manual(join: &Join, launch_id: u64, program: &Program) -> Result<String, Error> {
    let line = daemon_line(join, &join.url, LaunchId::Fixed(launch_id), program)?;
    // No `exec`: it would end the shell the line is pasted into.
    Ok(line.strip_prefix("exec ").unwrap_or(&line).to_owned())
}

/// How a daemon's launch id is written into its line: a number, or shell arithmetic for
/// launchers that start many daemons from one script (Slurm job arrays).
#[derive(Debug, Clone, Copy)]
pub(crate) enum LaunchId<'a> {
    Fixed(u64),
    Shell(&'a str),
}

/// The shell line that becomes the daemon: `exec env MIRAI_DAEMON_URL=... PROGRAM ARGS`.
/// `url` is the address as the daemon dials it (a tunnel's end may differ from `join.url`).
pub(crate) fn daemon_line(
    join: &Join,
    url: &str,
    id: LaunchId<'_>,
    program: &Program,
) -> Result<String, Error> {
    let (id, token) = match id {
        LaunchId::Fixed(n) => (n.to_string(), crate::pool::credential(&join.token, n)),
        LaunchId::Shell(expr) => (format!("\"{expr}\""), join.token.clone()),
    };
    let pin = match &join.tls_pin {
        Some(pin) => format!("{ENV_TLS_PIN}={} ", quote(pin)?),
        None => String::new(),
    };
    Ok(format!(
        "exec env {ENV_URL}={} {ENV_TOKEN}={} {ENV_LAUNCH_ID}={id} {ENV_RULES}={} {pin}{}",
        quote(url)?,
        quote(&token)?,
        quote(&format_rules(&join.rules))?,
        program.words()?,
    ))
}

/// A launching process (`ssh`, `sh -c ...`): killed and reaped when dropped. A remote daemon
/// outlives an `ssh` killed this way only until its dispatcher goes away, when it exits.
#[derive(Debug)]
pub struct Launched {
    child: Child,
    launch_id: u64,
}

impl Launched {
    fn spawn(mut command: Command, program: &str, launch_id: u64) -> Result<Self, Error> {
        let child = command
            .spawn()
            .map_err(|source| Error::spawn(program, source))?;
        Ok(Self { child, launch_id })
    }

    /// The launch id the daemon got.
    ///
    /// ```
    /// use mirai::launch::{Join, Program, Template};
    /// let t = Template::new("exit 0").program(Program::new("w"));
    /// let launched = t.launch(&Join::new("tcp://127.0.0.1:9", "t"), 7..9)?;
    /// assert_eq!(launched.iter().map(|l| l.launch_id()).collect::<Vec<_>>(), [7, 8]);
    /// # Ok::<(), mirai::launch::Error>(())
    /// ```
    pub fn launch_id(&self) -> u64 {
        self.launch_id
    }

    /// The process id of the local launching process.
    ///
    /// ```
    /// use mirai::launch::{Join, Template};
    /// let t = Template::new("exec sleep 5").program(mirai::launch::Program::new("w"));
    /// let launched = t.launch(&Join::new("tcp://127.0.0.1:9", "t"), 0..1)?;
    /// assert!(std::path::Path::new(&format!("/proc/{}", launched[0].id())).exists());
    /// drop(launched); // killed and reaped
    /// # Ok::<(), mirai::launch::Error>(())
    /// ```
    pub fn id(&self) -> u32 {
        self.child.id()
    }

    /// Whether the launching process has ended, and how.
    ///
    /// ```
    /// use mirai::launch::{Join, Program, Template};
    /// let t = Template::new("exit 4").program(Program::new("w"));
    /// let mut launched = t.launch(&Join::new("tcp://127.0.0.1:9", "t"), 0..1)?;
    /// let status = loop {
    ///     if let Some(s) = launched[0].try_wait().unwrap() { break s; }
    ///     std::thread::sleep(std::time::Duration::from_millis(5));
    /// };
    /// assert_eq!(status.code(), Some(4));
    /// # Ok::<(), mirai::launch::Error>(())
    /// ```
    pub fn try_wait(&mut self) -> std::io::Result<Option<std::process::ExitStatus>> {
        self.child.try_wait()
    }
}

impl Drop for Launched {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_daemon_line_sets_the_environment_run_daemon_reads() {
        let join = Join::new("tcp://h:1", "a b'c").maxtasks(3);
        let line = daemon_line(
            &join,
            "tcp://127.0.0.1:9",
            LaunchId::Fixed(7),
            &Program::new("/x y/prog").arg("--flag"),
        )
        .unwrap();
        assert_eq!(
            line,
            "exec env MIRAI_DAEMON_URL=tcp://127.0.0.1:9 MIRAI_DAEMON_TOKEN='a b'\\''c' \
             MIRAI_DAEMON_LAUNCH_ID=7 MIRAI_DAEMON_RULES=,,3 '/x y/prog' --flag"
        );
        let out = Command::new("sh")
            .arg("-c")
            .arg(line.replace(
                "'/x y/prog' --flag",
                "sh -c 'printf %s \"$MIRAI_DAEMON_TOKEN\"'",
            ))
            .output()
            .unwrap();
        assert_eq!(String::from_utf8(out.stdout).unwrap(), "a b'c");
    }

    #[test]
    fn nul_bytes_are_refused_not_truncated() {
        let join = Join::new("tcp://h:1", "tok\0en");
        assert!(matches!(
            daemon_line(&join, "tcp://h:1", LaunchId::Fixed(0), &Program::new("p")),
            Err(Error::Invalid(_))
        ));
    }
}
