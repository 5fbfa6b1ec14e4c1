//! A daemon with a few built-in functions, for trying a dispatcher and for its integration tests.
//!
//! `mirai-demo-daemon --url URL --token TOKEN [--launch-id N] [--maxtasks N] [--idletime-ms N]
//! [--walltime-ms N] [--tls-pin SHA256 | --tls-ca PEM-FILE] [--tls-cert PEM-FILE --tls-key
//! PEM-FILE]`; a `tls+tcp://` URL needs `--tls-pin` (the dispatcher's fingerprint) or
//! `--tls-ca`, and `--tls-cert`/`--tls-key` present a client certificate (mutual TLS); exits with the exit reason's code (0 host gone, 1 idletime, 2 walltime,
//! 3 maxtasks), or 10 on an error.
//!
//! Functions: `echo` (bytes back), `add` ((i64, i64) -> i64), `sleep_ms` (u64, stops early when
//! cancelled), `panic` (panics with its argument as message), `seed` (the task's RNG seed),
//! `pid` (the daemon's process id).
#![forbid(unsafe_code)]

use std::time::Duration;

use std::path::PathBuf;

use mirai_dispatch::TaskError;
use mirai_dispatch::daemon::{DaemonConfig, Registry, TaskContext, serve};
use nano_transport::tls::{Fingerprint, Identity, ServerAuth, TlsConfig, certificates_from_pem};

fn registry() -> Registry {
    let mut r = Registry::new();
    r.register_bytes("echo", |bytes, _| Ok(bytes.to_vec()));
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
    r.register(
        "panic",
        |message: String, _: &TaskContext| -> Result<(), TaskError> { panic!("{message}") },
    );
    r.register("seed", |(): (), ctx: &TaskContext| Ok(ctx.rng_seed()));
    r.register("pid", |(): (), _: &TaskContext| Ok(std::process::id()));
    r
}

fn parse() -> Result<DaemonConfig, String> {
    let mut args = std::env::args().skip(1);
    let mut config = DaemonConfig::new("", Vec::new());
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
            "--token" => config.token = value.clone().into_bytes(),
            "--launch-id" => config.launch_id = number()?,
            "--maxtasks" => config.rules.maxtasks = Some(number()?),
            "--idletime-ms" => config.rules.idletime = Some(Duration::from_millis(number()?)),
            "--walltime-ms" => config.rules.walltime = Some(Duration::from_millis(number()?)),
            "--tls-pin" => tls.pin = Some(value.parse().map_err(|e| format!("{flag}: {e}"))?),
            "--tls-ca" => tls.ca = Some(PathBuf::from(value)),
            "--tls-cert" => tls.cert = Some(PathBuf::from(value)),
            "--tls-key" => tls.key = Some(PathBuf::from(value)),
            _ => return Err(format!("unknown flag {flag}")),
        }
    }
    if config.url.is_empty() {
        return Err("--url is required".into());
    }
    config.tls = tls.build()?;
    Ok(config)
}

/// The TLS flags, turned into a dialer configuration.
#[derive(Default)]
struct TlsFlags {
    pin: Option<Fingerprint>,
    ca: Option<PathBuf>,
    cert: Option<PathBuf>,
    key: Option<PathBuf>,
}

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

fn main() {
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
