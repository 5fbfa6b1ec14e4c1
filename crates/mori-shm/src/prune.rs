//! Listing the regions in `/dev/shm` and removing those whose creator is dead.
//!
//! The decision for each region is [`owner::status`](crate::owner): R's rule (the pid in the
//! name exists) sharpened by the creator's start time where the region carries an owner record.
//! See [`owner`](crate::owner) for the rule and its PID-namespace caveat.

use std::io;
use std::path::Path;

use crate::error::{Error, Result};
use crate::name;
use crate::owner::{self, Status};
use crate::sys::{file, proc};

/// One region file found in `/dev/shm`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct RegionInfo {
    /// The region name, `/mori_<pid>_<counter>`.
    pub name: String,
    /// Its size in bytes.
    pub size: u64,
    /// The pid of the process that owns it: its creator's (from the name), or, for a region
    /// handed to another process (a task result), that process's (from the owner record).
    pub pid: u32,
    /// The owner's start time from the owner record, if the region has one.
    pub start_time: Option<u64>,
    /// Whether the creator is alive.
    pub status: Status,
}

/// Every region in `/dev/shm`, sorted by name, with its creator's status.
///
/// ```
/// let regions = mori_shm::list_regions()?;
/// assert!(regions.iter().all(|r| r.name.starts_with("/mori_")));
/// # Ok::<(), mori_shm::Error>(())
/// ```
pub fn list_regions() -> Result<Vec<RegionInfo>> {
    let dir = Path::new(file::SHM_DIR);
    let entries = std::fs::read_dir(dir).map_err(|source| Error::Io {
        name: file::SHM_DIR.to_owned(),
        op: "list",
        source,
    })?;
    let mut regions = Vec::new();
    for entry in entries.flatten() {
        let Some(file_name) = entry.file_name().to_str().map(str::to_owned) else {
            continue;
        };
        let Some(pid) = name::creator_pid(&file_name) else {
            continue;
        };
        // Regions vanish between listing and looking: skip those.
        let Ok(meta) = entry.metadata() else {
            continue;
        };
        if !meta.is_file() {
            continue;
        }
        regions.push(inspect(&file_name, pid, meta.len()));
    }
    regions.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(regions)
}

/// Decide the status of one region file, whose name carries the creator's `pid`.
fn inspect(file_name: &str, pid: u32, size: u64) -> RegionInfo {
    let record = file::owner_record(&file::region_path(file_name))
        .ok()
        .flatten()
        .and_then(|r| owner::decode_record(&r));
    let pid = record.and_then(|r| r.pid).unwrap_or(pid);
    let start_time = record.map(|r| r.start_time);
    RegionInfo {
        name: format!("/{file_name}"),
        size,
        pid,
        start_time,
        status: owner::status(start_time, proc::probe(pid)),
    }
}

/// Remove every region whose creator is dead, returning the names removed.
///
/// A region is removed when the pid in its name no longer exists, or when its owner record
/// shows that the process now holding that pid is not its creator (pid reuse). A region handed
/// to another process (a task result) is judged by that process instead. Regions of live
/// creators, and R's regions (no owner record) whose pid exists, are kept. Do not run it on a
/// `/dev/shm` shared with other PID namespaces (see the [crate docs](crate#lifetime-and-prune)).
///
/// ```
/// let removed = mori_shm::prune()?;
/// assert!(removed.iter().all(|n| n.starts_with("/mori_")));
/// # Ok::<(), mori_shm::Error>(())
/// ```
pub fn prune() -> Result<Vec<String>> {
    let mut removed = Vec::new();
    for region in list_regions()? {
        if region.status != Status::Orphaned {
            continue;
        }
        // Look again right before unlinking: the listing may be stale.
        let file_name = &region.name[1..];
        let Some(creator) = name::creator_pid(file_name) else {
            continue;
        };
        if inspect(file_name, creator, region.size).status != Status::Orphaned {
            continue;
        }
        match std::fs::remove_file(file::region_path(file_name)) {
            Ok(()) => removed.push(region.name),
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(source) => {
                return Err(Error::Io {
                    name: region.name,
                    op: "unlink",
                    source,
                });
            }
        }
    }
    Ok(removed)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::region::{self, NameOwner};

    /// The tests below check what one prune removes; a concurrent prune from a sibling test
    /// would remove their orphans first, so they take turns.
    static PRUNING: std::sync::Mutex<()> = std::sync::Mutex::new(());

    fn one_at_a_time() -> std::sync::MutexGuard<'static, ()> {
        PRUNING
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// A region file named for `pid`, with an owner record of `record` (none if `None`),
    /// unlinked when the guard drops.
    fn fake_region(pid: u32, record: Option<u64>) -> (String, NameOwner) {
        let ours = name::next_file_name().unwrap();
        let counter = ours.rsplit('_').next().unwrap();
        let file_name = format!("{}{pid:x}_{counter}", name::FILE_PREFIX);
        let path = file::region_path(&file_name);
        let f = file::create_exclusive(&path).unwrap();
        let guard = region::name_owner(path);
        if let Some(r) = record {
            file::set_owner_record(&f, &owner::encode_record(r)).unwrap();
        }
        (file_name, guard)
    }

    fn dead_pid() -> u32 {
        let mut child = std::process::Command::new("true").spawn().unwrap();
        let pid = child.id();
        child.wait().unwrap();
        pid
    }

    #[test]
    fn a_dead_creators_region_is_pruned_with_or_without_a_record() {
        let _turn = one_at_a_time();
        let pid = dead_pid();
        let (with, _g1) = fake_region(pid, Some(1));
        let (without, _g2) = fake_region(pid, None);
        let listed = list_regions().unwrap();
        for n in [&with, &without] {
            let info = listed.iter().find(|r| r.name[1..] == **n).unwrap();
            assert_eq!(info.status, Status::Orphaned);
            assert_eq!(info.pid, pid);
        }
        prune().unwrap();
        assert!(!file::region_path(&with).exists());
        assert!(!file::region_path(&without).exists());
    }

    #[test]
    fn a_reused_pid_does_not_protect_a_dead_creators_region() {
        let _turn = one_at_a_time();
        let me = std::process::id();
        let wrong = proc::own_start_time().unwrap() + 1;
        let (reused, _g) = fake_region(me, Some(wrong));
        let info = inspect(&reused, me, 0);
        assert_eq!(info.start_time, Some(wrong));
        assert_eq!(info.status, Status::Orphaned);
        prune().unwrap();
        assert!(!file::region_path(&reused).exists());
    }

    #[test]
    fn live_creators_keep_their_regions_with_or_without_a_record() {
        let _turn = one_at_a_time();
        let me = std::process::id();
        let (with, _g1) = fake_region(me, Some(proc::own_start_time().unwrap()));
        let (without, _g2) = fake_region(me, None);
        let (_m, _g3) = region::create(64, |_| Ok(())).unwrap();
        let removed = prune().unwrap();
        for n in [&with, &without, &_m.name()[1..].to_owned()] {
            assert!(file::region_path(n).exists(), "{n} was pruned");
            assert!(!removed.iter().any(|r| r[1..] == **n));
        }
    }

    #[test]
    fn files_that_are_not_regions_are_never_listed() {
        let _turn = one_at_a_time();
        let me = std::process::id();
        let path = file::region_path(&format!("mori_{me:x}_notHEX"));
        let _f = file::create_exclusive(&path).unwrap();
        let _g = region::name_owner(path.clone());
        assert!(
            list_regions()
                .unwrap()
                .iter()
                .all(|r| r.name[1..] != *path.file_name().unwrap())
        );
        prune().unwrap();
        assert!(path.exists());
    }
}
