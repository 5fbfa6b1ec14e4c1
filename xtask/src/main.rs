//! Project chores, run as `cargo xtask <command>` (the alias lives in `.cargo/config.toml`).
//!
//! - `test [CARGO TEST ARGS]...`: installs what the tests need (`setup`), then runs fmt check,
//!   clippy, rustdoc, every test and doctest, a short fuzz smoke where the toolchain allows it,
//!   and `release-check`.
//!   Arguments after `test` go to `cargo test` as they are (`cargo xtask test -p mirai -- --exact
//!   NAME`).
//! - `setup`: installs the third-party peers the interop tests talk to: a Python virtualenv with
//!   pynng under `target/interop-venv`, and Debian's `nng-utils` (nngcat) when running as root.
//! - `lint`: the fmt check, clippy and rustdoc of `test`, alone.
//! - `bench [--json FILE]`: runs every benchmark and prints the ratios against the floors and peers
//!   measured in the same run; `--json` also writes them as JSON records.
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

mod release;

type Result<T = ()> = std::result::Result<T, String>;

/// Project chores.
#[derive(Debug, PartialEq, Eq, Parser)]
#[command(
    name = "cargo xtask",
    bin_name = "cargo xtask",
    about = "Project chores: test, setup, lint, bench, fuzz, soak."
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
    /// fmt check, clippy -D warnings and rustdoc -D warnings over the workspace.
    Lint,
    /// Every benchmark, printed as ratios against the floors and peers measured in the same run.
    Bench {
        /// Also write the records as a JSON array to FILE.
        #[arg(long, value_name = "FILE")]
        json: Option<PathBuf>,
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
        Task::Bench { json } => bench(json),
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

/// Optional features that no workspace crate turns on by itself, enabled so that `lint` and
/// `test` also check and run the code behind them.
const EXTRA_FEATURES: [&str; 2] = ["--features", "mori-shm/arrow,mirai/opentelemetry"];

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
    run(cargo().args(["fmt", "--all", "--check"]))?;
    run(cargo()
        .args(["clippy", "--workspace", "--all-targets"])
        .args(EXTRA_FEATURES)
        .args(["--", "-D", "warnings"]))?;
    run(cargo()
        .args(["doc", "--workspace", "--no-deps"])
        .args(EXTRA_FEATURES)
        .env("RUSTDOCFLAGS", "-D warnings"))
}

fn test(args: &[String]) -> Result {
    let peers = setup()?;
    lint()?;
    run(cargo()
        .args(["test", "--workspace"])
        .args(EXTRA_FEATURES)
        .args(args)
        .env("MIRAI_INTEROP_PYTHON", &peers.python))?;
    fuzz_smoke(10)?;
    release::release_check()
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

fn bench(json_out: Option<PathBuf>) -> Result {
    let peers = setup()?;
    let records = root().join("target").join("bench-records.jsonl");
    let _ = fs::remove_file(&records);
    // A failing benchmark must not hide the figures the others measured: report, then fail.
    let ran = run(cargo()
        .args(["bench", "--workspace"])
        .env("MIRAI_BENCH_RECORDS", &records)
        .env("MIRAI_INTEROP_PYTHON", &peers.python));
    let text = match fs::read_to_string(&records) {
        Ok(text) => text,
        Err(e) => {
            eprintln!("xtask: no benchmark records at {}: {e}", records.display());
            String::new()
        }
    };
    let (rows, skipped) = report::parse(&text);
    println!("\n{}", report::table(&rows));
    if skipped > 0 {
        eprintln!("xtask: {skipped} record line(s) were not valid JSON objects and were skipped");
    }
    for missing in report::missing_figures(&rows) {
        eprintln!("xtask: no figure for {missing}");
    }
    if let Some(path) = json_out {
        let pretty = report::json(&rows).map_err(|e| e.to_string())?;
        fs::write(&path, pretty).map_err(|e| format!("{}: {e}", path.display()))?;
        println!("{} records written to {}", rows.len(), path.display());
    }
    ran
}

/// Benchmark records: parsing the JSON lines the bench binaries append, the table, the JSON file.
mod report {
    use serde_json::{Map, Value};

    /// One figure beside its floor or peer. Missing or non-finite numbers are `None`.
    #[derive(Debug, Clone, PartialEq)]
    pub(crate) struct Record {
        pub(crate) name: String,
        pub(crate) value: Option<f64>,
        pub(crate) unit: String,
        pub(crate) peer: String,
        pub(crate) peer_value: Option<f64>,
        /// `value / peer_value`: as recorded, or computed when the record has none.
        pub(crate) ratio: Option<f64>,
    }

    fn number(v: &Value) -> Option<f64> {
        let x = match v {
            Value::Number(n) => n.as_f64(),
            // Some writers quote numbers (or write "NaN"): accept what parses.
            Value::String(s) => s.trim().parse().ok(),
            _ => None,
        }?;
        x.is_finite().then_some(x)
    }

    fn text(v: &Value) -> String {
        match v {
            Value::String(s) => s.clone(),
            Value::Null => String::new(),
            other => other.to_string(),
        }
    }

    fn record(map: &Map<String, Value>) -> Record {
        let get = |k: &str| map.get(k).unwrap_or(&Value::Null);
        let value = number(get("value"));
        let peer_value = number(get("peer_value"));
        let computed = match (value, peer_value) {
            (Some(v), Some(p)) if p != 0.0 => Some(v / p),
            _ => None,
        };
        Record {
            name: text(get("name")),
            value,
            unit: text(get("unit")),
            peer: text(get("peer")),
            peer_value,
            ratio: number(get("ratio")).or(computed),
        }
    }

    /// Parses JSON lines (blank lines ignored); returns the records and how many lines were
    /// skipped. A JSON array of records is accepted too.
    pub(crate) fn parse(text: &str) -> (Vec<Record>, usize) {
        let mut rows = Vec::new();
        let mut skipped = 0;
        for line in text.lines().map(str::trim).filter(|l| !l.is_empty()) {
            match serde_json::from_str::<Value>(line) {
                Ok(Value::Object(map)) => rows.push(record(&map)),
                Ok(Value::Array(items)) => {
                    for item in items {
                        match item {
                            Value::Object(map) => rows.push(record(&map)),
                            _ => skipped += 1,
                        }
                    }
                }
                _ => skipped += 1,
            }
        }
        (rows, skipped)
    }

    fn cell(x: Option<f64>) -> String {
        x.map_or_else(|| "-".to_owned(), |x| format!("{x:.3}"))
    }

    /// The table `cargo xtask bench` prints.
    pub(crate) fn table(rows: &[Record]) -> String {
        let mut out = format!(
            "{:<52} {:>14} {:<6}  {:<34} {:>14} {:>8}\n",
            "benchmark", "value", "unit", "vs floor or peer", "its value", "ratio"
        );
        if rows.is_empty() {
            out.push_str("(no benchmark records)\n");
        }
        for r in rows {
            let ratio = r
                .ratio
                .map_or_else(|| "-".to_owned(), |x| format!("{x:.2}"));
            out.push_str(&format!(
                "{:<52} {:>14} {:<6}  {:<34} {:>14} {:>8}\n",
                r.name,
                cell(r.value),
                r.unit,
                r.peer,
                cell(r.peer_value),
                ratio
            ));
        }
        out
    }

    /// The JSON file of `--json`: an array of `{name, value, unit, peer, peer_value, ratio}`,
    /// with `null` for a number that is missing or not finite.
    pub(crate) fn json(rows: &[Record]) -> serde_json::Result<String> {
        let array: Vec<Value> = rows
            .iter()
            .map(|r| {
                serde_json::json!({
                    "name": r.name, "value": r.value, "unit": r.unit,
                    "peer": r.peer, "peer_value": r.peer_value, "ratio": r.ratio,
                })
            })
            .collect();
        serde_json::to_string_pretty(&array)
    }

    /// The figures a full run must show, as (what, words one record's name or peer contains).
    const EXPECTED: &[(&str, &[&str])] = &[
        ("the Unix-socket floor", &["uds"]),
        (
            "a comparison with Python's ProcessPoolExecutor",
            &["processpool"],
        ),
        ("the transport against pynng", &["pynng"]),
        ("mori attach", &["attach"]),
        ("mori PSS", &["pss"]),
        ("a shared view through the facade", &["share_f64"]),
    ];

    /// Which expected figures no record mentions.
    pub(crate) fn missing_figures(rows: &[Record]) -> Vec<&'static str> {
        EXPECTED
            .iter()
            .filter(|(_, words)| {
                !rows.iter().any(|r| {
                    let hay = format!("{} {}", r.name, r.peer).to_lowercase();
                    words.iter().any(|w| hay.contains(w))
                })
            })
            .map(|(what, _)| *what)
            .collect()
    }

    #[cfg(test)]
    mod tests {
        use super::*;

        #[test]
        fn every_record_shape_parses() {
            let text = r#"{"name":"a","value":2.0,"unit":"us","peer":"uds floor","peer_value":4.0,"ratio":0.5}

{"name":"no ratio","value":3,"unit":"x","peer":"p","peer_value":2}
{"name":"nan value","value":null,"unit":"us","peer":"p","peer_value":1.0,"ratio":null}
{"name":"zero peer","value":1.0,"unit":"us","peer":"p","peer_value":0.0}
{"name":"quoted","value":"1.5","unit":"us","peer":"p","peer_value":"3"}
{"name":"only a name"}
not json
[1, 2]
[{"name":"in an array","value":1.0,"peer_value":2.0}]
"#;
            let (rows, skipped) = parse(text);
            assert_eq!(skipped, 3);
            let names: Vec<&str> = rows.iter().map(|r| r.name.as_str()).collect();
            assert_eq!(
                names,
                [
                    "a",
                    "no ratio",
                    "nan value",
                    "zero peer",
                    "quoted",
                    "only a name",
                    "in an array"
                ]
            );
            assert_eq!(rows[0].ratio, Some(0.5));
            assert_eq!(rows[1].ratio, Some(1.5), "computed when absent");
            assert_eq!((rows[2].value, rows[2].ratio), (None, None));
            assert_eq!(rows[3].ratio, None, "no division by zero");
            assert_eq!(rows[4].ratio, Some(0.5));
            assert_eq!(rows[5].value, None);
            assert_eq!(rows[6].ratio, Some(0.5));
        }

        #[test]
        fn the_table_shows_each_ratio_and_dashes_for_gaps() {
            let (rows, _) = parse(
                "{\"name\":\"rt\",\"value\":10.0,\"unit\":\"us\",\"peer\":\"uds\",\"peer_value\":5.0}\n\
                 {\"name\":\"gap\",\"value\":null,\"unit\":\"us\",\"peer\":\"p\",\"peer_value\":5.0}",
            );
            let table = table(&rows);
            let lines: Vec<&str> = table.lines().collect();
            assert_eq!(lines.len(), 3);
            assert!(lines[0].contains("ratio"));
            assert!(lines[1].starts_with("rt ") && lines[1].trim_end().ends_with("2.00"));
            assert!(lines[2].contains(" - ") && lines[2].trim_end().ends_with('-'));
            assert!(super::table(&[]).contains("no benchmark records"));
        }

        #[test]
        fn json_records_carry_every_field() {
            let (rows, _) = parse(
                "{\"name\":\"rt\",\"value\":10.0,\"unit\":\"us\",\"peer\":\"uds\",\"peer_value\":4.0}",
            );
            let back: Value = serde_json::from_str(&json(&rows).unwrap()).unwrap();
            assert_eq!(
                back,
                serde_json::json!([{"name": "rt", "value": 10.0, "unit": "us",
                                    "peer": "uds", "peer_value": 4.0, "ratio": 2.5}])
            );
            assert_eq!(json(&[]).unwrap(), "[]");
        }

        #[test]
        fn missing_figures_are_named() {
            let (rows, _) = parse(
                "{\"name\":\"uds ping-pong\",\"peer\":\"self\"}\n\
                 {\"name\":\"mirai round trip\",\"peer\":\"ProcessPoolExecutor\"}",
            );
            assert_eq!(
                missing_figures(&rows),
                [
                    "the transport against pynng",
                    "mori attach",
                    "mori PSS",
                    "a shared view through the facade"
                ]
            );
            assert_eq!(missing_figures(&[]).len(), EXPECTED.len());
        }
    }
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
