//! Big data written once, read by every daemon in place: a struct of columns (200 MB) is shared
//! as one region, a task per column runs on the daemons taking the column's view (only its
//! path-form name, like `/mori_1a2b_1[2]`, is queued), and one task returns its result as a
//! new region that the host then owns. The proportional set sizes (PSS) of the host and the
//! daemons, summed, show one copy of the data, not one per process.
//!
//! ```text
//! cargo run --release --example shared_frames -p mirai [-- ROWS]
//! ```

use std::collections::BTreeSet;
use std::sync::Mutex;

use mirai::{Daemons, DoubleColumn, Error, Frame, FromShared, Registry, Shared, TaskFn, task};

/// Four columns of doubles, shared as one R data frame (R reads it with `mori::map_shared`).
#[derive(Frame)]
#[mori(data_frame)]
struct Readings {
    a: Vec<f64>,
    b: Vec<f64>,
    c: Vec<f64>,
    d: Vec<f64>,
}

/// The columns this daemon was given, kept mapped for later tasks as a long-lived worker keeps
/// its share of the data. They are the host's pages: keeping them costs no memory of its own.
static KEPT: Mutex<Vec<DoubleColumn>> = Mutex::new(Vec::new());

/// The mean of one column, and the daemon that computed it. The column is read in place.
fn mean(column: DoubleColumn) -> (f64, u32) {
    let mean = column.iter().sum::<f64>() / column.len() as f64;
    KEPT.lock().expect("kept columns").push(column);
    (mean, std::process::id())
}

/// The sum of each row, built on the daemon as a new region. The daemon does not unlink it when
/// the task ends: the host's handle owns it.
fn row_sums(frame: ReadingsView) -> Shared {
    let columns: [&[f64]; 4] = [&frame.a, &frame.b, &frame.c, &frame.d];
    let sums: Vec<f64> = (0..frame.a.len())
        .map(|i| columns.iter().map(|column| column[i]).sum())
        .collect();
    mirai::share_f64(&sums).expect("share the row sums")
}

const MEAN: TaskFn<DoubleColumn, (f64, u32)> = task!(mean);
const ROW_SUMS: TaskFn<ReadingsView, Shared> = task!(row_sums);

/// Rows per column: 6,250,000 doubles make 50 MB a column, 200 MB the frame.
const ROWS: usize = 6_250_000;
const MB: f64 = 1e6;

/// Proportional set size of process `pid` in bytes: a page it alone maps counts fully, a page
/// `n` processes map counts `1/n` in each, so summing over processes counts every page once.
fn pss(pid: u32) -> f64 {
    let text = std::fs::read_to_string(format!("/proc/{pid}/smaps_rollup")).unwrap_or_default();
    let kb = text
        .lines()
        .find_map(|l| l.strip_prefix("Pss:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok());
    kb.unwrap_or(0.0) * 1024.0
}

fn main() -> Result<(), Error> {
    let registry = Registry::new().with(&MEAN).with(&ROW_SUMS);
    // In a daemon child this serves tasks and exits; in the host it returns at once.
    mirai::daemon_main_if_requested(&registry);

    let rows = std::env::args()
        .nth(1)
        .map_or(Ok(ROWS), |r| r.parse())
        .expect("ROWS is a whole number");
    let pool = Daemons::new().local(2).start()?;
    while pool.status().connections < 2 {
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    let processes = || [std::process::id()].into_iter().chain(pool.local_pids());
    let summed_pss = || processes().map(pss).sum::<f64>();
    let before = summed_pss();

    // Share once. The struct's own vectors are dropped: the region is the one copy.
    let column = |k: f64| (0..rows).map(|i| (i % 1000) as f64 * k).collect();
    let readings = Readings {
        a: column(1.0),
        b: column(2.0),
        c: column(3.0),
        d: column(4.0),
    };
    let shared = mirai::share_typed(&readings)?;
    drop(readings);
    let one_copy = (4 * rows * size_of::<f64>()) as f64;
    println!(
        "shared 4 columns x {rows} rows ({:.0} MB) once as {}",
        one_copy / MB,
        shared.name()
    );

    // A task per column: each argument crosses as the column's path-form name.
    let frame = ReadingsView::from_shared(shared.view())?;
    let columns = [
        ("a", &frame.a),
        ("b", &frame.b),
        ("c", &frame.c),
        ("d", &frame.d),
    ];
    let tasks = columns
        .iter()
        .map(|(_, col)| pool.submit(&MEAN, (*col).clone()))
        .collect::<Result<Vec<_>, _>>()?;
    let mut daemons = BTreeSet::new();
    for ((label, col), task) in columns.iter().zip(tasks) {
        let (mean, daemon) = task.wait()?;
        daemons.insert(daemon);
        // The host reads the same pages to check the answer.
        assert_eq!(
            mean,
            col.iter().sum::<f64>() / rows as f64,
            "column {label}"
        );
        let sent = col.shared_view().identifier().unwrap_or_default();
        println!("column {label}: mean {mean:.1} on daemon {daemon} (sent as {sent})");
    }
    // Host and daemons all map the columns now: every page is counted once in the sum.
    let grown = summed_pss() - before;
    println!(
        "{} column tasks ran on {} daemons",
        columns.len(),
        daemons.len()
    );
    println!(
        "summed PSS of host and daemons grew by {:.0} MB: {:.2}x one copy ({:.0} MB)",
        grown / MB,
        grown / one_copy,
        one_copy / MB
    );

    // A result as a region: built on a daemon, owned (and later unlinked) by the host.
    let sums = pool.submit(&ROW_SUMS, frame.clone())?.wait()?;
    let xs = sums.as_f64().expect("doubles");
    let largest = xs.iter().copied().fold(f64::MIN, f64::max);
    let result_bytes = std::mem::size_of_val(xs) as f64;
    println!(
        "row sums came back as region {} ({:.0} MB), now the host's: largest {largest}",
        sums.name(),
        result_bytes / MB
    );
    let grown = summed_pss() - before;
    println!(
        "with the result read: grew by {:.0} MB: {:.2}x one copy of frame and result ({:.0} MB)",
        grown / MB,
        grown / (one_copy + result_bytes),
        (one_copy + result_bytes) / MB
    );
    Ok(())
}
