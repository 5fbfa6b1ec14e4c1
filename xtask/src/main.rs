//! Project chores, run as `cargo xtask <command>` (the alias lives in `.cargo/config.toml`).
//!
//! - `test`: installs what the tests need (`setup`), then runs fmt check, clippy, rustdoc, every
//!   test and doctest, and a short fuzz smoke where the toolchain allows it.
//! - `setup`: installs the third-party peers the interop tests talk to: a Python virtualenv with
//!   pynng under `target/interop-venv`, and Debian's `nng-utils` (nngcat) when running as root.
//! - `bench [--json FILE]`: runs every benchmark and prints the ratios against the floors and peers
//!   measured in the same run; `--json` also writes them as JSON records.
//! - `fuzz TARGET [SECONDS]`: runs one fuzz target.
//! - `soak`: the long, ignored stress tests.

use std::env;
use std::ffi::OsStr;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};

type Result<T = ()> = std::result::Result<T, String>;

fn main() -> ExitCode {
    let args: Vec<String> = env::args().skip(1).collect();
    let result = match args.first().map(String::as_str) {
        Some("test") => test(&args[1..]),
        Some("setup") => setup().map(|_| ()),
        Some("lint") => lint(),
        Some("bench") => bench(&args[1..]),
        Some("fuzz") => fuzz(&args[1..]),
        Some("fuzz-smoke") => fuzz_smoke(10),
        Some("soak") => soak(),
        _ => Err("usage: cargo xtask <test|setup|lint|bench [--json FILE]|fuzz TARGET [SECONDS]|fuzz-smoke|soak>".into()),
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

fn which(prog: &str) -> Option<PathBuf> {
    env::var_os("PATH").and_then(|paths| {
        env::split_paths(&paths)
            .map(|p| p.join(prog))
            .find(|p| p.is_file())
    })
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
const DEBIAN_PEERS: &[(&str, &str)] = &[("nngcat", "nng-utils")];

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
    run(cargo().args([
        "clippy",
        "--workspace",
        "--all-targets",
        "--",
        "-D",
        "warnings",
    ]))?;
    run(cargo()
        .args(["doc", "--workspace", "--no-deps"])
        .env("RUSTDOCFLAGS", "-D warnings"))
}

fn test(args: &[String]) -> Result {
    let peers = setup()?;
    lint()?;
    run(cargo()
        .args(["test", "--workspace"])
        .args(args)
        .env("MIRAI_INTEROP_PYTHON", &peers.python))?;
    fuzz_smoke(10)
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

fn fuzz(args: &[String]) -> Result {
    let target = args
        .first()
        .ok_or("usage: cargo xtask fuzz TARGET [SECONDS]")?;
    let seconds = match args.get(1) {
        Some(s) => s
            .parse()
            .map_err(|_| format!("not a number of seconds: {s}"))?,
        None => 60,
    };
    fuzz_run(target, seconds)
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

fn bench(args: &[String]) -> Result {
    let json_out = match args {
        [] => None,
        [flag, path] if flag == "--json" => Some(PathBuf::from(path)),
        _ => return Err("usage: cargo xtask bench [--json FILE]".into()),
    };
    let peers = setup()?;
    let records = root().join("target").join("bench-records.jsonl");
    let _ = fs::remove_file(&records);
    run(cargo()
        .args(["bench", "--workspace"])
        .env("MIRAI_BENCH_RECORDS", &records)
        .env("MIRAI_INTEROP_PYTHON", &peers.python))?;
    let text = fs::read_to_string(&records).unwrap_or_default();
    let rows: Vec<serde_json::Value> = text
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect();
    println!(
        "\n{:<48} {:>14} {:>8}  {:<28} {:>14} {:>8}",
        "benchmark", "value", "unit", "peer", "peer value", "ratio"
    );
    for r in &rows {
        println!(
            "{:<48} {:>14.3} {:>8}  {:<28} {:>14.3} {:>8.2}",
            r["name"].as_str().unwrap_or("?"),
            r["value"].as_f64().unwrap_or(f64::NAN),
            r["unit"].as_str().unwrap_or(""),
            r["peer"].as_str().unwrap_or(""),
            r["peer_value"].as_f64().unwrap_or(f64::NAN),
            r["ratio"].as_f64().unwrap_or(f64::NAN),
        );
    }
    if let Some(path) = json_out {
        let array = serde_json::Value::Array(rows);
        let pretty = serde_json::to_string_pretty(&array).map_err(|e| e.to_string())?;
        fs::write(&path, pretty).map_err(|e| format!("{}: {e}", path.display()))?;
        println!("records written to {}", path.display());
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
