//! One test per rule of the dispatcher core, driven without sockets, threads or a real clock.
//! Rules about one task per daemon turn [`Config::send_ahead`] off; the send-ahead rules have
//! their own tests at the end.

mod util;

use std::time::Duration;

use mirai_dispatch::{
    Action, CancelMode, Config, DEFAULT_MAX_AHEAD, DaemonId, MAX_AHEAD_BYTES, Outcome,
    ProtocolViolation, RejectReason, Reply, SHORT_TASK, Task, TaskError, UNSTARTED_GRACE, rng,
};
use util::Driver;

const MS: Duration = Duration::from_millis(1);

#[test]
fn tasks_go_fifo_to_the_daemon_idle_longest() {
    let mut d = Driver::new(Config::default().with_send_ahead(None));
    let a = d.connect();
    let b = d.connect();
    let t: Vec<_> = (0..4).map(|_| d.submit(1)).collect();
    assert_eq!(d.sends(), [(a, t[0]), (b, t[1])]);
    // b finishes first, so b has been idle longer than a when t[2] and t[3] can go.
    d.reply(b, t[1], b"1");
    assert_eq!(d.sends(), [(b, t[2])]);
    d.reply(a, t[0], b"0");
    assert_eq!(d.sends(), [(a, t[3])]);
    let s = d.core.status();
    assert_eq!(
        (s.executing, s.completed, s.awaiting, s.submitted),
        (2, 2, 0, 4)
    );
}

#[test]
fn the_byte_cap_is_exact() {
    let mut d = Driver::new(Config::default().with_max_queued_bytes(10));
    d.submit(4);
    d.submit(6);
    let refused = d
        .core
        .submit(Task::new("f", vec![0; 1]), d.now)
        .unwrap_err();
    assert_eq!(refused.reason, RejectReason::Full);
    assert_eq!(refused.task.payload.len(), 1, "the task is handed back");
    let m = d.core.status().memory;
    assert_eq!((m.used, m.peak, m.capacity), (10, 10, Some(10)));
    assert!(!d.core.fits(1));
}

#[test]
fn a_task_larger_than_the_whole_cap_is_refused_at_once() {
    let mut d = Driver::new(Config::default().with_max_queued_bytes(10));
    let refused = d
        .core
        .submit(Task::new("f", vec![0; 11]), d.now)
        .unwrap_err();
    assert_eq!(
        refused.reason,
        RejectReason::TooLarge {
            size: 11,
            capacity: 10
        }
    );
    // Exactly the cap fits an empty queue.
    d.submit(10);
    assert_eq!(d.core.status().memory.used, 10);
}

#[test]
fn bytes_are_released_when_a_task_leaves_the_queue() {
    let mut d = Driver::new(
        Config::default()
            .with_send_ahead(None)
            .with_max_queued_bytes(100),
    );
    let sent = d.submit(10);
    let cancelled = d.submit(20);
    let timed_out = d
        .core
        .submit(
            Task::new("f", vec![0; 30]).with_queue_timeout(5 * MS),
            d.now,
        )
        .unwrap();
    assert_eq!(d.core.status().memory.used, 60);
    let daemon = d.connect();
    assert_eq!(d.sends(), [(daemon, sent)]);
    assert_eq!(d.core.status().memory.used, 50, "dispatched");
    assert!(d.core.cancel(cancelled, CancelMode::Soft, d.now));
    assert_eq!(d.core.status().memory.used, 30, "cancelled");
    d.advance(5);
    assert_eq!(
        d.resolved(),
        [
            (cancelled, Outcome::Cancelled),
            (timed_out, Outcome::TimedOut)
        ]
    );
    assert_eq!(d.core.status().memory.used, 0, "timed out");
    assert_eq!(d.core.status().memory.peak, 60);
}

#[test]
fn releasing_bytes_wakes_submitters_once_per_event() {
    let mut d = Driver::new(
        Config::default()
            .with_send_ahead(None)
            .with_max_queued_bytes(100),
    );
    d.submit(10);
    d.submit(10);
    d.drain();
    d.connect();
    d.connect();
    let wakes: Vec<_> = d
        .drain()
        .into_iter()
        .filter(|a| *a == Action::WakeSubmitters)
        .collect();
    assert_eq!(wakes.len(), 2, "one per connect that dispatched");
}

#[test]
fn uncollected_results_pause_dispatch_until_collected() {
    let mut d = Driver::new(
        Config::default()
            .with_send_ahead(None)
            .with_max_uncollected_bytes(4),
    );
    let daemon = d.connect();
    let first = d.submit(1);
    let second = d.submit(1);
    assert_eq!(d.sends(), [(daemon, first)]);
    d.reply(daemon, first, b"1234");
    assert_eq!(d.sends(), [], "4 uncollected bytes reach the cap");
    assert_eq!(d.core.status().memory.uncollected, 4);
    assert!(d.core.collected(first, d.now));
    assert!(!d.core.collected(first, d.now));
    assert_eq!(d.sends(), [(daemon, second)]);
}

#[test]
fn queue_timeout_counts_only_queue_time_and_run_timeout_only_run_time() {
    let mut d = Driver::new(Config::default());
    let task = Task::new("f", vec![1])
        .with_queue_timeout(10 * MS)
        .with_run_timeout(20 * MS);
    let id = d.core.submit(task, d.now).unwrap();
    d.advance(9);
    let daemon = d.connect();
    assert_eq!(d.sends(), [(daemon, id)]);
    d.advance(15); // past the queue timeout, within the run timeout
    assert_eq!(d.resolved(), []);
    d.advance(5); // 20 ms of running
    let actions = d.drain();
    assert!(actions.contains(&Action::Cancel { daemon, task: id }));
    assert!(actions.contains(&Action::Resolve {
        task: id,
        outcome: Outcome::TimedOut
    }));
    // The daemon stays busy until it answers; the late answer is dropped, the daemon reused.
    let next = d.submit(1);
    assert_eq!(d.sends(), []);
    d.core
        .on_result(daemon, id, Reply::Interrupted, false, d.now)
        .unwrap();
    assert_eq!(d.sends(), [(daemon, next)]);
    assert_eq!(d.core.status().completed, 1);
}

#[test]
fn cancelling_a_queued_task_is_certain_and_immediate() {
    let mut d = Driver::new(Config::default());
    let id = d.submit(3);
    assert!(d.core.cancel(id, CancelMode::Soft, d.now));
    assert_eq!(d.resolved(), [(id, Outcome::Cancelled)]);
    assert!(
        !d.core.cancel(id, CancelMode::Soft, d.now),
        "already resolved"
    );
    let daemon = d.connect();
    assert_eq!(d.sends(), [], "never dispatched");
    let s = d.core.status();
    assert_eq!((s.awaiting, s.completed, s.idle), (0, 1, 1));
    let _ = daemon;
}

#[test]
fn cancelling_a_running_task_resolves_it_and_asks_the_daemon() {
    let mut d = Driver::new(Config::default());
    let daemon = d.connect();
    let id = d.submit(1);
    d.drain();
    assert!(d.core.cancel(id, CancelMode::Soft, d.now));
    assert_eq!(
        d.drain(),
        [
            Action::Cancel { daemon, task: id },
            Action::Resolve {
                task: id,
                outcome: Outcome::Cancelled
            }
        ]
    );
    assert_eq!(d.core.status().executing, 0);
    assert_eq!(d.core.status().idle, 0, "busy until it answers");
    // Whatever the daemon answers, the task stays cancelled.
    d.reply(daemon, id, b"late");
    assert_eq!(d.resolved(), []);
    assert_eq!(d.core.status().idle, 1);
}

#[test]
fn hard_cancel_kills_local_daemons_and_falls_back_to_soft_for_remote_ones() {
    let mut d = Driver::new(Config::default());
    let local = d.core.daemon_connected(true, d.now);
    let remote = d.core.daemon_connected(false, d.now);
    let a = d.submit(1);
    let b = d.submit(1);
    d.drain();
    d.core.cancel(a, CancelMode::Hard, d.now);
    d.core.cancel(b, CancelMode::Hard, d.now);
    let actions = d.drain();
    assert!(actions.contains(&Action::Kill { daemon: local }));
    assert!(actions.contains(&Action::Cancel {
        daemon: remote,
        task: b
    }));
    assert_eq!(
        d.core.status().connections,
        1,
        "the killed daemon takes no work"
    );
    d.core.daemon_disconnected(local, d.now);
    assert_eq!(d.drain(), [Action::Left { daemon: local }]);
}

#[test]
fn an_unanswered_cancel_escalates_to_a_kill_after_the_grace() {
    let mut d = Driver::new(Config::default().with_cancel_grace(100 * MS));
    let daemon = d.connect();
    let id = d.submit(1);
    d.core.cancel(id, CancelMode::Soft, d.now);
    d.drain();
    assert_eq!(d.core.poll_timeout(), Some(d.now + 100 * MS));
    d.advance(99);
    assert_eq!(d.drain(), []);
    d.advance(1);
    assert_eq!(d.drain(), [Action::Kill { daemon }]);
}

#[test]
fn a_lost_daemon_resolves_its_task_and_keeps_the_queue() {
    let mut d = Driver::new(Config::default());
    let first = d.connect();
    let running = d.submit(1);
    let queued = d.submit(1);
    d.drain();
    d.core.daemon_disconnected(first, d.now);
    assert_eq!(
        d.drain(),
        [
            Action::Resolve {
                task: running,
                outcome: Outcome::ConnectionLost
            },
            Action::Left { daemon: first }
        ]
    );
    let s = d.core.status();
    assert_eq!(
        (s.connections, s.cumulative, s.awaiting, s.completed),
        (0, 1, 1, 1)
    );
    let second = d.connect();
    assert_eq!(d.sends(), [(second, queued)]);
}

#[test]
fn a_retryable_task_keeps_its_payload_and_bytes_and_runs_again_first() {
    let mut d = Driver::new(
        Config::default()
            .with_send_ahead(None)
            .with_max_queued_bytes(100),
    );
    let first = d.connect();
    let retried = d
        .core
        .submit(Task::new("f", vec![7; 40]).with_retries(1), d.now)
        .unwrap();
    d.submit(10);
    assert_eq!(d.sends(), [(first, retried)]);
    assert_eq!(
        d.core.status().memory.used,
        50,
        "the retryable payload stays counted"
    );
    d.core.daemon_disconnected(first, d.now);
    assert_eq!(d.resolved(), []);
    let second = d.connect();
    let jobs = d.jobs();
    assert_eq!(jobs[0].0, second);
    assert_eq!(jobs[0].1, retried, "queued again at the front");
    assert_eq!(&*jobs[0].2.payload, &[7; 40]);
    // No retry left: the next loss resolves it.
    d.core.daemon_disconnected(second, d.now);
    assert_eq!(d.resolved(), [(retried, Outcome::ConnectionLost)]);
    assert_eq!(d.core.status().memory.used, 10);
}

#[test]
fn a_daemon_that_marked_its_last_result_gets_no_more_work() {
    let mut d = Driver::new(Config::default());
    let daemon = d.connect();
    let id = d.submit(1);
    let next = d.submit(1);
    d.drain();
    d.core
        .on_result(daemon, id, Reply::Value(vec![1].into()), true, d.now)
        .unwrap();
    let actions = d.drain();
    assert!(actions.contains(&Action::Release { daemon }));
    assert!(!actions.iter().any(|a| matches!(a, Action::Send { .. })));
    assert_eq!(d.core.status().connections, 0);
    d.core.daemon_disconnected(daemon, d.now);
    let other = d.connect();
    assert_eq!(d.sends(), [(other, next)]);
}

#[test]
fn everywhere_sends_one_copy_to_each_distinct_daemon_with_a_rendezvous() {
    let mut d = Driver::new(Config::default());
    let a = d.connect();
    let b = d.connect();
    let copies = d
        .core
        .everywhere(Task::new("setup", vec![1]), 3, d.now)
        .unwrap();
    assert_eq!(copies.len(), 3);
    let after = d.submit(1);
    let first = d.sends();
    assert_eq!(first.len(), 2);
    d.reply(a, first[0].1, b"");
    d.reply(b, first[1].1, b"");
    // The third copy cannot go to a or b again; the ordinary task behind it may.
    let next = d.sends();
    assert_eq!(next.len(), 1);
    assert_eq!(next[0].1, after);
    let c = d.connect();
    assert_eq!(d.sends(), [(c, copies[2])]);
}

#[test]
fn everywhere_with_no_daemons_and_no_minimum_is_empty() {
    let mut d = Driver::new(Config::default());
    assert_eq!(
        d.core.everywhere(Task::new("s", vec![]), 0, d.now).unwrap(),
        []
    );
}

#[test]
fn everywhere_reserves_every_copy_or_none() {
    let mut d = Driver::new(Config::default().with_max_queued_bytes(10));
    let refused = d
        .core
        .everywhere(Task::new("s", vec![0; 4]), 3, d.now)
        .unwrap_err();
    assert!(matches!(
        refused.reason,
        RejectReason::TooLarge { size: 12, .. }
    ));
    assert_eq!(d.core.status().memory.used, 0);
    assert_eq!(d.core.status().submitted, 0);
}

#[test]
fn shutdown_resolves_everything_pending_once() {
    let mut d = Driver::new(Config::default().with_send_ahead(None));
    let daemon = d.connect();
    let running = d.submit(1);
    let queued = d.submit(1);
    d.drain();
    d.core.shutdown(d.now);
    let actions = d.drain();
    assert_eq!(
        util::resolutions(actions.clone()),
        [(queued, Outcome::ShutDown), (running, Outcome::ShutDown)]
    );
    assert!(actions.contains(&Action::Release { daemon }));
    let refused = d.core.submit(Task::new("f", vec![]), d.now).unwrap_err();
    assert_eq!(refused.reason, RejectReason::ShutDown);
    // A late result is harmless.
    d.reply(daemon, running, b"");
    assert_eq!(d.resolved(), []);
    let s = d.core.status();
    assert_eq!(
        (s.awaiting, s.executing, s.completed, s.memory.used),
        (0, 0, 2, 0)
    );
}

#[test]
fn seeded_streams_depend_on_the_submission_order_only() {
    let seeds = |daemons: usize| {
        let mut d = Driver::new(Config::default().with_seed(42).with_max_queued_bytes(2));
        for _ in 0..daemons {
            d.connect();
        }
        let mut out = Vec::new();
        for _ in 0..6 {
            // A refused submission and an everywhere call do not consume a stream.
            let _ = d.core.submit(Task::new("f", vec![0; 3]), d.now);
            d.core.everywhere(Task::new("g", vec![]), 0, d.now).unwrap();
            let id = d.submit(1);
            let mut seed = None;
            while seed.is_none() {
                for (daemon, task, job) in d.jobs() {
                    if task == id {
                        seed = Some(job.rng_seed);
                    }
                    d.reply(daemon, task, b"");
                }
            }
            out.extend(seed);
        }
        out
    };
    let expected: Vec<_> = (0..6).map(|n| Some(rng::stream_seed(42, n))).collect();
    assert_eq!(seeds(1), expected);
    assert_eq!(seeds(3), expected);
}

#[test]
fn daemons_get_distinct_init_streams() {
    let mut d = Driver::new(Config::default().with_entropy(9));
    d.connect();
    d.connect();
    let streams: Vec<_> = d
        .drain()
        .into_iter()
        .filter_map(|a| match a {
            Action::Joined { rng_stream, .. } => Some(rng_stream),
            _ => None,
        })
        .collect();
    assert_eq!(
        streams,
        [rng::daemon_stream(9, 0), rng::daemon_stream(9, 1)]
    );
}

#[test]
fn results_from_strangers_are_protocol_violations() {
    let mut d = Driver::new(Config::default());
    let daemon = d.connect();
    let id = d.submit(1);
    d.drain();
    let reply = || Reply::Error(TaskError::new("x"));
    assert_eq!(
        d.core.on_result(DaemonId(99), id, reply(), false, d.now),
        Err(ProtocolViolation::UnknownDaemon(DaemonId(99)))
    );
    let other = mirai_dispatch::TaskId(id.0 + 1);
    assert_eq!(
        d.core.on_result(daemon, other, reply(), false, d.now),
        Err(ProtocolViolation::UnexpectedResult {
            daemon,
            task: other
        })
    );
    d.core.on_result(daemon, id, reply(), false, d.now).unwrap();
    assert_eq!(
        d.resolved(),
        [(id, Outcome::TaskError(TaskError::new("x")))]
    );
}

#[test]
fn huge_timeouts_do_not_overflow_the_clock() {
    let mut d = Driver::new(Config::default());
    let task = Task::new("f", vec![])
        .with_queue_timeout(Duration::MAX)
        .with_run_timeout(Duration::MAX);
    d.core.submit(task, d.now).unwrap();
    d.connect();
    d.advance(1_000_000);
    assert_eq!(d.core.status().executing, 1);
}

// Send-ahead.

/// Runs one instant task on `daemon`, so it has a short last task (see `SHORT_TASK`).
fn warm(d: &mut Driver, daemon: DaemonId) {
    let t = d.submit(0);
    assert_eq!(d.sends(), [(daemon, t)]);
    d.reply(daemon, t, b"");
    d.drain();
}

fn answer(d: &mut Driver, daemon: DaemonId, task: mirai_dispatch::TaskId, reply: Reply) {
    d.core
        .on_result(daemon, task, reply, false, d.now)
        .expect("expected answer");
}

#[test]
fn a_busy_daemon_gets_one_task_ahead_which_holds_its_bytes_until_it_starts() {
    let mut d = Driver::new(
        Config::default()
            .with_max_queued_bytes(100)
            .with_max_ahead(1),
    );
    let daemon = d.connect();
    warm(&mut d, daemon);
    let t: Vec<_> = (0..3).map(|_| d.submit(10)).collect();
    assert_eq!(
        d.sends(),
        [(daemon, t[0]), (daemon, t[1])],
        "one ahead, no more"
    );
    let s = d.core.status();
    assert_eq!((s.awaiting, s.executing, s.memory.used), (1, 2, 20));
    d.reply(daemon, t[0], b"0");
    // t[1] started on the daemon the moment it answered t[0]: its bytes leave the budget and
    // t[2] goes ahead of it.
    assert_eq!(d.sends(), [(daemon, t[2])]);
    assert_eq!(d.core.status().memory.used, 10);
    d.reply(daemon, t[1], b"1");
    d.reply(daemon, t[2], b"2");
    let s = d.core.status();
    assert_eq!(
        (s.completed, s.idle, s.memory.used),
        (4, 1, 0),
        "with the warm-up task"
    );
}

#[test]
fn without_send_ahead_a_busy_daemon_gets_nothing_more() {
    let mut d = Driver::new(Config::default().with_send_ahead(None));
    let daemon = d.connect();
    let a = d.submit(1);
    d.submit(1);
    assert_eq!(d.sends(), [(daemon, a)]);
}

#[test]
fn the_run_timeout_of_a_task_ahead_starts_when_it_starts_and_its_queue_timeout_holds_until_then() {
    let mut d = Driver::new(Config::default());
    let daemon = d.connect();
    warm(&mut d, daemon);
    let first = d.submit(1);
    let ahead = d
        .core
        .submit(Task::new("f", vec![1]).with_run_timeout(10 * MS), d.now)
        .unwrap();
    assert_eq!(d.sends(), [(daemon, first), (daemon, ahead)]);
    d.advance(30);
    assert_eq!(d.resolved(), [], "not started: no run timeout yet");
    d.reply(daemon, first, b"");
    d.drain();
    d.advance(9);
    assert_eq!(d.resolved(), []);
    d.advance(1);
    assert_eq!(d.resolved(), [(ahead, Outcome::TimedOut)]);

    // The daemon still owes its answer for the timed-out task; then (its last task having been
    // long) it gets a short one again.
    answer(&mut d, daemon, ahead, Reply::Interrupted);
    d.drain();
    warm(&mut d, daemon);
    let late = d
        .core
        .submit(Task::new("f", vec![1]).with_queue_timeout(5 * MS), d.now)
        .unwrap();
    let waiting = d
        .core
        .submit(Task::new("f", vec![1]).with_queue_timeout(5 * MS), d.now)
        .unwrap();
    assert_eq!(d.sends(), [(daemon, late), (daemon, waiting)]);
    d.advance(5);
    // `late` runs; `waiting` never started, so its queue timeout still applies, and the
    // daemon is told to drop it.
    assert_eq!(
        d.drain()
            .into_iter()
            .filter(|x| *x != Action::WakeSubmitters)
            .collect::<Vec<_>>(),
        [
            Action::Cancel {
                daemon,
                task: waiting
            },
            Action::Resolve {
                task: waiting,
                outcome: Outcome::TimedOut
            }
        ]
    );
}

/// The recall requests among the core's actions since the last drain.
fn recalls(d: &mut Driver) -> Vec<Action> {
    d.drain()
        .into_iter()
        .filter(|x| matches!(x, Action::Recall { .. }))
        .collect()
}

#[test]
fn the_task_asked_back_is_the_one_farthest_from_starting_and_the_idle_daemon_gets_a_share() {
    // Eight tasks ahead on one daemon while its neighbour finishes a long one (the shape of a
    // burst submitted while every daemon is busy). Each time the neighbour falls idle the core
    // asks back the last task waiting, which the busy daemon cannot have started yet: the one
    // next in line it starts the moment it answers the task before, which is also when the
    // neighbour's idleness is usually noticed, so asking for that one gave nothing back.
    let mut d = Driver::new(Config::default());
    let b = d.connect();
    let long = d.submit(0);
    assert_eq!(d.sends(), [(b, long)]);
    let a = d.connect();
    warm(&mut d, a);
    let burst: Vec<_> = (0..8).map(|_| d.submit(10)).collect();
    let sent = d.sends();
    assert_eq!(sent.len(), 8, "{sent:?}");
    assert!(
        sent.iter().all(|&(to, _)| to == a),
        "all on the warm daemon, seven of them ahead: {sent:?}"
    );
    // The neighbour finishes: the last of the burst is asked back.
    d.reply(b, long, b"");
    assert_eq!(
        recalls(&mut d),
        [Action::Recall {
            daemon: a,
            task: burst[7]
        }]
    );
    answer(&mut d, a, burst[7], Reply::NotStarted);
    assert_eq!(d.sends(), [(b, burst[7])]);
    // The busy daemon answers its first; the neighbour answers its one and falls idle again:
    // the next asked back is again the last waiting, not the one the busy daemon starts now.
    d.reply(a, burst[0], b"");
    d.reply(b, burst[7], b"");
    assert_eq!(
        recalls(&mut d),
        [Action::Recall {
            daemon: a,
            task: burst[6]
        }]
    );
}

#[test]
fn a_task_ahead_is_asked_back_for_an_idle_daemon_and_requeued_if_not_started() {
    let mut d = Driver::new(Config::default().with_max_queued_bytes(100));
    let a = d.connect();
    warm(&mut d, a);
    let first = d.submit(10);
    let second = d.submit(10);
    assert_eq!(d.sends(), [(a, first), (a, second)]);
    let b = d.connect();
    assert_eq!(
        d.drain()
            .into_iter()
            .filter(|x| matches!(x, Action::Recall { .. } | Action::Cancel { .. }))
            .collect::<Vec<_>>(),
        [Action::Recall {
            daemon: a,
            task: second
        }]
    );
    d.reply(a, first, b"");
    assert_eq!(d.sends(), [], "asked back: nothing goes ahead of it");
    assert_eq!(
        d.core.status().memory.used,
        10,
        "asked back: still reserved"
    );
    answer(&mut d, a, second, Reply::NotStarted);
    // Queued again at the front, to the daemon idle longest.
    assert_eq!(d.sends(), [(b, second)]);
    assert_eq!(d.core.status().memory.used, 0);
    d.reply(b, second, b"2");
    assert_eq!(
        d.resolved(),
        [(second, Outcome::Value(b"2".to_vec().into()))]
    );
}

#[test]
fn a_task_ahead_asked_back_too_late_just_runs() {
    let mut d = Driver::new(Config::default());
    let a = d.connect();
    warm(&mut d, a);
    let first = d.submit(1);
    let second = d.submit(1);
    assert_eq!(d.sends(), [(a, first), (a, second)]);
    d.connect();
    d.drain();
    d.reply(a, first, b"1");
    d.reply(a, second, b"2");
    assert_eq!(
        d.resolved(),
        [
            (first, Outcome::Value(b"1".to_vec().into())),
            (second, Outcome::Value(b"2".to_vec().into()))
        ]
    );
    assert_eq!(d.core.status().memory.used, 0);
}

#[test]
fn a_daemon_lost_before_starting_its_task_ahead_hands_it_back_without_a_retry() {
    let mut d = Driver::new(Config::default());
    let a = d.connect();
    warm(&mut d, a);
    let running = d.submit(1);
    let ahead = d.submit(1);
    assert_eq!(d.sends(), [(a, running), (a, ahead)]);
    d.core.daemon_disconnected(a, d.now);
    assert_eq!(d.resolved(), [(running, Outcome::ConnectionLost)]);
    let s = d.core.status();
    assert_eq!((s.awaiting, s.executing), (1, 0));
    let b = d.connect();
    assert_eq!(d.sends(), [(b, ahead)]);
}

#[test]
fn a_last_result_hands_the_task_ahead_back() {
    let mut d = Driver::new(Config::default());
    let a = d.connect();
    warm(&mut d, a);
    let first = d.submit(1);
    let ahead = d.submit(1);
    assert_eq!(d.sends(), [(a, first), (a, ahead)]);
    d.core
        .on_result(a, first, Reply::Value(vec![].into()), true, d.now)
        .unwrap();
    let actions = d.drain();
    assert!(actions.contains(&Action::Release { daemon: a }));
    assert!(!actions.iter().any(|x| matches!(x, Action::Send { .. })));
    assert_eq!(d.core.status().awaiting, 1);
    let b = d.connect();
    assert_eq!(d.sends(), [(b, ahead)]);
}

#[test]
fn cancelling_a_task_ahead_drops_it_and_kills_only_a_daemon_that_keeps_it() {
    let mut d = Driver::new(Config::default());
    let daemon = d.connect();
    warm(&mut d, daemon);
    let first = d.submit(1);
    let ahead = d.submit(1);
    assert_eq!(d.sends(), [(daemon, first), (daemon, ahead)]);
    assert!(d.core.cancel(ahead, CancelMode::Hard, d.now));
    let actions = d.drain();
    assert!(
        !actions.iter().any(|x| matches!(x, Action::Kill { .. })),
        "not started: no kill"
    );
    assert_eq!(
        &actions[..2],
        [
            Action::Cancel {
                daemon,
                task: ahead
            },
            Action::Resolve {
                task: ahead,
                outcome: Outcome::Cancelled
            }
        ]
    );
    // The daemon drops it unstarted right after answering the task before it.
    d.reply(daemon, first, b"");
    answer(&mut d, daemon, ahead, Reply::NotStarted);
    d.advance(UNSTARTED_GRACE.as_millis() as u64);
    let actions = d.drain();
    assert!(!actions.iter().any(|x| matches!(x, Action::Kill { .. })));
    assert_eq!(d.core.status().idle, 1);

    // One that does not drop it in time may be running it: it is killed.
    let first = d.submit(1);
    let ahead = d.submit(1);
    assert_eq!(d.sends(), [(daemon, first), (daemon, ahead)]);
    d.core.cancel(ahead, CancelMode::Hard, d.now);
    d.reply(daemon, first, b"");
    d.advance(UNSTARTED_GRACE.as_millis() as u64 - 1);
    assert!(!d.drain().iter().any(|x| matches!(x, Action::Kill { .. })));
    d.advance(1);
    assert_eq!(d.drain(), [Action::Kill { daemon }]);
}

/// A daemon being killed may still answer before it dies: the task that started there after
/// the killed one resolves with its real answer (it used to be dropped, leaving the task
/// unresolved for good), and the one after that is lost with the daemon. None is left behind.
#[test]
fn a_killed_daemon_that_still_answers_its_next_task_resolves_it() {
    let mut d = Driver::new(Config::default());
    let daemon = d.connect();
    warm(&mut d, daemon);
    let first = d.submit(1);
    let second = d.submit(1);
    let third = d.submit(1);
    assert_eq!(
        d.sends(),
        [(daemon, first), (daemon, second), (daemon, third)]
    );
    assert!(d.core.cancel(first, CancelMode::Hard, d.now));
    assert!(d.drain().contains(&Action::Kill { daemon }));
    // Before the kill lands, the daemon answers the cancelled task, then runs and answers the
    // next one.
    d.reply(daemon, first, b"");
    d.reply(daemon, second, b"two");
    assert_eq!(
        d.resolved(),
        [(second, Outcome::Value(b"two".to_vec().into()))]
    );
    // Then it dies, having possibly started the third: lost with it.
    d.core.daemon_disconnected(daemon, d.now);
    assert_eq!(d.resolved(), [(third, Outcome::ConnectionLost)]);
    let status = d.core.status();
    assert_eq!((status.awaiting, status.executing), (0, 0));
    assert_eq!(status.completed, status.submitted);
}

#[test]
fn only_daemons_whose_tasks_look_short_get_a_task_ahead() {
    let mut d = Driver::new(Config::default());
    let daemon = d.connect();
    // No task answered yet: nothing known, nothing ahead.
    let first = d.submit(1);
    let second = d.submit(1);
    assert_eq!(d.sends(), [(daemon, first)]);
    // Its first task took SHORT_TASK: too long to send ahead of the next.
    d.advance(SHORT_TASK.as_millis() as u64);
    d.reply(daemon, first, b"");
    assert_eq!(d.sends(), [(daemon, second)]);
    let third = d.submit(1);
    assert_eq!(d.sends(), []);
    // A short one: the next goes ahead, unless the current one has already run SHORT_TASK.
    d.reply(daemon, second, b"");
    assert_eq!(d.sends(), [(daemon, third)]);
    d.advance(SHORT_TASK.as_millis() as u64);
    let fourth = d.submit(1);
    assert_eq!(
        d.sends(),
        [],
        "the current task has run too long to queue behind it"
    );
    d.reply(daemon, third, b"");
    assert_eq!(d.sends(), [(daemon, fourth)]);
}

#[test]
fn a_payload_over_the_send_ahead_limit_waits_for_an_idle_daemon() {
    let mut d = Driver::new(Config::default());
    let daemon = d.connect();
    warm(&mut d, daemon);
    let first = d.submit(1);
    let big = d.submit(MAX_AHEAD_BYTES + 1);
    let small = d.submit(1);
    assert_eq!(
        d.sends(),
        [(daemon, first)],
        "FIFO: nothing overtakes the big one"
    );
    d.reply(daemon, first, b"");
    // Once it runs, the small one may go ahead of it.
    assert_eq!(d.sends(), [(daemon, big), (daemon, small)]);
}

#[test]
fn busy_daemons_take_up_to_max_ahead_tasks_in_turn() {
    let mut d = Driver::new(Config::default().with_max_ahead(2));
    let a = d.connect();
    let b = d.connect();
    let w = (d.submit(0), d.submit(0));
    assert_eq!(d.sends(), [(a, w.0), (b, w.1)]);
    d.reply(a, w.0, b"");
    d.reply(b, w.1, b"");
    d.drain();
    let t: Vec<_> = (0..7).map(|_| d.submit(1)).collect();
    // Idle daemons first (a has been idle longest), then one ahead each in turn, two deep.
    assert_eq!(
        d.sends(),
        [
            (a, t[0]),
            (b, t[1]),
            (a, t[2]),
            (b, t[3]),
            (a, t[4]),
            (b, t[5])
        ]
    );
    assert_eq!(d.core.status().awaiting, 1);
    d.reply(a, t[0], b"");
    assert_eq!(d.sends(), [(a, t[6])]);
}

#[test]
fn the_depth_ahead_is_what_fits_into_the_send_ahead_bound_at_the_last_task_s_pace() {
    let bound = Duration::from_millis(10);
    let mut d = Driver::new(Config::default().with_send_ahead(Some(bound)));
    let daemon = d.connect();
    // A first task of 4 ms: two more of that length fit into 10 ms, so two go ahead.
    let first = d.submit(1);
    assert_eq!(d.sends(), [(daemon, first)]);
    d.advance(4);
    d.reply(daemon, first, b"");
    d.drain();
    let t: Vec<_> = (0..5).map(|_| d.submit(1)).collect();
    assert_eq!(d.sends(), [(daemon, t[0]), (daemon, t[1]), (daemon, t[2])]);
    assert_eq!(d.core.status().awaiting, 2);
    // Its next one took no time at all (a trivial task): as deep as max_ahead allows.
    d.reply(daemon, t[0], b"");
    assert_eq!(d.sends(), [(daemon, t[3]), (daemon, t[4])]);
    // t[1] runs, three wait ahead of it: DEFAULT_MAX_AHEAD - 3 more join them.
    let _more: Vec<_> = (0..DEFAULT_MAX_AHEAD).map(|_| d.submit(1)).collect();
    assert_eq!(d.sends().len(), DEFAULT_MAX_AHEAD - 3);
    assert_eq!(d.core.status().awaiting, 3);
}

// A daemon cannot hand back, unstarted, the task it runs.

#[test]
fn not_started_for_the_running_task_is_a_violation_and_the_task_is_lost_with_its_daemon() {
    let mut d = Driver::new(Config::default().with_send_ahead(None));
    let daemon = d.connect();
    let id = d.submit(4);
    assert_eq!(d.sends(), [(daemon, id)]);
    assert_eq!(
        d.core
            .on_result(daemon, id, Reply::NotStarted, false, d.now),
        Err(ProtocolViolation::NotStartedWhileRunning { daemon, task: id })
    );
    // Refused without effect: not requeued, not resolved, the daemon still holds it.
    assert_eq!(d.drain(), []);
    let s = d.core.status();
    assert_eq!((s.executing, s.awaiting, s.completed), (1, 0, 0));
    // The shell drops the daemon: the task resolves as any task of a lost daemon.
    d.core.daemon_disconnected(daemon, d.now);
    assert_eq!(d.resolved(), [(id, Outcome::ConnectionLost)]);
    let other = d.connect();
    assert_eq!(d.sends(), [], "never sent again to {other}");
    let s = d.core.status();
    assert_eq!((s.executing, s.awaiting, s.completed), (0, 0, 1));
}

#[test]
fn a_running_task_answered_not_started_uses_a_retry_like_any_lost_task() {
    let mut d = Driver::new(Config::default().with_send_ahead(None));
    let liar = d.connect();
    let id = d
        .core
        .submit(Task::new("f", vec![1]).with_retries(1), d.now)
        .unwrap();
    assert_eq!(d.sends(), [(liar, id)]);
    assert!(matches!(
        d.core.on_result(liar, id, Reply::NotStarted, false, d.now),
        Err(ProtocolViolation::NotStartedWhileRunning { .. })
    ));
    d.core.daemon_disconnected(liar, d.now);
    let honest = d.connect();
    assert_eq!(d.sends(), [(honest, id)], "retried once, as a lost task");
    // Its one retry is used: a second loss resolves it.
    d.core.daemon_disconnected(honest, d.now);
    assert_eq!(d.resolved(), [(id, Outcome::ConnectionLost)]);
}

#[test]
fn a_task_sent_ahead_that_became_current_may_not_come_back_unstarted_unless_asked() {
    let mut d = Driver::new(
        Config::default()
            .with_max_queued_bytes(100)
            .with_max_ahead(1),
    );
    let daemon = d.connect();
    warm(&mut d, daemon);
    let first = d.submit(10);
    let ahead = d.submit(10);
    assert_eq!(d.sends(), [(daemon, first), (daemon, ahead)]);
    // Still waiting ahead: a daemon may drop it (it answers at once when told to).
    // Once the task before it is answered, it is the daemon's running task.
    d.reply(daemon, first, b"");
    d.drain();
    assert_eq!(
        d.core
            .on_result(daemon, ahead, Reply::NotStarted, false, d.now),
        Err(ProtocolViolation::NotStartedWhileRunning {
            daemon,
            task: ahead
        })
    );
    assert_eq!(d.drain(), [], "not requeued");
    d.core.daemon_disconnected(daemon, d.now);
    assert_eq!(d.resolved(), [(ahead, Outcome::ConnectionLost)]);
}

#[test]
fn a_cancelled_running_task_may_still_come_back_unstarted() {
    // The cancel can reach the daemon before it read the task: it drops it unstarted.
    let mut d = Driver::new(Config::default().with_send_ahead(None));
    let daemon = d.connect();
    let id = d.submit(1);
    assert_eq!(d.sends(), [(daemon, id)]);
    assert!(d.core.cancel(id, CancelMode::Soft, d.now));
    assert_eq!(d.resolved(), [(id, Outcome::Cancelled)]);
    answer(&mut d, daemon, id, Reply::NotStarted);
    // The daemon is free again and in good standing.
    let next = d.submit(1);
    assert_eq!(d.sends(), [(daemon, next)]);
}
