//! Shared regions through real daemon processes and the facade alone: a part of a shared value
//! keeps the region's name alive after the root handle is gone, a task returns a region the
//! host then owns (read in place, no copy), and every region is unlinked once the last handle
//! on it is dropped.

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

/// A region of `n` doubles `0, 1, 2, ...`, built on the daemon and returned to the host.
fn build(n: u64) -> mirai::Shared {
    let x: Vec<f64> = (0..n).map(|i| i as f64).collect();
    mirai::share_f64(&x).expect("share on the daemon")
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

/// The region files in /dev/shm this process created.
fn our_regions() -> Vec<String> {
    let prefix = format!("mori_{:x}_", std::process::id());
    std::fs::read_dir("/dev/shm")
        .expect("read /dev/shm")
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with(&prefix))
        .collect()
}

/// Removes this process's region files when dropped, so a failed test leaves none behind.
struct RegionsSwept;

impl Drop for RegionsSwept {
    fn drop(&mut self) {
        for name in our_regions() {
            let _ = std::fs::remove_file(format!("/dev/shm/{name}"));
        }
    }
}

fn a_leaf_sent_after_the_root_is_dropped_still_attaches() {
    let _swept = RegionsSwept;
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
    let text = std::fs::read_to_string("/proc/self/smaps_rollup").expect("smaps_rollup");
    let kib: u64 = text
        .lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or_else(|| panic!("no {field} in smaps_rollup"));
    kib * 1024
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

fn main() {
    mirai::daemon_main_if_requested(&registry());
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
    ]);
}
