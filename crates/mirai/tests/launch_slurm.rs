//! Daemons launched as a job array on a real single-node Slurm cluster that the test starts
//! for itself: its own `munged` (private key and socket), `slurmctld` and `slurmd` with a
//! private configuration, state and spool directories on free loopback ports. The job's array
//! tasks are this test binary; each dials back and runs a task.
//!
//! Needs the Debian packages `slurmctld slurmd slurm-client munge` (installed by `cargo xtask setup`
//! as root) and root, as `slurmd` does; without them it fails.

mod launch_support;

use std::collections::BTreeSet;
use std::io::Read;
use std::net::TcpListener;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use std::sync::{Mutex, MutexGuard, PoisonError};

use launch_support::{
    EXPOSURE, Reap, SQUARE, ask, ask_everywhere, dispatcher, ends_within, this_program,
};
use mirai::Daemons;
use mirai::launch::Slurm;

const PATIENCE: Duration = Duration::from_secs(60);
const PROGRAMS: [&str; 5] = [
    "/usr/sbin/munged",
    "/usr/sbin/slurmctld",
    "/usr/sbin/slurmd",
    "/usr/bin/sbatch",
    "/usr/bin/sinfo",
];

#[test]
#[ignore = "entry point of the daemons the other tests launch"]
fn daemon_entry() {
    launch_support::daemon_entry();
}

/// The packages are installed by `cargo xtask setup` (as root); a test never installs anything.
fn installed() -> bool {
    PROGRAMS.iter().all(|p| Path::new(p).exists())
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn output(cmd: &mut Command) -> String {
    let out = cmd.output().expect("run a setup command");
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

/// One cluster at a time: two on one node would compete for its two CPUs.
static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

/// A private one-node cluster; every daemon killed and its directory removed when dropped.
struct Cluster {
    dir: tempfile::TempDir,
    daemons: Vec<Child>,
    _turn: MutexGuard<'static, ()>,
}

impl Cluster {
    fn start() -> Self {
        let root = output(Command::new("id").arg("-u")) == "0";
        assert!(
            root,
            "slurmd runs jobs as their users: this test needs root"
        );
        assert!(
            installed(),
            "install the Debian packages slurmctld slurmd slurm-client munge (`cargo xtask setup` does, as root)"
        );
        let turn = ONE_AT_A_TIME.lock().unwrap_or_else(PoisonError::into_inner);
        let scratch = tempfile::Builder::new()
            .prefix("mirai-launch-slurm-")
            .tempdir()
            .unwrap();
        let dir = scratch.path().to_path_buf();
        for sub in ["state", "spool"] {
            std::fs::create_dir_all(dir.join(sub)).unwrap();
        }
        // munged wants the socket's directory searchable by all, the key private to its owner.
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
        let mut key = vec![0u8; 1024];
        std::fs::File::open("/dev/urandom")
            .unwrap()
            .read_exact(&mut key)
            .unwrap();
        std::fs::write(dir.join("munge.key"), key).unwrap();
        std::fs::set_permissions(
            dir.join("munge.key"),
            std::fs::Permissions::from_mode(0o600),
        )
        .unwrap();
        let mut cluster = Self {
            dir: scratch,
            daemons: Vec::new(),
            _turn: turn,
        };
        let d = cluster.dir.path().to_path_buf();
        let socket = d.join("munge.sock");
        cluster.spawn(Command::new(PROGRAMS[0]).args(["-F", "--force"]).args([
            format!("--socket={}", socket.display()),
            format!("--key-file={}", d.join("munge.key").display()),
            format!("--pid-file={}", d.join("munged.pid").display()),
            format!("--seed-file={}", d.join("munged.seed").display()),
        ]));
        cluster.wait_for("munged socket", || socket.exists());
        let host = output(Command::new("hostname").arg("-s"));
        let dd = d.display();
        let config = format!(
            "ClusterName=miraitest\nSlurmctldHost={host}(127.0.0.1)\nSlurmctldPort={}\n\
             SlurmdPort={}\nAuthType=auth/munge\nCredType=cred/munge\n\
             AuthInfo=socket={}\nStateSaveLocation={dd}/state\nSlurmdSpoolDir={dd}/spool\n\
             SlurmctldPidFile={dd}/slurmctld.pid\nSlurmdPidFile={dd}/slurmd.pid\n\
             SlurmctldLogFile={dd}/slurmctld.log\nSlurmdLogFile={dd}/slurmd.log\n\
             SlurmUser=root\nSlurmdUser=root\nProctrackType=proctrack/linuxproc\n\
             TaskPlugin=task/none\nSchedulerType=sched/builtin\nSelectType=select/cons_tres\n\
             SelectTypeParameters=CR_CPU\nReturnToService=2\nMpiDefault=none\n\
             JobCompType=jobcomp/none\nJobAcctGatherType=jobacct_gather/none\n\
             AccountingStorageType=accounting_storage/none\n\
             NodeName={host} NodeAddr=127.0.0.1 CPUs=2 State=UNKNOWN\n\
             PartitionName=debug Nodes={host} Default=YES MaxTime=INFINITE State=UP \
             OverSubscribe=FORCE:4\n",
            free_port(),
            free_port(),
            socket.display(),
        );
        let conf = d.join("slurm.conf");
        std::fs::write(&conf, config).unwrap();
        // sbatch and sinfo find the private cluster through SLURM_CONF: a wrapper sets it.
        for tool in ["sbatch", "sinfo", "scancel", "squeue"] {
            let path = d.join(tool);
            std::fs::write(
                &path,
                format!(
                    "#!/bin/sh\nSLURM_CONF='{}' exec {tool} \"$@\"\n",
                    conf.display()
                ),
            )
            .unwrap();
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
        }
        cluster.spawn(
            Command::new(PROGRAMS[1])
                .arg("-D")
                .arg("-c")
                .arg("-f")
                .arg(&conf),
        );
        cluster.spawn(Command::new(PROGRAMS[2]).arg("-D").arg("-f").arg(&conf));
        let sinfo = d.join("sinfo");
        cluster.wait_for("the node to be idle", || {
            output(Command::new(&sinfo).args(["-h", "-o", "%t"])) == "idle"
        });
        cluster
    }

    fn spawn(&mut self, cmd: &mut Command) {
        let child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start a cluster daemon");
        self.daemons.push(child);
    }

    fn wait_for(&mut self, what: &str, mut ready: impl FnMut() -> bool) {
        let t = Instant::now();
        while !ready() {
            for c in &mut self.daemons {
                if let Some(status) = c.try_wait().unwrap() {
                    panic!(
                        "a cluster daemon exited ({status}) while waiting for {what}: {}",
                        self.logs()
                    );
                }
            }
            assert!(
                t.elapsed() < PATIENCE,
                "timed out waiting for {what}: {}",
                self.logs()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn logs(&self) -> String {
        ["slurmctld.log", "slurmd.log"]
            .map(|f| std::fs::read_to_string(self.dir.path().join(f)).unwrap_or_default())
            .join("\n")
    }

    fn tool(&self, name: &str) -> String {
        self.dir.path().join(name).to_str().unwrap().to_owned()
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        let _ = Command::new(self.tool("scancel"))
            .args(["--full", "--partition=debug"])
            .stderr(Stdio::null())
            .status();
        // slurmd, then slurmctld, then munged; asked to stop (so they end their own helpers)
        // before being killed.
        for c in self.daemons.iter_mut().rev() {
            let _ = Command::new("kill")
                .args(["-TERM", &c.id().to_string()])
                .status();
            let t = Instant::now();
            while matches!(c.try_wait(), Ok(None)) && t.elapsed() < Duration::from_secs(5) {
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = c.kill();
            let _ = c.wait();
        }
        // `dir` (a `TempDir`) is removed next, once no daemon writes to it.
    }
}

#[test]
fn a_job_array_on_a_real_slurm_cluster_starts_one_daemon_per_task() {
    let cluster = Cluster::start();
    let (d, join) = dispatcher();
    let join = join.maxtasks(1); // one task each, so two asks reach both daemons
    let job = Slurm::new()
        .job_name("mirai test")
        .sbatch("--output=/dev/null")
        .sbatch("#SBATCH --time=00:05:00")
        .setup("export MIRAI_LAUNCH_TEST=1")
        .program(this_program())
        .sbatch_program(cluster.tool("sbatch"))
        .submit(&join, 10, 2)
        .unwrap();
    assert!(job.parse::<u64>().is_ok(), "job id {job:?}");
    let answers = [ask(&d, PATIENCE), ask(&d, PATIENCE)];
    let _reap = Reap(answers.iter().map(|a| a.pid).collect());
    let got: BTreeSet<_> = answers
        .iter()
        .map(|a| {
            (
                a.slurm_array_task_id.clone().unwrap_or_default(),
                a.launch_id.clone().unwrap_or_default(),
            )
        })
        .collect();
    let want: BTreeSet<_> = [("0", "10"), ("1", "11")]
        .map(|(a, b)| (a.to_owned(), b.to_owned()))
        .into();
    assert_eq!(got, want, "{}", cluster.logs());
    drop(d);
}

/// Through the facade alone: `Pool::launch_slurm` submits one job array with the pool's
/// address and token; each array task's daemon joins, runs a task, and ends with the pool.
#[test]
fn the_pool_runs_tasks_on_every_daemon_of_a_slurm_job_array() {
    let cluster = Cluster::start();
    let pool = Daemons::new().url("tls+tcp://127.0.0.1:0").start().unwrap();
    let slurm = Slurm::new()
        .job_name("mirai pool test")
        .sbatch("--output=/dev/null")
        .sbatch("--time=00:05:00")
        .program(this_program())
        .sbatch_program(cluster.tool("sbatch"));
    let job = pool.launch_slurm(&slurm, 2).unwrap();
    assert!(job.job_id.parse::<u64>().is_ok(), "job id {:?}", job.job_id);
    let answers = ask_everywhere(&pool, 2, PATIENCE);
    let pids: Vec<u32> = answers.iter().map(|a| a.pid).collect();
    let _reap = Reap(pids.clone());
    let got: BTreeSet<_> = answers
        .iter()
        .map(|a| {
            (
                a.slurm_array_task_id.clone().unwrap_or_default(),
                a.launch_id.clone().unwrap_or_default(),
            )
        })
        .collect();
    let first = job.launch_ids.start;
    let want: BTreeSet<_> = [("0".to_owned(), first), ("1".to_owned(), first + 1)]
        .map(|(a, b)| (a, b.to_string()))
        .into();
    assert_eq!(got, want, "{}", cluster.logs());
    assert_eq!(pool.status().connections, 2);
    // The launcher thread counts joins from the dispatcher's events, a moment after the
    // connections count them.
    let t = Instant::now();
    while pool.remote_daemons() != 2 {
        assert!(
            t.elapsed() < PATIENCE,
            "{} remote daemons",
            pool.remote_daemons()
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    assert_eq!(
        pool.map(&SQUARE, 0..10u64).unwrap(),
        (0..10u64).map(|x| x * x).collect::<Vec<_>>()
    );
    // The credentials went through sbatch's environment: on no command line, not in the
    // daemons' environments, and not inherited by what their tasks start.
    let join = pool.join();
    let credentials: Vec<String> = job
        .launch_ids
        .clone()
        .map(|id| join.credential(id).expose_str().unwrap().to_owned())
        .collect();
    for mut report in pool.everywhere(&EXPOSURE, (), 2).unwrap() {
        let exposure = report.wait_timeout(PATIENCE).unwrap();
        assert!(pids.contains(&exposure.pid));
        exposure.assert_hides(&[pool.token(), &credentials[0], &credentials[1]]);
    }
    drop(pool);
    for pid in pids {
        assert!(
            ends_within(pid, PATIENCE),
            "array daemon {pid} outlived its pool"
        );
    }
}

/// Array tasks still waiting in the queue when the pool goes away are cancelled with it, so
/// they never start daemons for a pool that is gone.
#[test]
fn dropping_the_pool_cancels_its_queued_slurm_job() {
    let cluster = Cluster::start();
    let pool = Daemons::new().url("tls+tcp://127.0.0.1:0").start().unwrap();
    let slurm = Slurm::new()
        .sbatch("--output=/dev/null")
        .sbatch("--begin=now+1hour") // held in the queue
        .program(this_program())
        .sbatch_program(cluster.tool("sbatch"))
        .scancel_program(cluster.tool("scancel"));
    let job = pool.launch_slurm(&slurm, 3).unwrap();
    let queued = || {
        output(Command::new(cluster.tool("squeue")).args([
            "-h",
            "-r",
            "-o",
            "%i",
            "-j",
            &job.job_id,
        ]))
    };
    assert_eq!(queued().lines().count(), 3, "{}", cluster.logs());
    drop(pool);
    let t = Instant::now();
    while !queued().is_empty() {
        assert!(
            t.elapsed() < PATIENCE,
            "the job outlived its pool: {}",
            queued()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}
