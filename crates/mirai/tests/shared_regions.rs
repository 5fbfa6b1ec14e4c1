//! Shared regions through real daemon processes and the facade alone: a part of a shared value
//! keeps the region's name alive after the root handle is gone, a task returns a region the
//! host then owns (read in place, no copy), and every region is unlinked once the last handle
//! on it is dropped; a host killed while it owns regions leaves them to `prune`, which keeps them
//! while the host lives and removes every one once it is dead.
//!
//! Besides the tests and their daemons, this binary plays the host that is killed, chosen by the
//! environment (see [`ROLE`]).

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use mirai::{Daemons, Registry, SharedView, Source, TaskFn, task};

mod common;

fn sum(v: SharedView) -> f64 {
    v.as_f64().expect("a double vector").iter().sum()
}

fn labels(v: SharedView) -> Vec<String> {
    v.as_strings()
        .expect("a character vector")
        .iter()
        .map(|s| s.as_str().unwrap_or("NA").to_owned())
        .collect()
}

/// A region of `n` doubles `0, 1, 2, ...`, written in place on the daemon and returned to the
/// host.
fn build(n: u64) -> mirai::Shared {
    mirai::share_with::<f64>(n as usize, |out| {
        for (i, x) in out.iter_mut().enumerate() {
            *x = i as f64;
        }
    })
    .expect("share on the daemon")
}

fn pid((): ()) -> u32 {
    std::process::id()
}

const SUM: TaskFn<SharedView, f64> = task!(sum);
const LABELS: TaskFn<SharedView, Vec<String>> = task!(labels);
const BUILD: TaskFn<u64, mirai::Shared> = task!(build);
const PID: TaskFn<(), u32> = task!(pid);

fn registry() -> Registry {
    Registry::new()
        .with(&SUM)
        .with(&LABELS)
        .with(&BUILD)
        .with(&PID)
}

/// The region files in /dev/shm whose names carry `pid` (their creator's).
fn regions_of(pid: u32) -> Vec<String> {
    let prefix = format!("mori_{pid:x}_");
    std::fs::read_dir("/dev/shm")
        .expect("read /dev/shm")
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with(&prefix))
        .collect()
}

/// The region files in /dev/shm this process created.
fn our_regions() -> Vec<String> {
    regions_of(std::process::id())
}

/// Removes the region files created by these processes when dropped, so a failed test leaves
/// none behind.
struct RegionsSwept(Vec<u32>);

impl Drop for RegionsSwept {
    fn drop(&mut self) {
        for &pid in &self.0 {
            for name in regions_of(pid) {
                let _ = std::fs::remove_file(format!("/dev/shm/{name}"));
            }
        }
    }
}

fn a_leaf_sent_after_the_root_is_dropped_still_attaches() {
    let _swept = RegionsSwept(vec![std::process::id()]);
    assert!(
        our_regions().is_empty(),
        "no region of ours before the test"
    );
    let pool = Daemons::new().local(1).start().unwrap();
    let x: Vec<f64> = (0..10_000).map(f64::from).collect();
    let shared = mirai::share_data_frame(vec![
        ("x", Source::Double(&x)),
        ("label", Source::Strings(&["a", "b"].repeat(5_000))),
    ])
    .unwrap();
    let name = shared.name().to_owned();
    let column = shared.get_named("x").unwrap().unwrap();
    let label = shared.view().get(1).unwrap();
    drop(shared);

    let total = pool.submit(&SUM, column.clone()).unwrap().wait().unwrap();
    assert_eq!(total, x.iter().sum::<f64>(), "the daemon read the column");
    let seen = pool.submit(&LABELS, label.clone()).unwrap().wait().unwrap();
    assert_eq!(seen.len(), 10_000);
    assert_eq!((seen[0].as_str(), seen[9_999].as_str()), ("a", "b"));

    drop(column);
    assert_eq!(
        our_regions().len(),
        1,
        "the label column still holds {name}"
    );
    drop(label);
    assert!(
        our_regions().is_empty(),
        "the last view unlinked the name: {:?}",
        our_regions()
    );
    assert!(matches!(
        mirai::map_shared(&name),
        Err(mirai::SharedError::NotFound { .. })
    ));
}

/// A field of `/proc/self/smaps_rollup` in bytes, e.g. `Pss` (this process's proportional share
/// of the pages it maps: a page it alone maps counts fully, a page two processes map half).
fn smaps_bytes(field: &str) -> u64 {
    common::proc_kib_field("/proc/self/smaps_rollup", field) * 1024
}

/// Removes one region file when dropped, so a failed test leaves none behind.
struct RegionFile(String);

impl Drop for RegionFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(format!("/dev/shm{}", self.0));
    }
}

fn a_task_returns_a_region_the_host_then_owns_and_reads_without_a_copy() {
    const N: u64 = 25_000_000; // 200 MB of doubles
    let pool = Daemons::new().local(1).start().unwrap();
    let daemon = pool.submit(&PID, ()).unwrap().wait().unwrap();
    let pss_before = smaps_bytes("Pss");

    let result = pool.submit(&BUILD, N).unwrap().wait().unwrap();
    let _swept = RegionFile(result.name().to_owned());
    let name = result.name().to_owned();
    assert!(
        name.starts_with(&format!("/mori_{daemon:x}_")),
        "the daemon made {name}"
    );
    // The daemon's handle was dropped when its task ended: the name survived it.
    let xs = result.as_f64().expect("doubles");
    assert_eq!(xs.len() as u64, N);
    assert!(xs.iter().enumerate().all(|(i, &x)| x == i as f64));
    let grown = smaps_bytes("Pss").saturating_sub(pss_before) as f64 / (N * 8) as f64;
    println!("host PSS grew by {grown:.2}x the region while reading it");
    assert!(
        grown <= 1.15,
        "the host holds about one copy (the mapping), not {grown:.2}x"
    );

    // The host owns it now: the region outlives the daemon, and prune keeps it.
    drop(pool);
    // A daemon already leaving when the pool dropped is reaped by the pool's event thread
    // within its exit grace, not by the drop itself.
    let deadline = Instant::now() + Duration::from_secs(10);
    while common::process_exists(daemon) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(5));
    }
    assert!(!common::process_exists(daemon), "the daemon was reaped");
    let status = mirai::list_regions()
        .unwrap()
        .into_iter()
        .find(|r| r.name == name)
        .map(|r| (r.pid, r.status));
    assert_eq!(
        status,
        Some((std::process::id(), mirai::RegionStatus::Alive)),
        "the owner record names the host"
    );
    drop(result);
    assert!(
        !std::path::Path::new(&format!("/dev/shm{name}")).exists(),
        "the host's handle unlinked it"
    );
}

/// Which part this process plays: `host` for the host that is killed (unset: the test runner).
const ROLE: &str = "MIRAI_SHARED_REGIONS_ROLE";

/// How long a daemon may take to retire after its last task, or to exit once its host is gone
/// (it notices within about 2 s).
const PATIENCE: Duration = Duration::from_secs(15);

/// The host that is killed: a pool of 2 local daemons that each retire after one task; one
/// builds a region and returns it, so the host owns it, and the host shares a region of its own.
/// Prints `regions RESULT OWN pids P1 P2` (the region names, then the daemons) and waits to be
/// killed, holding both regions, the pool and the daemon that ran no task.
fn host() -> ! {
    let pool = Daemons::new()
        .local(2)
        .maxtasks(1)
        .start()
        .expect("start the pool");
    let daemons = pool.local_pids();
    let own = mirai::share_f64(&[1.0, 2.0, 3.0]).expect("share on the host");
    let result = pool
        .submit(&BUILD, 1_000)
        .expect("submit")
        .wait()
        .expect("the region built on a daemon");
    println!(
        "regions {} {} pids {}",
        result.name(),
        own.name(),
        daemons
            .iter()
            .map(u32::to_string)
            .collect::<Vec<_>>()
            .join(" ")
    );
    // Killed here, owning both regions.
    let _keep = (pool, own, result);
    loop {
        std::thread::park();
    }
}

/// What the killed host reported: its two regions and its daemons.
struct Reported {
    result: String,
    own: String,
    daemons: Vec<u32>,
}

fn parse_report(line: &str) -> Reported {
    let words: Vec<&str> = line.split_whitespace().collect();
    match words.as_slice() {
        ["regions", result, own, "pids", daemons @ ..] => Reported {
            result: (*result).to_owned(),
            own: (*own).to_owned(),
            daemons: daemons.iter().map(|p| p.parse().expect("a pid")).collect(),
        },
        _ => panic!("unexpected host output {line:?}"),
    }
}

fn region_exists(name: &str) -> bool {
    Path::new(&format!("/dev/shm{name}")).exists()
}

fn after_a_host_sigkill_a_prune_leaves_none_of_its_regions() {
    let mut host = common::KilledOnDrop(
        Command::new(std::env::current_exe().expect("this program"))
            .env(ROLE, "host")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .spawn()
            .expect("start the host"),
    );
    let host_pid = host.0.id();
    // Whatever happens below, no region of the host's remains (its daemons' are added below).
    let mut swept = RegionsSwept(vec![host_pid]);
    let stdout = host.0.stdout.take().expect("the host's stdout");
    let mut line = String::new();
    BufReader::new(stdout)
        .read_line(&mut line)
        .expect("the host's report");
    let reported = parse_report(&line);
    swept.0.extend(&reported.daemons);
    let _swept = swept;
    let daemons = common::Orphans(reported.daemons);
    let (result, own) = (&reported.result, &reported.own);
    assert_eq!(daemons.0.len(), 2, "the host started 2 daemons");
    let builder = *daemons
        .0
        .iter()
        .find(|&&d| result.starts_with(&format!("/mori_{d:x}_")))
        .unwrap_or_else(|| panic!("a daemon of the host made {result}"));
    assert!(own.starts_with(&format!("/mori_{host_pid:x}_")), "{own}");

    // The builder retires after its one task; the host keeps what it received.
    common::eventually(PATIENCE, "the daemon that built the region retired", || {
        !common::alive(builder)
    });
    let removed = mirai::prune().expect("prune");
    for name in [result, own] {
        assert!(!removed.contains(name), "prune removed {name}");
        assert!(region_exists(name), "{name} is kept while the host lives");
    }
    let owner = mirai::list_regions()
        .expect("list")
        .into_iter()
        .find(|r| r.name == *result)
        .map(|r| (r.pid, r.status));
    assert_eq!(
        owner,
        Some((host_pid, mirai::RegionStatus::Alive)),
        "the record names the host, not the daemon that made {result}"
    );

    host.0.kill().expect("SIGKILL the host");
    host.0.wait().expect("reap the host");
    common::eventually(PATIENCE, "the host's daemons exited", || {
        daemons.0.iter().all(|&p| !common::alive(p))
    });
    mirai::prune().expect("prune");
    for name in [result, own] {
        assert!(!region_exists(name), "prune removed {name}");
    }
    for pid in std::iter::once(host_pid).chain(daemons.0.iter().copied()) {
        assert!(
            regions_of(pid).is_empty(),
            "no region named for {pid} remains: {:?}",
            regions_of(pid)
        );
    }
    let left: Vec<String> = mirai::list_regions()
        .expect("list")
        .into_iter()
        .filter(|r| r.pid == host_pid || daemons.0.contains(&r.pid))
        .map(|r| r.name)
        .collect();
    assert!(
        left.is_empty(),
        "no region owned by the host remains: {left:?}"
    );
}

/// A daemon that retires (maxtasks) before its result is taken leaves the region to its host:
/// a prune in between keeps it, and the result reads whole.
fn a_region_whose_daemon_retired_before_its_result_was_taken_survives_a_prune() {
    let pool = Daemons::new().local(1).maxtasks(1).start().unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    let daemon = loop {
        if let Some(&pid) = pool.local_pids().first() {
            break pid;
        }
        assert!(Instant::now() < deadline, "no daemon started");
        std::thread::sleep(Duration::from_millis(5));
    };
    let _swept = RegionsSwept(vec![daemon]);
    let mut handle = pool.submit(&BUILD, 1000).unwrap();
    while !handle.is_resolved() {
        assert!(Instant::now() < deadline, "no result");
        std::thread::sleep(Duration::from_millis(5));
    }
    // The daemon served its one task and leaves (and is reaped: a zombie still counts as
    // alive to a prune); the result is still untaken.
    while Path::new(&format!("/proc/{daemon}")).exists() {
        assert!(Instant::now() < deadline, "daemon {daemon} did not retire");
        std::thread::sleep(Duration::from_millis(5));
    }
    let made = regions_of(daemon);
    assert_eq!(made.len(), 1, "the daemon made one region: {made:?}");
    mirai::prune().unwrap();
    assert_eq!(regions_of(daemon), made, "the prune kept the host's region");
    let result = handle.wait().unwrap();
    let xs = result.as_f64().expect("doubles");
    assert!(xs.len() == 1000 && xs.iter().enumerate().all(|(i, &x)| x == i as f64));
    drop(result);
    assert!(
        regions_of(daemon).is_empty(),
        "the host's handle unlinked it"
    );
}

/// A program that leaks a region: shares it, prints its name and exits without unlinking it.
fn orphan() -> ! {
    let shared = mirai::share_f64(&[4.0; 16]).expect("share");
    println!("{}", shared.name());
    std::mem::forget(shared);
    std::process::exit(0);
}

/// A pool removes the orphaned regions of this user when it starts, unless told not to.
fn a_pool_prunes_orphaned_regions_when_it_starts() {
    let out = Command::new(std::env::current_exe().expect("this test binary"))
        .env(ROLE, "orphan")
        .stderr(Stdio::inherit())
        .output()
        .expect("run the leaking program");
    assert!(out.status.success(), "{:?}", out.status);
    let name = String::from_utf8(out.stdout).expect("utf-8");
    let name = name.trim().to_owned();
    let _swept = RegionFile(name.clone());
    assert!(region_exists(&name), "{name} was leaked");
    let kept = Daemons::new().prune_orphans(false).start().unwrap();
    assert!(region_exists(&name), "prune_orphans(false) keeps it");
    drop(kept);
    let pool = Daemons::new().start().unwrap();
    assert!(!region_exists(&name), "the pool pruned {name} at start");
    drop(pool);
}

fn main() {
    mirai::daemon_main_if_requested(&registry());
    match std::env::var(ROLE).as_deref() {
        Ok("host") => host(),
        Ok("orphan") => orphan(),
        _ => {}
    }
    use common::Test;
    common::run(&[
        Test::new(
            "a_leaf_sent_after_the_root_is_dropped_still_attaches",
            a_leaf_sent_after_the_root_is_dropped_still_attaches,
        ),
        Test::new(
            "a_task_returns_a_region_the_host_then_owns_and_reads_without_a_copy",
            a_task_returns_a_region_the_host_then_owns_and_reads_without_a_copy,
        ),
        Test::new(
            "after_a_host_sigkill_a_prune_leaves_none_of_its_regions",
            after_a_host_sigkill_a_prune_leaves_none_of_its_regions,
        ),
        Test::new(
            "a_region_whose_daemon_retired_before_its_result_was_taken_survives_a_prune",
            a_region_whose_daemon_retired_before_its_result_was_taken_survives_a_prune,
        ),
        Test::new(
            "a_pool_prunes_orphaned_regions_when_it_starts",
            a_pool_prunes_orphaned_regions_when_it_starts,
        ),
    ]);
}
