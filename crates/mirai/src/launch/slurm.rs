//! Daemons as a Slurm job: one batch script, a job array of as many tasks as daemons, each
//! array task one daemon whose launch id is the first id plus `SLURM_ARRAY_TASK_ID`.
//!
//! The daemons' credentials travel in `sbatch`'s environment, not in the script nor on a
//! command line (see [the module's documentation](super#the-credential-never-travels-on-a-command-line)).

use std::io::Write;
use std::ops::Range;
use std::os::unix::ffi::OsStrExt;
use std::process::{Command, Stdio};

use super::quote::one_line;
use super::{Error, Join, LaunchId, Program, daemon_line, quote};

/// The variable of `sbatch`'s environment that carries one credential per array task, in
/// array-index order, separated by spaces.
const ENV_CREDENTIALS: &str = "MIRAI_DAEMON_CREDENTIALS";

/// The most daemons one Slurm job starts: their credentials (65 bytes each) share one
/// environment variable, which Linux bounds at 128 KiB; Slurm's default `MaxArraySize` allows
/// 1001 array tasks. Submit several jobs for more daemons.
///
/// ```
/// use mirai::launch::{Join, MAX_SLURM_DAEMONS, Program, Slurm};
/// let join = Join::new("tcp://login1:5555", "t0ken-t0ken-t0ken");
/// let slurm = Slurm::new().program(Program::new("w"));
/// assert!(slurm.submit(&join, 0, MAX_SLURM_DAEMONS + 1).is_err());
/// ```
pub const MAX_SLURM_DAEMONS: u64 = 1000;

/// The script lines that take this array task's credential out of the environment (before any
/// setup line runs, so nothing the setup starts inherits the others).
const TAKE_CREDENTIAL: &str = "set -f\n\
    set -- ${MIRAI_DAEMON_CREDENTIALS-}\n\
    unset MIRAI_DAEMON_CREDENTIALS\n\
    shift \"${SLURM_ARRAY_TASK_ID:-0}\" || set --\n\
    mirai_credential=${1-}\n\
    set --\n\
    set +f\n";

/// The check before the daemon starts: without its credential it could never join.
const CHECK_CREDENTIAL: &str = "[ -n \"$mirai_credential\" ] || { echo \"mirai: no launch \
    credential reached this job: keep sbatch's --export=ALL (the default) or add \
    MIRAI_DAEMON_CREDENTIALS to it\" >&2; exit 1; }\n";

/// A Slurm batch script that starts daemons, and `sbatch` to submit it.
///
/// ```
/// use mirai::launch::{Join, Program, Slurm};
/// let slurm = Slurm::new()
///     .sbatch("--time=02:00:00")
///     .sbatch("--mem=4G")
///     .module("gcc/13")
///     .setup("export OMP_NUM_THREADS=1")
///     .program(Program::new("/home/me/app/worker"));
/// let script = slurm.script(&Join::new("tcp://login1:5555", "t0ken-t0ken-t0ken"), 0, 16)?;
/// assert!(script.contains("#SBATCH --array=0-15\n#SBATCH --time=02:00:00\n"));
/// assert!(script.contains("\nmodule load gcc/13\nexport OMP_NUM_THREADS=1\n"));
/// assert!(!script.contains("t0ken"), "no credential in the script");
/// # Ok::<(), mirai::launch::Error>(())
/// ```
#[derive(Debug, Clone)]
pub struct Slurm {
    job_name: String,
    directives: Vec<String>,
    modules: Vec<String>,
    setup: Vec<String>,
    program: Option<Program>,
    sbatch: String,
    scancel: String,
}

impl Default for Slurm {
    fn default() -> Self {
        Self::new()
    }
}

impl Slurm {
    /// A job named `mirai`, with no further options.
    ///
    /// ```
    /// use mirai::launch::{Join, Program, Slurm};
    /// let join = Join::new("tcp://login1:5555", "t");
    /// let script = Slurm::new().program(Program::new("w")).script(&join, 0, 1)?;
    /// assert!(script.contains("#SBATCH --job-name=mirai\n"));
    /// # Ok::<(), mirai::launch::Error>(())
    /// ```
    pub fn new() -> Self {
        Self {
            job_name: "mirai".into(),
            directives: Vec::new(),
            modules: Vec::new(),
            setup: Vec::new(),
            program: None,
            sbatch: "sbatch".into(),
            scancel: "scancel".into(),
        }
    }

    /// The job name (`#SBATCH --job-name`).
    ///
    /// ```
    /// use mirai::launch::{Join, Program, Slurm};
    /// let join = Join::new("tcp://login1:5555", "t");
    /// let s = Slurm::new().job_name("my fit").program(Program::new("w")).script(&join, 0, 1)?;
    /// assert!(s.contains("#SBATCH --job-name='my fit'\n"));
    /// # Ok::<(), mirai::launch::Error>(())
    /// ```
    pub fn job_name(mut self, name: impl Into<String>) -> Self {
        self.job_name = name.into();
        self
    }

    /// Adds an `#SBATCH` line: an sbatch option such as `--partition=gpu`, with or without the
    /// leading `#SBATCH`.
    ///
    /// ```
    /// use mirai::launch::{Join, Program, Slurm};
    /// let join = Join::new("tcp://login1:5555", "t");
    /// let s = Slurm::new()
    ///     .sbatch("--partition=gpu")
    ///     .sbatch("#SBATCH --mem=4G")
    ///     .program(Program::new("w"))
    ///     .script(&join, 0, 1)?;
    /// assert!(s.contains("#SBATCH --partition=gpu\n#SBATCH --mem=4G\n"));
    /// # Ok::<(), mirai::launch::Error>(())
    /// ```
    pub fn sbatch(mut self, option: impl Into<String>) -> Self {
        let option = option.into();
        let option = option
            .strip_prefix("#SBATCH")
            .map_or(option.as_str(), str::trim_start)
            .to_owned();
        self.directives.push(option);
        self
    }

    /// Adds a `module load NAME` line.
    ///
    /// ```
    /// use mirai::launch::{Join, Program, Slurm};
    /// let join = Join::new("tcp://login1:5555", "t");
    /// let s = Slurm::new().module("R/4.4").program(Program::new("w")).script(&join, 0, 1)?;
    /// assert!(s.contains("\nmodule load R/4.4\n"));
    /// # Ok::<(), mirai::launch::Error>(())
    /// ```
    pub fn module(mut self, name: impl Into<String>) -> Self {
        self.modules.push(name.into());
        self
    }

    /// Adds a line of shell run before the daemon starts (taken as written: it is code).
    ///
    /// ```
    /// use mirai::launch::{Join, Program, Slurm};
    /// let join = Join::new("tcp://login1:5555", "t");
    /// let s = Slurm::new().setup("cd $SCRATCH").program(Program::new("w")).script(&join, 0, 1)?;
    /// assert!(s.contains("\ncd $SCRATCH\n"));
    /// # Ok::<(), mirai::launch::Error>(())
    /// ```
    pub fn setup(mut self, line: impl Into<String>) -> Self {
        self.setup.push(line.into());
        self
    }

    /// The daemon program on the cluster's nodes (default: this executable's path, for a
    /// cluster that shares its file system).
    ///
    /// ```
    /// use mirai::launch::{Join, Program, Slurm};
    /// let join = Join::new("tcp://login1:5555", "t");
    /// let s = Slurm::new().program(Program::new("/home/me/w").arg("-q")).script(&join, 0, 1)?;
    /// assert!(s.contains(" /home/me/w -q <<MIRAI_CREDENTIAL\n"));
    /// # Ok::<(), mirai::launch::Error>(())
    /// ```
    pub fn program(mut self, program: Program) -> Self {
        self.program = Some(program);
        self
    }

    /// Runs this program instead of `sbatch` from `PATH`.
    ///
    /// ```
    /// use mirai::launch::{Join, Program, Slurm};
    /// let join = Join::new("tcp://login1:5555", "t");
    /// let err = Slurm::new()
    ///     .sbatch_program("/nonexistent/sbatch")
    ///     .program(Program::new("w"))
    ///     .submit(&join, 0, 1)
    ///     .unwrap_err();
    /// assert!(matches!(err, mirai::launch::Error::NotFound { .. }));
    /// ```
    pub fn sbatch_program(mut self, path: impl Into<String>) -> Self {
        self.sbatch = path.into();
        self
    }

    /// Runs this program instead of `scancel` from `PATH` when a [`Pool`](crate::Pool) that
    /// submitted the job is dropped.
    ///
    /// ```
    /// let slurm = mirai::launch::Slurm::new().scancel_program("/opt/slurm/bin/scancel");
    /// assert_eq!(slurm.scancel_command("42").get_program(), "/opt/slurm/bin/scancel");
    /// ```
    pub fn scancel_program(mut self, path: impl Into<String>) -> Self {
        self.scancel = path.into();
        self
    }

    /// `scancel JOB_ID`: what a pool runs for its jobs when it is dropped, so array tasks still
    /// waiting in the queue do not start daemons for a pool that is gone.
    ///
    /// ```
    /// let cmd = mirai::launch::Slurm::new().scancel_command("42");
    /// assert_eq!(cmd.get_args().collect::<Vec<_>>(), ["42"]);
    /// ```
    pub fn scancel_command(&self, job_id: &str) -> Command {
        let mut c = Command::new(&self.scancel);
        c.arg(job_id)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        c
    }

    /// The batch script for `n` daemons with launch ids `first..first + n`: array task `i`
    /// gets launch id `first + i`. It holds no secret: array task `i` takes the `i`-th word of
    /// `MIRAI_DAEMON_CREDENTIALS` from its environment ([`Slurm::submit`] sets it for
    /// `sbatch`, which exports it to the job), unsets the variable before the setup lines run,
    /// and hands the credential to the daemon on stdin.
    ///
    /// ```
    /// use mirai::launch::{Join, Program, Slurm};
    /// let join = Join::new("tcp://login1:5555", "t");
    /// let s = Slurm::new().program(Program::new("w")).script(&join, 10, 4)?;
    /// assert!(s.contains("#SBATCH --array=0-3\n"));
    /// assert!(s.contains("MIRAI_DAEMON_LAUNCH_ID=\"$((10 + ${SLURM_ARRAY_TASK_ID:-0}))\""));
    /// # Ok::<(), mirai::launch::Error>(())
    /// ```
    pub fn script(&self, join: &Join, first: u64, n: u64) -> Result<String, Error> {
        if n == 0 {
            return Err(Error::Invalid(
                "a Slurm job needs at least one daemon".into(),
            ));
        }
        let program = match &self.program {
            Some(p) => p.clone(),
            None => Program::current()?,
        };
        let mut s = String::from("#!/bin/sh\n");
        s += &format!(
            "#SBATCH --job-name={}\n",
            quote(one_line("job name", &self.job_name)?)?
        );
        s += &format!("#SBATCH --array=0-{}\n", n - 1);
        for d in &self.directives {
            s += &format!("#SBATCH {}\n", one_line("sbatch option", d)?);
        }
        s += TAKE_CREDENTIAL;
        for m in &self.modules {
            s += &format!("module load {}\n", quote(one_line("module", m)?)?);
        }
        for line in &self.setup {
            s += &format!("{}\n", one_line("setup line", line)?);
        }
        let id = format!("$(({first} + ${{SLURM_ARRAY_TASK_ID:-0}}))");
        s += CHECK_CREDENTIAL;
        s += &daemon_line(join, &join.url, LaunchId::Shell(&id), &program)?;
        // A here-document: the shell itself feeds the daemon's stdin, no program's arguments.
        s += " <<MIRAI_CREDENTIAL\n$mirai_credential\nMIRAI_CREDENTIAL\n";
        Ok(s)
    }

    /// Submits the script for `n` daemons (launch ids `first..first + n`) with
    /// `sbatch --parsable`, the script on its stdin and the daemons' credentials in its
    /// environment (`MIRAI_DAEMON_CREDENTIALS`); returns the job id. A refusal is
    /// [`Error::Refused`] with sbatch's status and message; more than [`MAX_SLURM_DAEMONS`]
    /// is [`Error::Invalid`].
    ///
    /// ```
    /// use mirai::launch::{Join, Program, Slurm};
    /// let join = Join::new("tcp://login1:5555", "t");
    /// let refusing = Slurm::new().sbatch_program("false").program(Program::new("w"));
    /// assert!(matches!(refusing.submit(&join, 0, 1), Err(mirai::launch::Error::Refused { .. })));
    /// ```
    pub fn submit(&self, join: &Join, first: u64, n: u64) -> Result<String, Error> {
        if n > MAX_SLURM_DAEMONS {
            return Err(Error::Invalid(format!(
                "{n} daemons in one Slurm job: at most {MAX_SLURM_DAEMONS}, submit several jobs"
            )));
        }
        let script = self.script(join, first, n)?;
        let mut credentials = Vec::new();
        for id in first..first + n {
            let mut line = join.credential_line(id)?;
            line.pop();
            if !credentials.is_empty() {
                credentials.push(b' ');
            }
            credentials.extend_from_slice(&line);
        }
        let spawn_err = |source| Error::spawn(&self.sbatch, source);
        let mut child = Command::new(&self.sbatch)
            .arg("--parsable")
            .env(ENV_CREDENTIALS, std::ffi::OsStr::from_bytes(&credentials))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(spawn_err)?;
        let written = child
            .stdin
            .take()
            .map(|mut stdin| stdin.write_all(script.as_bytes()));
        let out = child.wait_with_output().map_err(spawn_err)?;
        if !out.status.success() {
            return Err(Error::Refused {
                program: self.sbatch.clone(),
                status: out.status,
                stderr: String::from_utf8_lossy(&out.stderr).trim().to_owned(),
            });
        }
        if let Some(Err(e)) = written {
            return Err(spawn_err(e));
        }
        // `--parsable` prints `jobid` or `jobid;cluster`.
        let stdout = String::from_utf8_lossy(&out.stdout);
        let id = stdout
            .trim()
            .split(';')
            .next()
            .unwrap_or_default()
            .to_owned();
        if id.is_empty() {
            return Err(Error::Refused {
                program: self.sbatch.clone(),
                status: out.status,
                stderr: "no job id printed".into(),
            });
        }
        Ok(id)
    }
}

/// A job array a [`Pool`](crate::Pool) submitted: the Slurm job id and the launch ids its
/// daemons will join with. The pool does not own the job: its daemons exit when the pool goes
/// away, which ends the job.
///
/// ```
/// let job = mirai::launch::SlurmJob { job_id: "4242".into(), launch_ids: 3..5 };
/// assert_eq!(job.launch_ids.clone().count(), 2);
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SlurmJob {
    /// What `sbatch --parsable` printed (without the cluster name).
    pub job_id: String,
    /// One launch id per array task: array task `i` is launch id `launch_ids.start + i`.
    pub launch_ids: Range<u64>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_script_is_header_then_setup_then_one_daemon_per_array_task() {
        let script = Slurm::new()
            .job_name("my job")
            .sbatch("#SBATCH --partition=short")
            .module("R/4.4 (x)")
            .program(Program::new("/w"))
            .script(&Join::new("tcp://n:1", "t"), 10, 4)
            .unwrap();
        let lines: Vec<&str> = script.lines().collect();
        assert_eq!(
            &lines[..4],
            [
                "#!/bin/sh",
                "#SBATCH --job-name='my job'",
                "#SBATCH --array=0-3",
                "#SBATCH --partition=short",
            ]
        );
        // The credential is taken out of the environment before the module line runs.
        let taken = TAKE_CREDENTIAL.lines().count();
        assert_eq!(lines[4..4 + taken].join("\n") + "\n", TAKE_CREDENTIAL);
        assert_eq!(lines[4 + taken], "module load 'R/4.4 (x)'");
        let daemon = lines[4 + taken + 1];
        assert!(
            daemon.starts_with("[ -n \"$mirai_credential\" ] || "),
            "{daemon}"
        );
        let daemon = lines[4 + taken + 2];
        assert!(
            daemon.contains(" MIRAI_DAEMON_LAUNCH_ID=\"$((10 + ${SLURM_ARRAY_TASK_ID:-0}))\" "),
            "{daemon}"
        );
        assert!(daemon.ends_with(" /w <<MIRAI_CREDENTIAL"), "{daemon}");
        assert_eq!(
            &lines[4 + taken + 3..],
            ["$mirai_credential", "MIRAI_CREDENTIAL"]
        );
    }

    #[test]
    fn each_array_task_hands_its_own_credential_to_the_daemon_and_the_setup_sees_none() {
        let join = Join::new("tcp://n:1", "0123456789abcdef-slurm");
        let script = Slurm::new()
            .setup("printf 'setup saw %s\\n' \"${MIRAI_DAEMON_CREDENTIALS-nothing}\"")
            .program(Program::new("sh").arg("-c").arg(
                "read -r c; printf 'daemon got %s %s %s\\n' \"$c\" \"$MIRAI_DAEMON_LAUNCH_ID\" \
                 \"${MIRAI_DAEMON_CREDENTIALS-nothing}\"",
            ))
            .script(&join, 10, 3)
            .unwrap();
        let credentials: Vec<String> = (10..13)
            .map(|id| join.credential(id).expose_str().unwrap().to_owned())
            .collect();
        for shell in ["sh", "bash"] {
            for task in 0..3 {
                let out = Command::new(shell)
                    .arg("-c")
                    .arg(&script)
                    .env(ENV_CREDENTIALS, credentials.join(" "))
                    .env("SLURM_ARRAY_TASK_ID", task.to_string())
                    .stdin(Stdio::null())
                    .output()
                    .unwrap();
                assert_eq!(
                    String::from_utf8_lossy(&out.stdout),
                    format!(
                        "setup saw nothing\ndaemon got {} {} nothing\n",
                        credentials[task],
                        10 + task
                    ),
                    "{shell}: {}",
                    String::from_utf8_lossy(&out.stderr)
                );
            }
            // Without the variable (sbatch told not to export it), the job says why.
            let out = Command::new(shell)
                .arg("-c")
                .arg(&script)
                .env_remove(ENV_CREDENTIALS)
                .env("SLURM_ARRAY_TASK_ID", "0")
                .output()
                .unwrap();
            assert_eq!(out.status.code(), Some(1));
            assert!(String::from_utf8_lossy(&out.stderr).contains("no launch credential"));
        }
    }

    #[test]
    fn sbatch_gets_the_credentials_in_its_environment_and_never_as_arguments() {
        let scratch = tempfile::tempdir().unwrap();
        let dir = scratch.path();
        let sbatch = dir.join("sbatch");
        std::fs::write(
            &sbatch,
            format!(
                "#!/bin/sh\ncat > /dev/null\nprintf '%s' \"$*\" > '{0}/args'\n\
                 printf '%s' \"$MIRAI_DAEMON_CREDENTIALS\" > '{0}/env'\necho 7\n",
                dir.display()
            ),
        )
        .unwrap();
        std::fs::set_permissions(&sbatch, std::os::unix::fs::PermissionsExt::from_mode(0o700))
            .unwrap();
        let join = Join::new("tcp://n:1", "0123456789abcdef-slurm");
        let job = Slurm::new()
            .program(Program::new("/w"))
            .sbatch_program(sbatch.to_str().unwrap())
            .submit(&join, 4, 2)
            .unwrap();
        assert_eq!(job, "7");
        assert_eq!(
            std::fs::read_to_string(dir.join("args")).unwrap(),
            "--parsable"
        );
        let expected = format!(
            "{} {}",
            join.credential(4).expose_str().unwrap(),
            join.credential(5).expose_str().unwrap()
        );
        assert_eq!(std::fs::read_to_string(dir.join("env")).unwrap(), expected);
        assert!(matches!(
            Slurm::new()
                .program(Program::new("/w"))
                .sbatch_program(sbatch.to_str().unwrap())
                .submit(&join, 0, MAX_SLURM_DAEMONS + 1),
            Err(Error::Invalid(_))
        ));
    }

    #[test]
    fn injected_lines_and_empty_jobs_are_refused() {
        let j = Join::new("tcp://n:1", "t");
        let p = Program::new("/w");
        for s in [
            Slurm::new().sbatch("--time=1\nrm -rf ~"),
            Slurm::new().module("a\nb"),
            Slurm::new().setup("x\ny"),
        ] {
            assert!(matches!(
                s.program(p.clone()).script(&j, 0, 1),
                Err(Error::Invalid(_))
            ));
        }
        assert!(Slurm::new().program(p).script(&j, 0, 0).is_err());
    }
}
