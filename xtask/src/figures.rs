//! `cargo xtask figures [--check]`: the README's figures and the run table of
//! docs/benchmarks.md, generated from the committed run `docs/bench/latest.jsonl`.
//!
//! Each document holds one generated section between [`BEGIN`] and [`END`]; everything else in
//! it is left alone. `--check` (run by `cargo xtask lint`) fails when a section differs from what
//! the committed run gives, so the documents and the run cannot disagree. Every README line names
//! the record it shows (its `name` and `peer`) and the run it comes from; R's figures are cited
//! as anchors with their source, never as this run's.

use std::fs;
use std::path::Path;

use serde_json::Value;

use crate::Result;
use crate::bench::report::{self, Parsed, Record};

/// The committed run, relative to the workspace root.
pub(crate) const RUN: &str = "docs/bench/latest.jsonl";
/// Where the generated section of a document starts.
pub(crate) const BEGIN: &str = "<!-- figures:begin -->";
/// Where it ends.
pub(crate) const END: &str = "<!-- figures:end -->";

/// The records the README shows, as (name, peer), in this order.
const README_FIGURES: &[(&str, &str)] = &[
    ("mori share() 200 MB f64", "memcpy 200 MB into fresh memory"),
    (
        "mori first attach 1 KB (fresh process)",
        "open+fstat of the same file",
    ),
    (
        "8 readers of one 200 MB region: summed PSS/size",
        "8 readers of private copies",
    ),
    (
        "nano-transport REQ/REP 64 B p50 ipc (one CPU)",
        "uds ping-pong floor p50",
    ),
    ("pynng REQ/REP 64 B p50 ipc (one CPU)", "nano-transport ipc"),
    (
        "nano-transport PUSH/PULL 64 B ipc",
        "pynng PUSH/PULL 64 B ipc",
    ),
    ("nano-transport PUSH/PULL 1 MiB ipc", "memcpy floor"),
    ("pynng PUSH/PULL 1 MiB ipc", "nano-transport ipc"),
    (
        "dispatch task round trip p50, 1 daemon (one CPU)",
        "uds ping-pong 64 B p50 (floor, one CPU)",
    ),
    (
        "dispatch task round trip p50, 1 daemon (one CPU)",
        "ProcessPoolExecutor p50, 1 worker (one CPU)",
    ),
    (
        "dispatch 20000 trivial tasks, 2 daemons",
        "ProcessPoolExecutor, 2 workers",
    ),
    ("dispatch try_submit when full", "mutex lock floor"),
    (
        "dispatch runaway 10 MB producer, peak RSS over baseline",
        "peak queued task bytes (dispatcher's count)",
    ),
    (
        "mirai submit+wait 64 B p50 (1 daemon)",
        "ProcessPoolExecutor(1) p50",
    ),
    (
        "share_f64 200 MB view, 8 tasks/2 daemons: daemons' PSS/size",
        "same tasks, Vec<f64> by value: PSS/size",
    ),
    (
        "large_payload/bytes mirai::Bytes/round trip 200 MB",
        "memcpy 200 MB into fresh memory",
    ),
    (
        "large_payload/f64 mirai::Array/round trip 200 MB",
        "memcpy 200 MB into fresh memory",
    ),
    (
        "large_payload/f64 Vec<f64>/round trip 200 MB",
        "memcpy 200 MB into fresh memory",
    ),
    (
        "large_payload/f64 mirai::Array/daemon peak, argument in + result out",
        "one copy of the payload, measured on the daemon",
    ),
    (
        "large_payload/f64 Vec<f64>/daemon peak, argument in + result out",
        "one copy of the payload, measured on the daemon",
    ),
    (
        "region_results/result 200 MB written in place in a region",
        "the same through the socket",
    ),
    (
        "region_results/held result 200 MB as a region",
        "the same through the socket",
    ),
    (
        "frames/attach + typed view, 100 columns x 10 rows (fresh process)",
        "bare first attach of the same region",
    ),
];

/// R's figures: anchors measured elsewhere, cited with their source, never taken as this run's.
const R_ANCHORS: &[(&str, &str)] = &[
    (
        "R mirai 2.7, trivial task round trip p50, 1 local daemon",
        "380-392 µs with the dispatcher (p99 about 700), 173-192 µs without",
    ),
    (
        "R mirai 2.7, 20,000 trivial tasks on 2 workers",
        "3,810 tasks/s (7,058 without the dispatcher)",
    ),
    (
        "R mirai 2.7, a 200 MB argument through one task and back",
        "0.54-1.39 s; host peak +1.02x the payload, daemon +2x",
    ),
    ("R mori 0.2, share() of 200 MB of doubles", "137-179 ms"),
    (
        "R mori 0.2, first attach by name in another process",
        "34-66 µs (200 MB vector); repeat attaches 12-19 µs",
    ),
    (
        "R mori 0.2, 2 daemons reading one 200 MB vector, summed PSS",
        "247 MiB shared, 505 MiB unshared",
    ),
];

const R_SOURCE: &str = "the project's anchor measurements (November 2026, a quiet 2-vCPU virtual \
machine like the development machines; R mirai 2.7, mori 0.2). They cannot be re-run here: R \
packages are not installable from the registries these machines reach. Compare them with the \
figures above only through the ratios to floors measured in each setting.";

/// The documents that hold a generated section, relative to the workspace root.
pub(crate) const DOCS: [&str; 2] = ["README.md", "docs/benchmarks.md"];

/// Writes (or with `check`, verifies) the generated sections of the README and
/// docs/benchmarks.md from the committed run.
pub(crate) fn figures(root: &Path, check: bool) -> Result {
    let read = |rel: &str| {
        let path = root.join(rel);
        fs::read_to_string(&path).map_err(|e| format!("{}: {e}", path.display()))
    };
    let run = read(RUN)?;
    let docs = DOCS
        .iter()
        .map(|d| Ok((*d, read(d)?)))
        .collect::<Result<Vec<_>>>()?;
    let stale = regenerate(&run, &docs)?;
    if stale.is_empty() {
        return Ok(());
    }
    if check {
        let names: Vec<&str> = stale.iter().map(|(d, _)| *d).collect();
        return Err(stale_message(&names));
    }
    for (doc, new) in stale {
        let path = root.join(doc);
        fs::write(&path, new).map_err(|e| format!("{}: {e}", path.display()))?;
        eprintln!("xtask: rewrote the figures of {doc} from {RUN}");
    }
    Ok(())
}

fn stale_message(docs: &[&str]) -> String {
    format!(
        "the figures of {} do not match {RUN}: run `cargo xtask figures` (never edit the \
         section between `{BEGIN}` and `{END}` by hand)",
        docs.join(" and ")
    )
}

/// Given the committed run's text and each document's (name, text), the documents whose
/// generated section differs from what the run gives, with their new text.
pub(crate) fn regenerate<'a>(
    run: &str,
    docs: &[(&'a str, String)],
) -> Result<Vec<(&'a str, String)>> {
    let parsed = load(run).map_err(|e| format!("{RUN}: {e}"))?;
    let mut stale = Vec::new();
    for (doc, old) in docs {
        let section = if *doc == "README.md" {
            readme_section(&parsed)
        } else {
            run_table(&parsed)
        };
        let new = replace_section(old, &section).map_err(|e| format!("{doc}: {e}"))?;
        if new != *old {
            stale.push((*doc, new));
        }
    }
    Ok(stale)
}

/// Parses a committed run, refusing what cannot be traced: a figure before any run header, a
/// figure without a finite value, peer value or ratio, a line that is not a JSON object.
pub(crate) fn load(text: &str) -> std::result::Result<Parsed, String> {
    let parsed = report::parse(text);
    if parsed.skipped > 0 {
        return Err(format!("{} line(s) are not JSON objects", parsed.skipped));
    }
    if parsed.rows.is_empty() {
        return Err("no figures".to_owned());
    }
    for r in &parsed.rows {
        if r.run.is_none() {
            return Err(format!(
                "figure {:?} comes before any run header (`{{\"run\": ..}}`)",
                r.name
            ));
        }
        if r.value.is_none() || r.peer_value.is_none() || r.ratio.is_none() {
            return Err(format!(
                "figure {:?} vs {:?} lacks a finite value, peer value or ratio",
                r.name, r.peer
            ));
        }
    }
    Ok(parsed)
}

/// Replaces what lies between the one [`BEGIN`] and the one [`END`] marker of `doc` with
/// `section`.
pub(crate) fn replace_section(doc: &str, section: &str) -> std::result::Result<String, String> {
    let (Some(begin), Some(end)) = (doc.find(BEGIN), doc.find(END)) else {
        return Err(format!("no `{BEGIN}` ... `{END}` section"));
    };
    if doc.matches(BEGIN).count() != 1 || doc.matches(END).count() != 1 || end < begin {
        return Err(format!("needs exactly one `{BEGIN}` before one `{END}`"));
    }
    Ok(format!(
        "{}{BEGIN}\n{section}{}",
        &doc[..begin],
        &doc[end..]
    ))
}

/// A number as the documents show it: about three significant digits, thousands separated.
pub(crate) fn num(x: f64) -> String {
    let a = x.abs();
    if a == 0.0 {
        return "0".to_owned();
    }
    if a < 1e-3 {
        return format!("{x:.2e}");
    }
    if a >= 1_000.0 {
        let digits = format!("{:.0}", a);
        let mut out = String::new();
        for (i, c) in digits.chars().enumerate() {
            if i > 0 && (digits.len() - i) % 3 == 0 {
                out.push(',');
            }
            out.push(c);
        }
        return if x < 0.0 { format!("-{out}") } else { out };
    }
    let decimals = (2 - a.log10().floor() as i32).max(0) as usize;
    format!("{x:.decimals$}")
}

/// `rev` shortened, with `(dirty)` when the tree had changes.
fn commit_text(commit: &Value) -> String {
    let rev = commit["rev"].as_str().unwrap_or("unknown");
    let short = rev.get(..12).unwrap_or(rev);
    match commit["dirty"].as_bool() {
        Some(true) => format!("commit `{short}` with uncommitted changes"),
        Some(false) => format!("commit `{short}`"),
        None => format!("commit `{short}`"),
    }
}

/// A civil date (UTC) of a Unix time, `YYYY-MM-DD HH:MM UTC`.
fn utc(secs: u64) -> String {
    let days = (secs / 86_400) as i64;
    let (h, m) = ((secs % 86_400) / 3_600, (secs % 3_600) / 60);
    // Howard Hinnant's days-to-civil.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let mo = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(mo <= 2);
    format!("{y:04}-{mo:02}-{d:02} {h:02}:{m:02} UTC")
}

/// One line describing run `i` (1-based) of the file.
pub(crate) fn run_text(i: usize, run: &Value) -> String {
    let mut parts = vec![commit_text(&run["commit"])];
    if let Some(p) = run["provenance"].as_str() {
        parts.insert(0, p.to_owned());
    }
    let machine = &run["machine"];
    if machine.is_object() {
        if let Some(c) = machine["cores"].as_u64() {
            parts.push(format!("{c} cores"));
        }
        if let Some(model) = machine["cpu_model"].as_str() {
            parts.push(model.to_owned());
        }
        if let Some(k) = machine["kernel"].as_str() {
            parts.push(format!("Linux {k}"));
        }
        if let Some(load) = machine["loadavg_start"].as_array() {
            let load: Vec<String> = load.iter().filter_map(Value::as_f64).map(num).collect();
            parts.push(format!("load average {} at the start", load.join(" / ")));
        }
    } else {
        parts.push("machine not recorded".to_owned());
    }
    if let Some(t) = run["started_unix"].as_u64() {
        parts.push(format!("started {}", utc(t)));
    }
    format!("run {i}: {}", parts.join(", "))
}

fn joined(xs: impl Iterator<Item = String>) -> String {
    xs.collect::<Vec<_>>().join(" / ")
}

/// The README line of one (name, peer): every matching record, run by run.
pub(crate) fn figure_line(rows: &[&Record], name: &str, peer: &str) -> String {
    if rows.is_empty() {
        return format!("- `{name}` vs `{peer}`: not in the committed run\n");
    }
    let unit = &rows[0].unit;
    let values = joined(rows.iter().map(|r| num(r.value.unwrap_or(f64::NAN))));
    let peers = joined(rows.iter().map(|r| num(r.peer_value.unwrap_or(f64::NAN))));
    let ratios = joined(rows.iter().map(|r| num(r.ratio.unwrap_or(f64::NAN))));
    let runs: Vec<String> = rows
        .iter()
        .map(|r| (r.run.unwrap_or(0) + 1).to_string())
        .collect();
    let runs = runs.join(", ");
    let goal = rows[0].goal.as_ref().map_or_else(String::new, |g| {
        let mets = joined(rows.iter().map(
            |r| match r.goal.as_ref().and_then(|g| g["met"].as_bool()) {
                Some(true) => "met".to_owned(),
                Some(false) => "not met".to_owned(),
                None => "?".to_owned(),
            },
        ));
        let target = g["target"].as_f64().map_or_else(|| "?".to_owned(), num);
        format!(
            "; goal {} {} {target}: {mets}",
            g["of"].as_str().unwrap_or("?"),
            g["cmp"].as_str().unwrap_or("?")
        )
    });
    let plural = if rows.len() > 1 { "runs" } else { "run" };
    format!(
        "- `{name}`: **{values} {unit}**, ratio **{ratios}** to `{peer}` ({peers} {unit}){goal} \
         ({plural} {runs})\n"
    )
}

/// The README's generated section.
pub(crate) fn readme_section(parsed: &Parsed) -> String {
    let mut out = format!(
        "Generated by `cargo xtask figures` from the committed run [{RUN}]({RUN}); `cargo xtask \
         lint` fails when this section and that file disagree. Each line is one record of the \
         file, by its `name` and `peer`: its value, its ratio to the peer (a floor or peer \
         measured in the same run) and its goal where it has one, over every run of the file \
         that holds it. A record *not in the committed run* is measured by a full run, \
         `cargo xtask bench --json {RUN}`.\n\n"
    );
    for (i, run) in parsed.runs.iter().enumerate() {
        out.push_str(&format!("- {}\n", run_text(i + 1, run)));
    }
    out.push('\n');
    for (name, peer) in README_FIGURES {
        let rows: Vec<&Record> = parsed
            .rows
            .iter()
            .filter(|r| r.name == *name && r.peer == *peer)
            .collect();
        out.push_str(&figure_line(&rows, name, peer));
    }
    out.push_str("\nR's figures, for scale (not measured by this run; source: ");
    out.push_str(R_SOURCE);
    out.push_str(")\n\n");
    for (what, figure) in R_ANCHORS {
        out.push_str(&format!("- {what}: {figure}\n"));
    }
    out
}

/// docs/benchmarks.md's generated section: every record of the committed run.
pub(crate) fn run_table(parsed: &Parsed) -> String {
    let mut out = format!(
        "Generated by `cargo xtask figures` from [{RUN}](bench/latest.jsonl), every record in \
         file order (`cargo xtask lint` fails when this table and that file disagree):\n\n"
    );
    for (i, run) in parsed.runs.iter().enumerate() {
        out.push_str(&format!("- {}\n", run_text(i + 1, run)));
    }
    out.push_str(
        "\n| run | record | value | unit | peer, same run | peer value | ratio | goal |\n\
         |---|---|---|---|---|---|---|---|\n",
    );
    for r in &parsed.rows {
        let cell = |x: Option<f64>| x.map_or_else(|| "-".to_owned(), num);
        let goal = r.goal.as_ref().map(report::goal_text).unwrap_or_default();
        out.push_str(&format!(
            "| {} | `{}` | {} | {} | `{}` | {} | {} | {} |\n",
            r.run.map_or(0, |i| i + 1),
            r.name.replace('|', "\\|"),
            cell(r.value),
            r.unit,
            r.peer.replace('|', "\\|"),
            cell(r.peer_value),
            cell(r.ratio),
            goal
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const RUN_TEXT: &str = r#"{"run":{"machine":{"cores":2,"kernel":"6.1.0","loadavg_start":[0.5,1.0,1.5],"cpu_model":"Some CPU"},"commit":{"rev":"0123456789abcdef0123456789abcdef01234567","dirty":false},"started_unix":1796000000,"command":"cargo xtask bench"}}
{"name":"mori share() 200 MB f64","value":55.5,"unit":"ms","peer":"memcpy 200 MB into fresh memory","peer_value":116.5,"ratio":0.476}
{"run":{"provenance":"converted from old records","commit":{"rev":"fedcba9876543210fedcba9876543210fedcba98","dirty":null},"machine":null}}
{"name":"mori share() 200 MB f64","value":60.0,"unit":"ms","peer":"memcpy 200 MB into fresh memory","peer_value":120.0,"ratio":0.5}
{"name":"dispatch try_submit when full","value":45.0,"unit":"ns","peer":"mutex lock floor","peer_value":11.0,"ratio":4.09,"goal":{"of":"value","cmp":"<=","target":2000.0,"met":true}}
"#;

    #[test]
    fn numbers_read_well() {
        assert_eq!(num(1_080_000.4), "1,080,000");
        assert_eq!(num(1234.0), "1,234");
        assert_eq!(num(55.53), "55.5");
        assert_eq!(num(4.712), "4.71");
        assert_eq!(num(0.808114), "0.808");
        assert_eq!(num(0.00473), "0.00473");
        assert_eq!(num(1.05e-7), "1.05e-7");
        assert_eq!(num(0.0), "0");
        assert_eq!(num(-2500.0), "-2,500");
    }

    #[test]
    fn dates_are_utc() {
        assert_eq!(utc(0), "1970-01-01 00:00 UTC");
        assert_eq!(utc(951_782_400), "2000-02-29 00:00 UTC");
        assert_eq!(utc(1_796_000_000), "2026-11-30 00:53 UTC");
    }

    #[test]
    fn every_readme_line_names_its_record_and_run() {
        let parsed = load(RUN_TEXT).unwrap();
        let section = readme_section(&parsed);
        assert!(section.contains(
            "- run 1: commit `0123456789ab`, 2 cores, Some CPU, Linux 6.1.0, load average \
             0.500 / 1.00 / 1.50 at the start, started 2026-11-30 00:53 UTC\n"
        ));
        assert!(section.contains(
            "- run 2: converted from old records, commit `fedcba987654`, machine not recorded\n"
        ));
        assert!(section.contains(
            "- `mori share() 200 MB f64`: **55.5 / 60.0 ms**, ratio **0.476 / 0.500** to \
             `memcpy 200 MB into fresh memory` (116 / 120 ms) (runs 1, 2)\n"
        ));
        assert!(section.contains(
            "- `dispatch try_submit when full`: **45.0 ns**, ratio **4.09** to `mutex lock \
             floor` (11.0 ns); goal value <= 2,000: met (run 2)\n"
        ));
        assert!(section.contains(
            "- `nano-transport PUSH/PULL 64 B ipc` vs `pynng PUSH/PULL 64 B ipc`: not in the \
             committed run"
        ));
        // R's figures are cited as anchors, after the run's, with their source.
        let r_at = section
            .find("R's figures, for scale (not measured by this run")
            .unwrap();
        assert!(section[r_at..].contains("137-179 ms"));
        assert!(!section[..r_at].contains("137-179"));
    }

    #[test]
    fn the_run_table_has_every_record() {
        let parsed = load(RUN_TEXT).unwrap();
        let table = run_table(&parsed);
        let rows: Vec<&str> = table.lines().filter(|l| l.starts_with("| ")).collect();
        assert_eq!(rows.len(), 1 + 3, "header and one row per record");
        assert_eq!(
            rows[3],
            "| 2 | `dispatch try_submit when full` | 45.0 | ns | `mutex lock floor` | 11.0 | \
             4.09 | value <= 2000: met |"
        );
    }

    #[test]
    fn untraceable_runs_are_refused() {
        let no_header =
            "{\"name\":\"a\",\"value\":1,\"unit\":\"x\",\"peer\":\"p\",\"peer_value\":1}";
        assert!(
            load(no_header)
                .unwrap_err()
                .contains("before any run header")
        );
        let nan = "{\"run\":{}}\n{\"name\":\"a\",\"value\":null,\"peer\":\"p\",\"peer_value\":1}";
        assert!(load(nan).unwrap_err().contains("finite"));
        assert!(
            load("{\"run\":{}}\nnot json")
                .unwrap_err()
                .contains("not JSON")
        );
        assert!(load("{\"run\":{}}\n").unwrap_err().contains("no figures"));
    }

    #[test]
    fn the_section_between_the_markers_is_replaced_and_nothing_else() {
        let doc = format!("# T\n\nintro\n{BEGIN}\nold\nlines\n{END}\nafter\n");
        let new = replace_section(&doc, "new\n").unwrap();
        assert_eq!(new, format!("# T\n\nintro\n{BEGIN}\nnew\n{END}\nafter\n"));
        assert_eq!(replace_section(&new, "new\n").unwrap(), new, "idempotent");
        assert!(replace_section("no markers", "x").is_err());
        assert!(replace_section(&format!("{END}\n{BEGIN}\n"), "x").is_err());
        assert!(replace_section(&format!("{BEGIN}{BEGIN}{END}"), "x").is_err());
    }

    #[test]
    fn a_document_that_disagrees_with_the_run_is_stale_until_regenerated() {
        let readme = format!("# R\n{BEGIN}\n- share() 40 ms (typed by hand)\n{END}\n");
        let bench = format!("intro\n{BEGIN}\n{END}\nrest\n");
        let docs = vec![("README.md", readme), ("docs/benchmarks.md", bench)];
        let stale = regenerate(RUN_TEXT, &docs).unwrap();
        assert_eq!(stale.len(), 2);
        assert!(stale_message(&["README.md"]).contains("run `cargo xtask figures`"));
        let (_, readme) = &stale[0];
        assert!(!readme.contains("typed by hand"));
        assert!(readme.contains("**55.5 / 60.0 ms**"));
        let (_, bench) = &stale[1];
        assert!(bench.starts_with("intro\n") && bench.ends_with(&format!("{END}\nrest\n")));
        assert!(bench.contains("| 1 | `mori share() 200 MB f64` | 55.5 |"));
        // Once written, the documents match the run.
        let written: Vec<(&str, String)> = stale.into_iter().collect();
        assert!(regenerate(RUN_TEXT, &written).unwrap().is_empty());
        // A changed run makes them stale again; a broken run is an error, not a pass.
        let changed = RUN_TEXT.replace("55.5", "56.5");
        assert_eq!(regenerate(&changed, &written).unwrap().len(), 2);
        assert!(regenerate("not json", &written).is_err());
    }

    #[test]
    fn the_committed_run_and_the_documents_agree() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
        figures(root, true).unwrap();
    }
}
