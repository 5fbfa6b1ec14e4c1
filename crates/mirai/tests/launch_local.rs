//! The Slurm and template launchers end to end on this machine: the generated batch script run
//! as Slurm runs it (one shell per array task, with `SLURM_ARRAY_TASK_ID` set), `submit`
//! through a stand-in `sbatch` that does the same, and a command template run through `sh -c`.
//! Each daemon is this test binary; it dials back and runs a task.

mod common;
mod launch_support;

use std::collections::BTreeSet;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use common::KilledOnDrop;
use launch_support::{Reap, SQUARE, ask, ask_everywhere, dispatcher, ends_within, this_program};
use mirai::Daemons;
use mirai::launch::{Error, Slurm, Template, manual};

const PATIENCE: Duration = Duration::from_secs(30);

#[test]
#[ignore = "entry point of the daemons the other tests launch"]
fn daemon_entry() {
    launch_support::daemon_entry();
}

/// A scratch directory with a unique name, removed when dropped.
struct Scratch(tempfile::TempDir);

impl Scratch {
    fn new(tag: &str) -> Self {
        let dir = tempfile::Builder::new()
            .prefix(&format!("mirai-launch-{tag}-"))
            .tempdir()
            .unwrap();
        Self(dir)
    }

    fn path(&self) -> &Path {
        self.0.path()
    }

    fn executable(&self, name: &str, text: &str) -> PathBuf {
        let path = self.path().join(name);
        std::fs::write(&path, text).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
        path
    }
}

fn path_with(dir: &Path) -> String {
    format!(
        "{}:{}",
        dir.display(),
        std::env::var("PATH").unwrap_or_default()
    )
}

#[test]
fn the_slurm_script_run_as_array_tasks_starts_one_daemon_each() {
    let scratch = Scratch::new("slurm");
    // `module` as a cluster provides it, recording what it was asked to load.
    let record = scratch.path().join("modules.txt");
    scratch.executable(
        "module",
        &format!("#!/bin/sh\necho \"$@\" >> '{}'\n", record.display()),
    );
    let (d, join) = dispatcher();
    let join = join.maxtasks(1); // one task each, so two asks reach both daemons
    let script = Slurm::new()
        .sbatch("--time=00:05:00")
        .module("gcc/13 x")
        .setup("export MIRAI_LAUNCH_TEST_SETUP=ran")
        .program(this_program())
        .script(&join, 100, 2)
        .unwrap();
    // What `Slurm::submit` puts into sbatch's environment, which Slurm exports to the job.
    let credentials = [100, 101]
        .map(|id| join.credential(id).expose_str().unwrap().to_owned())
        .join(" ");
    let file = scratch.path().join("job.sh");
    std::fs::write(&file, &script).unwrap();
    let tasks: Vec<KilledOnDrop> = (0..2)
        .map(|i| {
            Command::new("bash")
                .arg(&file)
                .env("MIRAI_DAEMON_CREDENTIALS", &credentials)
                .env("SLURM_ARRAY_TASK_ID", i.to_string())
                .env("SLURM_ARRAY_JOB_ID", "77")
                .env("SLURM_JOB_ID", format!("{}", 78 + i))
                .env("PATH", path_with(scratch.path()))
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .spawn()
                .unwrap()
        })
        .map(KilledOnDrop)
        .collect();
    let answers = [ask(&d, PATIENCE), ask(&d, PATIENCE)];
    let _reap = Reap(answers.iter().map(|a| a.pid).collect());
    let got: BTreeSet<_> = answers
        .iter()
        .map(|a| {
            (
                a.slurm_array_task_id.clone().unwrap(),
                a.launch_id.clone().unwrap(),
            )
        })
        .collect();
    let want: BTreeSet<_> = [("0", "100"), ("1", "101")]
        .map(|(a, b)| (a.to_owned(), b.to_owned()))
        .into();
    assert_eq!(got, want);
    assert_eq!(
        std::fs::read_to_string(&record).unwrap(),
        "load gcc/13 x\nload gcc/13 x\n"
    );
    drop(tasks);
    drop(d);
}

/// A stand-in `sbatch`: keeps the script, starts one shell per array index as Slurm would,
/// prints `jobid;cluster` as `--parsable` does.
const FAKE_SBATCH: &str = r#"#!/bin/bash
[ "$1" = --parsable ] || { echo "expected --parsable" >&2; exit 2; }
dir=$(dirname "$0")
cat > "$dir/submitted.sh"
last=$(sed -n 's/^#SBATCH --array=0-\([0-9]*\)$/\1/p' "$dir/submitted.sh")
for i in $(seq 0 "$last"); do
  SLURM_ARRAY_TASK_ID=$i setsid bash "$dir/submitted.sh" </dev/null >/dev/null 2>&1 &
done
echo "4242;cluster"
"#;

#[test]
fn submit_hands_the_script_to_sbatch_and_returns_the_job_id() {
    let scratch = Scratch::new("sbatch");
    let sbatch = scratch.executable("sbatch", FAKE_SBATCH);
    let (d, join) = dispatcher();
    let slurm = Slurm::new()
        .program(this_program())
        .sbatch_program(sbatch.to_str().unwrap());
    let job = slurm.submit(&join, 0, 1).unwrap();
    assert_eq!(job, "4242");
    let answer = ask(&d, PATIENCE);
    let _reap = Reap(vec![answer.pid]);
    assert_eq!(answer.slurm_array_task_id.as_deref(), Some("0"));
    assert_eq!(
        std::fs::read_to_string(scratch.path().join("submitted.sh")).unwrap(),
        slurm.script(&join, 0, 1).unwrap()
    );
    drop(d);

    let refusing = scratch.executable(
        "sbatch-no",
        "#!/bin/sh\necho 'invalid partition' >&2\nexit 1\n",
    );
    let err = Slurm::new()
        .program(this_program())
        .sbatch_program(refusing.to_str().unwrap())
        .submit(&join, 0, 1)
        .unwrap_err();
    assert!(
        matches!(err, Error::Refused { ref stderr, .. } if stderr == "invalid partition"),
        "{err:?}"
    );
    let missing = Slurm::new()
        .program(this_program())
        .sbatch_program(scratch.path().join("absent").to_str().unwrap())
        .submit(&join, 0, 1)
        .unwrap_err();
    assert!(matches!(missing, Error::NotFound { .. }), "{missing:?}");
}

#[test]
fn a_command_template_starts_a_daemon_with_its_placeholders_filled() {
    let (d, join) = dispatcher();
    let launched = Template::new("MIRAI_SEEN={launch_id} exec sh -c {command}")
        .program(this_program())
        .launch(&join, 3..4)
        .unwrap();
    let answer = ask(&d, PATIENCE);
    let _reap = Reap(vec![answer.pid]);
    assert_eq!(answer.launch_id.as_deref(), Some("3"));
    assert_eq!(answer.url.as_deref(), Some(d.url()));
    assert_eq!(
        answer.pid,
        launched[0].id(),
        "exec all the way down: the daemon is the launched process"
    );
    drop(d);
}

#[test]
fn the_manual_command_typed_into_a_shell_starts_a_daemon() {
    let (d, join) = dispatcher();
    let line = manual(&join, 12, &this_program()).unwrap();
    let shell = KilledOnDrop(typed_into_a_shell(&line));
    let answer = ask(&d, PATIENCE);
    let _reap = Reap(vec![answer.pid]);
    assert_eq!(answer.launch_id.as_deref(), Some("12"));
    assert_ne!(
        answer.pid,
        shell.0.id(),
        "the shell stays, the daemon is its child"
    );
    drop(d);
}

/// A shell that reads `line` as if typed (from its stdin, so the line is no argument of any
/// process), and then ends its input.
fn typed_into_a_shell(line: &str) -> Child {
    let mut shell = Command::new("sh")
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    std::io::Write::write_all(
        &mut shell.stdin.take().unwrap(),
        format!("{line}\n").as_bytes(),
    )
    .unwrap();
    shell
}

/// The pool's printable command, pasted into a shell, starts a daemon that joins this pool.
#[test]
fn the_pools_remote_command_pasted_into_a_shell_joins_that_pool() {
    let pool = Daemons::new().url("tls+tcp://127.0.0.1:0").start().unwrap();
    let line = pool.remote_command_for(&this_program()).unwrap();
    let pin = pool
        .tls_fingerprint()
        .expect("a tls+tcp pool has a certificate to pin");
    assert!(
        line.contains(&format!(" MIRAI_DAEMON_TLS_PIN={pin} ")),
        "{line}"
    );
    let _shell = KilledOnDrop(typed_into_a_shell(&line));
    let answer = &ask_everywhere(&pool, 1, PATIENCE)[0];
    let _reap = Reap(vec![answer.pid]);
    assert_eq!(answer.launch_id.as_deref(), Some("0"));
    assert_eq!(pool.status().connections, 1);
    assert_eq!(pool.submit(&SQUARE, 9).unwrap().wait().unwrap(), 81);
    // Started by hand: the pool counts the connection, not a launch of its own.
    assert_eq!(pool.remote_daemons(), 0);
    let next = pool.remote_command_for(&this_program()).unwrap();
    assert!(next.contains(" MIRAI_DAEMON_LAUNCH_ID=1 "), "{next}");
}

#[test]
fn the_pool_launches_daemons_through_a_template_and_they_exit_with_it() {
    let pool = Daemons::new()
        .url("tls+tcp://127.0.0.1:0")
        .launch_timeout(PATIENCE)
        .start()
        .unwrap();
    let template =
        Template::new("MIRAI_SEEN={launch_id} exec sh -c {command}").program(this_program());
    let ids = pool.launch_with(&template, 2).unwrap();
    assert_eq!(ids, [0, 1]);
    assert_eq!(pool.status().connections, 2);
    assert_eq!(pool.remote_daemons(), 2);
    let pids: Vec<u32> = ask_everywhere(&pool, 2, PATIENCE)
        .iter()
        .map(|a| a.pid)
        .collect();
    let _reap = Reap(pids.clone());
    assert_eq!(
        pool.map(&SQUARE, [3u64, 4, 5]).unwrap(),
        [9, 16, 25],
        "typed tasks on the launched daemons"
    );
    drop(pool);
    for pid in pids {
        assert!(ends_within(pid, PATIENCE), "daemon {pid} outlived its pool");
    }
}

#[test]
fn a_daemon_that_cannot_join_fails_the_launch_with_its_own_message() {
    // The daemon dials an address nobody listens on, and exits saying why.
    let pool = Daemons::new()
        .url("tls+tcp://127.0.0.1:0")
        .advertise("ipc://mirai-launch-test-nobody-listens")
        .launch_timeout(PATIENCE)
        .start()
        .unwrap();
    let err = pool
        .launch_with(
            &Template::new("exec sh -c {command}").program(this_program()),
            1,
        )
        .unwrap_err();
    match err {
        mirai::Error::Launch(Error::Refused { status, stderr, .. }) => {
            assert_eq!(status.code(), Some(10), "the daemon's own error exit");
            assert!(stderr.contains("mirai daemon:"), "{stderr}");
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(pool.status().connections, 0);
}

#[test]
fn a_launcher_that_never_joins_is_stopped_at_the_launch_timeout() {
    let pool = Daemons::new()
        .url("tls+tcp://127.0.0.1:0")
        .launch_timeout(Duration::from_millis(300))
        .start()
        .unwrap();
    let scratch = Scratch::new("timeout");
    let pidfile = scratch.path().join("pid");
    let line = format!("echo $$ > '{}'; exec sleep 600", pidfile.display());
    let err = pool.launch_with(&Template::new(line), 1).unwrap_err();
    assert!(
        matches!(
            err,
            mirai::Error::Launch(Error::NotJoined { launch_id: 0, .. })
        ),
        "{err:?}"
    );
    let pid: u32 = std::fs::read_to_string(&pidfile)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    assert!(ends_within(pid, PATIENCE), "the launcher was left running");
}

#[test]
fn the_pool_submits_a_job_array_to_sbatch_and_its_daemons_run_tasks() {
    let scratch = Scratch::new("pool-sbatch");
    let sbatch = scratch.executable("sbatch", FAKE_SBATCH);
    let pool = Daemons::new().url("tls+tcp://127.0.0.1:0").start().unwrap();
    let cancelled = scratch.path().join("cancelled");
    let scancel = scratch.executable(
        "scancel",
        &format!("#!/bin/sh\necho \"$@\" >> '{}'\n", cancelled.display()),
    );
    let slurm = Slurm::new()
        .program(this_program())
        .sbatch_program(sbatch.to_str().unwrap())
        .scancel_program(scancel.to_str().unwrap());
    let job = pool.launch_slurm(&slurm, 2).unwrap();
    assert_eq!(job.job_id, "4242");
    assert_eq!(job.launch_ids, 0..2);
    let answers = ask_everywhere(&pool, 2, PATIENCE);
    let _reap = Reap(answers.iter().map(|a| a.pid).collect());
    let got: BTreeSet<_> = answers
        .iter()
        .map(|a| {
            (
                a.slurm_array_task_id.clone().unwrap(),
                a.launch_id.clone().unwrap(),
            )
        })
        .collect();
    let want: BTreeSet<_> = [("0", "0"), ("1", "1")]
        .map(|(a, b)| (a.to_owned(), b.to_owned()))
        .into();
    assert_eq!(got, want);
    // The launcher thread counts joins from the dispatcher's events, a moment after the
    // daemons answered.
    let t = std::time::Instant::now();
    while pool.remote_daemons() != 2 {
        assert!(
            t.elapsed() < PATIENCE,
            "{} remote daemons",
            pool.remote_daemons()
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    assert_eq!(pool.submit(&SQUARE, 7).unwrap().wait().unwrap(), 49);

    let refusing = scratch.executable(
        "sbatch-no",
        "#!/bin/sh\necho 'invalid partition' >&2\nexit 1\n",
    );
    let err = pool
        .launch_slurm(
            &Slurm::new()
                .program(this_program())
                .sbatch_program(refusing.to_str().unwrap()),
            1,
        )
        .unwrap_err();
    assert!(
        matches!(err, mirai::Error::Launch(Error::Refused { ref stderr, .. }) if stderr == "invalid partition"),
        "{err:?}"
    );
    assert!(
        !cancelled.exists(),
        "nothing cancelled while the pool lives"
    );
    drop(pool);
    // The submitted job is cancelled with the pool; the refused one never existed.
    assert_eq!(std::fs::read_to_string(&cancelled).unwrap(), "4242\n");
}

/// A daemon with the wrong token reaches the pool and is refused: the launch fails by the
/// launcher's exit, with the daemon's own message, and the daemon never counts as a connection.
#[test]
fn a_daemon_with_a_wrong_token_is_refused_and_the_launch_says_so() {
    let pool = Daemons::new()
        .url("tls+tcp://127.0.0.1:0")
        .launch_timeout(PATIENCE)
        .start()
        .unwrap();
    let forged = Template::new(format!(
        "exec env MIRAI_DAEMON_URL={{url}} MIRAI_DAEMON_TOKEN=forged-forged-forged \
         MIRAI_DAEMON_LAUNCH_ID={{launch_id}} MIRAI_DAEMON_TLS_PIN={} {}",
        pool.tls_fingerprint().unwrap(),
        this_program().words().unwrap()
    ));
    let err = pool.launch_with(&forged, 1).unwrap_err();
    assert!(
        matches!(err, mirai::Error::Launch(Error::Refused { status, ref stderr, .. })
            if status.code() == Some(10) && stderr.contains("refused by the dispatcher")),
        "{err:?}"
    );
    assert_eq!(pool.status().connections, 0);
    assert_eq!(pool.remote_daemons(), 0);
}

/// A peer without the credential that claims a launch's id is refused, and the launch does not
/// care: its own daemon joins after it and the launch succeeds.
#[test]
fn a_refused_peer_claiming_a_launch_id_cannot_fail_that_launch() {
    let pool = Daemons::new()
        .url("tls+tcp://127.0.0.1:0")
        .launch_timeout(PATIENCE)
        .start()
        .unwrap();
    let impostor = format!(
        "MIRAI_DAEMON_URL={{url}} MIRAI_DAEMON_TOKEN=forged-forged-forged \
         MIRAI_DAEMON_LAUNCH_ID={{launch_id}} MIRAI_DAEMON_TLS_PIN={} {} 2>/dev/null",
        pool.tls_fingerprint().unwrap(),
        this_program().words().unwrap()
    );
    // The impostor runs first, to its refusal and exit; then the real daemon starts.
    let template =
        Template::new(format!("{impostor}; exec sh -c {{command}}")).program(this_program());
    let ids = pool.launch_with(&template, 1).unwrap();
    assert_eq!(pool.remote_daemons(), 1);
    let answer = &ask_everywhere(&pool, 1, PATIENCE)[0];
    let _reap = Reap(vec![answer.pid]);
    assert_eq!(answer.launch_id, Some(ids[0].to_string()));
}
