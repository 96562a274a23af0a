"""Serving latency and throughput: the handler in-process, behind bare FastAPI, and behind BentoML.

For each use case, the same serving bundle is answered three ways in one invocation:

* ``in-process``: ``handler.handle(payload)`` called sequentially (per-call latency; the RPS is
  one over the mean);
* ``fastapi``: ``bench/fastapi_app.py``, a bare FastAPI app on uvicorn (one worker, one async
  route calling the same handler), started as a subprocess on a free port;
* ``bentoml``: ``bentoml serve`` of the use case's built Bento (one worker, the default), or
  ``bentoml serve serving.service:<Class>`` with ``PLAYBOOK_BUNDLE`` when no Bento was built.

The load generator is one ``httpx.AsyncClient`` driving C concurrent clients (each sends its next
request as soon as the last answer arrives) over a rotating set of real request bodies (card,
merchant and amount of real fraud transactions; users or queries seen in the raw events), after
warm-up requests; it reports p50/p95/p99 latency and RPS per target and client count, the ratios
BentoML/FastAPI, and whether the issue's goals hold: fraud p99 <= 8 ms and feed p99 <= 50 ms at
8 clients, and BentoML's RPS at 32 clients at least half of bare FastAPI's. Both servers log
requests to SQLite, as in production. The load generator shares the machine with the server, so
absolute figures are for this machine; the ratios are the point.

A use case is reused from ``--home`` when ``<home>/serving/<uc>/bundle`` (or
``<home>/<uc>/serving/<uc>/bundle``) exists; otherwise its small test world is materialized into
``<home>/<uc>`` through the ``bento`` asset (``--items`` sets the feed catalog size).

    python bench/serving_latency.py --use-case fraud --use-case feed --home /tmp/bench-serving
    python bench/serving_latency.py --use-case all --home /tmp/bench-serving --items 100000 --profile 300
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import io
import os
import pstats
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pandas as pd
from tabulate import tabulate

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from configs import CONFIG_DIR  # noqa: E402
from dagster_project.loader import load_use_cases  # noqa: E402
from serving.service import BUNDLE_ENV, REQUEST_LOG_ENV, SERVICES, build_handler  # noqa: E402
from tests.integration.served import (  # noqa: E402
    DAYS,
    bento_server,
    free_port,
    subprocess_server,
)
from tests.integration.test_raw_assets import _run, _small  # noqa: E402

USE_CASES = ("fraud", "feed", "search")
ENDPOINTS = {"fraud": "score", "feed": "recommend", "search": "search"}
DEFAULT_REQUESTS = {"fraud": 1000, "feed": 300, "search": 500}
P99_GOAL_MS = {"fraud": 8.0, "feed": 50.0}  # at GOAL_CLIENTS
GOAL_CLIENTS = 8
RPS_GOAL_CLIENTS, RPS_GOAL_RATIO = 32, 0.5
APP = Path(__file__).with_name("fastapi_app.py")


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
def fastapi_server(home: Path, use_case: str, logs: Path) -> Iterator[str]:
    port = free_port()
    command = [sys.executable, str(APP), "--port", str(port)]
    env = _env(home, use_case, logs / "fastapi.sqlite")
    url = f"http://127.0.0.1:{port}"
    with subprocess_server(command, env, url, logs / "fastapi.out", 180) as served:
        yield served


@contextmanager
def bentoml_server(home: Path, use_case: str, logs: Path) -> Iterator[str]:
    if (home / "bentoml" / "bentos" / f"playbook-{use_case}").is_dir():
        with bento_server(home, use_case, logs / "bentoml.sqlite", timeout=180) as served:
            yield served
        return
    print(f"[{use_case}] no built Bento: serving serving.service from the bundle", flush=True)
    port = free_port()
    service = SERVICES[ENDPOINTS[use_case]].inner.__name__
    command = [sys.executable, "-m", "bentoml", "serve", f"serving.service:{service}"]
    command += ["--host", "127.0.0.1", "--port", str(port)]
    env = _env(home, use_case, logs / "bentoml.sqlite")
    url = f"http://127.0.0.1:{port}"
    with subprocess_server(command, env, url, logs / "bentoml.out", 180) as served:
        yield served


# -- measuring --------------------------------------------------------------------------------


def summary(target: str, clients: int, latencies: list[float], errors: int, seconds: float):
    ms = np.asarray(latencies) * 1000
    p50, p95, p99 = np.percentile(ms, [50, 95, 99])
    return {
        "target": target,
        "clients": clients,
        "requests": len(ms),
        "errors": errors,
        "p50_ms": p50,
        "p95_ms": p95,
        "p99_ms": p99,
        "rps": len(ms) / seconds,
    }


def in_process(handler: Any, bodies: list[dict], requests: int, warmup: int) -> dict:
    for i in range(warmup):
        handler.handle(bodies[i % len(bodies)])
    latencies = []
    started = time.perf_counter()
    for i in range(requests):
        t = time.perf_counter()
        handler.handle(bodies[i % len(bodies)])
        latencies.append(time.perf_counter() - t)
    return summary("in-process", 1, latencies, 0, time.perf_counter() - started)


async def _load(url: str, bodies: list[dict], clients: int, requests: int, warmup: int):
    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    async with httpx.AsyncClient(limits=limits, timeout=60) as client:
        counter = iter(range(warmup, warmup + requests))
        latencies: list[float] = []
        errors = 0

        async def worker() -> None:
            nonlocal errors
            for i in counter:
                t = time.perf_counter()
                response = await client.post(url, json=bodies[i % len(bodies)])
                elapsed = time.perf_counter() - t
                if response.status_code != 200:
                    errors += 1
                latencies.append(elapsed)

        # warm-up: every connection opened, caches filled, before the clock starts
        warm = iter(range(warmup))

        async def warm_worker() -> None:
            for i in warm:
                await client.post(url, json=bodies[i % len(bodies)])

        await asyncio.gather(*(warm_worker() for _ in range(clients)))
        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(clients)))
        return latencies, errors, time.perf_counter() - started


def over_http(target: str, url: str, bodies: list[dict], clients: int, requests: int) -> dict:
    warmup = max(2 * clients, min(100, requests // 10))
    latencies, errors, seconds = asyncio.run(_load(url, bodies, clients, requests, warmup))
    return summary(target, clients, latencies, errors, seconds)


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


def report(use_case: str, rows: list[dict]) -> str:
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
    lines = [f"== {use_case} ({ENDPOINTS[use_case]}) ==", tabulate(table, headers, "github")]
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
    requests = args.requests or DEFAULT_REQUESTS[use_case]
    logs = root / "bench-logs" / use_case
    logs.mkdir(parents=True, exist_ok=True)
    os.environ[REQUEST_LOG_ENV] = str(logs / "in-process.sqlite")
    handler = build_handler(home / "serving" / use_case / "bundle")
    rows = [in_process(handler, bodies, requests, warmup=min(100, requests // 10))]
    print(f"[{use_case}] in-process done", flush=True)
    profiled = profile(handler, bodies, args.profile) if args.profile else ""
    if handler.log is not None:
        handler.log.flush()
    for target, server in (("fastapi", fastapi_server), ("bentoml", bentoml_server)):
        with server(home, use_case, logs) as url:
            for clients in args.clients:
                rows.append(
                    over_http(target, f"{url}/{ENDPOINTS[use_case]}", bodies, clients, requests)
                )
                print(f"[{use_case}] {target} x{clients} done", flush=True)
    text = report(use_case, rows)
    if profiled:
        text += f"\n-- cProfile of {args.profile} in-process requests --\n{profiled}"
    return text


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--use-case", action="append", choices=(*USE_CASES, "all"))
    parser.add_argument("--home", type=Path, required=True)
    parser.add_argument("--items", type=int, default=None, help="feed catalog size when built")
    parser.add_argument("--requests", type=int, default=None, help="timed requests per level")
    parser.add_argument("--clients", default="1,8,32")
    parser.add_argument("--profile", type=int, default=0, help="cProfile this many requests")
    args = parser.parse_args()
    chosen = args.use_case or ["fraud"]
    use_cases = list(USE_CASES) if "all" in chosen else list(dict.fromkeys(chosen))
    args.clients = [int(c) for c in args.clients.split(",")]
    args.home.mkdir(parents=True, exist_ok=True)
    reports = [bench(use_case, args.home.resolve(), args) for use_case in use_cases]
    print("\n\n".join(reports))


if __name__ == "__main__":
    main()
