//! `cargo xtask release-check`: the library crates package together, and no crate changes its
//! public API in a breaking way without a version bump.
//!
//! 1. `cargo package` of every library crate at once (with verification: each packaged crate
//!    builds from its `.crate` file alone, against the other packaged crates).
//! 2. `cargo semver-checks` of every library crate against the baseline: the git revision in
//!    `release/baseline`, the last release. A breaking change needs a new major version (a new
//!    minor while the version is `0.x`), otherwise the check fails.
//!
//! cargo-semver-checks is installed from crates.io, at the pinned version, when missing.

use std::fs;
use std::path::Path;
use std::process::{Command, Stdio};

use crate::{Result, cargo, root, run};

/// The version of cargo-semver-checks the check installs and expects.
pub(crate) const SEMVER_CHECKS_VERSION: &str = "0.51.0";

/// The workspace members that are not released: everything else is a library crate.
const NOT_RELEASED: [&str; 4] = ["--exclude", "xtask", "--exclude", "mirai-benches"];

/// Where the baseline revision lives, relative to the workspace root.
pub(crate) const BASELINE_FILE: &str = "release/baseline";

/// Runs the packaging, then the semver checks against the recorded baseline.
pub(crate) fn release_check() -> Result {
    let baseline = read_baseline(&root().join(BASELINE_FILE))?;
    package()?;
    semver_checks(&baseline)
}

/// `cargo package` of the library crates together. `--allow-dirty`: the check is about what the
/// working tree would package, committed or not.
fn package() -> Result {
    forget_unpacked_packages()?;
    run(cargo()
        .args(["package", "--workspace"])
        .args(NOT_RELEASED)
        .arg("--allow-dirty"))
}

/// Removes this workspace's crates from the sources cargo unpacked out of earlier packaging runs.
///
/// Verifying a package resolves our other crates from a local registry of the packages just
/// made, and cargo unpacks each into `$CARGO_HOME/registry/src/-<hash>/<name>-<version>` once:
/// it takes a registry version's contents to be immutable, so an unpack left by an earlier run
/// of the same (unreleased) version would be built instead of the package just made, and the
/// check would verify against stale sources. Only those local registries (their directory
/// names start with `-`) and only our crates' directories are touched.
fn forget_unpacked_packages() -> Result {
    let cargo_home = std::env::var_os("CARGO_HOME")
        .map(std::path::PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| Path::new(&h).join(".cargo")));
    let Some(src) = cargo_home.map(|h| h.join("registry").join("src")) else {
        return Ok(());
    };
    let Ok(registries) = fs::read_dir(&src) else {
        return Ok(());
    };
    let ours: Vec<String> = fs::read_dir(root().join("crates"))
        .map_err(|e| format!("crates/: {e}"))?
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .collect();
    for registry in registries.filter_map(|e| e.ok()) {
        if !registry.file_name().to_string_lossy().starts_with('-') {
            continue;
        }
        let Ok(unpacked) = fs::read_dir(registry.path()) else {
            continue;
        };
        for dir in unpacked.filter_map(|e| e.ok()) {
            let name = dir.file_name().to_string_lossy().into_owned();
            if is_unpack_of(&name, &ours) {
                fs::remove_dir_all(dir.path())
                    .map_err(|e| format!("{}: {e}", dir.path().display()))?;
            }
        }
    }
    Ok(())
}

/// Whether `dir` (`<name>-<version>`) is an unpacked package of one of `crates`.
fn is_unpack_of(dir: &str, crates: &[String]) -> bool {
    crates.iter().any(|c| {
        dir.strip_prefix(c.as_str())
            .and_then(|rest| rest.strip_prefix('-'))
            .is_some_and(|version| version.starts_with(|ch: char| ch.is_ascii_digit()))
    })
}

fn semver_checks(baseline: &str) -> Result {
    ensure_revision(baseline)?;
    install_semver_checks()?;
    run(cargo()
        .args(["semver-checks", "check-release", "--workspace"])
        .args(NOT_RELEASED)
        .args(["--baseline-rev", baseline]))
}

/// Makes sure the baseline commit is in the clone's history: a shallow clone (as some CI systems
/// make) is deepened from its remote first; a baseline that is still missing is an error that
/// says so, before anything is built.
fn ensure_revision(rev: &str) -> Result {
    let has_commit = || {
        Command::new("git")
            .current_dir(root())
            .args(["cat-file", "-e", &format!("{rev}^{{commit}}")])
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    };
    if has_commit() {
        return Ok(());
    }
    let shallow = Command::new("git")
        .current_dir(root())
        .args(["rev-parse", "--is-shallow-repository"])
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "true");
    if shallow {
        eprintln!("xtask: the clone is shallow; fetching the history the baseline needs");
        let _ = Command::new("git")
            .current_dir(root())
            .args(["fetch", "--unshallow"])
            .status();
    }
    if has_commit() {
        Ok(())
    } else {
        Err(format!(
            "the release baseline {rev} ({BASELINE_FILE}) is not in this clone's history: \
             clone with full history (or `git fetch --unshallow`) to run the semver check"
        ))
    }
}

/// Installs cargo-semver-checks at [`SEMVER_CHECKS_VERSION`] unless that version is installed.
fn install_semver_checks() -> Result {
    let installed = cargo()
        .args(["semver-checks", "--version"])
        .output()
        .is_ok_and(|o| o.status.success() && is_pinned_version(&o.stdout));
    if installed {
        return Ok(());
    }
    let mut install = cargo();
    install.args([
        "install",
        "--locked",
        "cargo-semver-checks",
        "--version",
        SEMVER_CHECKS_VERSION,
    ]);
    // The tool's own release profile asks for fat LTO in one codegen unit, which makes its build
    // the longest step of CI (about 40 minutes on a busy 2-core machine). Without them the build
    // takes a third of the CPU time, and the checks it runs take seconds either way.
    for (key, value) in FAST_INSTALL_PROFILE {
        install.env(key, value);
    }
    run(&mut install)
}

/// Profile overrides for building cargo-semver-checks (config from the environment takes
/// precedence over the profile in the tool's manifest).
const FAST_INSTALL_PROFILE: [(&str, &str); 3] = [
    ("CARGO_PROFILE_RELEASE_LTO", "false"),
    ("CARGO_PROFILE_RELEASE_CODEGEN_UNITS", "16"),
    ("CARGO_PROFILE_RELEASE_DEBUG", "false"),
];

/// Whether `cargo semver-checks --version` printed the pinned version.
fn is_pinned_version(output: &[u8]) -> bool {
    String::from_utf8_lossy(output)
        .split_whitespace()
        .any(|word| word == SEMVER_CHECKS_VERSION)
}

/// The revision in the baseline file: its first line that is neither empty nor a `#` comment,
/// which must be a git commit id (7 to 40 hex digits).
pub(crate) fn read_baseline(path: &Path) -> Result<String> {
    let text = fs::read_to_string(path)
        .map_err(|e| format!("cannot read the release baseline {}: {e}", path.display()))?;
    parse_baseline(&text).map_err(|e| format!("{}: {e}", path.display()))
}

fn parse_baseline(text: &str) -> Result<String> {
    let rev = text
        .lines()
        .map(str::trim)
        .find(|line| !line.is_empty() && !line.starts_with('#'))
        .ok_or("no revision: expected a git commit id on a line of its own")?;
    let is_commit_id = (7..=40).contains(&rev.len()) && rev.bytes().all(|b| b.is_ascii_hexdigit());
    if is_commit_id {
        Ok(rev.to_owned())
    } else {
        Err(format!(
            "`{rev}` is not a git commit id (7 to 40 hex digits)"
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_baseline_is_the_first_revision_line() {
        let text = "# the last release\n\n  279d529bf0b800da6bb714b6d49a3bf05978f01b  \n# later\n";
        assert_eq!(
            parse_baseline(text).unwrap(),
            "279d529bf0b800da6bb714b6d49a3bf05978f01b"
        );
        assert_eq!(parse_baseline("abc1234\n").unwrap(), "abc1234");
    }

    #[test]
    fn a_baseline_that_is_not_a_commit_id_is_refused() {
        for text in [
            "",
            "# only a comment\n",
            "main\n",
            "abc12\n",
            "HEAD~1\n",
            "279d529bf0b800da6bb714b6d49a3bf05978f01b0\n",
        ] {
            assert!(parse_baseline(text).is_err(), "{text:?} was accepted");
        }
    }

    #[test]
    fn the_recorded_baseline_reads() {
        let rev = read_baseline(&root().join(BASELINE_FILE)).unwrap();
        assert_eq!(rev.len(), 40, "record the full commit id: {rev}");
    }

    #[test]
    fn only_the_pinned_semver_checks_counts_as_installed() {
        let line = format!("cargo-semver-checks {SEMVER_CHECKS_VERSION}\n");
        assert!(is_pinned_version(line.as_bytes()));
        assert!(!is_pinned_version(b"cargo-semver-checks 0.0.1\n"));
        let longer = format!("cargo-semver-checks {SEMVER_CHECKS_VERSION}1\n");
        assert!(!is_pinned_version(longer.as_bytes()));
    }

    #[test]
    fn only_unpacked_packages_of_our_crates_are_forgotten() {
        let ours = ["mirai".to_owned(), "mirai-dispatch".to_owned()];
        assert!(is_unpack_of("mirai-0.1.0", &ours));
        assert!(is_unpack_of("mirai-dispatch-0.2.3", &ours));
        assert!(!is_unpack_of("mirai-extra-0.1.0", &ours));
        assert!(!is_unpack_of("miraix-0.1.0", &ours));
        assert!(!is_unpack_of("serde-1.0.0", &ours));
    }

    #[test]
    fn release_check_parses() {
        use clap::Parser;
        let cli = crate::Cli::try_parse_from(["xtask", "release-check"]).unwrap();
        assert_eq!(cli.task, crate::Task::ReleaseCheck);
        assert!(crate::Cli::try_parse_from(["xtask", "release-check", "extra"]).is_err());
    }
}
