//! The pool's secrets stay secret with local daemons: `Debug` never prints them, a short token is
//! refused, the default listener's name cannot be guessed, and a local daemon's credential is on
//! no command line, in no environment, and reaches no process a task starts. This binary is its
//! own daemon program (`main` first calls `daemon_main_if_requested`).

mod common;
mod launch_support;

use std::time::Duration;

use launch_support::{EXPOSURE, RUN_SELF, registry};
use mirai::launch::Join;
use mirai::{Daemons, Error};

const PATIENCE: Duration = Duration::from_secs(30);

/// A token of our own, so the test knows every byte it must not see.
const TOKEN: &str = "not-to-be-printed-0123456789";

fn debug_of_pool_daemons_and_join_shows_no_token() {
    let daemons = Daemons::new().token(TOKEN).local(1);
    let shown = format!("{daemons:?}");
    assert!(!shown.contains(TOKEN), "{shown}");
    let pool = daemons.start().unwrap();
    let join = pool.join();
    let credentials: Vec<String> = (0..4)
        .map(|id| join.credential(id).expose_str().unwrap().to_owned())
        .collect();
    for shown in [
        format!("{pool:?}"),
        format!("{pool:#?}"),
        format!("{join:?}"),
        format!("{:?}", join.credential(1)),
        format!("{:?}", Join::new("tcp://h:1", TOKEN)),
    ] {
        assert!(!shown.contains(TOKEN), "{shown}");
        for c in &credentials {
            assert!(!shown.contains(c.as_str()), "{shown}");
        }
    }
    // And a generated token, which the caller never chose.
    let pool = Daemons::new().start().unwrap();
    assert!(!format!("{pool:?}").contains(pool.token()));
}

fn a_token_shorter_than_16_bytes_is_refused_at_start() {
    match Daemons::new().token("0123456789abcde").start() {
        Err(Error::WeakToken { len: 15 }) => {}
        other => panic!("{other:?}"),
    }
    assert!(matches!(
        Daemons::new().token("").start(),
        Err(Error::WeakToken { len: 0 })
    ));
    let pool = Daemons::new().token("0123456789abcdef").start().unwrap();
    assert_eq!(pool.token(), "0123456789abcdef");
}

fn the_default_listener_name_holds_128_random_bits() {
    let names: Vec<String> = (0..3)
        .map(|_| Daemons::new().start().unwrap().url().to_owned())
        .collect();
    for name in &names {
        let random = name.strip_prefix("abstract://mirai-").expect(name);
        assert_eq!(random.len(), 32, "{name}");
        assert!(random.bytes().all(|b| b.is_ascii_hexdigit()), "{name}");
        assert!(
            !name.contains(&format!("-{}-", std::process::id())),
            "{name}"
        );
    }
    assert!(names[0] != names[1] && names[1] != names[2] && names[0] != names[2]);
}

fn local_daemons_keep_their_credentials_off_command_lines_and_out_of_task_children() {
    let pool = Daemons::new().token(TOKEN).local(2).start().unwrap();
    let join = pool.join();
    let credentials: Vec<String> = (0..2)
        .map(|id| join.credential(id).expose_str().unwrap().to_owned())
        .collect();
    let reports = pool.everywhere(&EXPOSURE, (), 2).unwrap();
    assert_eq!(reports.len(), 2);
    for mut report in reports {
        let exposure = report.wait_timeout(PATIENCE).unwrap();
        assert!(pool.local_pids().contains(&exposure.pid));
        exposure.assert_hides(&[TOKEN, &credentials[0], &credentials[1]]);
    }
}

fn a_task_child_that_is_this_program_does_not_become_a_daemon() {
    let pool = Daemons::new().local(1).start().unwrap();
    // `--list` makes this program list its tests and exit; a daemon would serve instead.
    let ran = pool
        .submit(&RUN_SELF, vec!["--list".to_owned()])
        .unwrap()
        .wait_timeout(PATIENCE)
        .unwrap();
    let (code, stderr) = ran.expect("the task's child, this same program, ran on as a daemon");
    assert_eq!(code, Some(0), "{stderr}");
    assert_eq!(pool.status().connections, 1, "no second daemon joined");
}

fn main() {
    mirai::daemon_main_if_requested(&registry());
    use common::Test;
    common::run(&[
        Test::new(
            "debug_of_pool_daemons_and_join_shows_no_token",
            debug_of_pool_daemons_and_join_shows_no_token,
        ),
        Test::new(
            "a_token_shorter_than_16_bytes_is_refused_at_start",
            a_token_shorter_than_16_bytes_is_refused_at_start,
        ),
        Test::new(
            "the_default_listener_name_holds_128_random_bits",
            the_default_listener_name_holds_128_random_bits,
        ),
        Test::new(
            "local_daemons_keep_their_credentials_off_command_lines_and_out_of_task_children",
            local_daemons_keep_their_credentials_off_command_lines_and_out_of_task_children,
        ),
        Test::new(
            "a_task_child_that_is_this_program_does_not_become_a_daemon",
            a_task_child_that_is_this_program_does_not_become_a_daemon,
        ),
    ]);
}
