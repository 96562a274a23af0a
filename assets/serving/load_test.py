"""Closed-loop HTTP load with ``wrk``: latency percentiles, throughput, errors, CPU per request.

Used by the SLO check (:mod:`assets.serving.slo_check_assets`) and the serving benchmark
(``bench/serving_latency.py``). No Dagster here: a plain function runs ``wrk`` against a URL and
returns what it measured.

Why ``wrk``: on a 2-core machine the load generator shares the CPU with the server, and a
Python client (``httpx``) took so much of it that it distorted the server's figures (bare
FastAPI fraud: 401 req/s under httpx, 645 under wrk); wrk's event loop in C costs a few percent
of a core (reported as ``generator_cpu``). The load is a closed loop: ``clients`` connections,
each sending its next request when the last one is answered, a latency measured from the
request's write to its answer, one per answered request. wrk 4.1's own percentiles are
"coordinated omission corrected" (synthetic samples for requests a stalled connection did not
send: an open-loop view that turned one 2 s stall into a p95 of 1.7 s where the measured one
was 8 ms); ``wrk_bodies.lua`` beside this module undoes that correction exactly and prints the
measured histogram (see the script). Errors are wrk's: HTTP status >= 400, connect, read and
write errors and timeouts (a request over ``WRK_TIMEOUT``, left out of the percentiles).

The server's CPU is read from ``/proc`` through psutil for its process and every descendant
(BentoML's arbiter and workers) before and after the measured run, so ``server_cpu_ms`` is the
CPU the service spent per answered request, whatever the number of workers.
"""

from __future__ import annotations

import json
import os
import resource
import shutil
import subprocess
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil

WRK_SCRIPT = Path(__file__).with_name("wrk_bodies.lua")
WRK_INSTALL = "scripts/install_wrk.sh"  # in the repository; Debian and Ubuntu: apt-get install wrk
WRK_TIMEOUT = "10s"  # wrk's default 2 s would drop slow answers from the percentiles
ERROR_KINDS = ("status", "connect", "read", "write", "timeout")


class LoadGeneratorMissing(RuntimeError):
    """``wrk`` is not on the PATH."""


def require_wrk() -> str:
    """The path of ``wrk``; :class:`LoadGeneratorMissing` naming how to install it if absent."""
    found = shutil.which("wrk")
    if found is None:
        raise LoadGeneratorMissing(
            f"wrk, the HTTP load generator, is not installed: run {WRK_INSTALL}"
            " (Debian and Ubuntu: apt-get install wrk; macOS: brew install wrk)"
        )
    return found


def write_bodies(bodies: Iterable[Mapping[str, Any]], path: Path) -> Path:
    """The request bodies as JSON lines, which ``wrk_bodies.lua`` sends in rotation."""
    path.write_text("".join(json.dumps(body) + "\n" for body in bodies), encoding="utf-8")
    return path


@dataclass(frozen=True)
class WrkRun:
    """One ``wrk`` run: its ``WRK_RESULT`` line, the measured histogram and wrk's own CPU."""

    result: dict[str, Any]
    histogram: list[tuple[float, int]]  # (latency in ms, answered requests), ascending
    cpu_seconds: float

    @property
    def errors(self) -> int:
        return sum(int(self.result[f"errors_{kind}"]) for kind in ERROR_KINDS)


def _histogram(line: str) -> list[tuple[float, int]]:
    pairs = (item.split(":") for item in line.split(",") if item)
    return [(int(us) / 1000, int(count)) for us, count in pairs]


def wrk(url: str, bodies: Path, clients: int, seconds: int, output: Path) -> WrkRun:
    """Run ``wrk`` for ``seconds`` with ``clients`` connections and one thread; its full output
    (wrk's own corrected figures included) is kept in ``output``."""
    command = [require_wrk(), "-t1", f"-c{clients}", f"-d{seconds}s", f"--timeout={WRK_TIMEOUT}"]
    command += ["--latency", "-s", str(WRK_SCRIPT), url]
    env = {**os.environ, "WRK_BODIES": str(bodies), "WRK_CONNECTIONS": str(clients)}
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    done = subprocess.run(command, env=env, capture_output=True, text=True, check=False)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    output.write_text(f"$ {' '.join(command)}\n{done.stdout}{done.stderr}", encoding="utf-8")
    lines = done.stdout.splitlines()
    results = [line for line in lines if line.startswith("WRK_RESULT ")]
    if done.returncode != 0 or not results:
        raise RuntimeError(f"wrk failed ({done.returncode}): {(done.stdout + done.stderr)[-2000:]}")
    histogram = [line for line in lines if line.startswith("WRK_HISTOGRAM ")]
    result = json.loads(results[-1].removeprefix("WRK_RESULT "))
    return WrkRun(
        result, _histogram(histogram[-1].removeprefix("WRK_HISTOGRAM ")) if histogram else [], cpu
    )


def tree_cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of process ``pid`` and every live descendant."""
    try:
        root = psutil.Process(pid)
        processes = [root, *root.children(recursive=True)]
    except psutil.NoSuchProcess:
        return 0.0
    total = 0.0
    for process in processes:
        try:
            times = process.cpu_times()
        except psutil.NoSuchProcess:  # a worker that exited meanwhile
            continue
        total += times.user + times.system
    return total


@dataclass(frozen=True)
class LoadResult:
    """The measured run of :func:`measure`; latencies in milliseconds."""

    clients: int
    seconds: float
    requests: int  # answered, whatever their status
    errors: int
    attempted: int  # answered plus those lost to connect, read, write errors and timeouts
    p50_ms: float
    p95_ms: float
    p99_ms: float
    mean_ms: float
    max_ms: float
    qps: float
    generator_cpu: float  # wrk's CPU seconds per second: the share of one core it used
    server_cpu_ms: float | None  # the server's CPU milliseconds per answered request
    histogram: list[tuple[float, int]] = field(default_factory=list)
    error_kinds: dict[str, int] = field(default_factory=dict)

    @property
    def error_rate(self) -> float:
        return self.errors / self.attempted if self.attempted else 0.0

    def figures(self) -> dict[str, float]:
        """The numbers to record (metadata, MLflow metrics), by name."""
        figures = {
            "p50_ms": self.p50_ms,
            "p95_ms": self.p95_ms,
            "p99_ms": self.p99_ms,
            "mean_ms": self.mean_ms,
            "max_ms": self.max_ms,
            "qps": self.qps,
            "requests": float(self.requests),
            "errors": float(self.errors),
            "error_rate": self.error_rate,
            "clients": float(self.clients),
            "seconds": self.seconds,
            "generator_cpu": self.generator_cpu,
        }
        if self.server_cpu_ms is not None:
            figures["server_cpu_ms_per_request"] = self.server_cpu_ms
        return figures


def measure(
    url: str,
    bodies: Path,
    clients: int,
    warmup_s: int,
    seconds: int,
    logs: Path,
    server_pid: int | None = None,
) -> LoadResult:
    """A warm-up run (not counted) then the measured one, at ``clients`` connections.

    ``logs`` keeps each run's wrk output; with ``server_pid`` the server's CPU per answered
    request is measured over the measured run.
    """
    name = f"wrk-{clients}"
    if warmup_s > 0:
        wrk(url, bodies, clients, warmup_s, logs / f"{name}-warmup.out")
    cpu_before = tree_cpu_seconds(server_pid) if server_pid is not None else None
    run = wrk(url, bodies, clients, seconds, logs / f"{name}.out")
    cpu_after = tree_cpu_seconds(server_pid) if server_pid is not None else None
    r = run.result
    answered = int(r["requests"])
    lost = sum(int(r[f"errors_{kind}"]) for kind in ERROR_KINDS if kind != "status")
    server_cpu = None
    if cpu_before is not None and cpu_after is not None and answered:
        server_cpu = 1000 * (cpu_after - cpu_before) / answered
    return LoadResult(
        clients=clients,
        seconds=float(r["duration_s"]),
        requests=answered,
        errors=run.errors,
        attempted=answered + lost,
        p50_ms=float(r["p50_ms"]),
        p95_ms=float(r["p95_ms"]),
        p99_ms=float(r["p99_ms"]),
        mean_ms=float(r["mean_ms"]),
        max_ms=float(r["max_ms"]),
        qps=float(r["rps"]),
        generator_cpu=run.cpu_seconds / float(r["duration_s"]) if r["duration_s"] else 0.0,
        server_cpu_ms=server_cpu,
        histogram=run.histogram,
        error_kinds={kind: int(r[f"errors_{kind}"]) for kind in ERROR_KINDS},
    )
