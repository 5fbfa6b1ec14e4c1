//! Local listeners admit only our own user: a process of another (throwaway) user that dials
//! an `abstract://` or `ipc://` listener gets no SP header back and no pipe appears on our side,
//! while a peer of our own user still connects; `ipc://` files are created with mode 0600; and
//! `LocalPeers::AnyUser` opts out. These tests run as root (and fail otherwise).

mod util;

use std::os::unix::fs::PermissionsExt;
use std::sync::mpsc::Receiver;
use std::time::Duration;

use nano_transport::{LocalPeers, PipeEvent, Protocol, Socket};
use util::users::ThrowawayUser;
use util::{Endpoint, Transport};

/// Bound on every wait.
const STEP: Duration = Duration::from_secs(10);

/// Run as the other user: connect to a Unix socket (`abstract` name or file path), write an SP
/// header, and report what comes back: `denied` (connect refused by file permissions), `closed`
/// (the connection was closed without a byte), or `header:<hex>` (the listener's SP header).
const DIAL: &str = r#"
import socket, sys
kind, target, header = sys.argv[1], sys.argv[2], bytes.fromhex(sys.argv[3])
s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
s.settimeout(5)
addr = b"\0" + target.encode() if kind == "abstract" else target
try:
    s.connect(addr)
except PermissionError:
    print("denied")
    sys.exit(0)
try:
    s.sendall(header)
    got = s.recv(8)
except (ConnectionResetError, BrokenPipeError):
    got = b""
except socket.timeout:
    print("timeout")
    sys.exit(0)
print("header:" + got.hex() if got else "closed")
"#;

/// The SP header of a PAIR1 peer, in hex.
fn pair1_header_hex() -> String {
    let t = Protocol::Pair1.id().to_be_bytes();
    util::hex(&[0x00, b'S', b'P', 0x00, t[0], t[1], 0x00, 0x00])
}

/// What the other user's dial of `url` reported (see [`DIAL`]).
fn dial_as(user: &ThrowawayUser, url: &str) -> String {
    let (kind, target) = url.split_once("://").expect("a URL");
    let out = user.run(
        "/usr/bin/python3",
        &["-c", DIAL, kind, target, &pair1_header_hex()],
        STEP,
    );
    assert!(
        out.status.success(),
        "dialing script failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

/// A peer of our own user connects: its pipe is the first event after the refused attempt
/// (so the refused connection never became a pipe), and a message goes through.
fn same_user_still_connects(ours: &Socket, events: &Receiver<PipeEvent>, url: &str) {
    let peer = Socket::new(Protocol::Pair1).expect("socket");
    peer.dial_blocking(url, STEP).expect("same-user dial");
    match events.recv_timeout(STEP) {
        Ok(PipeEvent::Added(_)) => {}
        other => panic!("expected our own peer's pipe first, got {other:?}"),
    }
    assert_eq!(ours.pipes().len(), 1, "only the same-user pipe exists");
    peer.send(b"same user").expect("send");
    assert_eq!(&*ours.recv_timeout(STEP).expect("recv"), b"same user");
}

#[test]
fn another_user_is_refused_on_abstract_and_ours_connects() {
    let user = ThrowawayUser::create();
    let ours = Socket::new(Protocol::Pair1).expect("socket");
    let events = ours.pipe_events();
    let endpoint = Endpoint::new(Transport::Abstract, "other-user");
    let url = ours
        .listen(&endpoint.url)
        .expect("listen")
        .local_url()
        .to_owned();
    assert_eq!(dial_as(&user, &url), "closed", "uid {} refused", user.uid);
    same_user_still_connects(&ours, &events, &url);
}

#[test]
fn ipc_files_are_0600_and_another_user_is_refused_even_through_a_widened_file() {
    let user = ThrowawayUser::create();
    let ours = Socket::new(Protocol::Pair1).expect("socket");
    let events = ours.pipe_events();
    let endpoint = Endpoint::new(Transport::Ipc, "other-user");
    let url = ours
        .listen(&endpoint.url)
        .expect("listen")
        .local_url()
        .to_owned();
    let path = url.strip_prefix("ipc://").expect("ipc URL");
    let mode = std::fs::metadata(path)
        .expect("socket file")
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600, "ipc socket file mode {mode:o}");
    assert_eq!(
        dial_as(&user, &url),
        "denied",
        "the file mode keeps others out"
    );
    // Widened by hand: the kernel lets the other user connect, the uid check still refuses.
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o666)).expect("chmod");
    assert_eq!(dial_as(&user, &url), "closed", "uid {} refused", user.uid);
    same_user_still_connects(&ours, &events, &url);
}

#[test]
fn any_user_opts_out_of_the_uid_check() {
    let user = ThrowawayUser::create();
    let ours = Socket::new(Protocol::Pair1).expect("socket");
    ours.set_local_peers(LocalPeers::AnyUser);
    let events = ours.pipe_events();
    let endpoint = Endpoint::new(Transport::Abstract, "any-user");
    let url = ours
        .listen(&endpoint.url)
        .expect("listen")
        .local_url()
        .to_owned();
    assert_eq!(
        dial_as(&user, &url),
        format!("header:{}", pair1_header_hex())
    );
    match events.recv_timeout(STEP) {
        Ok(PipeEvent::Added(_)) => {}
        other => panic!("the other user's pipe should have been added, got {other:?}"),
    }
}
