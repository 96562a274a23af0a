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
Both servers run at once and each client level is measured on one then the other (the first
alternating), so that on a shared machine both rows of a level see about the same load; each
row gives the 1-minute load average at its end.

The load generator is ``wrk`` (install it with ``scripts/install_wrk.sh``), run by
:mod:`assets.serving.load_test` as the SLO check runs it (its docstring says why wrk and how the
percentiles are of the measured latencies, wrk's coordinated-omission correction undone by
``assets/serving/wrk_bodies.lua``): one thread, C connections, ``--seconds`` timed seconds per
level after a 2 s warm-up run at the same C, POSTing a rotating set of real request bodies (card,
merchant and amount of real fraud transactions; users or queries seen in the raw events). The
load is a closed loop: each connection sends its next request when the last answer arrives. Each
run's full wrk output, with wrk's corrected figures, is kept in the logs folder. Errors are
wrk's: HTTP status >= 400 plus connect/read/write errors and timeouts (a request over
``WRK_TIMEOUT`` counts as a timeout and is left out of the percentiles).

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
import os
import sys
from pathlib import Path

# Run as `python bench/<script>.py`, Python puts bench/ first on the path, not the repository:
# put the root first, for the project's packages and for bench.* and tests.* (not installed).
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

# The parts live beside this script: the use cases' worlds, the two servers, the measuring and
# the report. This file keeps the command line and runs one use case after another.
from assets.serving.load_test import LoadGeneratorMissing, require_wrk, write_bodies  # noqa: E402
from bench.serving_load import in_process, over_http, profile  # noqa: E402
from bench.serving_report import report  # noqa: E402
from bench.serving_targets import bentoml_server, fastapi_server, workers_up  # noqa: E402
from bench.serving_world import ENDPOINTS, USE_CASES, request_bodies, use_case_home  # noqa: E402
from serving.service import REQUEST_LOG_ENV, build_handler  # noqa: E402


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
    with (
        fastapi_server(home, use_case, logs, args.workers) as fastapi_url,
        bentoml_server(home, use_case, logs, args.workers) as bentoml_url,
    ):
        urls = {"fastapi": fastapi_url, "bentoml": bentoml_url}
        started = {t: workers_up(t, logs / f"{t}.out", args.workers) for t in urls}
        # both servers up (an idle one takes no CPU), each level run on one then the other, the
        # first alternating: the two rows of a level are seconds apart, so a change in the load
        # of a shared machine falls on both alike
        for level, clients in enumerate(args.clients):
            for target in list(urls)[:: 1 if level % 2 == 0 else -1]:
                endpoint = f"{urls[target]}/{ENDPOINTS[use_case]}"
                row, cpu = over_http(target, endpoint, bodies_file, clients, args.seconds, logs)
                row["load"] = os.getloadavg()[0]
                rows.append(row)
                print(
                    f"[{use_case}] {target} x{clients} done (wrk used {cpu:.0f}% of a core)",
                    flush=True,
                )
    order = {"in-process": 0, "fastapi": 1, "bentoml": 2}
    rows.sort(key=lambda r: (order[r["target"]], r["clients"]))
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
    try:
        require_wrk()
    except LoadGeneratorMissing as error:
        raise SystemExit(str(error)) from None
    chosen = args.use_case or ["fraud"]
    use_cases = list(USE_CASES) if "all" in chosen else list(dict.fromkeys(chosen))
    args.clients = [int(c) for c in args.clients.split(",")]
    args.home.mkdir(parents=True, exist_ok=True)
    reports = [bench(use_case, args.home.resolve(), args) for use_case in use_cases]
    print("\n\n".join(reports))


if __name__ == "__main__":
    main()
