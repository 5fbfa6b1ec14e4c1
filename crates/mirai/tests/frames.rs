//! `#[derive(Frame)]` through the facade with real daemon processes: a struct of columns is
//! shared once, tasks take its generated view as their argument (only the region's name is
//! queued), and read the columns in place.

use mirai::{Daemons, Error, Frame, FromShared, Registry, TaskFn, map_typed, share_typed, task};

mod common;

#[derive(Frame)]
#[mori(data_frame)]
struct Table {
    x: Vec<f64>,
    group: Vec<i32>,
    keep: Vec<bool>,
    label: Vec<Option<String>>,
}

/// What a task saw of the table: the sum of kept `x`, the sum of `group`, the row count, the
/// labels.
type Summary = (f64, i64, usize, Vec<Option<String>>);

fn summarize(t: TableView) -> Summary {
    let kept: f64 =
        t.x.iter()
            .zip(t.keep.iter())
            .filter(|(_, k)| *k == Some(true))
            .map(|(x, _)| x)
            .sum();
    let groups = t.group.iter().map(|&g| i64::from(g)).sum();
    let labels = t.label.iter().map(|s| s.map(str::to_owned)).collect();
    (kept, groups, t.x.len(), labels)
}

const SUMMARIZE: TaskFn<TableView, Summary> = task!(summarize);

fn registry() -> Registry {
    Registry::new().with(&SUMMARIZE)
}

fn a_task_takes_a_derived_view_and_reads_the_columns_in_place() {
    let pool = Daemons::new().local(2).start().unwrap();
    let table = Table {
        x: (0..100_000).map(f64::from).collect(),
        group: vec![2; 100_000],
        keep: (0..100_000).map(|i| i % 2 == 0).collect(),
        label: (0..100_000)
            .map(|i| (i % 3 != 0).then(|| format!("row {i}")))
            .collect(),
    };
    let shared = share_typed(&table).unwrap();
    let view = TableView::from_shared(shared.view()).unwrap();
    let want_kept: f64 = (0..100_000).filter(|i| i % 2 == 0).map(f64::from).sum();
    let handles: Vec<_> = (0..4)
        .map(|_| pool.submit(&SUMMARIZE, view.clone()).unwrap())
        .collect();
    // Queued as a name: the four tasks reserve a few dozen bytes each, not the table.
    assert!(
        pool.status().memory.peak < 4 * 128,
        "{:?}",
        pool.status().memory
    );
    for h in handles {
        let (kept, groups, len, labels) = h.wait().unwrap();
        assert_eq!((kept, groups, len), (want_kept, 200_000, 100_000));
        assert_eq!(labels[0], None);
        assert_eq!(labels[1].as_deref(), Some("row 1"));
        assert_eq!(labels.len(), 100_000);
    }
}

/// A view whose region is gone by the time the task runs (attached by name, so it never held
/// the name, and the owner dropped its handle): the task resolves with a typed error saying the
/// argument could not be decoded, and the daemon serves the next task.
fn a_view_of_a_region_gone_before_the_task_ran_is_a_task_error() {
    let pool = Daemons::new().local(1).start().unwrap();
    let table = Table {
        x: vec![1.0],
        group: vec![1],
        keep: vec![true],
        label: vec![None],
    };
    let shared = share_typed(&table).unwrap();
    let attached: TableView = map_typed(&shared.view().identifier().unwrap()).unwrap();
    drop(shared);
    let err = pool
        .submit(&SUMMARIZE, attached)
        .unwrap()
        .wait()
        .unwrap_err();
    assert!(
        matches!(&err, Error::Task { message, .. } if message.contains("cannot decode the argument")),
        "{err:?}"
    );
    let again = share_typed(&table).unwrap();
    let view = TableView::from_shared(again.view()).unwrap();
    let (kept, groups, len, _) = pool.submit(&SUMMARIZE, view).unwrap().wait().unwrap();
    assert_eq!(
        (kept, groups, len),
        (1.0, 1, 1),
        "the same daemon serves on"
    );
}

fn main() {
    mirai::daemon_main_if_requested(&registry());
    use common::Test;
    common::run(&[
        Test::new(
            "a_task_takes_a_derived_view_and_reads_the_columns_in_place",
            a_task_takes_a_derived_view_and_reads_the_columns_in_place,
        ),
        Test::new(
            "a_view_of_a_region_gone_before_the_task_ran_is_a_task_error",
            a_view_of_a_region_gone_before_the_task_ran_is_a_task_error,
        ),
    ]);
}
