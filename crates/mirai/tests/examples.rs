//! The examples, run as users run them: the quickstart, shared_frames and reproducible binaries that `cargo
//! test` builds beside this test, checked for what they promise to show. (`cargo test -p mirai --test examples`
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

/// The text between `after` and the next `until` in the first line of `out` holding `after`.
fn field<'a>(out: &'a str, after: &str, until: char) -> &'a str {
    let rest = out
        .split_once(after)
        .unwrap_or_else(|| panic!("no {after:?} in:\n{out}"))
        .1;
    rest.split(until).next().unwrap_or(rest)
}

/// Removes the named region files when dropped, so a failed run leaves none behind.
struct RegionFiles(Vec<String>);

impl Drop for RegionFiles {
    fn drop(&mut self) {
        for name in &self.0 {
            let _ = std::fs::remove_file(format!("/dev/shm{name}"));
        }
    }
}

#[test]
fn shared_frames_reads_one_copy_from_every_daemon_and_gets_a_region_back() {
    let out = Command::new(example("shared_frames"))
        .output()
        .expect("run shared_frames");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let regions = RegionFiles(vec![
        field(&stdout, "once as ", '\n').to_owned(),
        field(&stdout, "came back as region ", ' ').to_owned(),
    ]);
    assert!(
        out.status.success(),
        "shared_frames failed: {}\n{stdout}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains("shared 4 columns x 6250000 rows (200 MB) once as /mori_"),
        "{stdout}"
    );
    // Every column read in place, each sent as its path-form name: `/mori_..[k]`.
    for (k, mean) in [(1, "499.5"), (2, "999.0"), (3, "1498.5"), (4, "1998.0")] {
        let line = stdout
            .lines()
            .find(|l| l.contains(&format!("mean {mean} on daemon")))
            .unwrap_or_else(|| panic!("no column with mean {mean}:\n{stdout}"));
        assert!(line.ends_with(&format!("[{k}])")), "{line}");
    }
    assert!(
        stdout.contains("4 column tasks ran on 2 daemons"),
        "{stdout}"
    );
    // One copy among host and daemons, not one each (copies would be 2x or more).
    let ratio: f64 = field(&stdout, "grew by ", '\n')
        .split_once(": ")
        .and_then(|(_, r)| r.split('x').next()?.parse().ok())
        .unwrap_or_else(|| panic!("no PSS ratio in:\n{stdout}"));
    assert!((0.9..1.1).contains(&ratio), "summed PSS {ratio}x one copy");
    assert!(
        stdout.contains("(50 MB), now the host's: largest 9990"),
        "{stdout}"
    );
    // The host's handles unlinked both regions, the daemon's result included, on exit.
    for name in &regions.0 {
        assert!(
            !std::path::Path::new(&format!("/dev/shm{name}")).exists(),
            "{name} is left in /dev/shm"
        );
    }
}

#[test]
fn reproducible_draws_the_same_numbers_on_1_and_4_daemons_and_prints_one_trace() {
    let out = Command::new(example("reproducible"))
        .output()
        .expect("run reproducible");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "reproducible failed: {}\n{stdout}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    let one = field(&stdout, "1 daemon:  ", '\n');
    let four = field(&stdout, "4 daemons: ", '\n');
    assert_eq!(one, four, "{stdout}");
    assert_eq!(one.split(", ").count(), 10, "ten numbers: {one}");
    assert!(stdout.contains("the same: true"), "{stdout}");
    // Ten submit spans on the host, each with the daemon's execute span under it, in another
    // process, all in the one trace printed.
    let host = field(&stdout, "run (host pid ", ')');
    let submits = stdout
        .lines()
        .filter(|l| l.contains(" submit draw (host pid "))
        .count();
    let executes: Vec<&str> = stdout
        .lines()
        .filter(|l| l.contains(" execute draw (daemon pid "))
        .map(|l| field(l, "daemon pid ", ')'))
        .collect();
    assert_eq!((submits, executes.len()), (10, 10), "{stdout}");
    assert!(executes.iter().all(|pid| *pid != host), "{stdout}");
    let trace = field(&stdout, "trace ", '\n');
    assert_eq!(trace.len(), 32, "{stdout}");
}
