//! A small HTTP service that offloads CPU work to daemons and sheds load when the queue is
//! full: the use-case of Shiny's `ExtendedTask`, where a slow computation must not freeze the
//! server that serves everyone else.
//!
//! `GET /primes?n=N` counts the primes below `N` on a daemon. The handler uses `try_submit`:
//! when the byte cap is reached it answers `503 Service Unavailable` with `Retry-After` at once
//! instead of queueing without bound, and while it waits for a daemon it holds no runtime
//! thread (a `Mirai` is a `Future`). `GET /health` answers from the pool's counters and stays
//! fast however busy the daemons are.
//!
//! ```text
//! cargo run --release --example web -p mirai      # listens on 127.0.0.1:3000
//! curl 'http://127.0.0.1:3000/primes?n=2000000'
//! curl 'http://127.0.0.1:3000/health'
//! ```
//!
//! `MIRAI_WEB_ADDR`, `MIRAI_WEB_DAEMONS` and `MIRAI_WEB_CAP` (bytes) change the defaults.

use std::sync::Arc;

use axum::Router;
use axum::extract::{Query, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use mirai::{Daemons, Error, Pool, Registry, TaskFn, task};
use serde::Deserialize;

/// Counts the primes below `n` by trial division: deliberately CPU-bound.
pub(crate) fn count_primes(n: u64) -> u64 {
    (2..n)
        .filter(|&k| (2..).take_while(|d| d * d <= k).all(|d| k % d != 0))
        .count() as u64
}

/// The task the `/primes` route offloads.
pub(crate) const COUNT_PRIMES: TaskFn<u64, u64> = task!(count_primes);

/// Seconds a refused client is told to wait before it retries.
pub(crate) const RETRY_AFTER_SECS: u32 = 1;

/// The functions this program's daemons serve.
pub(crate) fn registry() -> Registry {
    Registry::new().with(&COUNT_PRIMES)
}

/// The service's routes over a shared pool.
pub(crate) fn router(pool: Arc<Pool>) -> Router {
    Router::new()
        .route("/primes", get(primes))
        .route("/health", get(health))
        .with_state(pool)
}

#[derive(Deserialize)]
struct PrimesQuery {
    n: u64,
}

async fn primes(State(pool): State<Arc<Pool>>, Query(q): Query<PrimesQuery>) -> Response {
    match pool.try_submit(&COUNT_PRIMES, q.n) {
        // Awaiting parks this request only; the runtime serves others meanwhile.
        Ok(handle) => match handle.await {
            Ok(count) => (StatusCode::OK, format!("{count}\n")).into_response(),
            Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()).into_response(),
        },
        Err((Error::Full, _)) => (
            StatusCode::SERVICE_UNAVAILABLE,
            [(header::RETRY_AFTER, RETRY_AFTER_SECS.to_string())],
            "busy: retry later\n",
        )
            .into_response(),
        Err((e @ Error::TooLarge { .. }, _)) => {
            (StatusCode::PAYLOAD_TOO_LARGE, e.to_string()).into_response()
        }
        Err((e, _)) => (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()).into_response(),
    }
}

/// Cheap: reads the counters under one short lock.
async fn health(State(pool): State<Arc<Pool>>) -> String {
    let s = pool.status();
    format!(
        "ok daemons={} queued={} running={} queued_bytes={} cap={}\n",
        s.connections,
        s.awaiting,
        s.executing,
        s.memory.used,
        s.memory
            .capacity
            .map_or_else(|| "none".into(), |c| c.to_string())
    )
}

fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    // In a daemon child this serves tasks and exits, before any runtime starts.
    mirai::daemon_main_if_requested(&registry());

    let addr: String = env_or("MIRAI_WEB_ADDR", "127.0.0.1:3000".to_string());
    let daemons = env_or("MIRAI_WEB_DAEMONS", 4usize);
    // A u64 argument is at most 10 bytes: 64 bytes hold about ten waiting requests.
    let cap = env_or("MIRAI_WEB_CAP", 64u64);
    let pool = Arc::new(
        Daemons::new()
            .local(daemons)
            .max_queued_bytes(cap)
            .start()?,
    );
    let runtime = tokio::runtime::Runtime::new()?;
    runtime.block_on(async move {
        let listener = tokio::net::TcpListener::bind(&addr).await?;
        println!(
            "listening on http://{} with {daemons} daemons, {cap}-byte queue",
            listener.local_addr()?
        );
        axum::serve(listener, router(pool)).await
    })?;
    Ok(())
}
