"""How ``bench/serving_latency.py`` measures: the handler in-process, and ``wrk`` over HTTP.

The load generator is ``wrk`` with ``bench/wrk_bodies.lua``, whose percentiles are of the
measured latencies (see the script's docstring for why); this module runs it, reads its result
line back, and turns either kind of run into one row of the report. It also holds the optional
cProfile of in-process requests.
"""

from __future__ import annotations

import cProfile
import io
import json
import os
import pstats
import resource
import subprocess
import time
from pathlib import Path
from typing import Any

import numpy as np

WRK_SCRIPT = Path(__file__).with_name("wrk_bodies.lua")
WRK_INSTALL = Path(__file__).resolve().parents[1] / "scripts" / "install_wrk.sh"
WRK_WARMUP_S = 2
WRK_TIMEOUT = "10s"  # wrk's default 2 s would drop slow answers from the percentiles


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


def write_bodies(bodies: list[dict], path: Path) -> Path:
    """The request bodies as JSON lines, for ``bench/wrk_bodies.lua`` (``WRK_BODIES``)."""
    path.write_text("".join(json.dumps(body) + "\n" for body in bodies))
    return path


def wrk(url: str, bodies: Path, clients: int, seconds: float, output: Path) -> tuple[dict, float]:
    """One ``wrk`` run: its ``WRK_RESULT`` line as a dict, and wrk's CPU seconds."""
    command = ["wrk", "-t1", f"-c{clients}", f"-d{seconds}s", f"--timeout={WRK_TIMEOUT}"]
    command += ["--latency", "-s", str(WRK_SCRIPT), url]
    env = {**os.environ, "WRK_BODIES": str(bodies), "WRK_CONNECTIONS": str(clients)}
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    done = subprocess.run(command, env=env, capture_output=True, text=True)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    output.write_text(f"$ {' '.join(command)}\n{done.stdout}{done.stderr}")
    results = [line for line in done.stdout.splitlines() if line.startswith("WRK_RESULT ")]
    if done.returncode != 0 or not results:
        raise RuntimeError(f"wrk failed ({done.returncode}): {(done.stdout + done.stderr)[-2000:]}")
    result = json.loads(results[-1].removeprefix("WRK_RESULT "))
    # one measured latency per answer, the timed-out ones left out: else the undoing went wrong
    if not result["requests"] - result["errors_timeout"] <= result["samples"] <= result["requests"]:
        print(f"warning: {result['samples']} latencies for {result['requests']} requests: {output}")
    return result, cpu


def over_http(
    target: str, url: str, bodies: Path, clients: int, seconds: float, logs: Path
) -> tuple[dict, float]:
    """A warm-up wrk run then a timed one at ``clients`` connections; the row and wrk's CPU %."""
    wrk(url, bodies, clients, WRK_WARMUP_S, logs / f"wrk-{target}-{clients}-warmup.out")
    r, cpu = wrk(url, bodies, clients, seconds, logs / f"wrk-{target}-{clients}.out")
    errors = sum(r[f"errors_{kind}"] for kind in ("status", "connect", "read", "write", "timeout"))
    row = summary(
        target, clients, r["requests"], errors, r["p50_ms"], r["p95_ms"], r["p99_ms"], r["rps"]
    )
    return row, 100 * cpu / r["duration_s"]


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
