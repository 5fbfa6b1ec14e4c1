//! Attaching checks what it maps: a region file must be a regular file (not a symbolic link,
//! not a FIFO), owned by our effective uid, with no permission bits for group or others.
//! Anything else under a region's name is refused with `Error::Untrusted` naming why, by
//! `map_shared`, by `SharedView` deserialization and by the `mori` command.

mod common;

use std::os::unix::fs::PermissionsExt;

#[cfg(feature = "cli")]
use common::mori;
use common::{ShmPath, region_file};
use mori_shm::{Error, SharedView, Untrusted};

/// The reason `map_shared(identifier)` refused, or a panic naming what it did instead.
fn refusal(identifier: &str) -> Untrusted {
    match mori_shm::map_shared(identifier) {
        Err(Error::Untrusted { name, reason }) => {
            let region = identifier.split('[').next().unwrap();
            assert_eq!(name, region);
            reason
        }
        other => panic!("{identifier} was not refused as untrusted: {other:?}"),
    }
}

/// `mori cat` and `mori show` refuse it too: exit code 1 and a message that says why (with the
/// `cli` feature, which builds the command).
#[cfg(feature = "cli")]
fn cli_refuses(identifier: &str, why: &str) {
    for cmd in ["cat", "show"] {
        let (code, out, err) = mori(&[cmd, identifier]);
        assert_eq!(code, 1, "mori {cmd} {identifier}: {out}{err}");
        assert!(
            err.contains("refusing to attach") && err.contains(why),
            "{err}"
        );
        assert!(out.is_empty(), "{out}");
    }
}

#[test]
fn a_region_of_another_user_is_refused_with_its_owner() {
    common::require_root("it gives a region file to another uid");
    let shared = mori_shm::share_f64(&[1.0, 2.0]).unwrap();
    let list = mori_shm::share_list(vec![(None, mori_shm::Source::Integer(&[3]))]).unwrap();
    // Ours, before: attaches.
    assert_eq!(
        mori_shm::map_shared(shared.name()).unwrap().as_f64(),
        Some(&[1.0, 2.0][..])
    );
    for s in [&shared, &list] {
        std::os::unix::fs::chown(region_file(s.name()), Some(65534), Some(65534)).unwrap();
    }
    assert_eq!(refusal(shared.name()), Untrusted::OtherOwner { uid: 65534 });
    let element = format!("{}[1]", list.name());
    assert_eq!(refusal(&element), Untrusted::OtherOwner { uid: 65534 });

    let err = serde_json::from_str::<SharedView>(&format!("\"{}\"", shared.name())).unwrap_err();
    assert!(err.to_string().contains("uid 65534"), "{err}");
    #[cfg(feature = "cli")]
    cli_refuses(shared.name(), "uid 65534");
    // `shared` and `list` unlink their files when dropped, as root can.
}

#[test]
fn a_symbolic_link_named_like_a_region_is_refused() {
    let shared = mori_shm::share_f64(&[4.0]).unwrap();
    let (name, link) = ShmPath::unused();
    std::os::unix::fs::symlink(region_file(shared.name()), &link.0).unwrap();
    assert_eq!(refusal(&name), Untrusted::Symlink);
    let err = serde_json::from_str::<SharedView>(&format!("\"{name}\"")).unwrap_err();
    assert!(err.to_string().contains("symbolic link"), "{err}");
    #[cfg(feature = "cli")]
    cli_refuses(&name, "symbolic link");

    // A link to a file outside /dev/shm, too.
    let (elsewhere, link2) = ShmPath::unused();
    std::os::unix::fs::symlink("/etc/passwd", &link2.0).unwrap();
    assert_eq!(refusal(&elsewhere), Untrusted::Symlink);
    // The region itself still attaches.
    assert_eq!(
        mori_shm::map_shared(shared.name()).unwrap().as_f64(),
        Some(&[4.0][..])
    );
}

#[test]
fn a_region_readable_by_others_is_refused_with_its_mode() {
    let shared = mori_shm::share_i32(&[1, 2, 3]).unwrap();
    let path = region_file(shared.name());
    for mode in [0o644, 0o640, 0o604, 0o660, 0o610] {
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
        assert_eq!(refusal(shared.name()), Untrusted::Mode { mode });
    }
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
    #[cfg(feature = "cli")]
    cli_refuses(shared.name(), "mode 0644");
    // Owner-only modes are fine: a umask can only take bits away from 0600.
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o400)).unwrap();
    assert_eq!(
        mori_shm::map_shared(shared.name()).unwrap().as_i32(),
        Some(&[1, 2, 3][..])
    );
}

#[test]
fn a_fifo_or_directory_named_like_a_region_is_refused_without_blocking() {
    let (fifo_name, fifo) = ShmPath::unused();
    rustix::fs::mknodat(
        rustix::fs::CWD,
        &fifo.0,
        rustix::fs::FileType::Fifo,
        rustix::fs::Mode::from_raw_mode(0o600),
        0,
    )
    .unwrap();
    // Opening a FIFO for reading waits for a writer unless told not to. If the attach blocks,
    // open the writing end to release it, and fail.
    let (tx, rx) = std::sync::mpsc::channel();
    let attaching = {
        let fifo_name = fifo_name.clone();
        std::thread::spawn(move || tx.send(refusal(&fifo_name)).unwrap())
    };
    match rx.recv_timeout(std::time::Duration::from_secs(10)) {
        Ok(reason) => assert_eq!(reason, Untrusted::NotRegular),
        Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {
            // The attaching thread waits in open(2) for a writer: be one, so it returns.
            let _writer = std::fs::OpenOptions::new().write(true).open(&fifo.0);
            let _ = attaching.join();
            panic!("attach blocked on a FIFO");
        }
        // The thread panicked: pass its message on.
        Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => {}
    }
    attaching.join().unwrap();

    let (dir_name, dir) = ShmPath::unused();
    std::fs::create_dir(&dir.0).unwrap();
    std::fs::set_permissions(&dir.0, std::fs::Permissions::from_mode(0o700)).unwrap();
    assert_eq!(refusal(&dir_name), Untrusted::NotRegular);
}

#[test]
fn our_own_regions_still_attach_everywhere() {
    let shared = mori_shm::share_strings(&["a", "b"]).unwrap();
    let view = mori_shm::map_shared(shared.name()).unwrap();
    assert_eq!(view.len(), 2);
    let back: SharedView = serde_json::from_str(&format!("\"{}\"", shared.name())).unwrap();
    assert_eq!(back.len(), 2);
    #[cfg(feature = "cli")]
    {
        let (code, out, err) = mori(&["cat", shared.name()]);
        assert_eq!((code, out.trim()), (0, r#"["a","b"]"#), "{err}");
    }
}

#[test]
fn the_suite_leaves_no_regions_behind() {
    common::assert_suite_leaves_no_regions("the_suite_leaves_no_regions_behind");
}
