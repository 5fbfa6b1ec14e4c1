//! What the core puts in a task's job for its context: the RNG stream fixed at submission and
//! the attempt number, across retries after a lost daemon.

mod util;

use mirai_dispatch::{Config, Outcome, Task, rng};
use util::Driver;

#[test]
fn a_retried_task_keeps_its_stream_and_counts_its_attempts() {
    let mut d = Driver::new(Config::default().with_send_ahead(None).with_seed(42));
    let first = d.connect();
    let plain = d.submit(1);
    let retried = d
        .core
        .submit(Task::new("f", vec![7]).with_retries(2), d.now)
        .unwrap();
    let jobs = d.jobs();
    assert_eq!(jobs.len(), 1);
    assert_eq!(jobs[0].1, plain);
    assert_eq!(jobs[0].2.rng_seed, Some(rng::stream_seed(42, 0)));
    assert_eq!(jobs[0].2.attempt, 0);
    d.reply(first, plain, b"x");
    let jobs = d.jobs();
    assert_eq!(jobs[0].1, retried);
    let stream = Some(rng::stream_seed(42, 1));
    assert_eq!((jobs[0].2.rng_seed, jobs[0].2.attempt), (stream, 0));
    let mut daemon = jobs[0].0;
    for attempt in 1..=2 {
        d.core.daemon_disconnected(daemon, d.now);
        daemon = d.connect();
        let jobs = d.jobs();
        assert_eq!((jobs[0].0, jobs[0].1), (daemon, retried));
        assert_eq!(
            (jobs[0].2.rng_seed, jobs[0].2.attempt),
            (stream, attempt),
            "same stream, next attempt"
        );
    }
    d.core.daemon_disconnected(daemon, d.now);
    assert_eq!(d.resolved(), [(retried, Outcome::ConnectionLost)]);
}

#[test]
fn an_unseeded_core_gives_tasks_no_stream() {
    let mut d = Driver::new(Config::default().with_send_ahead(None));
    d.connect();
    d.submit(1);
    let jobs = d.jobs();
    assert_eq!((jobs[0].2.rng_seed, jobs[0].2.attempt), (None, 0));
}
