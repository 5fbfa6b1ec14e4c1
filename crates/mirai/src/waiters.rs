//! Reusable threads that wait for outcomes on behalf of awaited handles.
//!
//! Why: the dispatcher offers a blocking `wait(id)` and no waker hook, so a `Mirai` polled as a
//! `Future` needs a thread to block in that wait and wake the task's waker when the outcome
//! is stored: event-driven, with no timer or polling. Starting a thread per awaited handle cost
//! about 25 us of the round trip; here a thread that has delivered its outcome parks on a
//! channel and takes the next handle's wait, and threads idle for [`IDLE`] exit.

use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use mirai_dispatch::{Dispatcher, Outcome, TaskId};

use crate::handle::Slot;

/// One wait: whose dispatcher, which task, where to put the outcome.
pub(crate) struct Job {
    pub(crate) dispatcher: Arc<Dispatcher>,
    pub(crate) id: TaskId,
    pub(crate) slot: Arc<Slot>,
}

impl Job {
    fn run(self) {
        let outcome = self.dispatcher.wait(self.id, None);
        self.slot.fill(outcome.unwrap_or(Outcome::ShutDown));
    }
}

/// How long a waiting thread with nothing to do stays before it exits.
const IDLE: Duration = Duration::from_secs(10);

/// Idle threads, by id, each with the sender of its job channel.
static IDLE_THREADS: Mutex<Vec<(u64, Sender<Job>)>> = Mutex::new(Vec::new());

fn idle() -> std::sync::MutexGuard<'static, Vec<(u64, Sender<Job>)>> {
    IDLE_THREADS.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Hands `job` to an idle thread, or starts one; gives the job back if no thread can be had.
pub(crate) fn watch(mut job: Job) -> Result<(), Job> {
    loop {
        let Some((_, tx)) = idle().pop() else {
            break;
        };
        match tx.send(job) {
            Ok(()) => return Ok(()),
            // That thread exited meanwhile: try the next.
            Err(mpsc::SendError(back)) => job = back,
        }
    }
    static NEXT_ID: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let id = NEXT_ID.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let (tx, rx) = mpsc::channel();
    let first = Arc::new(Mutex::new(Some(job)));
    let handed = Arc::clone(&first);
    let spawned = std::thread::Builder::new()
        .name("mirai-waiter".into())
        .spawn(move || {
            let job = handed.lock().unwrap_or_else(PoisonError::into_inner).take();
            if let Some(job) = job {
                job.run();
            }
            serve(id, &tx, &rx);
        });
    match spawned {
        Ok(_) => Ok(()),
        Err(_) => {
            let job = first.lock().unwrap_or_else(PoisonError::into_inner).take();
            job.map_or(Ok(()), Err)
        }
    }
}

/// A thread's life after its first job: offer itself, run what it is given, exit when idle.
fn serve(id: u64, tx: &Sender<Job>, rx: &Receiver<Job>) {
    loop {
        idle().push((id, tx.clone()));
        match rx.recv_timeout(IDLE) {
            Ok(job) => job.run(),
            Err(RecvTimeoutError::Timeout) => {
                idle().retain(|(other, _)| *other != id);
                // A job sent between the timeout and the removal is still ours to run.
                match rx.try_recv() {
                    Ok(job) => job.run(),
                    Err(_) => return,
                }
            }
            Err(RecvTimeoutError::Disconnected) => return,
        }
    }
}
