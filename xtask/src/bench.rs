//! `cargo xtask bench [--json FILE]`: runs every benchmark, prints the table and writes the run
//! as JSON lines.
//!
//! The JSON file of a run is one header line, `{"run": {...}}`, then one line per figure. The
//! header says where the figures come from, once per run:
//!
//! - `machine`: `cores` (CPUs this process may use), `kernel` (release), `loadavg_start` (1, 5
//!   and 15 minutes, once the benches are built and before the first one runs), `cpu_model` (when `/proc/cpuinfo` names one);
//! - `commit`: `rev` (`git rev-parse HEAD`) and `dirty` (tracked files changed);
//! - `started_unix` (seconds) and `command`.
//!
//! A figure is `{name, value, unit, peer, peer_value, ratio}` with an optional
//! `goal: {of, cmp, target, met}`, as `mirai_benches::record` writes it. A file may hold several
//! runs (each header applies to the figures after it until the next), and a header may carry a
//! `provenance` string instead of a machine when its figures were converted from older records.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

use crate::{Result, cargo, root, run, setup};

pub(crate) fn bench(json_out: Option<PathBuf>) -> Result {
    let peers = setup()?;
    // Build first, so the header's load average is the machine's as the measurements start.
    run(cargo().args(["bench", "--workspace", "--no-run"]))?;
    let header = run_header(&root());
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
    let parsed = report::parse(&text);
    println!("\n{}", report::table(&parsed.rows));
    if parsed.skipped > 0 {
        eprintln!(
            "xtask: {} record line(s) were not valid JSON objects and were skipped",
            parsed.skipped
        );
    }
    for missing in report::missing_figures(&parsed.rows) {
        eprintln!("xtask: no figure for {missing}");
    }
    if let Some(path) = json_out {
        let lines = report::json_lines(&header, &parsed.rows);
        fs::write(&path, lines).map_err(|e| format!("{}: {e}", path.display()))?;
        println!(
            "{} records written to {}",
            parsed.rows.len(),
            path.display()
        );
    }
    ran
}

/// The header of a run: the machine and the commit, read now (at the start of the run).
pub(crate) fn run_header(repo: &Path) -> Value {
    let read = |p: &str| fs::read_to_string(p).ok();
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    let kernel = read("/proc/sys/kernel/osrelease").map(|s| s.trim().to_owned());
    let loadavg = read("/proc/loadavg").map(|s| parse_loadavg(&s));
    let cpu_model = read("/proc/cpuinfo").and_then(|s| parse_cpu_model(&s));
    let git = |args: &[&str]| {
        Command::new("git")
            .current_dir(repo)
            .args(args)
            .output()
            .ok()
            .filter(|o| o.status.success())
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
    };
    let rev = git(&["rev-parse", "HEAD"]);
    let dirty = git(&["status", "--porcelain", "--untracked-files=no"]).map(|s| !s.is_empty());
    let started = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    serde_json::json!({"run": {
        "machine": {
            "cores": cores,
            "kernel": kernel,
            "loadavg_start": loadavg,
            "cpu_model": cpu_model,
        },
        "commit": {"rev": rev, "dirty": dirty},
        "started_unix": started,
        "command": "cargo xtask bench",
    }})
}

/// The 1, 5 and 15 minute load averages of a `/proc/loadavg` line.
fn parse_loadavg(text: &str) -> Vec<f64> {
    text.split_whitespace()
        .take(3)
        .filter_map(|x| x.parse().ok())
        .collect()
}

/// The first `model name` of `/proc/cpuinfo` (absent on some architectures).
fn parse_cpu_model(text: &str) -> Option<String> {
    text.lines().find_map(|l| {
        let (key, value) = l.split_once(':')?;
        (key.trim() == "model name").then(|| value.trim().to_owned())
    })
}

/// Benchmark records: parsing the JSON lines the bench binaries append, the table, the JSON file.
pub(crate) mod report {
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
        /// The goal object as recorded (`{of, cmp, target, met}`), if any.
        pub(crate) goal: Option<Value>,
        /// Which run header (index into [`Parsed::runs`]) the record follows, if any.
        pub(crate) run: Option<usize>,
    }

    /// A file of records: its run headers (the `run` objects), its figures, and how many lines
    /// were not JSON objects.
    #[derive(Debug, Default)]
    pub(crate) struct Parsed {
        pub(crate) runs: Vec<Value>,
        pub(crate) rows: Vec<Record>,
        pub(crate) skipped: usize,
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

    fn record(map: &Map<String, Value>, run: Option<usize>) -> Record {
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
            goal: map.get("goal").filter(|g| g.is_object()).cloned(),
            run,
        }
    }

    /// Parses JSON lines (blank lines ignored): `{"run": ..}` headers and figures. A JSON array
    /// of records is accepted too.
    pub(crate) fn parse(text: &str) -> Parsed {
        let mut out = Parsed::default();
        for line in text.lines().map(str::trim).filter(|l| !l.is_empty()) {
            let run = out.runs.len().checked_sub(1);
            match serde_json::from_str::<Value>(line) {
                Ok(Value::Object(map)) => match map.get("run") {
                    Some(header) if header.is_object() => out.runs.push(header.clone()),
                    _ => out.rows.push(record(&map, run)),
                },
                Ok(Value::Array(items)) => {
                    for item in items {
                        match item {
                            Value::Object(map) => out.rows.push(record(&map, run)),
                            _ => out.skipped += 1,
                        }
                    }
                }
                _ => out.skipped += 1,
            }
        }
        out
    }

    fn cell(x: Option<f64>) -> String {
        x.map_or_else(|| "-".to_owned(), |x| format!("{x:.3}"))
    }

    /// `of cmp target: met` of a goal object, e.g. `ratio <= 1.5: met`.
    pub(crate) fn goal_text(goal: &Value) -> String {
        let met = match goal.get("met") {
            Some(Value::Bool(true)) => "met",
            Some(Value::Bool(false)) => "not met",
            _ => "?",
        };
        format!(
            "{} {} {}: {met}",
            text(goal.get("of").unwrap_or(&Value::Null)),
            text(goal.get("cmp").unwrap_or(&Value::Null)),
            goal.get("target")
                .and_then(number)
                .map_or_else(|| "?".to_owned(), |t| t.to_string())
        )
    }

    /// The table `cargo xtask bench` prints.
    pub(crate) fn table(rows: &[Record]) -> String {
        let mut out = format!(
            "{:<52} {:>14} {:<6}  {:<34} {:>14} {:>8}  {}\n",
            "benchmark", "value", "unit", "vs floor or peer", "its value", "ratio", "goal"
        );
        if rows.is_empty() {
            out.push_str("(no benchmark records)\n");
        }
        for r in rows {
            let ratio = r
                .ratio
                .map_or_else(|| "-".to_owned(), |x| format!("{x:.2}"));
            let goal = r.goal.as_ref().map(goal_text).unwrap_or_default();
            out.push_str(&format!(
                "{:<52} {:>14} {:<6}  {:<34} {:>14} {:>8}  {goal}\n",
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

    /// One record as JSON, `null` for a number that is missing or not finite.
    fn record_json(r: &Record) -> Value {
        let mut v = serde_json::json!({
            "name": r.name, "value": r.value, "unit": r.unit,
            "peer": r.peer, "peer_value": r.peer_value, "ratio": r.ratio,
        });
        if let Some(g) = &r.goal {
            v["goal"] = g.clone();
        }
        v
    }

    /// The JSON file of `--json`: the run's header line, then one line per record.
    pub(crate) fn json_lines(header: &Value, rows: &[Record]) -> String {
        let mut out = format!("{header}\n");
        for r in rows {
            out.push_str(&format!("{}\n", record_json(r)));
        }
        out
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
            let parsed = parse(text);
            assert_eq!(parsed.skipped, 3);
            let rows = parsed.rows;
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
            assert!(rows.iter().all(|r| r.run.is_none() && r.goal.is_none()));
        }

        #[test]
        fn headers_start_runs_and_goals_are_kept() {
            let parsed = parse(
                "{\"name\":\"before any header\",\"value\":1,\"peer_value\":1}\n\
                 {\"run\":{\"commit\":{\"rev\":\"abc\"}}}\n\
                 {\"name\":\"a\",\"value\":6,\"peer_value\":3,\"goal\":{\"of\":\"ratio\",\"cmp\":\"<=\",\"target\":1.5,\"met\":false}}\n\
                 {\"run\":{\"provenance\":\"old\"}}\n\
                 {\"name\":\"b\",\"value\":1,\"peer_value\":1}",
            );
            assert_eq!(parsed.runs.len(), 2);
            assert_eq!(parsed.runs[0]["commit"]["rev"], "abc");
            let runs: Vec<Option<usize>> = parsed.rows.iter().map(|r| r.run).collect();
            assert_eq!(runs, [None, Some(0), Some(1)]);
            let goal = parsed.rows[1].goal.as_ref().unwrap();
            assert_eq!(goal_text(goal), "ratio <= 1.5: not met");
        }

        #[test]
        fn the_table_shows_each_ratio_goal_and_dashes_for_gaps() {
            let parsed = parse(
                "{\"name\":\"rt\",\"value\":10.0,\"unit\":\"us\",\"peer\":\"uds\",\"peer_value\":5.0,\"goal\":{\"of\":\"value\",\"cmp\":\"<=\",\"target\":20,\"met\":true}}\n\
                 {\"name\":\"gap\",\"value\":null,\"unit\":\"us\",\"peer\":\"p\",\"peer_value\":5.0}",
            );
            let table = table(&parsed.rows);
            let lines: Vec<&str> = table.lines().collect();
            assert_eq!(lines.len(), 3);
            assert!(lines[0].contains("ratio"));
            assert!(lines[1].starts_with("rt ") && lines[1].contains(" 2.00 "));
            assert!(lines[1].trim_end().ends_with("value <= 20: met"));
            assert!(lines[2].contains(" - ") && lines[2].trim_end().ends_with('-'));
            assert!(super::table(&[]).contains("no benchmark records"));
        }

        #[test]
        fn json_lines_carry_the_header_then_every_field() {
            let parsed = parse(
                "{\"name\":\"rt\",\"value\":10.0,\"unit\":\"us\",\"peer\":\"uds\",\"peer_value\":4.0}\n\
                 {\"name\":\"g\",\"value\":1.0,\"unit\":\"x\",\"peer\":\"p\",\"peer_value\":1.0,\"goal\":{\"of\":\"value\",\"cmp\":\">=\",\"target\":2,\"met\":false}}",
            );
            let header = serde_json::json!({"run": {"commit": {"rev": "abc", "dirty": false}}});
            let text = json_lines(&header, &parsed.rows);
            let lines: Vec<Value> = text
                .lines()
                .map(|l| serde_json::from_str(l).unwrap())
                .collect();
            assert_eq!(lines[0], header);
            assert_eq!(
                lines[1],
                serde_json::json!({"name": "rt", "value": 10.0, "unit": "us",
                                    "peer": "uds", "peer_value": 4.0, "ratio": 2.5})
            );
            assert_eq!(lines[2]["goal"]["met"], false);
            let back = parse(&text);
            assert_eq!(back.runs.len(), 1);
            assert_eq!(back.rows.len(), 2);
            assert_eq!(json_lines(&header, &[]).lines().count(), 1);
        }

        #[test]
        fn missing_figures_are_named() {
            let parsed = parse(
                "{\"name\":\"uds ping-pong\",\"peer\":\"self\"}\n\
                 {\"name\":\"mirai round trip\",\"peer\":\"ProcessPoolExecutor\"}",
            );
            assert_eq!(
                missing_figures(&parsed.rows),
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_header_names_the_machine_and_the_commit() {
        let header = run_header(&root());
        let run = &header["run"];
        assert!(run["machine"]["cores"].as_u64().unwrap() >= 1);
        assert!(!run["machine"]["kernel"].as_str().unwrap().is_empty());
        assert_eq!(run["machine"]["loadavg_start"].as_array().unwrap().len(), 3);
        let rev = run["commit"]["rev"].as_str().unwrap();
        assert_eq!(rev.len(), 40, "{rev}");
        assert!(rev.bytes().all(|b| b.is_ascii_hexdigit()));
        assert!(run["commit"]["dirty"].is_boolean());
        assert!(run["started_unix"].as_u64().unwrap() > 0);
    }

    #[test]
    fn loadavg_and_cpu_model_parse() {
        assert_eq!(
            parse_loadavg("0.52 1.10 2.00 1/345 6789\n"),
            [0.52, 1.1, 2.0]
        );
        assert_eq!(
            parse_cpu_model("processor\t: 0\nmodel name\t: AMD EPYC 7B13\nflags\t: fpu\n")
                .as_deref(),
            Some("AMD EPYC 7B13")
        );
        assert_eq!(parse_cpu_model("processor\t: 0\n"), None);
    }
}
