//! A daemon with a few built-in functions, for trying a dispatcher and for its integration tests.
//!
//! `MIRAI_DAEMON_TOKEN=CREDENTIAL mirai-demo-daemon --url URL [--launch-id N] [--maxtasks N] [--idletime-ms N]
//! [--walltime-ms N] [--autoexit immediately|finish-task|never] [--tls-pin SHA256 | --tls-ca
//! PEM-FILE] [--tls-cert PEM-FILE --tls-key PEM-FILE]`; a `tls+tcp://` URL needs `--tls-pin` (the
//! dispatcher's fingerprint) or `--tls-ca`, and `--tls-cert`/`--tls-key` present a client
//! certificate (mutual TLS; the `--tls-*` flags need the `tls` feature); exits with the exit reason's code (0 host gone, 1 idletime, 2 walltime,
//! 3 maxtasks), or 10 on an error.
//!
//! Functions: `echo` (bytes back), `len` (the argument's length, u64 little-endian), `slow_len`
//! (the same after 20 ms, a slow consumer), `add`
//! ((i64, i64) -> i64), `sleep_ms` (u64, stops early when cancelled), `late_check` (u64 ms
//! without looking at its cancel token, then up to a minute looking), `panic` (panics with its
//! argument as message), `seed` (the task's RNG seed), `pid` (the daemon's process id), `trace`
//! (the trace context the submitter attached), `exit` (ends the process with its argument, an
//! i32, as exit code: a daemon lost to its task, whatever the code).
//!
//! `CREDENTIAL` is what the daemon presents in its hello: the pool token with launch id 0,
//! otherwise its launch's credential (`Secret::launch_credential`). It travels in the
//! environment, never on the command line, and is read once at start. With the default autoexit (`immediately`) a daemon whose
//! host is gone exits within a few seconds even while a task ignores its cancel token (see
//! `mirai_dispatch::daemon::HOST_GONE_GRACE`).
//!
//! `mirai-demo-daemon host URL N [FUNCTION]` runs a host instead (see `host`).
#![forbid(unsafe_code)]

#[cfg(feature = "tls")]
use std::path::PathBuf;
use std::time::Duration;

use mirai_dispatch::TaskError;
use mirai_dispatch::daemon::{AutoExit, DaemonConfig, Registry, TaskContext, serve};
#[cfg(feature = "tls")]
use nano_transport::tls::{Fingerprint, Identity, ServerAuth, TlsConfig, certificates_from_pem};

fn registry() -> Registry {
    let mut r = Registry::new();
    r.register_bytes("echo", |bytes, _| Ok(bytes.to_vec()));
    r.register_bytes("len", |bytes, _| {
        Ok((bytes.len() as u64).to_le_bytes().to_vec())
    });
    // A value of as many bytes as the argument (a little-endian u64) says.
    r.register_bytes("zeros", |bytes, _| {
        let n = bytes
            .try_into()
            .map(u64::from_le_bytes)
            .map_err(|_| TaskError::new("zeros takes a little-endian u64"))?;
        Ok(vec![
            0;
            usize::try_from(n)
                .map_err(|e| TaskError::new(e.to_string()))?
        ])
    });
    r.register_bytes("slow_len", |bytes, _| {
        std::thread::sleep(Duration::from_millis(20));
        Ok((bytes.len() as u64).to_le_bytes().to_vec())
    });
    r.register("add", |(a, b): (i64, i64), _: &TaskContext| {
        a.checked_add(b).ok_or_else(|| TaskError::new("overflow"))
    });
    r.register("sleep_ms", |ms: u64, ctx: &TaskContext| {
        for _ in 0..ms {
            ctx.cancel_token().check()?;
            std::thread::sleep(Duration::from_millis(1));
        }
        Ok(ms)
    });
    r.register("late_check", |ms: u64, ctx: &TaskContext| {
        // Busy for `ms` without looking at the token, then waits up to a minute for a cancel.
        std::thread::sleep(Duration::from_millis(ms));
        for _ in 0..60_000 {
            ctx.cancel_token().check()?;
            std::thread::sleep(Duration::from_millis(1));
        }
        Ok(ms)
    });
    r.register(
        "panic",
        |message: String, _: &TaskContext| -> Result<(), TaskError> { panic!("{message}") },
    );
    r.register("seed", |(): (), ctx: &TaskContext| Ok(ctx.rng_seed()));
    r.register("pid", |(): (), _: &TaskContext| Ok(std::process::id()));
    r.register("trace", |(): (), ctx: &TaskContext| {
        Ok(ctx.trace().map(<[u8]>::to_vec))
    });
    r.register(
        "exit",
        |code: i32, _: &TaskContext| -> Result<(), TaskError> { std::process::exit(code) },
    );
    r
}

fn parse() -> Result<DaemonConfig, String> {
    let mut args = std::env::args().skip(1);
    let token = std::env::var("MIRAI_DAEMON_TOKEN").unwrap_or_default();
    let mut config = DaemonConfig::new("", token);
    #[cfg(feature = "tls")]
    let mut tls = TlsFlags::default();
    while let Some(flag) = args.next() {
        let value = args.next().ok_or_else(|| format!("{flag} needs a value"))?;
        let number = || {
            value
                .parse::<u64>()
                .map_err(|_| format!("{flag}: not a number: {value}"))
        };
        match flag.as_str() {
            "--url" => config.url = value.clone(),
            "--launch-id" => config.launch_id = number()?,
            "--maxtasks" => config.rules.maxtasks = Some(number()?),
            "--idletime-ms" => config.rules.idletime = Some(Duration::from_millis(number()?)),
            "--walltime-ms" => config.rules.walltime = Some(Duration::from_millis(number()?)),
            "--autoexit" => {
                config.rules.autoexit = match value.as_str() {
                    "immediately" => AutoExit::Immediately,
                    "finish-task" => AutoExit::FinishTask,
                    "never" => AutoExit::Never,
                    _ => return Err(format!("--autoexit: unknown mode {value}")),
                }
            }
            #[cfg(feature = "tls")]
            "--tls-pin" => tls.pin = Some(value.parse().map_err(|e| format!("{flag}: {e}"))?),
            #[cfg(feature = "tls")]
            "--tls-ca" => tls.ca = Some(PathBuf::from(value)),
            #[cfg(feature = "tls")]
            "--tls-cert" => tls.cert = Some(PathBuf::from(value)),
            #[cfg(feature = "tls")]
            "--tls-key" => tls.key = Some(PathBuf::from(value)),
            #[cfg(not(feature = "tls"))]
            "--tls-pin" | "--tls-ca" | "--tls-cert" | "--tls-key" => {
                return Err(format!("{flag} needs the `tls` feature"));
            }
            _ => return Err(format!("unknown flag {flag}")),
        }
    }
    if config.url.is_empty() {
        return Err("--url is required".into());
    }
    #[cfg(feature = "tls")]
    {
        config.tls = tls.build()?;
    }
    Ok(config)
}

/// The TLS flags, turned into a dialer configuration.
#[cfg(feature = "tls")]
#[derive(Default)]
struct TlsFlags {
    pin: Option<Fingerprint>,
    ca: Option<PathBuf>,
    cert: Option<PathBuf>,
    key: Option<PathBuf>,
}

#[cfg(feature = "tls")]
impl TlsFlags {
    fn build(self) -> Result<Option<TlsConfig>, String> {
        let server = match (self.pin, self.ca) {
            (Some(pin), None) => ServerAuth::Pinned(pin),
            (None, Some(ca)) => {
                let pem = std::fs::read(&ca).map_err(|e| format!("{}: {e}", ca.display()))?;
                ServerAuth::Roots(certificates_from_pem(&pem).map_err(|e| e.to_string())?)
            }
            (None, None) if self.cert.is_none() && self.key.is_none() => return Ok(None),
            _ => return Err("give exactly one of --tls-pin and --tls-ca".into()),
        };
        let identity = match (self.cert, self.key) {
            (Some(cert), Some(key)) => {
                Some(Identity::from_pem_files(&cert, &key).map_err(|e| e.to_string())?)
            }
            (None, None) => None,
            _ => return Err("--tls-cert and --tls-key go together".into()),
        };
        let config = TlsConfig::new()
            .with_dialer(server, identity)
            .map_err(|e| e.to_string())?;
        Ok(Some(config))
    }
}

/// `mirai-demo-daemon host URL N [FUNCTION]`: a host process that starts a dispatcher at `URL`,
/// launches `N` daemons (this binary), gives each a long task (an hour of `FUNCTION`:
/// `sleep_ms`, the default, which looks at its cancel token, or `late_check`, which does not),
/// prints `pids P1 P2 ...` once every task has been sent, and then waits forever. It exists to
/// show that killing a host leaves no daemon behind.
fn host(url: &str, daemons: usize, function: &str) -> Result<(), String> {
    use mirai_dispatch::{DaemonEvent, Dispatcher, DispatcherConfig, Task};
    use std::io::Write;
    let token = mirai_dispatch::secret::Secret::generate().map_err(|e| e.to_string())?;
    let (dispatcher, events) =
        Dispatcher::start(DispatcherConfig::new(url, token.clone())).map_err(|e| e.to_string())?;
    let exe = std::env::current_exe().map_err(|e| e.to_string())?;
    let mut children = Vec::new();
    #[cfg(feature = "tls")]
    let pin = dispatcher.tls_fingerprint().map(|f| f.to_string());
    #[cfg(not(feature = "tls"))]
    let pin: Option<String> = None;
    for i in 0..daemons {
        let child = std::process::Command::new(&exe)
            .args(["--url", dispatcher.url()])
            .args(["--launch-id", &i.to_string()])
            .env(
                "MIRAI_DAEMON_TOKEN",
                token
                    .launch_credential(i as u64)
                    .expose_str()
                    .unwrap_or_default(),
            )
            .args(pin.iter().flat_map(|p| ["--tls-pin", p.as_str()]))
            .spawn()
            .map_err(|e| e.to_string())?;
        children.push(child);
    }
    for _ in 0..daemons {
        match events.recv_timeout(Duration::from_secs(30)) {
            Ok(DaemonEvent::Joined { .. }) => {}
            other => return Err(format!("expected a join, got {other:?}")),
        }
    }
    for _ in 0..daemons {
        let arg = postcard::to_allocvec(&3_600_000u64).map_err(|e| e.to_string())?;
        dispatcher
            .submit(Task::new(function, arg), None)
            .map_err(|e| e.to_string())?;
    }
    let pids: Vec<String> = children.iter().map(|c| c.id().to_string()).collect();
    let mut out = std::io::stdout().lock();
    writeln!(out, "pids {}", pids.join(" ")).map_err(|e| e.to_string())?;
    out.flush().map_err(|e| e.to_string())?;
    loop {
        std::thread::park();
    }
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.get(1).map(String::as_str) == Some("host") {
        let n = args.get(3).and_then(|n| n.parse().ok()).unwrap_or(2);
        let url = args.get(2).cloned().unwrap_or_default();
        let function = args.get(4).map_or("sleep_ms", String::as_str);
        if let Err(e) = host(&url, n, function) {
            eprintln!("mirai-demo-daemon host: {e}");
        }
        std::process::exit(10);
    }
    let code = match parse() {
        Ok(config) => match serve(&config, &registry()) {
            Ok(reason) => reason.code(),
            Err(e) => {
                eprintln!("mirai-demo-daemon: {e}");
                10
            }
        },
        Err(e) => {
            eprintln!("mirai-demo-daemon: {e}");
            10
        }
    };
    std::process::exit(code);
}
