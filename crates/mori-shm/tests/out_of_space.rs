//! A full `/dev/shm` is a clear error, never a `SIGBUS`, whichever way a region's bytes go in.
//!
//! The checks run in a child process with a private mount namespace (`unshare -rm`) where a
//! 4 MiB tmpfs is mounted over `/dev/shm`, so they can fill it without touching the machine's
//! own, and everything the child creates vanishes with its namespace.

mod common;

use std::process::Command;

use common::ChildGuard;

const CHILD_ENV: &str = "MORI_SHM_TEST_TINY_SHM";
const TAG: &str = "@@ ";
const TINY: u64 = 4 << 20;

fn regions_in_dev_shm() -> Vec<String> {
    std::fs::read_dir("/dev/shm")
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("mori_"))
        .collect()
}

/// The checks, run inside the private 4 MiB `/dev/shm` (not a test of its own).
#[test]
#[ignore = "entry point of the child process the other test starts"]
fn child() {
    assert!(
        std::env::var(CHILD_ENV).is_ok(),
        "only run as a child of the other test"
    );
    let free = {
        let st = rustix::fs::statvfs("/dev/shm").unwrap();
        st.f_bavail * st.f_frsize
    };
    assert!(free <= TINY, "not the private tmpfs: {free} bytes free");

    // Larger than the file system: refused with both sizes, nothing left behind.
    let big = vec![1.5f64; (8 << 20) / 8];
    match mori_shm::share_f64(&big) {
        Err(mori_shm::Error::OutOfSpace { name, asked, free }) => {
            assert_eq!(asked, 64 + (8 << 20));
            assert!(free <= TINY);
            assert!(name.starts_with("/mori_"));
            println!("{TAG}out of space asked {asked} free<=4MiB");
        }
        other => panic!("expected OutOfSpace, got {other:?}"),
    }
    assert_eq!(regions_in_dev_shm(), Vec::<String>::new());

    // Fits: written with pwrite for its data, and readable by a fresh attach.
    let fits: Vec<f64> = (0..(1 << 20) / 8).map(f64::from).collect();
    let shared = mori_shm::share_f64(&fits).unwrap();
    let view = mori_shm::map_shared(shared.name()).unwrap();
    assert_eq!(view.as_f64(), Some(&fits[..]));

    // With that region held, what is left cannot take a second 3 MiB one.
    let second = vec![2.5f64; (3 << 20) / 8];
    let err = mori_shm::share_f64(&second).unwrap_err();
    assert!(matches!(err, mori_shm::Error::OutOfSpace { .. }), "{err:?}");
    let msg = err.to_string();
    assert!(
        msg.contains("out of space") && msg.contains(&(64 + (3 << 20)).to_string()),
        "{msg}"
    );
    assert_eq!(
        regions_in_dev_shm().len(),
        1,
        "only the first region remains"
    );
    println!("{TAG}second refused");
    drop(shared);
    assert_eq!(regions_in_dev_shm(), Vec::<String>::new());
    println!("{TAG}done");
}

#[test]
fn a_full_dev_shm_is_a_clear_error_in_a_private_tiny_tmpfs() {
    let exe = std::env::current_exe().unwrap();
    let mut cmd = Command::new("unshare");
    cmd.args([
        "--user",
        "--map-root-user",
        "--mount",
        "--propagation",
        "private",
    ])
    .args([
        "sh",
        "-c",
        "mount -t tmpfs -o size=4m mori-test /dev/shm && exec \"$@\"",
        "sh",
    ])
    .arg(exe)
    .args([
        "--exact",
        "child",
        "--ignored",
        "--nocapture",
        "--test-threads=1",
    ])
    .env(CHILD_ENV, "1");
    let mut child = ChildGuard::spawn(&mut cmd);
    let mut tagged = Vec::new();
    while let Some(line) = child.try_line() {
        if let Some((_, rest)) = line.split_once(TAG) {
            tagged.push(rest.to_owned());
        }
    }
    let code = child.wait();
    assert_eq!(
        tagged,
        [
            format!("out of space asked {} free<=4MiB", 64 + (8 << 20)),
            "second refused".to_owned(),
            "done".to_owned(),
        ],
        "child exit code {code:?}"
    );
    assert_eq!(code, Some(0));
}
