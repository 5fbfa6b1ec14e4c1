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
//! Every value (address, paths, arguments) is put into those lines through [`quote`], so it
//! reaches the daemon as exactly the bytes given, whatever shell characters it holds.
//!
//! ```
//! use mirai::launch::{Join, Program, Ssh};
//! let join = Join::new("tcp://10.0.0.1:5555", "s3cret-s3cret-s3cret");
//! let ssh = Ssh::new("alice@node1:2222")?.program(Program::new("/opt/app/worker"));
//! // What would run, for copy and paste (the R `launch_remote()` of an empty config):
//! let line = ssh.command_line(&join, 1)?;
//! assert!(line.starts_with("ssh -o BatchMode=yes -p 2222 alice@node1 "));
//! assert!(line.contains("MIRAI_DAEMON_URL=tcp://10.0.0.1:5555"));
//! assert!(!line.contains("s3cret") && !line.contains(join.credential(1).expose_str().unwrap()));
//! # Ok::<(), mirai::launch::Error>(())
//! ```
//!
//! # The credential never travels on a command line
//!
//! A command line is public on Linux: every local user reads `/proc/<pid>/cmdline`, for as long
//! as the process runs (an `ssh` client lives as long as its remote daemon). So no launcher
//! puts a secret into one. Each daemon gets its own *launch credential*
//! ([`Join::credential`]: an HMAC of its launch id under the pool token, worth that one launch
//! id), and the line that starts it says only `MIRAI_DAEMON_TOKEN_STDIN=1`: the daemon reads
//! the credential from the first line of its stdin.
//!
//! - [`Ssh`] and [`Template`]: the pool writes the credential into the stdin of the `ssh` or
//!   `sh -c` process it starts; `ssh` forwards it to the remote command, and a template must
//!   hand its stdin to the daemon (`docker run -i`, `kubectl exec -i`, `sh -c`). A template
//!   that used the `{token}` placeholder is refused ([`Error::TokenPlaceholder`]): it put the
//!   token on a command line.
//! - [`Slurm`]: one batch script serves every array task, so the credentials, one per array
//!   index, travel in `sbatch`'s own environment (`MIRAI_DAEMON_CREDENTIALS`, which `sbatch`
//!   exports to the job as it does every variable by default), never on its command line and
//!   never in a file on shared storage. The script picks its task's credential and unsets the
//!   variable before any `module` or setup line runs, then hands the credential to the daemon
//!   on stdin through a here-document. Slurm keeps a job's environment with the job, readable
//!   by its owner and the administrators, as it keeps the script. The environment bounds one
//!   job to [`MAX_SLURM_DAEMONS`]; submit more jobs for more daemons.
//! - Local daemons (children of the pool) get the credential on stdin too.
//! - [`manual`] (a line for a person to paste into a shell) sets `MIRAI_DAEMON_TOKEN=...` as a
//!   shell assignment before the program, which the shell puts into the daemon's environment
//!   without any process's arguments; paste it, do not pass it to `sh -c`.
//!
//! A daemon removes every `MIRAI_DAEMON_*` variable from its environment once it has read them,
//! so the processes its tasks start inherit no setting and no secret.

mod quote;
pub(crate) mod remote;
mod slurm;
mod ssh;
mod template;

use std::process::{Child, Command};
use std::time::Duration;

use mirai_dispatch::daemon::ExitRules;

use crate::daemon::{
    ENV_LAUNCH_ID, ENV_RULES, ENV_TLS_PIN, ENV_TOKEN, ENV_TOKEN_STDIN, ENV_URL, format_rules,
};

/// A join token or launch credential: its `Debug` shows only its length.
pub use mirai_dispatch::secret::Secret;
pub use quote::quote;
pub use slurm::{MAX_SLURM_DAEMONS, Slurm, SlurmJob};
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
    /// A [`Template`] holds the `{token}` placeholder, which would put the join token on a
    /// command line; the daemon's `{command}` reads its credential from stdin instead.
    #[error(
        "the {{token}} placeholder would put the join token on a command line: use {{command}}, which reads its credential from stdin"
    )]
    TokenPlaceholder,
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

/// What a daemon needs to join a dispatcher: its address, the join token its launch
/// credentials derive from, and the exit rules. The address and rules reach the daemon through
/// its environment, the credential through its stdin.
///
/// ```
/// use std::time::Duration;
/// let join = mirai::launch::Join::new("tcp://10.0.0.1:5555", "t0ken-t0ken-t0ken")
///     .idletime(Duration::from_secs(600))
///     .maxtasks(1000);
/// assert_eq!(join.url(), "tcp://10.0.0.1:5555");
/// assert!(!format!("{join:?}").contains("t0ken"), "Debug hides the token");
/// ```
#[derive(Clone, Debug)]
pub struct Join {
    url: String,
    token: Secret,
    rules: ExitRules,
    tls_pin: Option<String>,
}

impl Join {
    /// Daemons dial `url` (as the daemon's machine reaches the dispatcher) with credentials
    /// derived from `token`. A pool gives its own with [`Pool::join`](crate::Pool::join).
    ///
    /// ```
    /// let join = mirai::launch::Join::new("tcp://10.0.0.1:5555", "t0ken-t0ken-t0ken");
    /// assert_eq!(join.url(), "tcp://10.0.0.1:5555");
    /// ```
    pub fn new(url: impl Into<String>, token: impl Into<String>) -> Self {
        Self {
            url: url.into(),
            token: Secret::from(token.into()),
            rules: ExitRules::default(),
            tls_pin: None,
        }
    }

    /// A join with the exit rules a pool gives its own daemons.
    pub(crate) fn with_rules(url: &str, token: &Secret, rules: ExitRules) -> Self {
        Self {
            url: url.to_owned(),
            token: token.clone(),
            rules,
            tls_pin: None,
        }
    }

    /// The credential daemon `launch_id` presents (an HMAC of the id under the token; launch
    /// id 0, a daemon started by hand, presents the token itself). The launchers write it to
    /// the daemon's stdin; a custom launcher built on [`Ssh::command`] does the same, as one
    /// line.
    ///
    /// ```
    /// let join = mirai::launch::Join::new("tcp://h:1", "t0ken-t0ken-t0ken");
    /// assert_eq!(join.credential(3), join.credential(3));
    /// assert_ne!(join.credential(3), join.credential(4));
    /// assert_eq!(join.credential(3).len(), 64);
    /// ```
    pub fn credential(&self, launch_id: u64) -> Secret {
        self.token.launch_credential(launch_id)
    }

    /// The credential of daemon `launch_id` as the line a daemon reads on stdin.
    pub(crate) fn credential_line(&self, launch_id: u64) -> Result<Vec<u8>, Error> {
        let mut line = self.credential(launch_id).expose().to_vec();
        if line.is_empty()
            || line
                .iter()
                .any(|b| b.is_ascii_whitespace() || b.is_ascii_control())
        {
            return Err(Error::Invalid(
                "the join token must be non-empty, without spaces or control characters".into(),
            ));
        }
        line.push(b'\n');
        Ok(line)
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
/// The daemon's credential is in the line, as a shell assignment before the program: a shell
/// hands it to the daemon's environment without putting it on any process's command line (the
/// daemon removes it from its environment once read). So paste the line into a shell (`sh`,
/// `bash`, `zsh`); do not pass it to `sh -c` or `ssh`, whose own command line it would become.
///
/// ```
/// use mirai::launch::{Join, Program, manual};
/// let join = Join::new("tcp://10.0.0.1:5555", "t0ken-t0ken-t0ken");
/// let line = manual(&join, 0, &Program::new("/opt/w"))?;
/// assert_eq!(
///     line,
///     "MIRAI_DAEMON_URL=tcp://10.0.0.1:5555 MIRAI_DAEMON_TOKEN=t0ken-t0ken-t0ken \
///      MIRAI_DAEMON_LAUNCH_ID=0 MIRAI_DAEMON_RULES=,, /opt/w"
/// );
/// # Ok::<(), mirai::launch::Error>(())
/// ```
pub fn manual(join: &Join, launch_id: u64, program: &Program) -> Result<String, Error> {
    let mut line = join.credential_line(launch_id)?;
    line.pop();
    let token = String::from_utf8(line)
        .map_err(|_| Error::Invalid("the join token is not UTF-8".into()))?;
    let (url, rest) = env_words(join, &join.url, &launch_id.to_string())?;
    Ok(format!(
        "{url} {ENV_TOKEN}={} {rest} {}",
        quote(&token)?,
        program.words()?
    ))
}

/// How a daemon's launch id is written into its line: a number, or shell arithmetic for
/// launchers that start many daemons from one script (Slurm job arrays).
#[derive(Debug, Clone, Copy)]
pub(crate) enum LaunchId<'a> {
    Fixed(u64),
    Shell(&'a str),
}

/// The `NAME=value` words of the daemon's environment: the url's, and the others (launch id,
/// rules, pin) as one string; the launch id as given (a number, or shell text in quotes).
fn env_words(join: &Join, url: &str, id: &str) -> Result<(String, String), Error> {
    let mut rest = format!(
        "{ENV_LAUNCH_ID}={id} {ENV_RULES}={}",
        quote(&format_rules(&join.rules))?
    );
    if let Some(pin) = &join.tls_pin {
        rest += &format!(" {ENV_TLS_PIN}={}", quote(pin)?);
    }
    Ok((format!("{ENV_URL}={}", quote(url)?), rest))
}

/// The shell line that becomes the daemon:
/// `exec env MIRAI_DAEMON_URL=... MIRAI_DAEMON_TOKEN_STDIN=1 ... PROGRAM ARGS`, which holds no
/// secret: the daemon reads its credential from stdin. `url` is the address as the daemon
/// dials it (a tunnel's end may differ from `join.url`).
pub(crate) fn daemon_line(
    join: &Join,
    url: &str,
    id: LaunchId<'_>,
    program: &Program,
) -> Result<String, Error> {
    let id = match id {
        LaunchId::Fixed(n) => n.to_string(),
        LaunchId::Shell(expr) => format!("\"{expr}\""),
    };
    let (url, rest) = env_words(join, url, &id)?;
    Ok(format!(
        "exec env {url} {ENV_TOKEN_STDIN}=1 {rest} {}",
        program.words()?,
    ))
}

/// Writes `line` to the stdin of a launching process just started, and closes it (the daemon
/// reads one line, then end of file). A process that already died is reported by its exit.
pub(crate) fn hand_over(child: &mut Child, line: &[u8]) {
    use std::io::Write;
    if let Some(mut stdin) = child.stdin.take() {
        // A credential is far below a pipe's buffer: this never blocks.
        let _ = stdin.write_all(line);
    }
}

/// A launching process (`ssh`, `sh -c ...`): killed and reaped when dropped. A remote daemon
/// outlives an `ssh` killed this way only until its dispatcher goes away, when it exits.
#[derive(Debug)]
pub struct Launched {
    child: Child,
    launch_id: u64,
}

impl Launched {
    /// Starts `command` and writes daemon `launch_id`'s credential line to its stdin.
    fn spawn(
        mut command: Command,
        program: &str,
        join: &Join,
        launch_id: u64,
    ) -> Result<Self, Error> {
        let line = join.credential_line(launch_id)?;
        let mut child = command
            .stdin(std::process::Stdio::piped())
            .spawn()
            .map_err(|source| Error::spawn(program, source))?;
        hand_over(&mut child, &line);
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
        let join = Join::new("tcp://h:1", "a b'c-0123456789abcdef").maxtasks(3);
        let line = daemon_line(
            &join,
            "tcp://127.0.0.1:9",
            LaunchId::Fixed(7),
            &Program::new("/x y/prog").arg("--flag"),
        )
        .unwrap();
        assert_eq!(
            line,
            "exec env MIRAI_DAEMON_URL=tcp://127.0.0.1:9 MIRAI_DAEMON_TOKEN_STDIN=1 \
             MIRAI_DAEMON_LAUNCH_ID=7 MIRAI_DAEMON_RULES=,,3 '/x y/prog' --flag"
        );
        let credential = join.credential(7);
        assert!(!line.contains("a b") && !line.contains(credential.expose_str().unwrap()));
        // Run with a stand-in program: the credential arrives on stdin, nowhere else.
        let mut child = Command::new("sh")
            .arg("-c")
            .arg(line.replace(
                "'/x y/prog' --flag",
                "sh -c 'read -r c; printf \"%s|%s|%s\" \"$c\" \"${MIRAI_DAEMON_TOKEN-unset}\" \"$MIRAI_DAEMON_LAUNCH_ID\"'",
            ))
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        hand_over(&mut child, &join.credential_line(7).unwrap());
        let out = child.wait_with_output().unwrap();
        assert_eq!(
            String::from_utf8(out.stdout).unwrap(),
            format!("{}|unset|7", credential.expose_str().unwrap())
        );
    }

    #[test]
    fn the_manual_line_sets_the_credential_by_assignment_not_as_an_argument() {
        let join = Join::new("tcp://h:1", "0123456789abcdef-x");
        let line = manual(&join, 5, &Program::new("sh")).unwrap();
        let credential = join.credential(5);
        assert!(line.contains(&format!(
            " MIRAI_DAEMON_TOKEN={} ",
            credential.expose_str().unwrap()
        )));
        assert!(!line.contains("exec") && !line.contains("env "), "{line}");
        // Typed into a shell (here: read from its stdin), the program sees the credential in its
        // environment and its own command line holds no secret.
        let probe = format!(
            "{} -c 'printf \"%s|%s\" \"$MIRAI_DAEMON_TOKEN\" \"$(tr \"\\0\" \" \" < /proc/$$/cmdline)\"'",
            line
        );
        let mut child = Command::new("sh")
            .arg("-s")
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        hand_over(&mut child, probe.as_bytes());
        let out = child.wait_with_output().unwrap();
        let out = String::from_utf8(out.stdout).unwrap();
        let (token, cmdline) = out.split_once('|').unwrap();
        assert_eq!(token, credential.expose_str().unwrap());
        assert!(cmdline.starts_with("sh -c "), "{cmdline}");
        assert!(!cmdline.contains(token), "{cmdline}");
    }

    #[test]
    fn tokens_that_cannot_travel_as_one_line_are_refused() {
        for bad in ["", "two\nlines", "a space"] {
            assert!(matches!(
                Join::new("tcp://h:1", bad).credential_line(0),
                Err(Error::Invalid(_))
            ));
        }
        // Derived credentials are hex, whatever the token.
        assert!(Join::new("tcp://h:1", "a space").credential_line(1).is_ok());
    }

    #[test]
    fn nul_bytes_are_refused_not_truncated() {
        let join = Join::new("tcp://h:1", "tok\0en");
        assert!(matches!(
            manual(&join, 0, &Program::new("p")),
            Err(Error::Invalid(_))
        ));
        assert!(matches!(
            daemon_line(&join, "tcp://h\0:1", LaunchId::Fixed(0), &Program::new("p")),
            Err(Error::Invalid(_))
        ));
    }
}
