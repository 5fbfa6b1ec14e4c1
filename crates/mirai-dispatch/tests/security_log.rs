//! Refusals are logged: a real daemon process with the wrong token is refused, told why, and
//! exits, and the dispatcher emits a `tracing` warning for it and for a peer that never says
//! hello. A small subscriber installed for this test process captures the events.

mod util;

use std::process::Command;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use mirai_dispatch::protocol::RefuseReason;
use mirai_dispatch::{DaemonEvent, Dispatcher, DispatcherConfig};
use nano_transport::tls::{ServerAuth, TlsConfig};
use nano_transport::{PipeEvent, Protocol, Socket};
use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id, Record};
use tracing::{Event, Level, Metadata, Subscriber};

const PATIENCE: Duration = Duration::from_secs(30);

/// Every WARN-or-worse event, as `field=value` pairs.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<String>>>);

struct Fields(String);

impl Visit for Fields {
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        self.0.push_str(&format!("{}={value:?} ", field.name()));
    }
}

impl Subscriber for Captured {
    fn enabled(&self, meta: &Metadata<'_>) -> bool {
        *meta.level() <= Level::WARN
    }
    fn new_span(&self, _: &Attributes<'_>) -> Id {
        Id::from_u64(1)
    }
    fn record(&self, _: &Id, _: &Record<'_>) {}
    fn record_follows_from(&self, _: &Id, _: &Id) {}
    fn event(&self, event: &Event<'_>) {
        let mut f = Fields(String::new());
        event.record(&mut f);
        self.0.lock().unwrap().push(f.0);
    }
    fn enter(&self, _: &Id) {}
    fn exit(&self, _: &Id) {}
}

fn captured() -> &'static Captured {
    static C: OnceLock<Captured> = OnceLock::new();
    C.get_or_init(|| {
        let c = Captured::default();
        tracing::subscriber::set_global_default(c.clone()).expect("install the subscriber");
        c
    })
}

fn wait_for_log(needle: &str) -> String {
    let deadline = Instant::now() + PATIENCE;
    loop {
        if let Some(line) = captured()
            .0
            .lock()
            .unwrap()
            .iter()
            .find(|l| l.contains(needle))
        {
            return line.clone();
        }
        assert!(
            Instant::now() < deadline,
            "no log line containing {needle:?}"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

#[test]
fn wrong_token_daemon_is_refused_logged_and_exits() {
    captured();
    let mut config =
        DispatcherConfig::new("tls+tcp://127.0.0.1:0", b"right-token-right-token".to_vec());
    config.hello_timeout = Duration::from_millis(500);
    let (d, events) = Dispatcher::start(config).unwrap();
    let pin = d.tls_fingerprint().unwrap().to_string();
    let child = Command::new(env!("CARGO_BIN_EXE_mirai-demo-daemon"))
        .args(["--url", d.url(), "--launch-id", "42"])
        .env("MIRAI_DAEMON_TOKEN", "wrong-token-wrong-token")
        .args(["--tls-pin", &pin])
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut child = util::Reaped(child);
    let event = events.recv_timeout(PATIENCE).unwrap();
    assert_eq!(
        event,
        DaemonEvent::Refused {
            claimed_launch_id: 42,
            reason: RefuseReason::Token
        }
    );
    let line = wait_for_log("refusing a daemon");
    assert!(
        line.contains("launch_id=42") && line.contains("Token"),
        "{line}"
    );
    // The daemon learns it was refused and exits with its error code.
    let deadline = Instant::now() + PATIENCE;
    let status = loop {
        if let Some(s) = child.0.try_wait().unwrap() {
            break s;
        }
        assert!(Instant::now() < deadline, "the refused daemon kept running");
        std::thread::sleep(Duration::from_millis(10));
    };
    assert_eq!(status.code(), Some(10));
    // It read the refusal, which arrives with the dispatcher's close, before seeing the close.
    let mut stderr = String::new();
    std::io::Read::read_to_string(&mut child.0.stderr.take().unwrap(), &mut stderr).unwrap();
    assert!(
        stderr.contains("refused by the dispatcher: Token"),
        "{stderr}"
    );
    assert_eq!(d.status().connections, 0);

    // A peer that connects and stays silent is logged and closed at the hello timeout.
    let silent = Socket::new(Protocol::Pair1).unwrap();
    silent.set_reconnect(Duration::from_secs(3600), Duration::from_secs(3600));
    let pin = ServerAuth::Pinned(d.tls_fingerprint().unwrap());
    silent.set_tls(TlsConfig::new().with_dialer(pin, None).unwrap());
    let pipe_events = silent.pipe_events();
    silent.dial_blocking(d.url(), PATIENCE).unwrap();
    let line = wait_for_log("no valid hello in time");
    assert!(
        line.contains("closing an unauthenticated connection"),
        "{line}"
    );
    // And its connection is really gone.
    while let PipeEvent::Added(_) = pipe_events.recv_timeout(PATIENCE).expect("a pipe event") {}
}
