//! Regions across processes: attaching by name in another process, lifetimes across unlink,
//! and pruning the regions of dead creators.

mod common;

use std::io::Write;
use std::process::Command;

#[cfg(feature = "cli")]
use common::TempJson;
use common::{ChildGuard, region_file};
use mori_shm::{Error, Source, View};

const CHILD_ENV: &str = "MORI_SHM_TEST_CHILD";
const IDS_ENV: &str = "MORI_SHM_TEST_IDS";
const TAG: &str = "@@ ";

/// The prune tests check what one prune removes; a concurrent prune from the other would remove
/// their orphans first, so they take turns. (Both start `mori share` creators: feature `cli`.)
#[cfg(feature = "cli")]
static PRUNING: std::sync::Mutex<()> = std::sync::Mutex::new(());

#[cfg(feature = "cli")]
fn one_at_a_time() -> std::sync::MutexGuard<'static, ()> {
    PRUNING
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// A one-line description of what an identifier leads to, as both processes print it.
fn describe(id: &str) -> String {
    match mori_shm::map_shared(id) {
        Err(e) => {
            let debug = format!("{e:?}");
            let variant = debug.split([' ', '{', '(']).next().unwrap_or("").to_owned();
            format!("error {variant}")
        }
        Ok(v) => match v.view() {
            View::Double(x) => format!("double {:?}", x.data()),
            View::Integer(x) => format!("integer {:?}", x.data()),
            View::Raw(x) => format!("raw {:?}", x.data()),
            View::Character(s) => {
                let strs: Vec<Option<&str>> = s.iter().map(|x| x.as_str()).collect();
                format!("character {strs:?}")
            }
            View::List(l) => format!("list {}", l.len()),
            other => format!("{:?} {}", other.sexptype(), other.len()),
        },
    }
}

/// The entry point of the child processes started below (not a test of its own).
#[test]
#[ignore = "entry point of the child processes the other tests start"]
fn child() {
    let mode = std::env::var(CHILD_ENV).expect("only run as a child of the other tests");
    let ids = std::env::var(IDS_ENV).unwrap_or_default();
    let ids: Vec<&str> = ids.split_whitespace().collect();
    match mode.as_str() {
        // Attach to each identifier in a fresh process and describe it.
        "describe" => {
            for id in ids {
                println!("{TAG}{}", describe(id));
            }
        }
        // Map the first identifier, report, wait for a line on stdin, then read it again.
        "hold" => {
            let view = mori_shm::map_shared(ids[0]).expect("child attach");
            println!("{TAG}mapped");
            let mut line = String::new();
            std::io::stdin().read_line(&mut line).unwrap();
            println!("{TAG}{}", describe(ids[0]));
            println!("{TAG}double {:?}", view.as_f64().unwrap());
        }
        other => panic!("unknown child mode {other}"),
    }
}

fn spawn_child(mode: &str, ids: &[&str]) -> ChildGuard {
    let mut cmd = Command::new(std::env::current_exe().unwrap());
    cmd.args([
        "--exact",
        "child",
        "--ignored",
        "--nocapture",
        "--test-threads=1",
    ])
    .env(CHILD_ENV, mode)
    .env(IDS_ENV, ids.join(" "));
    ChildGuard::spawn(&mut cmd)
}

/// The next tagged line of a test-binary child (the harness may print its own text first, even
/// on the same line).
fn tagged(child: &mut ChildGuard) -> String {
    loop {
        let line = child.try_line().expect("the child ended before printing");
        if let Some((_, rest)) = line.split_once(TAG) {
            return rest.to_owned();
        }
    }
}

#[test]
fn another_process_attaches_by_name_at_root_and_nested_paths() {
    let inner_ints = [4, 5, 6];
    let shared = mori_shm::share_list(vec![
        (Some("a"), Source::Double(&[1.5, 2.5])),
        (Some("b"), Source::OptStrings(&[Some("x"), None, Some("é")])),
        (
            Some("inner"),
            Source::List(vec![
                (None, Source::Integer(&inner_ints)),
                (None, Source::Raw(&[0, 255])),
            ]),
        ),
    ])
    .unwrap();
    let name = shared.name().to_owned();
    let ids = [
        name.clone(),
        format!("{name}[1]"),
        format!("{name}[2]"),
        format!("{name}[3,1]"),
        format!("{name}[3,2]"),
        format!("{name}[4]"),
        format!("{name}[1,1]"),
    ];
    let ids: Vec<&str> = ids.iter().map(String::as_str).collect();
    let mut child = spawn_child("describe", &ids);
    let expected = [
        "list 3",
        "double [1.5, 2.5]",
        r#"character [Some("x"), None, Some("é")]"#,
        "integer [4, 5, 6]",
        "raw [0, 255]",
        "error IndexOutOfRange",
        "error NotAList",
    ];
    for (id, want) in ids.iter().zip(expected) {
        assert_eq!(tagged(&mut child), want, "child's view of {id}");
        assert_eq!(describe(id), want, "our view of {id}");
    }
    assert_eq!(child.wait(), Some(0));
}

#[test]
fn a_consumers_mapping_survives_the_creators_unlink() {
    let shared = mori_shm::share_f64(&[3.0, 1.0, 4.0]).unwrap();
    let name = shared.name().to_owned();
    let mut child = spawn_child("hold", &[&name]);
    assert_eq!(tagged(&mut child), "mapped");
    drop(shared);
    assert!(!region_file(&name).exists());
    assert!(matches!(
        mori_shm::map_shared(&name),
        Err(Error::NotFound { .. })
    ));
    writeln!(child.stdin(), "go").unwrap();
    assert_eq!(tagged(&mut child), "error NotFound", "new attaches fail");
    assert_eq!(
        tagged(&mut child),
        "double [3.0, 1.0, 4.0]",
        "the old mapping reads"
    );
    assert_eq!(child.wait(), Some(0));
}

#[test]
fn a_leaf_keeps_the_name_alive_after_the_root_handle_is_dropped() {
    let shared = mori_shm::share_list(vec![
        (Some("x"), Source::Double(&[1.0, 2.0])),
        (
            Some("inner"),
            Source::List(vec![(Some("y"), Source::Integer(&[7, 8, 9]))]),
        ),
    ])
    .unwrap();
    let name = shared.name().to_owned();
    let leaf = shared
        .get_named("inner")
        .unwrap()
        .unwrap()
        .get_named("y")
        .unwrap()
        .unwrap();
    let sibling = shared.view().get(0).unwrap();
    drop(shared);
    assert!(
        region_file(&name).exists(),
        "views of the root hold the name"
    );

    let id = leaf.identifier().unwrap();
    assert_eq!(id, format!("{name}[2,1]"));
    let mut child = spawn_child("describe", &[&id]);
    assert_eq!(
        tagged(&mut child),
        "integer [7, 8, 9]",
        "attached by the leaf's identifier"
    );
    assert_eq!(child.wait(), Some(0));

    drop(sibling);
    assert!(region_file(&name).exists(), "the leaf still holds the name");
    // A view attached by name does not own it.
    let attached = mori_shm::map_shared(&id).unwrap();
    drop(leaf);
    assert!(
        !region_file(&name).exists(),
        "the last view unlinked the name"
    );
    assert!(matches!(
        mori_shm::map_shared(&name),
        Err(Error::NotFound { .. })
    ));
    assert_eq!(
        attached.as_i32(),
        Some(&[7, 8, 9][..]),
        "mappings stay valid"
    );
}

// The creator is a `mori share` process (feature `cli`).
#[cfg(feature = "cli")]
#[test]
fn our_mapping_survives_a_creator_process_that_unlinks_and_exits() {
    let json = TempJson::new("survive", "[2.5, 3.5]");
    let mut creator = ChildGuard::mori_share(&json.0);
    let name = creator.line();
    let view = mori_shm::map_shared(&name).unwrap();
    creator.close_stdin();
    assert_eq!(creator.wait(), Some(0));
    assert!(!region_file(&name).exists(), "the creator unlinked on exit");
    assert!(matches!(
        mori_shm::map_shared(&name),
        Err(Error::NotFound { .. })
    ));
    assert_eq!(view.as_f64(), Some(&[2.5, 3.5][..]));
}

// The creator is a `mori share` process (feature `cli`).
#[cfg(feature = "cli")]
#[test]
fn prune_removes_a_killed_creators_region_and_keeps_a_live_ones() {
    let _turn = one_at_a_time();
    let json = TempJson::new("prune", "[1, 2, 3]");
    let mut killed = ChildGuard::mori_share(&json.0);
    let mut live = ChildGuard::mori_share(&json.0);
    let (dead_name, live_name) = (killed.line(), live.line());
    killed.child.kill().unwrap();
    killed.wait();
    assert!(region_file(&dead_name).exists(), "SIGKILL leaves an orphan");
    let status = |name: &str| {
        mori_shm::list_regions()
            .unwrap()
            .into_iter()
            .find(|r| r.name == name)
            .map(|r| r.status)
    };
    assert_eq!(status(&dead_name), Some(mori_shm::Status::Orphaned));
    assert_eq!(status(&live_name), Some(mori_shm::Status::Alive));
    mori_shm::prune().unwrap();
    assert!(!region_file(&dead_name).exists(), "the orphan was pruned");
    assert!(region_file(&live_name).exists(), "the live region was kept");
    assert_eq!(describe(&live_name), "double [1.0, 2.0, 3.0]");
    live.close_stdin();
    assert_eq!(live.wait(), Some(0));
}

// The creator is a `mori share` process (feature `cli`).
#[cfg(feature = "cli")]
#[test]
fn prune_removes_a_region_whose_live_pid_has_another_start_time() {
    let _turn = one_at_a_time();
    let json = TempJson::new("reuse", "[7]");
    let mut creator = ChildGuard::mori_share(&json.0);
    let name = creator.line();
    let file = region_file(&name);
    let mut record = [0u8; 32];
    let n = rustix::fs::getxattr(&file, "user.mori.owner", &mut record[..]).unwrap();
    let start: u64 = std::str::from_utf8(&record[..n]).unwrap().parse().unwrap();
    // Pretend the region was made by an earlier process that had the same pid.
    let fake = (start - 1).to_string();
    rustix::fs::setxattr(
        &file,
        "user.mori.owner",
        fake.as_bytes(),
        rustix::fs::XattrFlags::REPLACE,
    )
    .unwrap();
    let status = mori_shm::list_regions()
        .unwrap()
        .into_iter()
        .find(|r| r.name == name)
        .map(|r| (r.pid, r.start_time, r.status));
    assert_eq!(
        status,
        Some((creator.pid(), Some(start - 1), mori_shm::Status::Orphaned)),
        "the creator is alive, but it is not the process that made the region"
    );
    mori_shm::prune().unwrap();
    assert!(!file.exists());
    // The live creator's own unlink then finds nothing to remove, and it exits cleanly.
    creator.close_stdin();
    assert_eq!(creator.wait(), Some(0));
}

#[test]
fn the_suite_leaves_no_regions_behind() {
    common::assert_suite_leaves_no_regions("the_suite_leaves_no_regions_behind");
}
