//! The web example under load, on loopback: the service stays responsive while saturated,
//! sheds work with 503 + Retry-After instead of queueing past the cap, and the results it does
//! return are right. The test compiles the example's own routes (no copy of them), and is the
//! daemon program of the pools it starts.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, LazyLock};
use std::time::{Duration, Instant};

use mirai::Daemons;
use tokio::sync::Semaphore;

mod common;

#[path = "../examples/web.rs"]
#[allow(dead_code)] // The example's `main` is not used here.
mod web;

/// The HTTP client: ureq, whose HTTP/1.1 code is its own (not the server's hyper). Every
/// status is a response to look at rather than an error, each request has its own connection,
/// and none waits forever.
static CLIENT: LazyLock<ureq::Agent> = LazyLock::new(|| {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .max_idle_connections(0)
        .timeout_global(Some(Duration::from_secs(120)))
        .build()
        .into()
});

/// One GET: (status, headers with lowercase names, body). Blocking; run it on tokio's blocking
/// pool so the runtime's two workers keep serving.
async fn get(addr: SocketAddr, path: &str) -> (u16, Vec<(String, String)>, String) {
    let url = format!("http://{addr}{path}");
    tokio::task::spawn_blocking(move || {
        let mut response = CLIENT.get(&url).call().expect("a response");
        let headers = response
            .headers()
            .iter()
            .map(|(k, v)| {
                let v = v.to_str().expect("a text header value");
                (k.as_str().to_owned(), v.to_owned())
            })
            .collect();
        let body = response.body_mut().read_to_string().expect("a text body");
        (response.status().as_u16(), headers, body)
    })
    .await
    .expect("the request thread")
}

/// Enough work per request (in a debug build) that two daemons cannot keep up with sixteen
/// clients at once.
const N: u64 = 60_000;
/// Room for only a few waiting arguments (a u64 `N` is 3 bytes in postcard).
const CAP: u64 = 12;
const CLIENTS: usize = 16;
const REQUESTS: usize = 64;

fn service_sheds_load_and_stays_responsive() {
    let pool = Arc::new(
        Daemons::new()
            .local(2)
            .max_queued_bytes(CAP)
            .start()
            .expect("start the pool"),
    );
    let expected = web::count_primes(N).to_string();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let server =
            tokio::spawn(axum::serve(listener, web::router(Arc::clone(&pool))).into_future());

        // Watch the byte accounting and the health endpoint while the load runs.
        let done = Arc::new(AtomicBool::new(false));
        let max_used = Arc::new(AtomicU64::new(0));
        let sampler = {
            let (pool, done, max_used) =
                (Arc::clone(&pool), Arc::clone(&done), Arc::clone(&max_used));
            tokio::spawn(async move {
                while !done.load(Ordering::Relaxed) {
                    max_used.fetch_max(pool.status().memory.used, Ordering::Relaxed);
                    tokio::time::sleep(Duration::from_millis(1)).await;
                }
            })
        };
        let prober = {
            let (pool, done) = (Arc::clone(&pool), Arc::clone(&done));
            tokio::spawn(async move {
                // (latency, whether the daemons were all busy when it was sent)
                let mut probes = Vec::new();
                while !done.load(Ordering::Relaxed) {
                    let saturated = pool.status().idle == 0 && pool.status().awaiting > 0;
                    let start = Instant::now();
                    let (status, _, body) = get(addr, "/health").await;
                    assert_eq!(status, 200, "{body}");
                    assert!(body.starts_with("ok "), "{body}");
                    probes.push((start.elapsed(), saturated));
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
                probes
            })
        };

        let gate = Arc::new(Semaphore::new(CLIENTS));
        let clients: Vec<_> = (0..REQUESTS)
            .map(|_| {
                let gate = Arc::clone(&gate);
                tokio::spawn(async move {
                    let _permit = gate.acquire_owned().await.unwrap();
                    get(addr, &format!("/primes?n={N}")).await
                })
            })
            .collect();
        let mut ok = 0;
        let mut shed = 0;
        for client in clients {
            let (status, headers, body) = client.await.unwrap();
            match status {
                200 => {
                    assert_eq!(body.trim_end(), expected, "a wrong result");
                    ok += 1;
                }
                503 => {
                    let retry = headers.iter().find(|(k, _)| k == "retry-after");
                    assert_eq!(
                        retry.map(|(_, v)| v.as_str()),
                        Some(web::RETRY_AFTER_SECS.to_string().as_str()),
                        "a 503 without Retry-After"
                    );
                    shed += 1;
                }
                other => panic!("unexpected status {other}: {body}"),
            }
        }
        done.store(true, Ordering::Relaxed);
        sampler.await.unwrap();
        let probes = prober.await.unwrap();
        server.abort();

        assert!(ok > 0, "no request was served");
        assert!(
            shed > 0,
            "the queue never filled: no 503 in {REQUESTS} requests"
        );
        let saturated: Vec<Duration> = probes.iter().filter(|p| p.1).map(|p| p.0).collect();
        assert!(
            !saturated.is_empty(),
            "no health probe ran while the daemons were saturated"
        );
        let worst = probes.iter().map(|p| p.0).max().unwrap();
        assert!(
            worst < Duration::from_secs(1),
            "/health took {worst:?} under load"
        );
        let status = pool.status();
        assert!(max_used.load(Ordering::Relaxed) <= CAP);
        assert!(
            status.memory.peak <= CAP,
            "peak {} over the cap",
            status.memory.peak
        );
        assert!(status.memory.peak > 0);
        println!(
            "  {ok} served, {shed} shed, {} health probes ({} while saturated), slowest {worst:?}",
            probes.len(),
            saturated.len()
        );
    });
}

fn main() {
    mirai::daemon_main_if_requested(&web::registry());
    common::run(&[common::Test::new(
        "service_sheds_load_and_stays_responsive",
        service_sheds_load_and_stays_responsive,
    )]);
}
