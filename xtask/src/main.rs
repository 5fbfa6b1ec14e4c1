//! Project chores, run as `cargo xtask <command>` (the alias lives in `.cargo/config.toml`).
//!
//! - `test [CARGO TEST ARGS]...`: installs what the tests need (`setup`), then runs fmt check,
//!   clippy, rustdoc, every test and doctest, a short fuzz smoke where the toolchain allows it,
//!   and `release-check` (packaging, then cargo-semver-checks against the last release).
//!   Arguments after `test` go to `cargo test` as they are (`cargo xtask test -p mirai -- --exact
//!   NAME`).
//! - `setup`: installs the third-party peers the interop tests talk to: a Python virtualenv with
//!   pynng under `target/interop-venv`, and Debian's `nng-utils` (nngcat) when running as root.
//! - `lint`: the figures check (`figures --check`), the fmt check, clippy, rustdoc and the
//!   per-feature clippy (`cargo hack --each-feature`) of `test`, alone.
//! - `bench [--json FILE]`: runs every benchmark and prints the ratios against the floors and peers
//!   measured in the same run; `--json` also writes them as JSON lines, a header naming the
//!   machine and the commit first (see the `bench` module).
//! - `figures [--check]`: rewrites the README's figures and docs/benchmarks.md's run table from the
//!   committed run `docs/bench/latest.jsonl`; `--check` (part of `lint`) fails when they differ.
//! - `fuzz TARGET [SECONDS]`: runs one fuzz target (60 seconds unless told).
//! - `fuzz-smoke`: builds every fuzz target and runs each for 10 seconds.
//! - `soak`: the long, ignored stress tests.
//! - `release-check`: the library crates package together, and `cargo semver-checks` finds no
//!   breaking change without a version bump since the release recorded in `release/baseline`.

use std::env;
use std::ffi::OsStr;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};

use clap::{Parser, Subcommand};

mod bench;
mod figures;
mod release;

type Result<T = ()> = std::result::Result<T, String>;

/// Project chores.
#[derive(Debug, PartialEq, Eq, Parser)]
#[command(
    name = "cargo xtask",
    bin_name = "cargo xtask",
    about = "Project chores: test, setup, lint, bench, figures, fuzz, soak."
)]
struct Cli {
    #[command(subcommand)]
    task: Task,
}

#[derive(Debug, PartialEq, Eq, Subcommand)]
enum Task {
    /// Everything CI runs: peers setup, fmt, clippy, docs, all tests and doctests, fuzz smoke.
    Test {
        /// Passed to `cargo test` as they are, after `--workspace` and the extra features
        /// (`-p CRATE`, `--release`, a test name filter...).
        #[arg(allow_hyphen_values = true, value_name = "CARGO TEST ARGS")]
        cargo_args: Vec<String>,
        /// Passed to the test binaries, after `--` as with `cargo test` (`--exact NAME`,
        /// `--ignored`...).
        #[arg(last = true, value_name = "TEST BINARY ARGS")]
        test_args: Vec<String>,
    },
    /// Installs the third-party peers of the interop tests (pynng in a virtualenv; Debian's
    /// nng-utils, OpenSSH and Slurm when root).
    Setup,
    /// The figures check, fmt check, clippy -D warnings and rustdoc -D warnings over the
    /// workspace, then clippy of each library crate with each of its features alone (cargo-hack).
    Lint,
    /// Every benchmark, printed as ratios against the floors and peers measured in the same run.
    Bench {
        /// Also write the run to FILE as JSON lines: a header (machine, commit), then the records.
        #[arg(long, value_name = "FILE")]
        json: Option<PathBuf>,
    },
    /// Rewrites the README's figures and docs/benchmarks.md's run table from the committed run
    /// (docs/bench/latest.jsonl).
    Figures {
        /// Only check that they match the committed run; fail when they do not.
        #[arg(long)]
        check: bool,
    },
    /// Runs one fuzz target.
    Fuzz {
        /// The target (a file name under fuzz/fuzz_targets, without `.rs`).
        target: String,
        /// How long to run it.
        #[arg(default_value_t = 60)]
        seconds: u64,
    },
    /// Builds every fuzz target and runs each for 10 seconds.
    FuzzSmoke,
    /// The long, ignored stress tests, in a release build.
    Soak,
    /// The library crates package together; no breaking API change without a version bump
    /// since the release recorded in release/baseline (cargo-semver-checks, installed if missing).
    ReleaseCheck,
}

/// The arguments `cargo xtask test` passes on: its own, then `--` and the test binaries' when
/// there are any, as they were written.
fn cargo_test_args(mut cargo_args: Vec<String>, test_args: Vec<String>) -> Vec<String> {
    if !test_args.is_empty() {
        cargo_args.push("--".to_owned());
        cargo_args.extend(test_args);
    }
    cargo_args
}

fn main() -> ExitCode {
    let result = match Cli::parse().task {
        Task::Test {
            cargo_args,
            test_args,
        } => test(&cargo_test_args(cargo_args, test_args)),
        Task::Setup => setup().map(|_| ()),
        Task::Lint => lint(),
        Task::Bench { json } => bench::bench(json),
        Task::Figures { check } => figures::figures(&root(), check),
        Task::Fuzz { target, seconds } => fuzz_run(&target, seconds),
        Task::FuzzSmoke => fuzz_smoke(10),
        Task::Soak => soak(),
        Task::ReleaseCheck => release::release_check(),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("xtask: {e}");
            ExitCode::FAILURE
        }
    }
}

/// The workspace root (the parent of this crate's directory).
fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask lives one level below the workspace root")
        .to_path_buf()
}

/// Features enabled so that `lint` and `test` check and run the code behind them: optional ones
/// that no workspace crate turns on by itself, and the defaults whose tests have
/// required-features (the `mori` and `nano-cat` commands, TLS), named so that a change of
/// defaults cannot skip those tests unnoticed.
const EXTRA_FEATURES: [&str; 2] = [
    "--features",
    "mori-shm/arrow,mori-shm/cli,nano-transport/cli,nano-transport/tls,mirai-dispatch/tls,\
     mirai/tls,mirai/opentelemetry",
];

/// The library crates, each of which must build with any one of its features.
const LIBRARY_CRATES: [&str; 6] = [
    "mori-format",
    "mori-derive",
    "mori-shm",
    "nano-transport",
    "mirai-dispatch",
    "mirai",
];

fn cargo() -> Command {
    let mut c = Command::new(env::var_os("CARGO").unwrap_or_else(|| "cargo".into()));
    c.current_dir(root());
    c
}

fn run(cmd: &mut Command) -> Result {
    eprintln!("xtask: running {cmd:?}");
    let status = cmd
        .status()
        .map_err(|e| format!("cannot start {cmd:?}: {e}"))?;
    if status.success() {
        Ok(())
    } else {
        Err(format!("{cmd:?} failed: {status}"))
    }
}

fn succeeds(cmd: &mut Command) -> bool {
    cmd.stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// Where `prog` is: a path to an executable file, or the first executable of that name on `PATH`.
fn which(prog: &str) -> Option<PathBuf> {
    which::which(prog).ok()
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| o.stdout.trim_ascii() == b"0")
}

/// What `setup` found or installed, passed to the tests as environment variables.
struct Peers {
    python: PathBuf,
}

/// Debian packages the tests need, as (command that proves it is there, package).
const DEBIAN_PEERS: &[(&str, &str)] = &[
    // NNG's own command-line peer, for the transport interop tests.
    ("nngcat", "nng-utils"),
    // A real OpenSSH server for the ssh launcher tests (they start their own on loopback).
    ("/usr/sbin/sshd", "openssh-server"),
    ("ssh", "openssh-client"),
    // A real single-node Slurm cluster for the Slurm launcher test (it starts its own daemons).
    ("/usr/sbin/munged", "munge"),
    ("/usr/sbin/slurmctld", "slurmctld"),
    ("/usr/sbin/slurmd", "slurmd"),
    ("sbatch", "slurm-client"),
];

/// Python packages installed into the interop virtualenv.
const PYTHON_PEERS: &[&str] = &["pynng"];

fn venv_dir() -> PathBuf {
    root().join("target").join("interop-venv")
}

fn setup() -> Result<Peers> {
    let missing: Vec<&str> = DEBIAN_PEERS
        .iter()
        .filter(|(cmd, _)| which(cmd).is_none())
        .map(|&(_, pkg)| pkg)
        .collect();
    if !missing.is_empty() {
        if is_root() && which("apt-get").is_some() {
            run(Command::new("apt-get").args(["update", "-q"]))?;
            run(Command::new("apt-get")
                .args(["install", "-y", "-q", "--no-install-recommends"])
                .args(&missing)
                .env("DEBIAN_FRONTEND", "noninteractive"))?;
        } else {
            eprintln!(
                "xtask: not root: install {} yourself; the interop tests need them",
                missing.join(" ")
            );
        }
    }

    let venv = venv_dir();
    let python = venv.join("bin").join("python");
    let import_check = format!("import {}", PYTHON_PEERS.join(", "));
    if !succeeds(Command::new(&python).args(["-c", &import_check])) {
        let system_python = which("python3").ok_or("python3 is needed for the interop peers")?;
        run(Command::new(system_python).args([
            OsStr::new("-m"),
            OsStr::new("venv"),
            venv.as_os_str(),
        ]))?;
        run(Command::new(&python)
            .args(["-m", "pip", "install", "-q", "--disable-pip-version-check"])
            .args(PYTHON_PEERS))?;
    }
    Ok(Peers { python })
}

fn lint() -> Result {
    figures::figures(&root(), true)?;
    run(cargo().args(["fmt", "--all", "--check"]))?;
    run(cargo()
        .args(["clippy", "--workspace", "--all-targets"])
        .args(EXTRA_FEATURES)
        .args(["--", "-D", "warnings"]))?;
    run(cargo()
        .args(["doc", "--workspace", "--no-deps"])
        .args(EXTRA_FEATURES)
        .env("RUSTDOCFLAGS", "-D warnings"))?;
    feature_check()
}

/// `cargo hack --each-feature`: each library crate with no default features, with its
/// defaults, and with each feature alone, so code behind one feature cannot lean on another
/// unnoticed (the workspace runs above turn them all on at once). Clippy rather than `check`,
/// with `-D warnings`, so code a combination leaves unused fails too. The libraries only: with
/// every target the step took about four minutes more on a 2-core machine, and the tests that
/// exist for a build without TLS run in `test` (`tls_off_tests`). cargo-hack comes from
/// crates.io.
fn feature_check() -> Result {
    if !succeeds(cargo().args(["hack", "--version"])) {
        run(cargo().args(["install", "--locked", "cargo-hack"]))?;
    }
    let mut hack = cargo();
    hack.args(["hack", "--each-feature", "clippy"]);
    for krate in LIBRARY_CRATES {
        hack.args(["-p", krate]);
    }
    run(hack.args(["--", "-D", "warnings"]))
}

fn test(args: &[String]) -> Result {
    let peers = setup()?;
    lint()?;
    run(cargo()
        .args(["test", "--workspace"])
        .args(EXTRA_FEATURES)
        .args(args)
        .env("MIRAI_INTEROP_PYTHON", &peers.python))?;
    tls_off_tests()?;
    fuzz_smoke(10)?;
    release::release_check()
}

/// The tests of builds without TLS, which the workspace run cannot reach (its features turn TLS
/// on everywhere): a `tls+tcp://` address is a typed error on every layer, and local pools work.
fn tls_off_tests() -> Result {
    run(cargo().args(["test", "-p", "nano-transport", "--test", "loopback", "tls_"]))?;
    run(cargo()
        .args(["test", "-p", "mirai-dispatch", "--no-default-features"])
        .args(["--features", "shell", "--test", "tls_feature"]))?;
    run(cargo().args([
        "test",
        "-p",
        "mirai",
        "--no-default-features",
        "--test",
        "daemons",
    ]))
}

fn fuzz_dir() -> PathBuf {
    root().join("fuzz")
}

fn fuzz_targets() -> Result<Vec<String>> {
    let dir = fuzz_dir().join("fuzz_targets");
    if !dir.is_dir() {
        return Ok(Vec::new());
    }
    let mut targets: Vec<String> = fs::read_dir(&dir)
        .map_err(|e| format!("{}: {e}", dir.display()))?
        .filter_map(|e| e.ok())
        .filter_map(|e| {
            let name = e.file_name().into_string().ok()?;
            name.strip_suffix(".rs").map(str::to_owned)
        })
        .collect();
    targets.sort();
    Ok(targets)
}

/// `cargo fuzz` needs unstable flags; stable toolchains accept them with RUSTC_BOOTSTRAP=1.
fn cargo_fuzz() -> Result<Command> {
    if !succeeds(cargo().args(["fuzz", "--version"])) {
        run(cargo().args(["install", "--locked", "cargo-fuzz"]))?;
    }
    let mut c = cargo();
    c.current_dir(fuzz_dir()).env("RUSTC_BOOTSTRAP", "1");
    Ok(c)
}

fn fuzz_run(target: &str, seconds: u64) -> Result {
    let corpus = fuzz_dir().join("corpus").join(target);
    fs::create_dir_all(&corpus).map_err(|e| format!("{}: {e}", corpus.display()))?;
    run(cargo_fuzz()?
        .args(["fuzz", "run", target])
        .arg(&corpus)
        .arg("--")
        .arg(format!("-max_total_time={seconds}"))
        .arg("-print_final_stats=1"))
}

/// A short run of every target, so the targets never rot and the cheap bugs are found every run.
fn fuzz_smoke(seconds: u64) -> Result {
    let targets = fuzz_targets()?;
    if targets.is_empty() {
        return Ok(());
    }
    run(cargo_fuzz()?.args(["fuzz", "build"]))?;
    for t in &targets {
        fuzz_run(t, seconds)?;
    }
    Ok(())
}

fn soak() -> Result {
    let peers = setup()?;
    run(cargo()
        .args([
            "test",
            "--workspace",
            "--release",
            "--",
            "--ignored",
            "soak",
        ])
        .env("MIRAI_INTEROP_PYTHON", &peers.python))
}

#[cfg(test)]
mod cli_tests {
    use super::*;

    fn parse(args: &[&str]) -> std::result::Result<Task, clap::Error> {
        Cli::try_parse_from(std::iter::once("xtask").chain(args.iter().copied())).map(|c| c.task)
    }

    fn test_args(args: &[&str]) -> Vec<String> {
        match parse(args).unwrap() {
            Task::Test {
                cargo_args,
                test_args,
            } => cargo_test_args(cargo_args, test_args),
            other => panic!("{args:?} parsed as {other:?}"),
        }
    }

    #[test]
    fn test_passes_every_argument_to_cargo_test_as_is() {
        assert!(test_args(&["test"]).is_empty());
        assert_eq!(test_args(&["test", "--release"]), ["--release"]);
        assert_eq!(
            test_args(&["test", "-p", "mirai", "--test", "web"]),
            ["-p", "mirai", "--test", "web"]
        );
        assert_eq!(
            test_args(&["test", "-p", "mirai", "--", "--exact", "a::b"]),
            ["-p", "mirai", "--", "--exact", "a::b"]
        );
        assert_eq!(test_args(&["test", "--", "--ignored"]), ["--", "--ignored"]);
        assert_eq!(test_args(&["test", "name_filter"]), ["name_filter"]);
        assert_eq!(
            test_args(&["test", "-q", "--release", "--", "--ignored", "soak"]),
            ["-q", "--release", "--", "--ignored", "soak"]
        );
        assert_eq!(
            test_args(&["test", "--", "--help", "--", "x"]),
            ["--", "--help", "--", "x"]
        );
        assert!(test_args(&["test", "--"]).is_empty());
    }

    #[test]
    fn every_documented_command_parses() {
        assert_eq!(parse(&["setup"]).unwrap(), Task::Setup);
        assert_eq!(parse(&["lint"]).unwrap(), Task::Lint);
        assert_eq!(parse(&["bench"]).unwrap(), Task::Bench { json: None });
        assert_eq!(
            parse(&["bench", "--json", "out.json"]).unwrap(),
            Task::Bench {
                json: Some("out.json".into())
            }
        );
        let fuzz = |target: &str, seconds| Task::Fuzz {
            target: target.into(),
            seconds,
        };
        assert_eq!(parse(&["fuzz", "frame"]).unwrap(), fuzz("frame", 60));
        assert_eq!(parse(&["fuzz", "frame", "5"]).unwrap(), fuzz("frame", 5));
        assert_eq!(parse(&["fuzz-smoke"]).unwrap(), Task::FuzzSmoke);
        assert_eq!(parse(&["figures"]).unwrap(), Task::Figures { check: false });
        assert_eq!(
            parse(&["figures", "--check"]).unwrap(),
            Task::Figures { check: true }
        );
        assert_eq!(parse(&["soak"]).unwrap(), Task::Soak);
    }

    #[test]
    fn bad_command_lines_are_usage_errors() {
        for args in [
            &[][..],
            &["nope"],
            &["bench", "--json"],
            &["bench", "extra"],
            &["fuzz"],
            &["fuzz", "frame", "ten"],
            &["soak", "extra"],
            &["figures", "extra"],
        ] {
            assert!(parse(args).is_err(), "{args:?} was accepted");
        }
        use clap::CommandFactory;
        Cli::command().debug_assert();
    }

    #[test]
    fn which_finds_executables_only() {
        let sh = which("sh").expect("a shell on PATH");
        assert!(sh.is_absolute() && sh.ends_with("sh"));
        assert_eq!(which("/bin/sh").as_deref(), Some(Path::new("/bin/sh")));
        assert_eq!(which("surely-no-such-program-here"), None);
        // A file that exists but is not executable is not a program.
        let manifest = Path::new(env!("CARGO_MANIFEST_DIR")).join("Cargo.toml");
        assert_eq!(which(manifest.to_str().unwrap()), None);
    }
}
