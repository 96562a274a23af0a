"""Serving latency and throughput: the handler in-process, behind bare FastAPI, and behind BentoML.

For each use case, the same serving bundle is answered three ways in one invocation:

* ``in-process``: ``handler.handle(payload)`` called sequentially for ``--seconds`` (per-call
  latency; the RPS is one over the mean);
* ``fastapi``: ``bench/fastapi_app.py``, a bare FastAPI app on uvicorn (``--workers`` worker
  processes, one async route answering through the same micro-batcher and handler), started as
  a subprocess on a free port;
* ``bentoml``: ``bentoml serve`` of the use case's built Bento, or ``bentoml serve
  serving.service:<Class>`` with ``PLAYBOOK_BUNDLE`` when no Bento was built, with
  ``PLAYBOOK_WORKERS=N`` in its environment.

``--workers`` (default 1) is applied equally to both servers, so the comparison stays fair; the
timed runs start once every worker has logged its start (the report's header says how many did).

The load generator is ``wrk`` (install it with ``scripts/install_wrk.sh``): one thread, C
connections, ``--seconds`` timed seconds per level after a 2 s warm-up run at the same C, POSTing
a rotating set of real request bodies (card, merchant and amount of real fraud transactions; users
or queries seen in the raw events) written to a JSON-lines file that ``bench/wrk_bodies.lua``
cycles through. wrk rather than a Python client because on a 2-core box its own CPU cost is small
next to a Python ``httpx`` client's, which took a large share of the CPU and so distorted the
server figures (bare FastAPI fraud: 401 RPS under httpx, 645 under wrk). The load model is the
same closed loop as before: each connection sends its next request when the last answer arrives,
and a latency is measured from the request's write to its answer. wrk 4.1's own percentiles
are "coordinated omission corrected" (synthetic samples for the requests a stalled connection did
not send, an open-loop view that turned one 2 s stall into a p95 of 1.7 s where the measured p95
was 8 ms); the Lua script undoes that correction, exactly, so the percentiles here are of the
measured latencies, one per answered request (see ``bench/wrk_bodies.lua``; each run's full wrk
output, with wrk's corrected figures, is kept in the logs folder). Errors are wrk's: HTTP status
>= 400 plus connect/read/write errors and timeouts (a request over ``WRK_TIMEOUT`` counts as a
timeout and is left out of the percentiles).

It reports p50/p95/p99 latency and RPS per target and client count, the ratios BentoML/FastAPI,
and whether the issue's goals hold: fraud p99 <= 8 ms and feed p99 <= 50 ms at 8 clients, and
BentoML's RPS at 32 clients at least half of bare FastAPI's. Both servers log requests to SQLite,
as in production. The load generator shares the machine with the server, so absolute figures are
for this machine; the ratios are the point.

A use case is reused from ``--home`` when ``<home>/serving/<uc>/bundle`` (or
``<home>/<uc>/serving/<uc>/bundle``) exists; otherwise its small test world is materialized into
``<home>/<uc>`` through the ``bento`` asset (``--items`` sets the feed catalog size).

    python bench/serving_latency.py --use-case fraud --use-case feed --home /tmp/bench-serving
    python bench/serving_latency.py --use-case fraud --home /tmp/bench-serving --workers 2
    python bench/serving_latency.py --use-case all --home /tmp/bench-serving --items 100000 --profile 300
"""

from __future__ import annotations

import argparse
import cProfile
import io
import json
import os
import pstats
import re
import resource
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from tabulate import tabulate

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from configs import CONFIG_DIR  # noqa: E402
from dagster_project.loader import load_use_cases  # noqa: E402
from serving.service import (  # noqa: E402
    BUNDLE_ENV,
    REQUEST_LOG_ENV,
    SERVICES,
    WORKERS_ENV,
    build_handler,
)
from tests.integration.served import (  # noqa: E402
    BENTO_WORKER_STARTED,
    DAYS,
    bento_server,
    free_port,
    started_workers,
    subprocess_server,
)
from tests.integration.test_raw_assets import _run, _small  # noqa: E402

USE_CASES = ("fraud", "feed", "search")
ENDPOINTS = {"fraud": "score", "feed": "recommend", "search": "search"}
P99_GOAL_MS = {"fraud": 8.0, "feed": 50.0}  # at GOAL_CLIENTS
GOAL_CLIENTS = 8
RPS_GOAL_CLIENTS, RPS_GOAL_RATIO = 32, 0.5
APP = Path(__file__).with_name("fastapi_app.py")
WRK_SCRIPT = Path(__file__).with_name("wrk_bodies.lua")
WRK_INSTALL = Path(__file__).resolve().parents[1] / "scripts" / "install_wrk.sh"
WRK_WARMUP_S = 2
WRK_TIMEOUT = "10s"  # wrk's default 2 s would drop slow answers from the percentiles
WORKER_STARTED = {  # one line per worker in the server's output, the worker's id in the group
    "fastapi": re.compile(r"fastapi_app: worker (\d+) serving"),
    "bentoml": BENTO_WORKER_STARTED,
}


# -- the world --------------------------------------------------------------------------------


def use_case_home(root: Path, use_case: str, items: int | None) -> Path:
    """A home holding ``use_case``'s bundle: reused from ``root`` if there, else materialized."""
    for home in (root, root / use_case):
        if (home / "serving" / use_case / "bundle").is_dir():
            print(f"[{use_case}] reusing {home}", flush=True)
            return home
    home = root / use_case
    (spec,) = load_use_cases([CONFIG_DIR / f"{use_case}.yaml"])
    spec = _small(spec, days=DAYS[use_case])
    if use_case == "feed" and items:
        params = spec.source.params.model_copy(update={"n_items": items})
        source = spec.source.model_copy(update={"params": params})
        spec = spec.model_copy(update={"source": source}).with_path(spec.path)
    print(f"[{use_case}] materializing a small world into {home} ...", flush=True)
    started = time.monotonic()
    result = _run(spec, home, stages_to_skip=("funnel_evaluation",))
    if not result.success:
        raise SystemExit(f"[{use_case}] materialization failed")
    print(f"[{use_case}] materialized in {time.monotonic() - started:.0f} s", flush=True)
    return home


def request_bodies(home: Path, use_case: str, n: int = 256, seed: int = 0) -> list[dict]:
    """``n`` real request bodies drawn from the use case's raw events."""
    files = sorted((home / "tables" / use_case / "raw_events").glob("*.parquet"))
    if not files:
        raise SystemExit(f"no raw events under {home / 'tables' / use_case}")
    columns = {
        "fraud": ["card_id", "merchant_id", "amount"],
        "feed": ["user_id"],
        "search": ["query_id"],
    }[use_case]
    events = pd.concat([pd.read_parquet(f, columns=columns) for f in files], ignore_index=True)
    rows = events.sample(n=min(n, len(events)), random_state=seed)
    if use_case == "fraud":
        return [
            {"transaction": {"card_id": int(c), "merchant_id": int(m), "amount": float(a)}}
            for c, m, a in rows.itertuples(index=False)
        ]
    if use_case == "feed":
        return [{"user_id": int(u), "k": 20} for u in rows["user_id"]]
    return [{"query": int(q), "k": 10} for q in rows["query_id"]]


# -- targets ----------------------------------------------------------------------------------


def _env(home: Path, use_case: str, log: Path) -> dict[str, str]:
    return {
        **os.environ,
        BUNDLE_ENV: str(home / "serving" / use_case / "bundle"),
        REQUEST_LOG_ENV: str(log),
        "BENTOML_HOME": str(home / "bentoml"),
        "BENTOML_DO_NOT_TRACK": "True",
    }


@contextmanager
def fastapi_server(home: Path, use_case: str, logs: Path, workers: int = 1) -> Iterator[str]:
    port = free_port()
    command = [sys.executable, str(APP), "--port", str(port), "--workers", str(workers)]
    env = _env(home, use_case, logs / "fastapi.sqlite")
    url = f"http://127.0.0.1:{port}"
    with subprocess_server(command, env, url, logs / "fastapi.out", 180) as served:
        yield served


@contextmanager
def bentoml_server(home: Path, use_case: str, logs: Path, workers: int = 1) -> Iterator[str]:
    """``bentoml serve`` with ``PLAYBOOK_WORKERS=N`` of the built Bento, else of
    ``serving.service``."""
    settings = {WORKERS_ENV: str(workers)}
    log = logs / "bentoml.sqlite"
    if (home / "bentoml" / "bentos" / f"playbook-{use_case}").is_dir():
        with bento_server(home, use_case, log, timeout=180, settings=settings) as served:
            yield served
        return
    print(f"[{use_case}] no built Bento: serving serving.service from the bundle", flush=True)
    port = free_port()
    target = f"serving.service:{SERVICES[ENDPOINTS[use_case]].inner.__name__}"
    command = [sys.executable, "-m", "bentoml", "serve", target]
    command += ["--host", "127.0.0.1", "--port", str(port)]
    env = {**_env(home, use_case, log), **settings}
    url = f"http://127.0.0.1:{port}"
    with subprocess_server(command, env, url, log.with_suffix(".out"), 180) as served:
        yield served


def workers_up(target: str, output: Path, workers: int, timeout: float = 180) -> int:
    """Waits until ``workers`` workers of ``target`` logged their start to ``output``; how many did.

    ``readyz`` answers as soon as one worker serves: without this, the first levels would run
    while the others still load their bundle.
    """
    seen = started_workers(output, WORKER_STARTED[target], workers, timeout)
    if seen < workers:
        print(f"warning: {seen} of {workers} {target} workers started in {timeout:g} s")
    return seen


# -- measuring --------------------------------------------------------------------------------


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


# -- the report -------------------------------------------------------------------------------


def report(
    use_case: str, rows: list[dict], workers: int = 1, started: dict[str, int] | None = None
) -> str:
    by = {(r["target"], r["clients"]): r for r in rows}
    table = []
    for r in rows:
        base = by.get(("fastapi", r["clients"]))
        p99_ratio = rps_ratio = ""
        if r["target"] == "bentoml" and base:
            p99_ratio = f"{r['p99_ms'] / base['p99_ms']:.2f}"
            rps_ratio = f"{r['rps'] / base['rps']:.2f}"
        table.append(
            [
                r["target"],
                r["clients"],
                r["requests"],
                r["errors"],
                f"{r['p50_ms']:.2f}",
                f"{r['p95_ms']:.2f}",
                f"{r['p99_ms']:.2f}",
                f"{r['rps']:.0f}",
                p99_ratio,
                rps_ratio,
            ]
        )
    headers = ["target", "clients", "requests", "errors", "p50 ms", "p95 ms", "p99 ms", "RPS"]
    headers += ["p99 B/F", "RPS B/F"]
    header = f"== {use_case} ({ENDPOINTS[use_case]}), {workers} worker(s) per server"
    if started:
        header += " (started: " + ", ".join(f"{t} {n}" for t, n in started.items()) + ")"
    header += " =="
    lines = [header, tabulate(table, headers, "github")]
    goal = P99_GOAL_MS.get(use_case)
    for target in ("fastapi", "bentoml"):
        r = by.get((target, GOAL_CLIENTS))
        if goal is not None and r:
            met = "met" if r["p99_ms"] <= goal else "NOT met"
            lines.append(
                f"goal p99 <= {goal:g} ms at {GOAL_CLIENTS} clients, {target}: "
                f"{r['p99_ms']:.2f} ms -> {met}"
            )
    bento, base = by.get(("bentoml", RPS_GOAL_CLIENTS)), by.get(("fastapi", RPS_GOAL_CLIENTS))
    if bento and base:
        ratio = bento["rps"] / base["rps"]
        met = "met" if ratio >= RPS_GOAL_RATIO else "NOT met"
        lines.append(
            f"goal RPS >= {RPS_GOAL_RATIO:g}x FastAPI at {RPS_GOAL_CLIENTS} clients: "
            f"{bento['rps']:.0f} vs {base['rps']:.0f} = {ratio:.2f}x -> {met}"
        )
    return "\n".join(lines)


def bench(use_case: str, root: Path, args: argparse.Namespace) -> str:
    home = use_case_home(root, use_case, args.items)
    bodies = request_bodies(home, use_case)
    logs = root / "bench-logs" / use_case
    logs.mkdir(parents=True, exist_ok=True)
    bodies_file = write_bodies(bodies, logs / "bodies.jsonl")
    os.environ[REQUEST_LOG_ENV] = str(logs / "in-process.sqlite")
    handler = build_handler(home / "serving" / use_case / "bundle")
    rows = [in_process(handler, bodies, args.seconds)]
    print(f"[{use_case}] in-process done", flush=True)
    profiled = profile(handler, bodies, args.profile) if args.profile else ""
    if handler.log is not None:
        handler.log.flush()
    started = {}
    for target, server in (("fastapi", fastapi_server), ("bentoml", bentoml_server)):
        with server(home, use_case, logs, args.workers) as url:
            started[target] = workers_up(target, logs / f"{target}.out", args.workers)
            endpoint = f"{url}/{ENDPOINTS[use_case]}"
            for clients in args.clients:
                row, cpu = over_http(target, endpoint, bodies_file, clients, args.seconds, logs)
                rows.append(row)
                print(
                    f"[{use_case}] {target} x{clients} done (wrk used {cpu:.0f}% of a core)",
                    flush=True,
                )
    text = report(use_case, rows, args.workers, started)
    if profiled:
        text += f"\n-- cProfile of {args.profile} in-process requests --\n{profiled}"
    return text


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--use-case", action="append", choices=(*USE_CASES, "all"))
    parser.add_argument("--home", type=Path, required=True)
    parser.add_argument("--items", type=int, default=None, help="feed catalog size when built")
    parser.add_argument("--seconds", type=int, default=10, help="timed seconds per level")
    parser.add_argument("--clients", default="1,8,32")
    parser.add_argument("--workers", type=int, default=1, help="worker processes per server")
    parser.add_argument("--profile", type=int, default=0, help="cProfile this many requests")
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        raise SystemExit(f"wrk, the load generator, is not installed: run {WRK_INSTALL}")
    chosen = args.use_case or ["fraud"]
    use_cases = list(USE_CASES) if "all" in chosen else list(dict.fromkeys(chosen))
    args.clients = [int(c) for c in args.clients.split(",")]
    args.home.mkdir(parents=True, exist_ok=True)
    reports = [bench(use_case, args.home.resolve(), args) for use_case in use_cases]
    print("\n\n".join(reports))


if __name__ == "__main__":
    main()
