//! `nano-cat` against real nngcat: the same script is run once with nngcat and once with
//! nano-cat in one role, against the same kind of peer, and the outputs must be identical, byte
//! for byte (formats, message order, exit status, usage errors).

mod util;

use std::process::Command;
use std::time::Duration;

use nano_transport::{Protocol, Socket};
use util::{Endpoint, PeerProcess, TempFile, Transport, wait_connectable, wait_until};

const STEP: Duration = Duration::from_secs(10);

/// Bytes that exercise every formatting rule: escapes, controls, the printable edges, high bytes.
const SAMPLE: &[u8] = b"a\tb\n\r\x01\xffc\"\\ ~\x7f\x00z";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Tool {
    Nngcat,
    NanoCat,
}

const TOOLS: [Tool; 2] = [Tool::Nngcat, Tool::NanoCat];

impl Tool {
    fn spawn(self, args: &[&str]) -> PeerProcess {
        match self {
            Self::Nngcat => PeerProcess::nngcat(args),
            Self::NanoCat => {
                let mut cmd = Command::new(env!("CARGO_BIN_EXE_nano-cat"));
                cmd.args(args);
                PeerProcess::spawn(&format!("nano-cat {}", args.join(" ")), cmd)
            }
        }
    }
}

/// Runs `script` once per tool and asserts both produced the same outputs; returns them.
fn same_with_both<T: PartialEq + std::fmt::Debug>(script: impl Fn(Tool) -> T) -> T {
    let [theirs, ours] = TOOLS.map(&script);
    assert_eq!(ours, theirs, "nano-cat differs from nngcat");
    ours
}

/// `tool` listens with `args`; waits until it accepts connections.
fn listening(tool: Tool, endpoint: &Endpoint, args: &[&str]) -> PeerProcess {
    let mut all = vec!["--listen", endpoint.url.as_str()];
    all.extend_from_slice(args);
    let p = tool.spawn(&all);
    wait_connectable(&endpoint.url, STEP);
    p
}

#[test]
fn pull_prints_every_format_like_nngcat() {
    let file = TempFile::new("sample", SAMPLE);
    for format in [
        "--ascii",
        "--quoted",
        "--hex",
        "--raw",
        "--msgpack",
        "-A",
        "-Q",
    ] {
        let out = same_with_both(|tool| {
            let ep = Endpoint::new(Transport::Abstract, "pull");
            let mut pull = listening(tool, &ep, &["--pull0", format, "--count", "2"]);
            let mut push = PeerProcess::nngcat(&[
                "--push0",
                "--dial",
                &ep.url,
                "--file",
                file.as_str(),
                "--count",
                "2",
            ]);
            push.finish_ok(STEP);
            pull.finish_ok(STEP)
        });
        assert!(!out.is_empty(), "{format} printed nothing");
    }
}

#[test]
fn rep_answers_like_nngcat() {
    let (server, client) = same_with_both(|tool| {
        let ep = Endpoint::new(Transport::Abstract, "rep");
        let mut rep = listening(
            tool,
            &ep,
            &["--rep0", "--data", "pong", "--quoted", "--count", "1"],
        );
        let mut req =
            PeerProcess::nngcat(&["--req0", "--dial", &ep.url, "--data", "ping", "--quoted"]);
        (rep.finish_ok(STEP), req.finish_ok(STEP))
    });
    assert_eq!(server, b"\"ping\"\n");
    assert_eq!(client, b"\"pong\"\n");
}

#[test]
fn req_prints_the_reply_like_nngcat() {
    let file = TempFile::new("reply", SAMPLE);
    let client = same_with_both(|tool| {
        let ep = Endpoint::new(Transport::Ipc, "req");
        let mut rep = listening(
            Tool::Nngcat,
            &ep,
            &["--rep0", "--file", file.as_str(), "--count", "1"],
        );
        let mut req = tool.spawn(&["--req", "--dial", &ep.url, "-D", "ping", "--hex"]);
        let out = req.finish_ok(STEP);
        rep.finish_ok(STEP);
        out
    });
    assert!(client.starts_with(b"\"\\x61\\x09"), "{client:?}");
}

#[test]
fn push_sends_like_nngcat() {
    let file = TempFile::new("push", SAMPLE);
    let received = same_with_both(|tool| {
        let port = util::free_tcp_port().to_string();
        let url = format!("tcp://127.0.0.1:{port}");
        let mut pull = PeerProcess::nngcat(&["--pull0", "-L", &port, "--hex", "--count", "2"]);
        wait_connectable(&url, STEP);
        let mut push = tool.spawn(&["--push", "-l", &port, "-F", file.as_str(), "-C", "2"]);
        push.finish_ok(STEP);
        pull.finish_ok(STEP)
    });
    assert_eq!(received.iter().filter(|&&b| b == b'\n').count(), 2);
}

#[test]
fn file_dash_reads_standard_input_like_nngcat() {
    let received = same_with_both(|tool| {
        let ep = Endpoint::new(Transport::Abstract, "stdin");
        let mut pull = listening(Tool::Nngcat, &ep, &["--pull0", "--quoted", "--count", "1"]);
        let mut push = tool.spawn(&["--push0", "--dial", &ep.url, "--file", "-"]);
        push.write_line("from\tstdin");
        push.close_stdin();
        push.finish_ok(STEP);
        pull.finish_ok(STEP)
    });
    assert_eq!(received, b"\"from\\tstdin\\n\"\n");
}

/// `-Z 100`: a 100-byte message is printed; a 101-byte one makes the receiver drop the
/// connection, and is never printed.
#[test]
fn recv_maxsz_drops_oversized_like_nngcat() {
    let printed = same_with_both(|tool| {
        let ep = Endpoint::new(Transport::Abstract, "maxsz");
        let args = ["--pull0", "-Z", "100", "--hex", "--recv-timeout", "1"];
        let mut pull = listening(tool, &ep, &args);
        let push = Socket::new(Protocol::Push0).expect("push");
        let events = push.pipe_events();
        push.dial_blocking(&ep.url, STEP).expect("dial");
        push.send(&[b'a'; 100]).expect("send 100 bytes");
        push.send(&[b'b'; 101]).expect("send 101 bytes");
        let deadline = std::time::Instant::now() + STEP;
        let dropped = std::iter::from_fn(|| {
            events
                .recv_timeout(deadline.saturating_duration_since(std::time::Instant::now()))
                .ok()
        })
        .any(|e| matches!(e, nano_transport::PipeEvent::Removed(_)));
        assert!(dropped, "the receiver kept the connection");
        pull.finish_ok(STEP)
    });
    assert_eq!(
        printed,
        [b"\"".as_slice(), &b"\\x61".repeat(100), b"\"\n"].concat()
    );
}

#[test]
fn sub_filters_like_nngcat() {
    let printed = same_with_both(|tool| {
        let ep = Endpoint::new(Transport::Abstract, "sub");
        let mut sub = listening(
            tool,
            &ep,
            &[
                "--sub0",
                "--subscribe",
                "t/",
                "--subscribe",
                "u/",
                "--quoted",
                "--count",
                "2",
            ],
        );
        let publisher = Socket::new(Protocol::Pub0).expect("pub");
        publisher.dial_blocking(&ep.url, STEP).expect("dial");
        assert!(wait_until(STEP, || !publisher.pipes().is_empty()));
        for msg in [&b"x/no"[..], b"t/yes", b"t", b"u/also", b"t/late"] {
            publisher.send(msg).expect("publish");
        }
        sub.finish_ok(STEP)
    });
    assert_eq!(printed, b"\"t/yes\"\n\"u/also\"\n");
}

#[test]
fn pair1_exchanges_like_nngcat() {
    let (ours, peer) = same_with_both(|tool| {
        let ep = Endpoint::new(Transport::Abstract, "pair");
        let args = [
            "--pair1",
            "--data",
            "hello",
            "--quoted",
            "--recv-timeout",
            "1",
        ];
        let mut pair = listening(tool, &ep, &args);
        let mut other = PeerProcess::nngcat(&[
            "--pair1",
            "--dial",
            &ep.url,
            "--data",
            "back",
            "--quoted",
            "--recv-timeout",
            "1",
        ]);
        (pair.finish_ok(STEP), other.finish_ok(STEP))
    });
    assert_eq!(ours, b"\"back\"\n");
    assert_eq!(peer, b"\"hello\"\n");
}

#[test]
fn surveyor_collects_like_nngcat() {
    let answers = same_with_both(|tool| {
        let ep = Endpoint::new(Transport::Abstract, "survey");
        let args = ["--surveyor", "--data", "q?", "--quoted", "--delay", "1"];
        let mut surveyor = listening(tool, &ep, &args);
        let mut respondents: Vec<PeerProcess> = ["a1", "a2"]
            .map(|a| {
                PeerProcess::nngcat(&[
                    "--respondent0",
                    "--dial",
                    &ep.url,
                    "--data",
                    a,
                    "--quoted",
                    "--count",
                    "1",
                ])
            })
            .into();
        let printed = surveyor.finish_ok(STEP);
        for r in &mut respondents {
            assert_eq!(r.finish_ok(STEP), b"\"q?\"\n");
        }
        let mut lines: Vec<Vec<u8>> = printed.split(|&b| b == b'\n').map(<[u8]>::to_vec).collect();
        lines.sort();
        lines
    });
    assert_eq!(
        answers,
        vec![b"".to_vec(), b"\"a1\"".to_vec(), b"\"a2\"".to_vec()]
    );
}

#[test]
fn usage_errors_match_nngcat() {
    let cases: &[&[&str]] = &[
        &["--req0", "--dial", "tcp://127.0.0.1:1"],
        &["--pull0", "--dial", "tcp://127.0.0.1:1", "--data", "x"],
        &[
            "--push0",
            "--dial",
            "tcp://127.0.0.1:1",
            "--data",
            "x",
            "--ascii",
        ],
        &["--rep0", "--dial", "tcp://127.0.0.1:1", "--interval", "1"],
        &["--pair1", "--dial", "tcp://127.0.0.1:1", "--interval", "1"],
        &[
            "--pub0",
            "--dial",
            "tcp://127.0.0.1:1",
            "--data",
            "x",
            "--subscribe",
            "t",
        ],
        &["--sub0"],
        &["--pair1", "--compat", "--dial", "tcp://127.0.0.1:1"],
    ];
    for args in cases {
        let (status, stderr) = same_with_both(|tool| {
            let mut p = tool.spawn(args);
            let (status, _) = p.finish(STEP);
            (status.code(), p.stderr_text())
        });
        assert_eq!(status, Some(1), "{args:?}");
        assert!(!stderr.is_empty(), "{args:?}");
    }
}
