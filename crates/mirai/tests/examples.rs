//! The examples, run as users run them: the quickstart binary that `cargo test` builds beside
//! this test, checked for what it promises to show. (`cargo test -p mirai --test examples`
//! alone does not rebuild the example: run `cargo test -p mirai` or build the examples first.)

use std::path::PathBuf;
use std::process::Command;
use std::time::Instant;

/// `target/<profile>/examples/<name>`, built by `cargo test` (which builds every example).
fn example(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("test executable");
    let profile_dir = exe
        .parent()
        .and_then(|deps| deps.parent())
        .expect("target/<profile>/deps/<test>");
    let path = profile_dir.join("examples").join(name);
    assert!(
        path.is_file(),
        "{} is not built: run `cargo test -p mirai` (it builds the examples)",
        path.display()
    );
    path
}

#[test]
fn quickstart_shows_map_backpressure_sharing_and_status() {
    let start = Instant::now();
    let out = Command::new(example("quickstart"))
        .output()
        .expect("run quickstart");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "quickstart failed: {}\n{stdout}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains("map: 64 tasks, primes below 320000: 27608"),
        "{stdout}"
    );
    assert!(
        stdout.contains("then refused one of 65536 values (queue is full)"),
        "{stdout}"
    );
    assert!(
        stdout.contains("the refused chunk went in on retry: 500"),
        "{stdout}"
    );
    assert!(
        stdout.contains("all 4 daemons read it: sums agree"),
        "{stdout}"
    );
    assert!(stdout.contains("status: 4 daemons"), "{stdout}");
    // Its daemons are children of the quickstart: gone with it.
    assert!(
        start.elapsed().as_secs() < 120,
        "quickstart took {:?}",
        start.elapsed()
    );
}
