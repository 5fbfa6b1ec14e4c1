"""Python's ProcessPoolExecutor doing what the facade bench does, as the peer it is compared with.

Usage: ppe_map_bench.py WORKERS TASKS ROUNDS
Prints two numbers on one line: the p50 round trip of one submit + result() in microseconds
(ROUNDS of them after warm-up), and the tasks per second of map() over TASKS trivial tasks.
"""

import sys
import time
from concurrent.futures import ProcessPoolExecutor


def echo(x):
    return x


def main():
    workers, tasks, rounds = (int(a) for a in sys.argv[1:4])
    payload = b"\x07" * 64
    with ProcessPoolExecutor(max_workers=workers) as pool:
        # Start every worker before timing anything.
        list(pool.map(echo, range(workers * 4)))
        for _ in range(200):
            pool.submit(echo, payload).result()
        samples = []
        for _ in range(rounds):
            t = time.perf_counter()
            pool.submit(echo, payload).result()
            samples.append(time.perf_counter() - t)
        samples.sort()
        p50_us = samples[len(samples) // 2] * 1e6
        t = time.perf_counter()
        out = list(pool.map(echo, range(tasks)))
        elapsed = time.perf_counter() - t
        assert out == list(range(tasks))
    print(f"{p50_us} {tasks / elapsed}", flush=True)


if __name__ == "__main__":
    main()
