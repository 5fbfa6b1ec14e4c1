//! The `mori` command, one test per subcommand, each run as a separate process.

mod common;

use common::{ChildGuard, TempJson, mori, region_file};
use mori_shm::Source;

#[test]
fn ls_lists_our_region_with_its_size_pid_and_status() {
    let shared = mori_shm::share_f64(&[1.0; 100]).unwrap();
    let (code, out, _) = mori(&["ls", "--json"]);
    assert_eq!(code, 0);
    let rows: Vec<serde_json::Value> = serde_json::from_str(&out).unwrap();
    let row = rows
        .iter()
        .find(|r| r["name"] == shared.name())
        .expect("our region is listed");
    assert_eq!(row["size"], 64 + 800);
    assert_eq!(row["pid"], std::process::id());
    assert_eq!(row["status"], "alive");

    let (code, table, _) = mori(&["ls"]);
    assert_eq!(code, 0);
    let line = table
        .lines()
        .find(|l| l.starts_with(shared.name()))
        .expect("our region in the table");
    let cols: Vec<&str> = line.split_whitespace().collect();
    assert_eq!(
        cols,
        [
            shared.name(),
            "864",
            &std::process::id().to_string(),
            "alive"
        ]
    );
}

#[test]
fn show_prints_the_type_tree_with_lengths() {
    let shared = mori_shm::share_list(vec![
        (None, Source::Double(&[1.0, 2.0])),
        (
            None,
            Source::List(vec![(None, Source::Strings(&["a", "b", "c"]))]),
        ),
    ])
    .unwrap();
    let (code, out, err) = mori(&["show", shared.name()]);
    assert_eq!(code, 0, "{err}");
    let lines: Vec<&str> = out.lines().map(str::trim_end).collect();
    assert_eq!(lines[0], format!("{}  list[2]", shared.name()));
    assert_eq!(lines[1], "  [1]  double[2]");
    assert_eq!(lines[2], "  [2]  list[1]");
    assert_eq!(lines[3], "    [1]  character[3]");
    let (code, out, _) = mori(&["show", &format!("{}[2,1]", shared.name())]);
    assert_eq!(code, 0);
    assert!(out.contains("character[3]"), "{out}");

    let df = mori_shm::share_data_frame(vec![
        ("x", Source::Double(&[1.0, 2.0])),
        ("label", Source::Strings(&["a", "b"])),
    ])
    .unwrap();
    let (code, out, err) = mori(&["show", df.name()]);
    assert_eq!(code, 0, "{err}");
    let lines: Vec<&str> = out.lines().map(str::trim_end).collect();
    assert!(
        lines[0].starts_with(&format!("{}  list[2]", df.name())),
        "{out}"
    );
    assert!(lines[0].contains("class=data.frame"), "{out}");
    assert_eq!(lines[1], "  [1] $x  double[2]");
    assert_eq!(lines[2], "  [2] $label  character[2]");
}

#[test]
fn cat_prints_values_as_json_and_fails_with_documented_codes() {
    let shared = mori_shm::share_list(vec![
        (None, Source::Integer(&[1, i32::MIN, 3])),
        (None, Source::OptStrings(&[Some("x"), None])),
        (None, Source::Logical(&[1, 0, i32::MIN])),
    ])
    .unwrap();
    let name = shared.name();
    let (code, out, _) = mori(&["cat", name]);
    assert_eq!(code, 0);
    let json: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(
        json,
        serde_json::json!([[1, null, 3], ["x", null], [true, false, null]])
    );
    let (code, out, _) = mori(&["cat", &format!("{name}[2]")]);
    assert_eq!((code, out.trim()), (0, r#"["x",null]"#));

    let (code, _, err) = mori(&["cat", &format!("{name}[9]")]);
    assert_eq!(code, 4, "{err}");
    assert!(err.contains("out of range"), "{err}");
    let (code, _, err) = mori(&["cat", "/mori_zz_1"]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("malformed"), "{err}");
    let (code, _, err) = mori(&["cat", "/mori_1_ffffffff"]);
    assert_eq!(code, 3, "{err}");
    assert!(err.contains("not found"), "{err}");
    let (code, _, _) = mori(&["cat"]);
    assert_eq!(code, 2, "a missing argument is a usage error");
}

#[test]
fn share_prints_a_name_another_process_can_cat_and_closing_stdin_unlinks() {
    let json = TempJson::new(
        "share",
        r#"{"x": [1.5, null], "names": ["a", "b"], "flag": [true]}"#,
    );
    let mut creator = ChildGuard::mori_share(&json.0);
    let name = creator.line();
    assert!(
        name.starts_with(&format!("/mori_{:x}_", creator.pid())),
        "{name}"
    );

    let (code, out, err) = mori(&["cat", &name]);
    assert_eq!(code, 0, "{err}");
    // Objects are named lists with the members in the file's order, printed back as objects.
    assert_eq!(
        out.trim(),
        r#"{"x":[1.5,null],"names":["a","b"],"flag":[true]}"#
    );

    let view = mori_shm::map_shared(&format!("{name}[1]")).unwrap();
    assert_eq!(
        view.as_f64().map(|x| x[0]),
        Some(1.5),
        "[1] is the file's first key"
    );

    creator.close_stdin();
    assert_eq!(creator.wait(), Some(0));
    assert!(!region_file(&name).exists(), "closing stdin unlinks");
}

#[test]
fn share_unlinks_on_sigterm() {
    let json = TempJson::new("sigterm", "[1, 2]");
    let mut creator = ChildGuard::mori_share(&json.0);
    let name = creator.line();
    assert!(region_file(&name).exists());
    let pid = rustix::process::Pid::from_raw(creator.pid() as i32).unwrap();
    rustix::process::kill_process(pid, rustix::process::Signal::TERM).unwrap();
    assert_eq!(creator.wait(), Some(0));
    assert!(!region_file(&name).exists(), "SIGTERM unlinks");
}

#[test]
fn share_rejects_bad_input_with_code_5() {
    let bad = TempJson::new("bad", "{not json");
    let (code, out, err) = mori(&["share", bad.0.to_str().unwrap()]);
    assert_eq!((code, out.as_str()), (5, ""), "{err}");
    let null = TempJson::new("null", "null");
    let (code, _, err) = mori(&["share", null.0.to_str().unwrap()]);
    assert_eq!(code, 5, "a NULL root cannot be shared: {err}");
    let (code, _, _) = mori(&["share", "/nonexistent/input.json"]);
    assert_eq!(code, 5);
}

#[test]
fn share_refuses_deep_or_huge_json_with_code_5_and_says_why() {
    let deep = TempJson::new("deep", &"[".repeat(1_000_000));
    let (code, out, err) = mori(&["share", deep.0.to_str().unwrap()]);
    assert_eq!((code, out.as_str()), (5, ""), "{err}");
    assert!(err.contains("nested more than 64 deep"), "{err}");

    let huge = TempJson::new("huge", "");
    let file = std::fs::File::create(&huge.0).unwrap();
    file.set_len(64 << 20 | 1).unwrap(); // a sparse file just past the limit
    let (code, out, err) = mori(&["share", huge.0.to_str().unwrap()]);
    assert_eq!((code, out.as_str()), (5, ""), "{err}");
    assert!(err.contains("more than 67108864 bytes of JSON"), "{err}");
}

#[test]
fn prune_removes_a_killed_creators_region_and_prints_its_name() {
    let json = TempJson::new("cliprune", "[4]");
    let mut killed = ChildGuard::mori_share(&json.0);
    let name = killed.line();
    killed.child.kill().unwrap();
    killed.wait();
    assert!(region_file(&name).exists());
    let (code, out, _) = mori(&["prune"]);
    assert_eq!(code, 0);
    assert!(!region_file(&name).exists());
    assert!(out.lines().any(|l| l == name), "{out}");
    assert!(out.lines().all(|l| l.starts_with("/mori_")), "{out}");
}

#[test]
fn the_suite_leaves_no_regions_behind() {
    common::assert_suite_leaves_no_regions("the_suite_leaves_no_regions_behind");
}
