"""How ``bench/serving_latency.py`` measures: the handler in-process, and ``wrk`` over HTTP.

The load generator is ``wrk`` run by :mod:`assets.serving.load_test` (the same runner the SLO
check uses), whose percentiles are of the measured latencies (its docstring says why); this
module turns either kind of run into one row of the report. It also holds the optional cProfile
of in-process requests, and the in-process A/B of handler variants (:func:`alternating`) that
``bench/score_reasons.py`` and ``bench/score_cache.py`` print.

Each HTTP row also says how the clients' connections were split between the server's worker
processes, counted mid-run. Both servers' workers accept from one shared listening socket, and
a worker that wakes to a burst of connections accepts every one pending (uvloop's libuv does),
so the split is left to chance: in one run of fraud at 8 clients, FastAPI's two workers held 8
and 0 connections and BentoML's 4 and 4; at 32, 2 and 30 against 31 and 1. One worker with all
8 clients and one idle answer like a single worker, so the split explains most of the spread
between runs at 2 workers; compare rows whose splits are alike.
"""

from __future__ import annotations

import cProfile
import io
import os
import pstats
import threading
import time
from collections import Counter
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import numpy as np
import psutil

from assets.serving.load_test import wrk

WRK_WARMUP_S = 2
SPLIT_AFTER_S = 2  # into the timed run: every connection is open by then


def connection_split(port: int) -> str:
    """The established connections to ``port``, counted per server process: "4+4"."""
    per_process = Counter(
        c.pid
        for c in psutil.net_connections("tcp")
        if c.status == psutil.CONN_ESTABLISHED and c.laddr and c.laddr.port == port and c.pid
    )
    return "+".join(str(n) for n in sorted(per_process.values(), reverse=True)) or "?"


def summary(
    target: str,
    clients: int,
    requests: int,
    errors: int,
    p50: float,
    p95: float,
    p99: float,
    rps: float,
) -> dict:
    """One row of the report; latencies in milliseconds."""
    return {
        "target": target,
        "clients": clients,
        "requests": requests,
        "errors": errors,
        "p50_ms": p50,
        "p95_ms": p95,
        "p99_ms": p99,
        "rps": rps,
    }


def in_process(handler: Any, bodies: list[dict], seconds: float, warmup: int = 100) -> dict:
    for i in range(warmup):
        handler.handle(bodies[i % len(bodies)])
    latencies = []
    started = time.perf_counter()
    i = 0
    while time.perf_counter() - started < seconds:
        t = time.perf_counter()
        handler.handle(bodies[i % len(bodies)])
        latencies.append(time.perf_counter() - t)
        i += 1
    elapsed = time.perf_counter() - started
    p50, p95, p99 = np.percentile(np.asarray(latencies) * 1000, [50, 95, 99])
    return summary("in-process", 1, len(latencies), 0, p50, p95, p99, len(latencies) / elapsed)


def _block(handler: Any, bodies: list[dict], n: int) -> np.ndarray:
    """Milliseconds of each of ``n`` requests, one at a time."""
    times = []
    for i in range(n):
        started = time.perf_counter()
        handler.handle_many([bodies[i % len(bodies)]])
        times.append(time.perf_counter() - started)
    return np.array(times) * 1e3


def alternating(
    variants: Mapping[str, Callable[[], Any]], bodies: list[dict], blocks: int
) -> dict[str, np.ndarray]:
    """Per variant, the milliseconds of its requests: the variants take turns, in blocks of
    1,000 requests after 100 warm-up ones, ``blocks`` each, so that a load change on the shared
    machine touches every variant. Each variant is a function giving its handler, called before
    each of its blocks (it may set the handler up, e.g. its reasons policy)."""
    times: dict[str, list[np.ndarray]] = {name: [] for name in variants}
    for _ in range(blocks):
        for name, prepared in variants.items():
            handler = prepared()
            _block(handler, bodies, 100)
            times[name].append(_block(handler, bodies, 1000))
    return {name: np.concatenate(parts) for name, parts in times.items()}


def print_alternating(times: Mapping[str, np.ndarray]) -> None:
    """p50, p99 and mean per variant, each mean against the first variant's, and the load."""
    first = next(iter(times.values())).mean()
    for name, ms in times.items():
        print(
            f"{name:8} p50 {np.percentile(ms, 50):.3f} ms  p99 {np.percentile(ms, 99):.3f} ms"
            f"  mean {ms.mean():.3f} ms ({ms.mean() / first:.2f}x)  ({len(ms)} requests)"
        )
    print(f"load average (1, 5, 15 min): {', '.join(f'{x:.2f}' for x in os.getloadavg())}")


def over_http(
    target: str, url: str, bodies: Path, clients: int, seconds: float, logs: Path
) -> tuple[dict, float]:
    """A warm-up wrk run then a timed one at ``clients`` connections; the row and wrk's CPU %."""
    wrk(url, bodies, clients, WRK_WARMUP_S, logs / f"wrk-{target}-{clients}-warmup.out")
    output = logs / f"wrk-{target}-{clients}.out"
    split: list[str] = []
    port = urlsplit(url).port or 80
    timer = threading.Timer(SPLIT_AFTER_S, lambda: split.append(connection_split(port)))
    timer.start()
    run = wrk(url, bodies, clients, int(seconds), output)
    timer.join()
    r = run.result
    # one measured latency per answer, the timed-out ones left out: else the undoing went wrong
    if not r["requests"] - r["errors_timeout"] <= r["samples"] <= r["requests"]:
        print(f"warning: {r['samples']} latencies for {r['requests']} requests: {output}")
    row = summary(
        target, clients, r["requests"], run.errors, r["p50_ms"], r["p95_ms"], r["p99_ms"], r["rps"]
    )
    row["split"] = split[0] if split else "?"
    return row, 100 * run.cpu_seconds / r["duration_s"]


def profile(handler: Any, bodies: list[dict], calls: int, top: int = 20) -> str:
    for body in bodies[:20]:
        handler.handle(body)
    profiler = cProfile.Profile()
    profiler.enable()
    for i in range(calls):
        handler.handle(bodies[i % len(bodies)])
    profiler.disable()
    text = io.StringIO()
    stats = pstats.Stats(profiler, stream=text).strip_dirs()
    stats.sort_stats("cumulative").print_stats(top)
    stats.sort_stats("tottime").print_stats(top)
    return text.getvalue()
