//! Reproducible random numbers and one trace across processes: ten tasks each draw a number
//! from their own stream (`ctx.rng()`, derived from the pool's seed and the task's submission
//! index), once on 1 daemon and once on 4, and print the same ten numbers both times; then the
//! trace of the second run is printed as a tree, the host's `submit` spans with the daemons'
//! `execute` spans under them, joined by the ids the task carried across the process boundary.
//!
//! ```text
//! cargo run --release --example reproducible -p mirai
//! ```
//!
//! Every process (the host, and each daemon: the example is its own daemon program) records
//! its closed spans in memory with a small `tracing` layer; the daemons hand theirs over as a
//! task result. A real program would install an exporter instead (see `mirai::trace`).

use std::collections::BTreeMap;
use std::hash::{BuildHasher, RandomState};

use mirai::trace::TraceParent;
use mirai::{Ctx, Daemons, Registry, TaskFn, TaskOptions, task, task_ctx};
use rand_core::Rng;
use tracing_subscriber::layer::SubscriberExt as _;

#[path = "../tests/common/spans.rs"]
mod spans;

use spans::{Recorded, Recorder};

/// The spans this process recorded.
static RECORDER: std::sync::OnceLock<Recorder> = std::sync::OnceLock::new();

/// One number from the task's own random stream.
fn draw(ctx: &Ctx, (): ()) -> u64 {
    ctx.rng().next_u64()
}

/// What this daemon recorded so far, and its pid.
fn recorded((): ()) -> (u32, Vec<Recorded>) {
    let spans = RECORDER.get().map(Recorder::closed).unwrap_or_default();
    (std::process::id(), spans)
}

const DRAW: TaskFn<(), u64> = task_ctx!(draw);
const RECORDED: TaskFn<(), (u32, Vec<Recorded>)> = task!(recorded);

const SEED: u64 = 42;
const DRAWS: usize = 10;

/// The draws of one run, and the spans each daemon recorded (by its pid).
type Run = (Vec<u64>, Vec<(u32, Vec<Recorded>)>);

/// Ten draws on `daemons` daemons, each task continuing the trace `root` (when given).
fn draws(daemons: usize, root: Option<TraceParent>) -> Result<Run, mirai::Error> {
    let pool = Daemons::new().local(daemons).seed(SEED).start()?;
    let options = match root {
        Some(root) => TaskOptions::new().trace_parent(root),
        None => TaskOptions::new(),
    };
    let handles = (0..DRAWS)
        .map(|_| pool.submit_with(&DRAW, (), options))
        .collect::<Result<Vec<_>, _>>()?;
    let numbers = mirai::collect(handles)?;
    // Every daemon hands over the spans it closed (its `execute` spans of the draws).
    let recorded = mirai::collect(pool.everywhere(&RECORDED, (), daemons)?)?;
    Ok((numbers, recorded))
}

/// A fresh trace to run under: random ids (the standard library's hasher keys are random).
fn new_root() -> TraceParent {
    let random = || RandomState::new().hash_one(std::process::id());
    let mut trace = [0u8; 16];
    trace[..8].copy_from_slice(&random().to_be_bytes());
    trace[8..].copy_from_slice(&random().to_be_bytes());
    TraceParent::new(trace, random().to_be_bytes(), 1).expect("random ids are not zero")
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let recorder = RECORDER.get_or_init(Recorder::default).clone();
    tracing::subscriber::set_global_default(tracing_subscriber::registry().with(recorder))?;
    mirai::daemon_main_if_requested(&Registry::new().with(&DRAW).with(&RECORDED));

    let (one, _) = draws(1, None)?;
    let root = new_root();
    let (four, daemon_spans) = draws(4, Some(root))?;
    println!("seed {SEED}, 1 daemon:  {one:?}");
    println!("seed {SEED}, 4 daemons: {four:?}");
    println!("the same: {}", one == four);

    // The tree: the run's root, the host's submit spans under it, and under each the daemon's
    // execute span whose parent is that submit span.
    let host = std::process::id();
    let trace = hex(&root.trace_id());
    let mut executes: BTreeMap<String, (u32, Recorded)> = BTreeMap::new();
    for (pid, spans) in daemon_spans {
        for span in spans.into_iter().filter(|s| s.name == "execute") {
            if span.field("trace_id") == Some(trace.as_str()) {
                let parent = span.field("parent_span_id").unwrap_or_default().to_owned();
                executes.insert(parent, (pid, span));
            }
        }
    }
    let submits: Vec<Recorded> = RECORDER
        .get()
        .map(Recorder::closed)
        .unwrap_or_default()
        .into_iter()
        .filter(|s| s.name == "submit" && s.field("trace_id") == Some(trace.as_str()))
        .collect();
    println!("trace {trace}");
    println!("└─ run (host pid {host}) span {}", hex(&root.span_id()));
    for (i, submit) in submits.iter().enumerate() {
        let last = i + 1 == submits.len();
        let id = submit.field("span_id").unwrap_or_default();
        let function = submit.field("function").unwrap_or_default();
        println!(
            "   {} submit {function} (host pid {host}) span {id}",
            if last { "└─" } else { "├─" }
        );
        if let Some((pid, execute)) = executes.get(id) {
            println!(
                "   {}  └─ execute {function} (daemon pid {pid}) span {}",
                if last { " " } else { "│" },
                execute.field("span_id").unwrap_or_default()
            );
        }
    }
    Ok(())
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
