//! Random interleavings of every event the core accepts, checked against its invariants after
//! each step: the byte cap is never exceeded and `used` is exactly the bytes of queued (and
//! retryable running) tasks; every accepted task resolves exactly once; ordinary tasks are first
//! dispatched in FIFO order; no daemon holds more than its current task and (with send-ahead)
//! one more, or gets work after its release; daemons answer in the order they were sent tasks;
//! a task sent ahead keeps its bytes reserved until it starts; counters add up; no ordinary task
//! waits in the queue while a daemon idles, and tasks waiting ahead are asked back for idle
//! daemons; the uncollected bytes are exactly the values resolved and neither collected nor
//! forgotten; forgetting a task never cancels it.

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::time::{Duration, Instant};

use mirai_dispatch::{
    Action, CancelMode, Config, Core, DaemonId, Outcome, ProtocolViolation, RejectReason, Reply,
    Task, TaskError, TaskId,
};
use proptest::prelude::*;

#[derive(Debug, Clone)]
enum Op {
    Submit {
        bytes: usize,
        queue_ms: Option<u64>,
        run_ms: Option<u64>,
        retries: u32,
    },
    Everywhere {
        bytes: usize,
        min: usize,
    },
    Cancel {
        pick: usize,
        hard: bool,
    },
    Connect {
        local: bool,
    },
    Disconnect {
        pick: usize,
    },
    Reply {
        pick: usize,
        kind: u8,
        last: bool,
    },
    /// A daemon answers the task it runs as not started, though nobody asked for it back.
    Lie {
        pick: usize,
    },
    Advance {
        ms: u64,
    },
    Collect {
        pick: usize,
    },
    Written {
        pick: usize,
    },
    Forget {
        pick: usize,
    },
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        6 => (0..24usize, proptest::option::of(1..50u64), proptest::option::of(1..50u64), 0..3u32)
            .prop_map(|(bytes, queue_ms, run_ms, retries)| Op::Submit { bytes, queue_ms, run_ms, retries }),
        1 => (0..8usize, 0..4usize).prop_map(|(bytes, min)| Op::Everywhere { bytes, min }),
        2 => (any::<usize>(), any::<bool>()).prop_map(|(pick, hard)| Op::Cancel { pick, hard }),
        2 => any::<bool>().prop_map(|local| Op::Connect { local }),
        1 => any::<usize>().prop_map(|pick| Op::Disconnect { pick }),
        6 => (any::<usize>(), 0..4u8, prop::bool::weighted(0.1))
            .prop_map(|(pick, kind, last)| Op::Reply { pick, kind, last }),
        1 => any::<usize>().prop_map(|pick| Op::Lie { pick }),
        3 => (0..30u64).prop_map(|ms| Op::Advance { ms }),
        1 => any::<usize>().prop_map(|pick| Op::Collect { pick }),
        2 => any::<usize>().prop_map(|pick| Op::Written { pick }),
        2 => any::<usize>().prop_map(|pick| Op::Forget { pick }),
    ]
}

fn config() -> impl Strategy<Value = Config> {
    (
        proptest::option::of(0..64u64),
        proptest::option::of(1..16u64),
        proptest::option::of(1..40u64),
        any::<Option<u64>>(),
        proptest::option::of(1..20u64),
        0..4usize,
    )
        .prop_map(|(cap, uncollected, grace, seed, short, max_ahead)| Config {
            max_queued_bytes: cap,
            max_uncollected_bytes: uncollected,
            seed,
            entropy: 1,
            cancel_grace: grace.map(Duration::from_millis),
            // Odd seeds also hold dispatched bytes until written.
            release_when_written: seed.is_some_and(|s| s % 2 == 1),
            send_ahead: short.map(Duration::from_millis),
            max_ahead,
            max_message_bytes: None,
        })
}

#[derive(Debug, Default)]
struct ModelDaemon {
    /// The tasks it was sent and has not answered, current first.
    held: VecDeque<TaskId>,
    released: bool,
    killed: bool,
}

/// What the test knows from the outside, to check the core against.
struct Model {
    core: Core,
    cap: Option<u64>,
    uncollected_cap: Option<u64>,
    now: Instant,
    size: HashMap<TaskId, u64>,
    retries_left: HashMap<TaskId, u32>,
    copies: BTreeSet<TaskId>,
    resolved: HashMap<TaskId, Outcome>,
    first_sent: BTreeSet<TaskId>,
    last_plain_sent: Option<TaskId>,
    daemons: BTreeMap<DaemonId, ModelDaemon>,
    values: Vec<TaskId>,
    /// With `release_when_written`: dispatched tasks whose bytes stay reserved until written.
    hold: bool,
    unwritten: BTreeSet<TaskId>,
    /// Tasks whose handle is gone.
    forgotten: BTreeSet<TaskId>,
    /// Most tasks a daemon may hold: its current one and those sent ahead.
    room: usize,
    /// Tasks a cancel or recall reached while they waited behind another: the daemon may drop
    /// them unstarted.
    cancelled_waiting: BTreeSet<TaskId>,
}

impl Model {
    fn new(config: Config) -> Self {
        let config_hold = config.release_when_written;
        let room = if config.send_ahead.is_some() {
            1 + config.max_ahead
        } else {
            1
        };
        Self {
            cap: config.max_queued_bytes,
            uncollected_cap: config.max_uncollected_bytes,
            core: Core::new(config),
            now: Instant::now(),
            size: HashMap::new(),
            retries_left: HashMap::new(),
            copies: BTreeSet::new(),
            resolved: HashMap::new(),
            first_sent: BTreeSet::new(),
            last_plain_sent: None,
            daemons: BTreeMap::new(),
            values: Vec::new(),
            hold: config_hold,
            unwritten: BTreeSet::new(),
            forgotten: BTreeSet::new(),
            room,
            cancelled_waiting: BTreeSet::new(),
        }
    }

    fn pick<T: Copy>(items: &[T], pick: usize) -> Option<T> {
        (!items.is_empty()).then(|| items[pick % items.len()])
    }

    fn apply(&mut self, op: &Op) -> Result<(), TestCaseError> {
        let now = self.now;
        match *op {
            Op::Submit {
                bytes,
                queue_ms,
                run_ms,
                retries,
            } => {
                let mut task = Task::new("f", vec![0; bytes]).with_retries(retries);
                task.queue_timeout = queue_ms.map(Duration::from_millis);
                task.run_timeout = run_ms.map(Duration::from_millis);
                let used = self.core.status().memory.used;
                match self.core.submit(task, now) {
                    Ok(id) => {
                        self.size.insert(id, bytes as u64);
                        self.retries_left.insert(id, retries);
                    }
                    Err(r) => self.check_refusal(r.reason, bytes as u64, used)?,
                }
            }
            Op::Everywhere { bytes, min } => {
                let used = self.core.status().memory.used;
                let n = (min as u64).max(self.core.status().connections);
                match self
                    .core
                    .everywhere(Task::new("e", vec![0; bytes]), min, now)
                {
                    Ok(ids) => {
                        prop_assert_eq!(ids.len() as u64, n);
                        for id in ids {
                            self.size.insert(id, bytes as u64);
                            self.retries_left.insert(id, 0);
                            self.copies.insert(id);
                        }
                    }
                    Err(r) => self.check_refusal(r.reason, bytes as u64 * n, used)?,
                }
            }
            Op::Cancel { pick, hard } => {
                let ids: Vec<TaskId> = self.size.keys().copied().collect();
                if let Some(id) = Self::pick(&ids, pick) {
                    let mode = if hard {
                        CancelMode::Hard
                    } else {
                        CancelMode::Soft
                    };
                    let was_pending = !self.resolved.contains_key(&id);
                    prop_assert_eq!(self.core.cancel(id, mode, now), was_pending);
                }
            }
            Op::Connect { local } => {
                self.core.daemon_connected(local, now);
            }
            Op::Disconnect { pick } => {
                let ids: Vec<DaemonId> = self.daemons.keys().copied().collect();
                if let Some(d) = Self::pick(&ids, pick) {
                    self.disconnect(d);
                }
            }
            Op::Reply { pick, kind, last } => {
                // A daemon being killed still answers until the kill lands (its disconnect
                // is an operation of its own).
                let busy: Vec<(DaemonId, TaskId)> = self
                    .daemons
                    .iter()
                    .filter_map(|(&id, d)| d.held.front().map(|&t| (id, t)))
                    .collect();
                // A daemon may drop a task still waiting behind another as soon as a cancel
                // reaches it, before it answers the one it runs.
                let dropped: Vec<(DaemonId, TaskId)> = self
                    .daemons
                    .iter()
                    .flat_map(|(&id, d)| d.held.iter().skip(1).map(move |&t| (id, t)))
                    .filter(|(_, t)| self.cancelled_waiting.contains(t))
                    .collect();
                if kind == 3
                    && pick % 2 == 0
                    && let Some((daemon, task)) = Self::pick(&dropped, pick / 2)
                {
                    prop_assert_eq!(
                        self.core
                            .on_result(daemon, task, Reply::NotStarted, false, now),
                        Ok(())
                    );
                    if let Some(d) = self.daemons.get_mut(&daemon) {
                        d.held.retain(|&t| t != task);
                    }
                    self.back_to_queue(task);
                } else if let Some((daemon, task)) = Self::pick(&busy, pick) {
                    // A daemon answers its tasks in order; it drops one unstarted only if a
                    // cancel reached it while the task still waited.
                    let unstarted = kind == 3 && self.cancelled_waiting.contains(&task);
                    let reply = match kind {
                        0 => Reply::Value(vec![1; pick % 5].into()),
                        1 => Reply::Error(TaskError::new("e")),
                        _ if unstarted => Reply::NotStarted,
                        _ => Reply::Interrupted,
                    };
                    let killed = self.daemons.get(&daemon).is_some_and(|d| d.killed);
                    let last = last && !unstarted && !killed;
                    prop_assert_eq!(self.core.on_result(daemon, task, reply, last, now), Ok(()));
                    let mut back = Vec::new();
                    if let Some(d) = self.daemons.get_mut(&daemon) {
                        d.held.pop_front();
                        if unstarted {
                            back.push(task);
                        }
                        if last {
                            // It exits without starting the rest: they are queued again.
                            back.extend(d.held.drain(..));
                        }
                    }
                    self.cancelled_waiting.remove(&task);
                    for t in back {
                        self.back_to_queue(t);
                    }
                }
            }
            Op::Lie { pick } => {
                // Only a task the daemon runs, not released, and neither cancelled nor asked
                // back (those it may legitimately drop unstarted).
                let liars: Vec<(DaemonId, TaskId)> = self
                    .daemons
                    .iter()
                    .filter(|(_, d)| !d.released)
                    .filter_map(|(&id, d)| d.held.front().map(|&t| (id, t)))
                    .filter(|(_, t)| {
                        !self.cancelled_waiting.contains(t) && !self.resolved.contains_key(t)
                    })
                    .collect();
                if let Some((daemon, task)) = Self::pick(&liars, pick) {
                    let before = self.core.status();
                    prop_assert_eq!(
                        self.core
                            .on_result(daemon, task, Reply::NotStarted, false, now),
                        Err(ProtocolViolation::NotStartedWhileRunning { daemon, task })
                    );
                    prop_assert!(
                        self.core.poll_action().is_none(),
                        "a refused answer changed something"
                    );
                    let after = self.core.status();
                    prop_assert_eq!(
                        (before.awaiting, before.executing, before.completed),
                        (after.awaiting, after.executing, after.completed)
                    );
                    // The shell drops the daemon: its task is lost (or retried) with it.
                    self.disconnect(daemon);
                }
            }
            Op::Advance { ms } => {
                self.now += Duration::from_millis(ms);
                self.core.handle_timeout(self.now);
            }
            Op::Collect { pick } => {
                if let Some(id) = Self::pick(&self.values, pick) {
                    self.core.collected(id, now);
                    self.values.retain(|&v| v != id);
                }
            }
            Op::Forget { pick } => {
                let ids: Vec<TaskId> = self
                    .size
                    .keys()
                    .filter(|t| !self.forgotten.contains(t))
                    .copied()
                    .collect();
                if let Some(id) = Self::pick(&ids, pick) {
                    let before = self.core.status();
                    let expected = !self.resolved.contains_key(&id) || self.values.contains(&id);
                    prop_assert_eq!(self.core.forget(id, now), expected);
                    let after = self.core.status();
                    // Freed uncollected bytes may unpause dispatch, but nothing resolves.
                    prop_assert_eq!(
                        before.completed,
                        after.completed,
                        "forgetting resolved a task"
                    );
                    prop_assert_eq!(
                        after.awaiting + after.executing,
                        before.awaiting + before.executing
                    );
                    self.forgotten.insert(id);
                    self.values.retain(|&v| v != id);
                }
            }
            Op::Written { pick } => {
                let ids: Vec<TaskId> = self.unwritten.iter().copied().collect();
                if let Some(id) = Self::pick(&ids, pick) {
                    prop_assert!(self.core.written(id, now), "{id} held no bytes");
                    self.unwritten.remove(&id);
                } else if let Some(&id) = self.size.keys().next() {
                    prop_assert!(!self.core.written(id, now), "{id} was not held");
                }
            }
        }
        self.drain()?;
        self.check()
    }

    fn disconnect(&mut self, d: DaemonId) {
        // A current task the core will requeue uses up one retry; the ones waiting behind it
        // had not started and go back to the queue as they were.
        let held: Vec<TaskId> = self
            .daemons
            .get(&d)
            .map(|m| m.held.iter().copied().collect())
            .unwrap_or_default();
        if let Some(&t) = held.first()
            && !self.resolved.contains_key(&t)
            && let Some(r) = self.retries_left.get_mut(&t)
        {
            *r = r.saturating_sub(1);
        }
        for &t in held.iter().skip(1) {
            self.back_to_queue(t);
        }
        for t in &held {
            self.cancelled_waiting.remove(t);
        }
        self.core.daemon_disconnected(d, self.now);
    }

    /// A task the core queues again: nothing of its earlier sending holds bytes any more.
    fn back_to_queue(&mut self, task: TaskId) {
        self.unwritten.remove(&task);
        self.cancelled_waiting.remove(&task);
    }

    fn check_refusal(
        &self,
        reason: RejectReason,
        bytes: u64,
        used: u64,
    ) -> Result<(), TestCaseError> {
        let cap = self.cap;
        match reason {
            RejectReason::Full => prop_assert!(cap.is_some_and(|c| bytes <= c && used + bytes > c)),
            RejectReason::TooLarge { .. } => prop_assert!(cap.is_some_and(|c| bytes > c)),
            RejectReason::ShutDown => prop_assert!(self.core.is_shut_down()),
            // The model's cores have no message limit.
            RejectReason::MessageTooLarge { .. } => prop_assert!(false, "{reason:?}"),
        }
        Ok(())
    }

    fn drain(&mut self) -> Result<(), TestCaseError> {
        loop {
            let mut killed = Vec::new();
            while let Some(action) = self.core.poll_action() {
                match action {
                    Action::Joined { daemon, .. } => {
                        self.daemons.insert(daemon, ModelDaemon::default());
                    }
                    Action::Send { daemon, task, .. } => {
                        let d = self.daemons.get_mut(&daemon);
                        prop_assert!(d.is_some(), "sent to unknown {daemon}");
                        let d = d.unwrap();
                        prop_assert!(
                            d.held.len() < self.room && !d.released && !d.killed,
                            "{daemon} unavailable"
                        );
                        prop_assert!(
                            !self.resolved.contains_key(&task),
                            "{task} resolved before sending"
                        );
                        d.held.push_back(task);
                        if self.hold && self.retries_left[&task] == 0 && self.size[&task] > 0 {
                            self.unwritten.insert(task);
                        }
                        if self.first_sent.insert(task) && !self.copies.contains(&task) {
                            prop_assert!(
                                self.last_plain_sent < Some(task),
                                "FIFO broken at {task}"
                            );
                            self.last_plain_sent = Some(task);
                        }
                    }
                    Action::Recall { daemon, task } => {
                        let d = self.daemons.get(&daemon);
                        let at = d.and_then(|d| d.held.iter().position(|&t| t == task));
                        prop_assert!(
                            at.is_some_and(|i| i > 0),
                            "recall of {task}, not waiting on {daemon}"
                        );
                        prop_assert!(
                            !self.resolved.contains_key(&task),
                            "recall of resolved {task}"
                        );
                        self.cancelled_waiting.insert(task);
                    }
                    Action::Cancel { daemon, task } => {
                        let d = self.daemons.get(&daemon);
                        let at = d.and_then(|d| d.held.iter().position(|&t| t == task));
                        prop_assert!(at.is_some(), "cancel of {task}, not held by {daemon}");
                        if at != Some(0) {
                            self.cancelled_waiting.insert(task);
                        }
                    }
                    Action::Kill { daemon } => {
                        if let Some(d) = self.daemons.get_mut(&daemon) {
                            d.killed = true;
                        }
                        killed.push(daemon);
                    }
                    Action::Release { daemon } => {
                        if let Some(d) = self.daemons.get_mut(&daemon) {
                            d.released = true;
                        }
                    }
                    Action::Left { daemon } => {
                        prop_assert!(self.daemons.remove(&daemon).is_some());
                    }
                    Action::Resolve { task, outcome } => {
                        prop_assert!(self.size.contains_key(&task), "unknown {task} resolved");
                        if outcome.is_value()
                            && self.uncollected_cap.is_some()
                            && !self.forgotten.contains(&task)
                        {
                            self.values.push(task);
                        }
                        self.unwritten.remove(&task);
                        let before = self.resolved.insert(task, outcome);
                        prop_assert!(before.is_none(), "{task} resolved twice");
                    }
                    Action::WakeSubmitters | Action::SetupFailed { .. } => {}
                }
            }
            // The shell reports a killed daemon as gone, but only once the process is: until
            // then it may still answer. Half of the kills land at once.
            if killed.is_empty() {
                return Ok(());
            }
            for d in killed {
                if d.0 % 2 == 0 {
                    self.disconnect(d);
                }
            }
        }
    }

    fn check(&self) -> Result<(), TestCaseError> {
        let s = self.core.status();
        if let Some(cap) = self.cap {
            prop_assert!(s.memory.used <= cap, "used {} > cap {cap}", s.memory.used);
        }
        prop_assert_eq!(s.awaiting + s.executing + s.completed, s.submitted);
        prop_assert_eq!(s.submitted, self.size.len() as u64);
        prop_assert_eq!(s.completed, self.resolved.len() as u64);
        let live = self
            .daemons
            .values()
            .filter(|d| !d.released && !d.killed)
            .count() as u64;
        prop_assert_eq!(s.connections, live);

        let current: BTreeSet<TaskId> = self
            .daemons
            .values()
            .filter_map(|d| d.held.front().copied())
            .collect();
        let waiting: BTreeSet<TaskId> = self
            .daemons
            .values()
            .flat_map(|d| d.held.iter().skip(1).copied())
            .collect();
        let pending = self.size.keys().filter(|t| !self.resolved.contains_key(t));
        let mut expected_used = 0;
        let mut queued_plain = 0;
        let mut queued = 0;
        for t in pending {
            let in_queue = !current.contains(t) && !waiting.contains(t);
            if in_queue
                || waiting.contains(t)
                || self.retries_left[t] > 0
                || self.unwritten.contains(t)
                || self.cancelled_waiting.contains(t)
            {
                expected_used += self.size[t];
            }
            if in_queue {
                queued += 1;
                if !self.copies.contains(t) {
                    queued_plain += 1;
                }
            }
        }
        prop_assert_eq!(s.memory.used, expected_used, "reserved bytes drifted");
        prop_assert_eq!(
            s.awaiting,
            queued,
            "a task neither queued nor held by a daemon (or the reverse)"
        );
        let expected_uncollected: u64 = self
            .values
            .iter()
            .map(|t| match &self.resolved[t] {
                Outcome::Value(v) => v.len() as u64,
                _ => 0,
            })
            .sum();
        prop_assert_eq!(
            s.memory.uncollected,
            expected_uncollected,
            "uncollected bytes drifted"
        );
        let paused = self
            .uncollected_cap
            .is_some_and(|c| s.memory.uncollected >= c);
        if s.idle > 0 && !paused && !self.core.is_shut_down() {
            prop_assert_eq!(
                queued_plain,
                0,
                "an ordinary task waits while a daemon idles"
            );
            if queued == 0 {
                let unresolved = |t: &&TaskId| !self.resolved.contains_key(t);
                // Tasks waiting on a daemon being killed come back when it is gone.
                let not_asked_back = self
                    .daemons
                    .values()
                    .filter(|d| !d.killed)
                    .flat_map(|d| d.held.iter().skip(1))
                    .filter(unresolved)
                    .filter(|t| !self.cancelled_waiting.contains(t))
                    .count() as u64;
                let asked_back = self.cancelled_waiting.iter().filter(unresolved).count() as u64;
                prop_assert!(
                    not_asked_back == 0 || asked_back >= s.idle,
                    "a task waits ahead on a busy daemon while a daemon idles"
                );
            }
        }
        Ok(())
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2048, ..ProptestConfig::default() })]

    #[test]
    fn invariants_hold_under_random_interleavings(config in config(), ops in proptest::collection::vec(op(), 1..120)) {
        let mut m = Model::new(config);
        for op in &ops {
            m.apply(op)?;
        }
        m.core.shutdown(m.now);
        m.drain()?;
        m.check()?;
        for id in m.size.keys() {
            prop_assert!(m.resolved.contains_key(id), "{id} never resolved");
        }
        let s = m.core.status();
        prop_assert_eq!((s.awaiting, s.executing, s.memory.used), (0, 0, 0));
    }
}
