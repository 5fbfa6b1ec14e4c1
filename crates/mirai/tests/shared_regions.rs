//! Shared regions through real daemon processes and the facade alone: a part of a shared value
//! keeps the region's name alive after the root handle is gone, and every region this process
//! made is unlinked once the last handle on it is dropped.

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

const SUM: TaskFn<SharedView, f64> = task!(sum);
const LABELS: TaskFn<SharedView, Vec<String>> = task!(labels);

fn registry() -> Registry {
    Registry::new().with(&SUM).with(&LABELS)
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

fn main() {
    mirai::daemon_main_if_requested(&registry());
    use common::Test;
    common::run(&[Test::new(
        "a_leaf_sent_after_the_root_is_dropped_still_attaches",
        a_leaf_sent_after_the_root_is_dropped_still_attaches,
    )]);
}
