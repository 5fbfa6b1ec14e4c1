//! Figures as records: [`record`], [`record_with_goal`], their JSON ([`figure_json`]) and the
//! peers a bench cannot run without ([`peer_python`], [`run_peer`], [`missing_peer`]).

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// Which side of its target a [`Goal`] holds a figure to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cmp {
    /// The figure must not exceed the target (`<=`).
    AtMost,
    /// The figure must reach the target (`>=`).
    AtLeast,
}

/// What a [`Goal`] compares with its target: the figure itself (in its unit) or its ratio to
/// the peer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Of {
    /// The value, in the record's unit.
    Value,
    /// `value / peer_value`.
    Ratio,
}

/// A goal a figure is held to. It lives in its own `goal` field of the record, never in the
/// peer's place: the peer is always something measured in the same run.
///
/// ```
/// use mirai_benches::Goal;
/// let goal = Goal::value_at_least(500_000.0);
/// assert!(goal.met(600_000.0, 1.2));
/// assert!(!Goal::ratio_at_most(1.5).met(10.0, 2.0));
/// ```
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Goal {
    /// What is compared.
    pub of: Of,
    /// Which way.
    pub cmp: Cmp,
    /// The target, in the record's unit for [`Of::Value`], a plain number for [`Of::Ratio`].
    pub target: f64,
}

impl Goal {
    /// The value must be at most `target` (in the record's unit).
    ///
    /// ```
    /// assert!(mirai_benches::Goal::value_at_most(10.0).met(9.0, 0.0));
    /// ```
    pub fn value_at_most(target: f64) -> Self {
        Self {
            of: Of::Value,
            cmp: Cmp::AtMost,
            target,
        }
    }

    /// The value must be at least `target` (in the record's unit).
    ///
    /// ```
    /// assert!(!mirai_benches::Goal::value_at_least(10.0).met(9.0, 0.0));
    /// ```
    pub fn value_at_least(target: f64) -> Self {
        Self {
            of: Of::Value,
            cmp: Cmp::AtLeast,
            target,
        }
    }

    /// The ratio to the peer must be at most `target`.
    ///
    /// ```
    /// assert!(mirai_benches::Goal::ratio_at_most(1.5).met(100.0, 1.4));
    /// ```
    pub fn ratio_at_most(target: f64) -> Self {
        Self {
            of: Of::Ratio,
            cmp: Cmp::AtMost,
            target,
        }
    }

    /// The ratio to the peer must be at least `target`.
    ///
    /// ```
    /// assert!(mirai_benches::Goal::ratio_at_least(10.0).met(1.0, 12.0));
    /// ```
    pub fn ratio_at_least(target: f64) -> Self {
        Self {
            of: Of::Ratio,
            cmp: Cmp::AtLeast,
            target,
        }
    }

    /// Whether a figure with this value and ratio meets the goal.
    ///
    /// ```
    /// assert!(mirai_benches::Goal::value_at_most(10.0).met(10.0, 3.0));
    /// ```
    pub fn met(&self, value: f64, ratio: f64) -> bool {
        let x = match self.of {
            Of::Value => value,
            Of::Ratio => ratio,
        };
        match self.cmp {
            Cmp::AtMost => x <= self.target,
            Cmp::AtLeast => x >= self.target,
        }
    }

    /// The goal as its record's `goal` field: `{of, cmp, target, met}`.
    fn json(&self, value: f64, ratio: f64) -> serde_json::Value {
        serde_json::json!({
            "of": match self.of { Of::Value => "value", Of::Ratio => "ratio" },
            "cmp": match self.cmp { Cmp::AtMost => "<=", Cmp::AtLeast => ">=" },
            "target": self.target,
            "met": self.met(value, ratio),
        })
    }
}

/// The JSON record of one figure: `{name, value, unit, peer, peer_value, ratio}`, plus
/// `goal: {of, cmp, target, met}` when there is one.
///
/// # Panics
///
/// When `value`, `peer_value` or their ratio is not finite (a peer that failed, a division by
/// a zero peer): a figure without its peer is not recorded, never as NaN.
///
/// ```
/// let rec = mirai_benches::figure_json("rt", 10.0, "us", "floor", 4.0, None);
/// assert_eq!(rec["ratio"], 2.5);
/// assert!(rec.get("goal").is_none());
/// let failed = std::panic::catch_unwind(|| {
///     mirai_benches::figure_json("rt", 10.0, "us", "python peer", f64::NAN, None)
/// });
/// assert!(failed.is_err());
/// ```
pub fn figure_json(
    name: &str,
    value: f64,
    unit: &str,
    peer: &str,
    peer_value: f64,
    goal: Option<Goal>,
) -> serde_json::Value {
    let ratio = value / peer_value;
    assert!(
        value.is_finite() && peer_value.is_finite() && ratio.is_finite(),
        "refusing to record a non-finite figure: {name:?} = {value} {unit} vs {peer:?} = \
         {peer_value} (ratio {ratio}); a peer that failed or is missing fails the bench \
         (install the peers with `cargo xtask setup`)"
    );
    if let Some(g) = goal {
        assert!(g.target.is_finite(), "goal of {name:?} is not finite");
    }
    let mut rec = serde_json::json!({
        "name": name, "value": value, "unit": unit,
        "peer": peer, "peer_value": peer_value, "ratio": ratio,
    });
    if let Some(g) = goal {
        rec["goal"] = g.json(value, ratio);
    }
    rec
}

/// Print one figure beside its peer or floor and append it to `$MIRAI_BENCH_RECORDS`.
///
/// `peer` names a floor or peer measured in the same run, never a constant (a target goes in
/// [`record_with_goal`]). `ratio` is `value / peer_value`; whether lower is better depends on
/// the unit. Panics on a non-finite figure, as [`figure_json`] does.
///
/// ```
/// mirai_benches::record("rt p50", 10.0, "us", "floor p50", 4.0);
/// ```
pub fn record(name: &str, value: f64, unit: &str, peer: &str, peer_value: f64) {
    emit(figure_json(name, value, unit, peer, peer_value, None));
}

/// [`record`] with a goal beside the peer, stored in the record's `goal` field.
///
/// ```
/// use mirai_benches::{Goal, record_with_goal};
/// record_with_goal("msg/s", 6e5, "msg/s", "pynng", 4e4, Goal::value_at_least(5e5));
/// ```
pub fn record_with_goal(
    name: &str,
    value: f64,
    unit: &str,
    peer: &str,
    peer_value: f64,
    goal: Goal,
) {
    emit(figure_json(name, value, unit, peer, peer_value, Some(goal)));
}

fn emit(rec: serde_json::Value) {
    let num = |k: &str| rec[k].as_f64().unwrap_or(f64::NAN);
    let text = |k: &str| rec[k].as_str().unwrap_or_default().to_owned();
    let (name, unit, peer) = (text("name"), text("unit"), text("peer"));
    let (value, peer_value, ratio) = (num("value"), num("peer_value"), num("ratio"));
    let goal = rec.get("goal").map_or_else(String::new, |g| {
        let met = if g["met"] == true { "met" } else { "NOT met" };
        format!(
            "  goal {} {} {}: {met}",
            g["of"].as_str().unwrap_or_default(),
            g["cmp"].as_str().unwrap_or_default(),
            g["target"]
        )
    });
    println!(
        "{name:<48} {value:>12.3} {unit:<6} vs {peer:<28} {peer_value:>12.3}  ratio {ratio:.2}{goal}"
    );
    if let Ok(path) = std::env::var("MIRAI_BENCH_RECORDS") {
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .expect("open bench records");
        writeln!(f, "{rec}").expect("write bench record");
    }
}

/// The Python of the interop virtualenv that `cargo xtask setup` makes (with pynng):
/// `$MIRAI_INTEROP_PYTHON` (as `cargo xtask bench` sets it) or `target/interop-venv` of the
/// workspace.
///
/// # Panics
///
/// When neither exists, with a message naming `cargo xtask setup`: a bench never runs without
/// its peer.
///
/// ```no_run
/// let python = mirai_benches::peer_python();
/// assert!(python.exists());
/// ```
pub fn peer_python() -> PathBuf {
    let path = std::env::var_os("MIRAI_INTEROP_PYTHON")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/interop-venv/bin/python")
        });
    if !path.exists() {
        missing_peer(
            "the Python peer",
            format_args!("no interpreter at {}", path.display()),
        );
    }
    path
}

/// Fails the bench because a peer is missing or failed, naming the setup step.
///
/// ```
/// let r = std::panic::catch_unwind(|| mirai_benches::missing_peer("pynng", "import failed"));
/// let msg = *r.unwrap_err().downcast::<String>().unwrap();
/// assert!(msg.contains("cargo xtask setup"));
/// ```
pub fn missing_peer(peer: &str, why: impl std::fmt::Display) -> ! {
    panic!(
        "{peer} is missing or failed ({why}): every figure needs its peer measured in the same \
         run; install the peers with `cargo xtask setup` (python3 with pynng in \
         target/interop-venv, nngcat) and run the bench again"
    )
}

/// Runs a peer program to completion and returns its standard output; a peer that cannot
/// start or fails is [`missing_peer`].
///
/// ```
/// let out = mirai_benches::run_peer("echo", std::process::Command::new("echo").arg("42"));
/// assert_eq!(out.trim(), "42");
/// ```
pub fn run_peer(peer: &str, cmd: &mut Command) -> String {
    let out = cmd
        .stderr(Stdio::inherit())
        .output()
        .unwrap_or_else(|e| missing_peer(peer, format_args!("cannot start {cmd:?}: {e}")));
    if !out.status.success() {
        missing_peer(peer, format_args!("{cmd:?} exited with {}", out.status));
    }
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[cfg(test)]
mod record_tests {
    use super::*;

    #[test]
    #[should_panic(expected = "refusing to record a non-finite figure")]
    fn a_nan_peer_is_refused() {
        figure_json("x", 1.0, "us", "peer that failed", f64::NAN, None);
    }

    #[test]
    #[should_panic(expected = "cargo xtask setup")]
    fn a_nan_value_is_refused_naming_the_setup_step() {
        record("x", f64::NAN, "us", "floor", 1.0);
    }

    #[test]
    #[should_panic(expected = "non-finite")]
    fn a_zero_peer_is_refused() {
        figure_json("x", 1.0, "us", "floor", 0.0, None);
    }

    #[test]
    fn a_goal_lives_beside_the_peer() {
        let rec = figure_json(
            "push",
            600_000.0,
            "msg/s",
            "pynng",
            40_000.0,
            Some(Goal::value_at_least(500_000.0)),
        );
        assert_eq!(rec["peer"], "pynng");
        assert_eq!(rec["peer_value"], 40_000.0);
        assert_eq!(rec["ratio"], 15.0);
        assert_eq!(
            rec["goal"],
            serde_json::json!({"of": "value", "cmp": ">=", "target": 500_000.0, "met": true})
        );
        let rec = figure_json(
            "rt",
            3.0,
            "us",
            "floor",
            1.0,
            Some(Goal::ratio_at_most(1.5)),
        );
        assert_eq!(rec["goal"]["met"], false);
    }

    #[test]
    fn a_failing_peer_names_the_setup_step() {
        let r = std::panic::catch_unwind(|| run_peer("false", &mut Command::new("false")));
        let msg = *r.unwrap_err().downcast::<String>().unwrap();
        assert!(msg.contains("false is missing or failed"), "{msg}");
        assert!(msg.contains("cargo xtask setup"), "{msg}");
        let r = std::panic::catch_unwind(|| {
            run_peer("nothing", &mut Command::new("surely-no-such-program-here"))
        });
        assert!(r.is_err());
    }
}
