//! The executor-agnostic futures under tokio (which the library does not depend on): wakers
//! registered by `recv_async` / `send_async` are woken from the socket's I/O thread, on a
//! multi-threaded runtime with many tasks in flight at once.

use std::time::Duration;

use nano_transport::{Protocol, Socket};

const WAIT: Duration = Duration::from_secs(10);

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_time()
        .build()
        .unwrap()
}

#[test]
fn push_pull_futures_under_tokio() {
    let pull = Socket::new(Protocol::Pull0).unwrap();
    let url = pull
        .listen(&format!("abstract://nt-tokio-{}", std::process::id()))
        .unwrap()
        .local_url()
        .to_owned();
    let push = Socket::new(Protocol::Push0).unwrap();
    push.dial_blocking(&url, WAIT).unwrap();
    runtime().block_on(async move {
        // The receiver waits first, so its waker must be woken by the I/O thread.
        let receiver = tokio::spawn(async move {
            let mut got = Vec::new();
            for _ in 0..1000 {
                let m = tokio::time::timeout(WAIT, pull.recv_async()).await;
                got.push(m.expect("recv timed out").unwrap().into_vec());
            }
            got
        });
        tokio::time::sleep(Duration::from_millis(20)).await;
        for i in 0..1000u32 {
            push.send_async(&i.to_le_bytes()).await.unwrap();
        }
        let got = receiver.await.unwrap();
        let want: Vec<Vec<u8>> = (0..1000u32).map(|i| i.to_le_bytes().to_vec()).collect();
        assert_eq!(got, want);
    });
}

#[test]
fn concurrent_requests_on_contexts_under_tokio() {
    let rep = Socket::new(Protocol::Rep0).unwrap();
    let url = rep
        .listen("tcp://127.0.0.1:0")
        .unwrap()
        .local_url()
        .to_owned();
    let req = Socket::new(Protocol::Req0).unwrap();
    req.dial_blocking(&url, WAIT).unwrap();
    runtime().block_on(async move {
        let server = tokio::spawn(async move {
            for _ in 0..20 {
                let ctx = rep.context().unwrap();
                let m = ctx.recv_async().await.unwrap();
                let answer = [&b"re:"[..], &m].concat();
                ctx.send_async(&answer).await.unwrap();
            }
        });
        let clients: Vec<_> = (0..20)
            .map(|i| {
                let ctx = req.context().unwrap();
                tokio::spawn(async move {
                    let q = format!("q{i}");
                    ctx.send_async(q.as_bytes()).await.unwrap();
                    let a = tokio::time::timeout(WAIT, ctx.recv_async()).await;
                    assert_eq!(
                        &*a.expect("reply timed out").unwrap(),
                        format!("re:q{i}").as_bytes()
                    );
                })
            })
            .collect();
        for c in clients {
            c.await.unwrap();
        }
        server.await.unwrap();
    });
}
