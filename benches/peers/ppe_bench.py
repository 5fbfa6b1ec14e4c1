"""Python's ProcessPoolExecutor as the peer of the dispatcher benchmarks.

Measured the way the Rust side measures itself: a trivial function that echoes 64 bytes,
round-trip latency through a pool of 1 worker (1,000 warm-up, then timed rounds, p50 and p99),
and the throughput of 20,000 trivial tasks through a pool of 2 workers (all submitted, then
all collected). Prints one JSON object on stdout.

usage: python3 ppe_bench.py [ROUNDS] [TASKS]
"""

import json
import sys
import time
from concurrent.futures import ProcessPoolExecutor


def echo(b):
    return b


def quantile_us(samples, q):
    s = sorted(samples)
    return s[round((len(s) - 1) * q)] * 1e6


def main():
    rounds = int(sys.argv[1]) if len(sys.argv) > 1 else 5000
    tasks = int(sys.argv[2]) if len(sys.argv) > 2 else 20000
    payload = bytes([7]) * 64
    with ProcessPoolExecutor(max_workers=1) as pool:
        for _ in range(1000):
            pool.submit(echo, payload).result()
        samples = []
        for _ in range(rounds):
            t = time.perf_counter()
            pool.submit(echo, payload).result()
            samples.append(time.perf_counter() - t)
    with ProcessPoolExecutor(max_workers=2) as pool:
        for f in [pool.submit(echo, b"x" * 8) for _ in range(200)]:
            f.result()
        t = time.perf_counter()
        futures = [pool.submit(echo, b"x" * 8) for _ in range(tasks)]
        for f in futures:
            f.result()
        elapsed = time.perf_counter() - t
    print(json.dumps({
        "p50_us": quantile_us(samples, 0.5),
        "p99_us": quantile_us(samples, 0.99),
        "tasks_per_s": tasks / elapsed,
        "python": sys.version.split()[0],
    }))


if __name__ == "__main__":
    main()
