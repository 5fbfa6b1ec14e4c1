//! A daemon that stops reading cannot hold anyone else up: its large task waits in its own
//! connection's queue, by reference (no copy, no thread waiting for it), while the other
//! daemons' tasks go on; and under a byte cap that payload keeps counting until its last byte
//! is actually written.

mod util;

use std::io::Read;

use mirai_dispatch::protocol::ToDaemon;
use mirai_dispatch::{Config, DaemonEvent, Dispatcher, DispatcherConfig, Outcome, Task};
use util::shell::{DemoDaemon, PATIENCE, RawPeer, TOKEN, eventually, unique, wait_event};

const STUCK: usize = 4;
const BIG: usize = 8 << 20;

#[test]
fn a_daemon_that_does_not_read_delays_nobody_and_its_payload_counts_until_written() {
    let url = format!("abstract://{}", unique("slow-daemon"));
    let core = Config::default()
        .with_max_queued_bytes(1 << 30)
        .with_send_ahead(None);
    let (d, events) =
        Dispatcher::start(DispatcherConfig::new(url, TOKEN.to_vec()).with_core(core)).unwrap();

    // Daemons that complete the handshake and the hello, then never read again.
    let mut stuck: Vec<RawPeer> = (0..STUCK)
        .map(|_| {
            let mut p = RawPeer::connect(d.url()).unwrap();
            assert!(matches!(p.hello(0, TOKEN), Some(ToDaemon::Init(_))));
            p
        })
        .collect();
    for _ in 0..STUCK {
        wait_event(&events, |e| matches!(e, DaemonEvent::Joined { .. }));
    }
    // One multi-MiB task each: far more than a socket buffer takes.
    let big: Vec<_> = (0..STUCK)
        .map(|i| {
            d.submit(Task::new("len", vec![i as u8; BIG]), None)
                .unwrap()
        })
        .collect();
    assert_eq!(
        d.status().awaiting,
        0,
        "every big task went to a stuck daemon"
    );

    // A working daemon joins and runs 200 small tasks while the others are stuck.
    let _good = DemoDaemon::spawn(d.url(), 0, TOKEN);
    wait_event(&events, |e| matches!(e, DaemonEvent::Joined { .. }));
    let small: Vec<_> = (0..200u32)
        .map(|i| {
            (
                d.submit(Task::new("echo", i.to_le_bytes().to_vec()), None)
                    .unwrap(),
                i,
            )
        })
        .collect();
    for (id, i) in small {
        match d.wait(id, Some(PATIENCE)) {
            Some(Outcome::Value(v)) => assert_eq!(&*v, &i.to_le_bytes()),
            other => panic!("small task {i}: {other:?}"),
        }
    }
    // The stuck payloads are still on their way out: they still count against the cap (a
    // copy into a queue would have been released already, and would have doubled them).
    let used = d.status().memory.used;
    assert!(
        used >= (STUCK * (BIG - (1 << 20))) as u64,
        "only {used} bytes still counted for {STUCK} unwritten payloads of {BIG}"
    );

    // Once the stuck daemons read, every byte arrives intact and the budget empties.
    for (i, peer) in stuck.iter_mut().enumerate() {
        let mut head = [0u8; 9];
        peer.stream.read_exact(&mut head).unwrap();
        let len = u64::from_be_bytes(head[1..].try_into().unwrap()) as usize;
        assert!(len > BIG && len < BIG + 1024, "{len}");
        let mut body = vec![0u8; len];
        peer.stream.read_exact(&mut body).unwrap();
        assert!(body[len - BIG..].iter().all(|&b| b == i as u8));
    }
    assert!(
        eventually(PATIENCE, || d.status().memory.used == 0),
        "still counted: {}",
        d.status().memory.used
    );
    drop(stuck);
    for id in big {
        // Their daemons left without answering.
        assert_eq!(d.wait(id, Some(PATIENCE)), Some(Outcome::ConnectionLost));
    }
}
