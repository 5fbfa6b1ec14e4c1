//! Interop with nngcat (Debian's NNG 1.5.2 command-line tool): every protocol over tcp, ipc and
//! abstract, with us listening and us dialing, payloads compared byte for byte both ways.
//!
//! nngcat sends binary payloads from a file (`--file`) and prints what it receives with `--hex`,
//! so the bytes on both sides are compared exactly. Its timers are whole seconds, so cases use
//! them sparingly and run in parallel. nngcat is required: without `cargo xtask setup` these
//! tests fail, they are never skipped.

mod util;

use std::time::Duration;

use nano_transport::{Protocol, Socket};
use util::{
    Endpoint, PeerProcess, TempFile, Transport, parse_nngcat_hex, run_parallel, wait_connectable,
    wait_until,
};

/// Bound on every wait of a case step.
const STEP: Duration = Duration::from_secs(10);

/// Cases of one family run this many at a time (each is mostly waiting on nngcat's timers).
const PARALLEL: usize = 6;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Side {
    WeListen,
    WeDial,
}

const SIDES: [Side; 2] = [Side::WeListen, Side::WeDial];

/// Our socket connected to one nngcat.
struct Link {
    ours: Socket,
    nngcat: PeerProcess,
    _endpoint: Endpoint,
}

/// Opens our socket (`tweak` sets options first), starts nngcat with `args` on the other end of
/// a fresh endpoint, and waits until our socket has the pipe.
fn link(
    ours: Protocol,
    transport: Transport,
    side: Side,
    args: &[&str],
    tweak: impl FnOnce(&Socket),
) -> Link {
    let sock = Socket::new(ours).expect("socket");
    sock.set_recv_timeout(Some(STEP));
    sock.set_send_timeout(Some(STEP));
    tweak(&sock);
    let (endpoint, nngcat) = match side {
        Side::WeListen => {
            let endpoint = match transport {
                Transport::Tcp => Endpoint::tcp_any(),
                t => Endpoint::new(t, "nngcat"),
            };
            let url = sock
                .listen(&endpoint.url)
                .expect("listen")
                .local_url()
                .to_owned();
            let mut all = vec!["--dial", url.as_str()];
            all.extend_from_slice(args);
            (endpoint, PeerProcess::nngcat(&all))
        }
        Side::WeDial => {
            let endpoint = Endpoint::new(transport, "nngcat");
            let mut all = vec!["--listen", endpoint.url.as_str()];
            all.extend_from_slice(args);
            let nngcat = PeerProcess::nngcat(&all);
            wait_connectable(&endpoint.url, STEP);
            sock.dial_blocking(&endpoint.url, STEP)
                .expect("dial nngcat");
            (endpoint, nngcat)
        }
    };
    assert!(
        wait_until(STEP, || !sock.pipes().is_empty()),
        "our socket never saw the pipe; nngcat stderr: {}",
        nngcat.stderr_text()
    );
    Link {
        ours: sock,
        nngcat,
        _endpoint: endpoint,
    }
}

impl Link {
    /// Waits for nngcat to exit successfully and returns the messages it printed (`--hex`).
    fn printed(&mut self) -> Vec<Vec<u8>> {
        parse_nngcat_hex(&self.nngcat.finish_ok(STEP))
    }
}

/// A payload with bytes that break naive text handling, distinct per case and direction.
fn payload(tag: &str) -> Vec<u8> {
    let mut p = tag.as_bytes().to_vec();
    p.extend_from_slice(&[0x00, 0xff, 0x80, b'\n', b'"', b'\\']);
    p
}

fn cases(family: &str) -> Vec<(String, (Transport, Side))> {
    Transport::ALL
        .into_iter()
        .flat_map(|t| SIDES.map(move |s| (format!("{family} {t:?} {s:?}"), (t, s))))
        .collect()
}

/// PAIR0, PAIR1, BUS: nngcat sends its file, we answer; it prints our answer, then times out.
fn symmetric(ours: Protocol, flag: &'static str, extra: &'static [&'static str]) {
    run_parallel(PARALLEL, cases(flag), move |(t, side)| {
        let theirs = payload(&format!("nngcat-{t:?}-{side:?}"));
        let mine = payload(&format!("ours-{t:?}-{side:?}"));
        let file = TempFile::new("data", &theirs);
        let mut args = vec![
            flag,
            "--file",
            file.as_str(),
            "--hex",
            "--recv-timeout",
            "2",
        ];
        args.extend_from_slice(extra);
        let mut l = link(ours, t, side, &args, |_| {});
        assert_eq!(&*l.ours.recv().expect("recv"), &theirs[..], "we received");
        l.ours.send(&mine).expect("send");
        assert_eq!(l.printed(), vec![mine], "nngcat received");
    });
}

#[test]
fn pair0_with_nngcat() {
    symmetric(Protocol::Pair0, "--pair0", &[]);
}

#[test]
fn pair1_with_nngcat() {
    symmetric(Protocol::Pair1, "--pair1", &[]);
}

#[test]
fn bus_with_nngcat() {
    // BUS never blocks a send: nngcat waits a second so that our pipe is up when it sends.
    symmetric(Protocol::Bus0, "--bus0", &["--delay", "1"]);
}

#[test]
fn req_rep_with_nngcat() {
    let mut all = cases("we-req");
    all.extend(cases("we-rep"));
    run_parallel(PARALLEL, all, |(t, side)| {
        let request = payload(&format!("req-{t:?}-{side:?}"));
        let reply = payload(&format!("rep-{t:?}-{side:?}"));
        // We are REQ against nngcat --rep answering with its file.
        let file = TempFile::new("reply", &reply);
        let args = ["--rep0", "--file", file.as_str(), "--hex", "--count", "1"];
        let mut l = link(Protocol::Req0, t, side, &args, |_| {});
        l.ours.send(&request).expect("send request");
        assert_eq!(
            &*l.ours.recv().expect("recv reply"),
            &reply[..],
            "our REQ received"
        );
        assert_eq!(l.printed(), vec![request.clone()], "nngcat REP received");
        // We are REP against nngcat --req sending its file.
        let file = TempFile::new("request", &request);
        let args = [
            "--req0",
            "--file",
            file.as_str(),
            "--hex",
            "--recv-timeout",
            "5",
        ];
        let mut l = link(Protocol::Rep0, t, side, &args, |_| {});
        assert_eq!(
            &*l.ours.recv().expect("recv request"),
            &request[..],
            "our REP received"
        );
        l.ours.send(&reply).expect("send reply");
        assert_eq!(l.printed(), vec![reply], "nngcat REQ received");
    });
}

#[test]
fn push_pull_with_nngcat() {
    run_parallel(PARALLEL, cases("push-pull"), |(t, side)| {
        let first = payload(&format!("one-{t:?}-{side:?}"));
        let second = payload(&format!("two-{t:?}-{side:?}"));
        // We push to nngcat --pull.
        let args = ["--pull0", "--hex", "--count", "2"];
        let mut l = link(Protocol::Push0, t, side, &args, |_| {});
        l.ours.send(&first).expect("send");
        l.ours.send(&second).expect("send");
        assert_eq!(
            l.printed(),
            vec![first.clone(), second],
            "nngcat PULL received"
        );
        // We pull from nngcat --push sending its file twice.
        let file = TempFile::new("push", &first);
        let args = ["--push0", "--file", file.as_str(), "--count", "2"];
        let mut l = link(Protocol::Pull0, t, side, &args, |_| {});
        assert_eq!(&*l.ours.recv().expect("recv"), &first[..]);
        assert_eq!(&*l.ours.recv().expect("recv"), &first[..]);
        l.nngcat.finish_ok(STEP);
    });
}

#[test]
fn pub_sub_with_nngcat() {
    run_parallel(PARALLEL, cases("pub-sub"), |(t, side)| {
        let skipped = payload("x/skip");
        let wanted = payload(&format!("t/{t:?}-{side:?}"));
        // We publish to nngcat --sub --subscribe t/: it prints only the matching message.
        let args = ["--sub0", "--subscribe", "t/", "--hex", "--count", "1"];
        let mut l = link(Protocol::Pub0, t, side, &args, |_| {});
        l.ours.send(&skipped).expect("publish");
        l.ours.send(&wanted).expect("publish");
        assert_eq!(l.printed(), vec![wanted.clone()], "nngcat SUB received");
        // We subscribe to t/; nngcat publishes its file after a second (PUB never waits).
        let file = TempFile::new("pub", &wanted);
        let args = ["--pub0", "--file", file.as_str(), "--delay", "1"];
        let mut l = link(Protocol::Sub0, t, side, &args, |s| {
            s.subscribe(b"t/").expect("subscribe");
        });
        assert_eq!(
            &*l.ours.recv().expect("recv"),
            &wanted[..],
            "our SUB received"
        );
        l.nngcat.finish_ok(STEP);
    });
}

#[test]
fn surveyor_respondent_with_nngcat() {
    run_parallel(PARALLEL, cases("survey"), |(t, side)| {
        let survey = payload(&format!("survey-{t:?}-{side:?}"));
        let answer = payload(&format!("answer-{t:?}-{side:?}"));
        // We survey nngcat --respondent answering with its file.
        let file = TempFile::new("answer", &answer);
        let args = [
            "--respondent0",
            "--file",
            file.as_str(),
            "--hex",
            "--count",
            "1",
        ];
        let mut l = link(Protocol::Surveyor0, t, side, &args, |s| {
            s.set_survey_time(STEP)
        });
        l.ours.send(&survey).expect("send survey");
        assert_eq!(
            &*l.ours.recv().expect("recv answer"),
            &answer[..],
            "our SURVEYOR received"
        );
        assert_eq!(
            l.printed(),
            vec![survey.clone()],
            "nngcat RESPONDENT received"
        );
        // We answer nngcat --surveyor, which surveys after a second and prints the answers
        // until its 1 s survey window closes.
        let file = TempFile::new("survey", &survey);
        let args = [
            "--surveyor0",
            "--file",
            file.as_str(),
            "--hex",
            "--delay",
            "1",
        ];
        let mut l = link(Protocol::Respondent0, t, side, &args, |_| {});
        assert_eq!(
            &*l.ours.recv().expect("recv survey"),
            &survey[..],
            "our RESPONDENT received"
        );
        l.ours.send(&answer).expect("send answer");
        assert_eq!(l.printed(), vec![answer], "nngcat SURVEYOR received");
    });
}

/// PAIR1 poly (mirai's dispatcher mode): our listener serves two nngcat PAIR1 dialers and
/// answers each on its own pipe.
#[test]
fn pair1_poly_serves_two_nngcat_dialers() {
    let all: Vec<_> = Transport::ALL
        .into_iter()
        .map(|t| (format!("pair1-poly {t:?}"), t))
        .collect();
    run_parallel(PARALLEL, all, |t| {
        let sock = Socket::new(Protocol::Pair1).expect("socket");
        sock.set_pair1_poly(true);
        sock.set_recv_timeout(Some(STEP));
        let endpoint = match t {
            Transport::Tcp => Endpoint::tcp_any(),
            t => Endpoint::new(t, "poly"),
        };
        let url = sock
            .listen(&endpoint.url)
            .expect("listen")
            .local_url()
            .to_owned();
        let files: Vec<TempFile> = (0..2)
            .map(|i| TempFile::new("hello", &payload(&format!("hello-{i}"))))
            .collect();
        let mut dialers: Vec<PeerProcess> = files
            .iter()
            .map(|f| {
                PeerProcess::nngcat(&[
                    "--pair1",
                    "--dial",
                    &url,
                    "--file",
                    f.as_str(),
                    "--hex",
                    "--recv-timeout",
                    "2",
                ])
            })
            .collect();
        for _ in 0..2 {
            let msg = sock.recv().expect("recv hello");
            let i = usize::from(msg.starts_with(b"hello-1"));
            assert_eq!(&*msg, &payload(&format!("hello-{i}"))[..]);
            sock.send_to(msg.pipe(), &payload(&format!("reply-{i}")))
                .expect("send_to");
        }
        for (i, d) in dialers.iter_mut().enumerate() {
            let printed = parse_nngcat_hex(&d.finish_ok(STEP));
            assert_eq!(printed, vec![payload(&format!("reply-{i}"))], "dialer {i}");
        }
    });
}
