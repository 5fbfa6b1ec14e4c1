//! Daemons over `ssh`: key-based logins (never a password prompt), optionally with a reverse
//! tunnel so daemons dial `127.0.0.1` on their own machine and reach the dispatcher through
//! the ssh connection (for hosts that cannot reach the dispatcher's address directly).

use std::ops::Range;
use std::path::PathBuf;
use std::process::{Command, Stdio};

use super::{Error, Join, LaunchId, Launched, Program, daemon_line, quote};

/// Launches daemons on another machine with the OpenSSH client.
///
/// ```
/// use mirai::launch::{Join, Program, Ssh};
/// let join = Join::new("tcp://10.0.0.1:5555", "t");
/// let ssh = Ssh::new("bob@gpu7")?
///     .identity("/home/bob/.ssh/id_ed25519")
///     .tunnel()
///     .program(Program::new("/opt/app/worker"));
/// let line = ssh.command_line(&join, 3)?;
/// // The daemon dials its own loopback; ssh forwards that port back to the dispatcher.
/// assert!(line.contains("-R 127.0.0.1:5555:10.0.0.1:5555"));
/// assert!(line.contains("MIRAI_DAEMON_URL=tcp://127.0.0.1:5555"));
/// # Ok::<(), mirai::launch::Error>(())
/// ```
#[derive(Debug, Clone)]
pub struct Ssh {
    destination: String,
    port: Option<u16>,
    identity: Option<PathBuf>,
    options: Vec<String>,
    tunnel: Option<Option<u16>>,
    program: Option<Program>,
    ssh: String,
}

impl Ssh {
    /// A machine as `[user@]host[:port]` (an IPv6 host in brackets: `user@[::1]:22`).
    ///
    /// ```
    /// let ssh = mirai::launch::Ssh::new("alice@[fe80::1]:2222")?;
    /// assert!(mirai::launch::Ssh::new("alice@host:notaport").is_err());
    /// # Ok::<(), mirai::launch::Error>(())
    /// ```
    pub fn new(target: &str) -> Result<Self, Error> {
        let bad = || Error::Invalid(format!("{target:?} is not [user@]host[:port]"));
        let (user, hostport) = match target.rsplit_once('@') {
            Some((u, h)) if !u.is_empty() => (Some(u), h),
            Some(_) => return Err(bad()),
            None => (None, target),
        };
        let (host, port) = if let Some(rest) = hostport.strip_prefix('[') {
            let (host, after) = rest.split_once(']').ok_or_else(bad)?;
            match after {
                "" => (host, None),
                p => (host, Some(p.strip_prefix(':').ok_or_else(bad)?)),
            }
        } else {
            match hostport.split_once(':') {
                Some((h, p)) => (h, Some(p)),
                None => (hostport, None),
            }
        };
        let port = port
            .map(|p| p.parse::<u16>().ok().filter(|&p| p != 0).ok_or_else(bad))
            .transpose()?;
        let host_ok = !host.is_empty()
            && !host.starts_with('-')
            && host
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || ".-_:%".contains(c));
        let user_ok = user.is_none_or(|u| {
            !u.starts_with('-') && !u.contains(|c: char| c.is_whitespace() || c == '\0')
        });
        if !host_ok || !user_ok {
            return Err(bad());
        }
        Ok(Self {
            destination: match user {
                Some(u) => format!("{u}@{host}"),
                None => host.to_owned(),
            },
            port,
            identity: None,
            options: Vec::new(),
            tunnel: None,
            program: None,
            ssh: "ssh".to_owned(),
        })
    }

    /// Logs in with this private key (`ssh -i`).
    ///
    /// ```
    /// use mirai::launch::{Join, Program, Ssh};
    /// let join = Join::new("tcp://10.0.0.1:5555", "t");
    /// let ssh = Ssh::new("n1")?.identity("/keys/id_ed25519").program(Program::new("w"));
    /// assert!(ssh.command_line(&join, 0)?.contains(" -i /keys/id_ed25519 "));
    /// # Ok::<(), mirai::launch::Error>(())
    /// ```
    pub fn identity(mut self, key: impl Into<PathBuf>) -> Self {
        self.identity = Some(key.into());
        self
    }

    /// Adds an `ssh -o` option such as `UserKnownHostsFile=/path` or `ConnectTimeout=10`.
    ///
    /// ```
    /// use mirai::launch::{Join, Program, Ssh};
    /// let join = Join::new("tcp://10.0.0.1:5555", "t");
    /// let ssh = Ssh::new("n1")?.option("ConnectTimeout=10").program(Program::new("w"));
    /// assert!(ssh.command_line(&join, 0)?.contains(" -o ConnectTimeout=10 n1 "));
    /// # Ok::<(), mirai::launch::Error>(())
    /// ```
    pub fn option(mut self, option: impl Into<String>) -> Self {
        self.options.push(option.into());
        self
    }

    /// Daemons dial `127.0.0.1` on their machine at the dispatcher's port, forwarded back to
    /// the dispatcher by `ssh -R`. The dispatcher's address must be `tcp://host:port` or
    /// `tls+tcp://host:port` (TLS then runs end to end through the tunnel).
    ///
    /// ```
    /// use mirai::launch::{Join, Program, Ssh};
    /// let join = Join::new("tcp://10.0.0.1:5555", "t");
    /// let line = Ssh::new("n1")?.tunnel().program(Program::new("w")).command_line(&join, 0)?;
    /// assert!(line.contains(" -R 127.0.0.1:5555:10.0.0.1:5555 "));
    /// # Ok::<(), mirai::launch::Error>(())
    /// ```
    pub fn tunnel(mut self) -> Self {
        self.tunnel = Some(None);
        self
    }

    /// [`tunnel`](Self::tunnel), with the forwarded port on the daemon's machine set to `port`
    /// (when the dispatcher's port is taken there).
    ///
    /// ```
    /// use mirai::launch::{Join, Program, Ssh};
    /// let join = Join::new("tcp://10.0.0.1:5555", "t");
    /// let ssh = Ssh::new("n1")?.tunnel_port(6000).program(Program::new("w"));
    /// assert!(ssh.command_line(&join, 0)?.contains("MIRAI_DAEMON_URL=tcp://127.0.0.1:6000 "));
    /// # Ok::<(), mirai::launch::Error>(())
    /// ```
    pub fn tunnel_port(mut self, port: u16) -> Self {
        self.tunnel = Some(Some(port));
        self
    }

    /// The daemon program on the remote machine (default: this executable's path, for machines
    /// that share its file system).
    ///
    /// ```
    /// use mirai::launch::{Join, Program, Ssh};
    /// let join = Join::new("tcp://10.0.0.1:5555", "t");
    /// let ssh = Ssh::new("n1")?.program(Program::new("/opt/w").arg("-v"));
    /// assert!(ssh.command_line(&join, 0)?.ends_with(" /opt/w -v'"));
    /// # Ok::<(), mirai::launch::Error>(())
    /// ```
    pub fn program(mut self, program: Program) -> Self {
        self.program = Some(program);
        self
    }

    /// Runs this client program instead of `ssh` from `PATH`.
    ///
    /// ```
    /// use mirai::launch::{Join, Program, Ssh};
    /// let join = Join::new("tcp://10.0.0.1:5555", "t");
    /// let ssh = Ssh::new("n1")?.ssh_program("/usr/local/bin/ssh").program(Program::new("w"));
    /// assert!(ssh.command_line(&join, 0)?.starts_with("/usr/local/bin/ssh -o BatchMode=yes "));
    /// # Ok::<(), mirai::launch::Error>(())
    /// ```
    pub fn ssh_program(mut self, path: impl Into<String>) -> Self {
        self.ssh = path.into();
        self
    }

    /// The `ssh` arguments that start daemon `launch_id`, the remote command last.
    fn args(&self, join: &Join, launch_id: u64) -> Result<Vec<String>, Error> {
        let mut args = vec!["-o".to_owned(), "BatchMode=yes".to_owned()];
        if let Some(p) = self.port {
            args.extend(["-p".to_owned(), p.to_string()]);
        }
        if let Some(key) = &self.identity {
            let key = key
                .to_str()
                .ok_or_else(|| Error::Invalid(format!("{} is not UTF-8", key.display())))?;
            args.extend(["-i".to_owned(), key.to_owned()]);
        }
        for o in &self.options {
            args.extend(["-o".to_owned(), o.clone()]);
        }
        let mut url = join.url.clone();
        if let Some(remote_port) = self.tunnel {
            let (scheme, host, port) = tcp_host_port(&join.url)?;
            let target = match host {
                "0.0.0.0" | "*" | "" => "127.0.0.1",
                "::" | "[::]" => "[::1]",
                h => h,
            };
            let remote_port = remote_port.unwrap_or(port);
            args.extend([
                "-o".to_owned(),
                "ExitOnForwardFailure=yes".to_owned(),
                "-R".to_owned(),
                format!(
                    "127.0.0.1:{remote_port}:{}:{port}",
                    target.trim_start_matches('[').trim_end_matches(']')
                ),
            ]);
            url = format!("{scheme}127.0.0.1:{remote_port}");
        }
        let program = match &self.program {
            Some(p) => p.clone(),
            None => Program::current()?,
        };
        args.push(self.destination.clone());
        args.push(daemon_line(
            join,
            &url,
            LaunchId::Fixed(launch_id),
            &program,
        )?);
        Ok(args)
    }

    /// The client program this launcher runs (`ssh` unless [`ssh_program`](Self::ssh_program)).
    pub(crate) fn client(&self) -> &str {
        &self.ssh
    }

    /// The command that starts daemon `launch_id`, as one line to paste into a shell. It holds
    /// no secret: the daemon reads its credential ([`Join::credential`]) as the first line of
    /// the command's stdin, so type that line after pasting, or pipe it in (`printf` is a
    /// shell builtin, which keeps it off any command line).
    ///
    /// ```
    /// use mirai::launch::{Join, Program, Ssh};
    /// let join = Join::new("tcp://10.0.0.1:5555", "t0ken-t0ken-t0ken");
    /// let line = Ssh::new("alice@n1:2222")?.program(Program::new("w")).command_line(&join, 3)?;
    /// assert!(line.starts_with("ssh -o BatchMode=yes -p 2222 alice@n1 'exec env "));
    /// assert!(line.contains(" MIRAI_DAEMON_TOKEN_STDIN=1 MIRAI_DAEMON_LAUNCH_ID=3 "));
    /// assert!(!line.contains("t0ken"));
    /// # Ok::<(), mirai::launch::Error>(())
    /// ```
    pub fn command_line(&self, join: &Join, launch_id: u64) -> Result<String, Error> {
        let mut words = vec![quote(&self.ssh)?];
        for a in self.args(join, launch_id)? {
            words.push(quote(&a)?);
        }
        Ok(words.join(" "))
    }

    /// The `ssh` command that starts daemon `launch_id` (stdin piped, stdout closed; stderr
    /// kept for ssh's own diagnostics). Whoever spawns it writes the daemon's credential
    /// ([`Join::credential`]) and a newline to its stdin, then closes it; [`Ssh::launch`] and
    /// [`Pool::launch`](crate::Pool::launch) do.
    ///
    /// ```
    /// use mirai::launch::{Join, Program, Ssh};
    /// let join = Join::new("tcp://10.0.0.1:5555", "t0ken-t0ken-t0ken");
    /// let cmd = Ssh::new("n1")?.program(Program::new("w")).command(&join, 0)?;
    /// assert_eq!(cmd.get_program(), "ssh");
    /// assert!(cmd.get_args().all(|a| !a.to_string_lossy().contains("t0ken")));
    /// # Ok::<(), mirai::launch::Error>(())
    /// ```
    pub fn command(&self, join: &Join, launch_id: u64) -> Result<Command, Error> {
        let mut c = Command::new(&self.ssh);
        c.args(self.args(join, launch_id)?)
            .stdin(Stdio::piped())
            .stdout(Stdio::null());
        Ok(c)
    }

    /// Starts one daemon per launch id in `ids`, each over its own ssh connection, without
    /// waiting for them ([`Pool::launch`](crate::Pool::launch) waits, and reports failures).
    ///
    /// ```
    /// use mirai::launch::{Join, Program, Ssh};
    /// let join = Join::new("tcp://10.0.0.1:5555", "t");
    /// let ssh = Ssh::new("n1")?.ssh_program("/nonexistent/ssh").program(Program::new("w"));
    /// assert!(matches!(ssh.launch(&join, 0..2), Err(mirai::launch::Error::NotFound { .. })));
    /// # Ok::<(), mirai::launch::Error>(())
    /// ```
    pub fn launch(&self, join: &Join, ids: Range<u64>) -> Result<Vec<Launched>, Error> {
        ids.map(|id| Launched::spawn(self.command(join, id)?, &self.ssh, join, id))
            .collect()
    }
}

/// The host and port of a `tcp://host:port` address.
/// The scheme (`tcp://` or `tls+tcp://`, kept so a tunnelled daemon still speaks TLS), host and
/// port of a dispatcher address a tunnel can forward.
fn tcp_host_port(url: &str) -> Result<(&'static str, &str, u16), Error> {
    let bad = || {
        Error::Invalid(format!(
            "a tunnel needs a tcp://host:port or tls+tcp://host:port address, not {url:?}"
        ))
    };
    let (scheme, rest) = ["tcp://", "tls+tcp://"]
        .into_iter()
        .find_map(|scheme| url.strip_prefix(scheme).map(|rest| (scheme, rest)))
        .ok_or_else(bad)?;
    let (host, port) = rest.rsplit_once(':').ok_or_else(bad)?;
    let port = port
        .parse::<u16>()
        .ok()
        .filter(|&p| p != 0)
        .ok_or_else(bad)?;
    Ok((scheme, host, port))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn join() -> Join {
        Join::new("tcp://0.0.0.0:5555", "tok")
    }

    #[test]
    fn targets_parse_into_destination_and_port() {
        let s = Ssh::new("alice@node1:2222").unwrap();
        assert_eq!(
            (s.destination.as_str(), s.port),
            ("alice@node1", Some(2222))
        );
        let s = Ssh::new("node1").unwrap();
        assert_eq!((s.destination.as_str(), s.port), ("node1", None));
        let s = Ssh::new("a.b@[::1]:22").unwrap();
        assert_eq!((s.destination.as_str(), s.port), ("a.b@::1", Some(22)));
        for bad in [
            "",
            "@host",
            "host:",
            "host:0",
            "host:70000",
            "-oProxyCommand=x",
            "u@-host",
            "u@ho st",
            "u@[::1",
            "u@[::1]x",
            "-u@host",
        ] {
            assert!(Ssh::new(bad).is_err(), "{bad:?}");
        }
    }

    proptest::proptest! {
        /// Whatever the text, parsing never panics and never yields a destination ssh would
        /// read as an option.
        #[test]
        fn any_target_text_parses_safely(s in "\\PC{0,30}") {
            if let Ok(ssh) = Ssh::new(&s) {
                proptest::prop_assert!(!ssh.destination.starts_with('-'));
                proptest::prop_assert!(!ssh.destination.contains(char::is_whitespace));
            }
        }
    }

    #[test]
    fn the_command_line_is_batch_mode_with_key_options_and_the_daemon_line_last() {
        let ssh = Ssh::new("alice@node1:2222")
            .unwrap()
            .identity("/keys/my key")
            .option("StrictHostKeyChecking=yes")
            .program(Program::new("/opt/w"));
        let args = ssh.args(&join(), 4).unwrap();
        assert_eq!(
            &args[..9],
            [
                "-o",
                "BatchMode=yes",
                "-p",
                "2222",
                "-i",
                "/keys/my key",
                "-o",
                "StrictHostKeyChecking=yes",
                "alice@node1"
            ]
        );
        assert_eq!(args.len(), 10);
        assert!(args[9].starts_with(
            "exec env MIRAI_DAEMON_URL=tcp://0.0.0.0:5555 MIRAI_DAEMON_TOKEN_STDIN=1 "
        ));
        let credential = join().credential(4);
        for a in &args {
            assert!(!a.contains("tok") && !a.contains(credential.expose_str().unwrap()));
        }
        assert!(args[9].contains("MIRAI_DAEMON_LAUNCH_ID=4 "));
        assert!(args[9].ends_with(" /opt/w"));
        let line = ssh.command_line(&join(), 4).unwrap();
        assert!(line.contains(" -i '/keys/my key' "), "{line}");
    }

    #[test]
    fn a_tunnel_forwards_the_remote_loopback_to_the_dispatcher() {
        let ssh = Ssh::new("n").unwrap().tunnel().program(Program::new("w"));
        let args = ssh.args(&join(), 0).unwrap();
        let r = args.iter().position(|a| a == "-R").unwrap();
        assert_eq!(args[r + 1], "127.0.0.1:5555:127.0.0.1:5555");
        assert!(
            args.last()
                .unwrap()
                .contains("MIRAI_DAEMON_URL=tcp://127.0.0.1:5555 ")
        );
        let ssh = Ssh::new("n")
            .unwrap()
            .tunnel_port(6000)
            .program(Program::new("w"));
        let args = ssh.args(&Join::new("tcp://10.1.2.3:5555", "t"), 0).unwrap();
        assert!(args.contains(&"127.0.0.1:6000:10.1.2.3:5555".to_owned()));
        assert!(args.last().unwrap().contains("tcp://127.0.0.1:6000 "));
        let err = ssh
            .args(&Join::new("ipc://mirai-test", "t"), 0)
            .unwrap_err();
        assert!(matches!(err, Error::Invalid(_)));
    }
}
