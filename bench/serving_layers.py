"""BentoML's per-request layers, in-process: the CPU each costs a request, beside bare FastAPI.

The fraud service's ASGI app, built as a ``bentoml serve`` worker builds it
(``Service.to_asgi()``, its lifespan run, so the bundle is loaded), is driven without sockets:
``--clients`` concurrent closed-loop clients on one uvloop event loop POST real request bodies to
``/score``, and the process CPU time per answered request is measured, the median of
``--rounds`` rounds of ``--requests``. No HTTP parsing is in it: uvicorn with httptools and
uvloop does that for both servers alike. Each variant runs in a fresh process (BentoML's
configuration is process-wide):

* ``api``: the endpoint as an ``@bentoml.api`` method (the same batcher, the same ready JSON
  ``Response``) with BentoML's defaults: Prometheus metrics on, an OpenTelemetry span made for
  every request (sampled or not); what the services were before issue 17;
* ``api-no-metrics``: the same, ``metrics: {enabled: false}``;
* ``api-no-metrics-no-tracing``: the same, every URL also excluded from OpenTelemetry;
* ``mounted``: ``serving.service.ScoreService`` as shipped: the endpoint a one-route Starlette
  app mounted with ``@bentoml.asgi_app``, both middlewares off (the defaults);
* ``fastapi``: ``bench/fastapi_app.py``'s app, the baseline of ``bench/serving_latency.py``.

With ``--handler constant`` (the default) the batcher's batch function returns a fixed answer,
so what is left is the framework; ``--handler real`` runs the real handler (features, model,
request log), for each layer's share of a whole request.

    python bench/serving_layers.py --home /tmp/bench-serving
    python bench/serving_layers.py --home /tmp/bench-serving --handler real
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))  # fastapi_app, as uvicorn imports it

VARIANTS = ("api", "api-no-metrics", "api-no-metrics-no-tracing", "mounted", "fastapi")
CONSTANT = {"probability": 0.1, "decision": "approve", "top_features": [], "model_versions": {}}


def _api_service(metrics: bool, tracing: bool) -> Any:
    """The fraud endpoint as an ``@bentoml.api`` method, as the services had it."""
    import bentoml
    from starlette.responses import Response

    from runtime.request_log import to_json
    from serving.batching import MicroBatcher
    from serving.service import (
        ARRIVALS,
        SERVICES,
        ServeSettings,
        bentoml_config,
        build_handler,
        bundle_path,
    )

    config = bentoml_config(ServeSettings(metrics=metrics, tracing=tracing))

    @bentoml.service(name="playbook-score-api", **config)
    class ApiScoreService:
        def __init__(self) -> None:
            self.batcher = MicroBatcher(build_handler(bundle_path()).handle_many, arrivals=ARRIVALS)

        @bentoml.api
        async def score(self, transaction: Any = None) -> dict[str, Any]:
            answer = await self.batcher({"transaction": transaction})
            # a ready Response skips BentoML's output model, as the services' answers did
            return Response(to_json(answer), media_type="application/json")  # type: ignore

    # the same middlewares as the shipped service, in the same order
    for middleware, options in SERVICES["score"].middlewares:
        ApiScoreService.add_asgi_middleware(middleware, **options)
    return ApiScoreService


def _app(variant: str) -> Any:
    if variant == "fastapi":
        import fastapi_app

        return fastapi_app.make_app()
    if variant == "mounted":
        from serving.service import ScoreService

        return ScoreService.to_asgi(is_main=True)
    metrics, tracing = variant == "api", variant in ("api", "api-no-metrics")
    return _api_service(metrics, tracing).to_asgi(is_main=True)


def _scope(body: bytes) -> dict[str, Any]:
    return {
        "type": "http",
        "asgi": {"version": "3.0", "spec_version": "2.3"},
        "http_version": "1.1",
        "server": ("127.0.0.1", 3000),
        "client": ("127.0.0.1", 50000),
        "scheme": "http",
        "method": "POST",
        "root_path": "",
        "path": "/score",
        "raw_path": b"/score",
        "query_string": b"",
        "headers": [
            (b"host", b"127.0.0.1:3000"),
            (b"content-type", b"application/json"),
            (b"content-length", str(len(body)).encode()),
        ],
        "state": {},
    }


async def _request(app: Any, body: bytes) -> int:
    """One request through the app; its status."""
    messages = [{"type": "http.request", "body": body, "more_body": False}]
    status = []

    async def receive() -> dict[str, Any]:
        if messages:
            return messages.pop()
        await asyncio.Event().wait()  # the client never disconnects
        return {}

    async def send(message: dict[str, Any]) -> None:
        if message["type"] == "http.response.start":
            status.append(message["status"])

    await app(_scope(body), receive, send)
    return status[0]


async def _round(app: Any, bodies: list[bytes], clients: int, requests: int) -> float:
    """CPU microseconds per request of ``requests`` sent by ``clients`` closed-loop clients."""
    sent, statuses = 0, []

    async def client() -> None:
        nonlocal sent
        while sent < requests:
            sent += 1
            statuses.append(await _request(app, bodies[sent % len(bodies)]))

    started = time.process_time()
    await asyncio.gather(*(client() for _ in range(clients)))
    cpu = time.process_time() - started
    if set(statuses) != {200}:
        raise RuntimeError(f"not all answered 200: {sorted(set(statuses))}")
    return cpu / len(statuses) * 1e6


async def _measure(args: argparse.Namespace) -> list[float]:
    from serving.batching import MicroBatcher

    bodies = [json.dumps(b).encode() for b in json.loads(args.bodies.read_text())]
    if args.handler == "constant":
        # every batcher in this process answers every payload with the same answer
        MicroBatcher._answer = lambda self, payloads: [CONSTANT] * len(payloads)  # type: ignore
    app = _app(args.variant)
    async with app.router.lifespan_context(app):
        await _round(app, bodies, args.clients, args.requests // 10)  # warm-up
        return [await _round(app, bodies, args.clients, args.requests) for _ in range(args.rounds)]


def _variant(args: argparse.Namespace) -> None:
    """In the child process: one variant's rounds, as one JSON line."""
    import uvloop

    print("LAYERS " + json.dumps(uvloop.run(_measure(args))), flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--home", type=Path, required=True, help="holds (or gets) the fraud bundle")
    parser.add_argument("--handler", choices=("constant", "real"), default="constant")
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--requests", type=int, default=4000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--variant", choices=VARIANTS, help=argparse.SUPPRESS)
    parser.add_argument("--bodies", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.variant:
        _variant(args)
        return
    from bench.serving_world import request_bodies, use_case_home
    from serving.service import BUNDLE_ENV, METRICS_ENV, REQUEST_LOG_ENV, TRACING_ENV

    home = use_case_home(args.home.resolve(), "fraud", None)
    logs = args.home.resolve() / "bench-logs" / "layers"
    logs.mkdir(parents=True, exist_ok=True)
    bodies = logs / "bodies.json"
    bodies.write_text(json.dumps(request_bodies(home, "fraud")))
    env = {
        **os.environ,
        BUNDLE_ENV: str(home / "serving" / "fraud" / "bundle"),
        REQUEST_LOG_ENV: str(logs / "requests.sqlite"),
        "BENTOML_HOME": str(home / "bentoml"),
        "BENTOML_DO_NOT_TRACK": "True",
    }
    for name in (METRICS_ENV, TRACING_ENV):  # "mounted" is the service as shipped
        env.pop(name, None)
    rows = []
    for variant in VARIANTS:
        command = [sys.executable, __file__, "--variant", variant, "--bodies", str(bodies)]
        command += ["--home", str(args.home)]
        command += [
            f"--{k}={getattr(args, k)}" for k in ("handler", "clients", "requests", "rounds")
        ]
        done = subprocess.run(command, env=env, capture_output=True, text=True)
        lines = [line for line in done.stdout.splitlines() if line.startswith("LAYERS ")]
        if done.returncode != 0 or not lines:
            raise SystemExit(f"{variant} failed:\n{done.stderr[-3000:]}")
        rounds = json.loads(lines[-1].removeprefix("LAYERS "))
        rows.append((variant, statistics.median(rounds), rounds))
        print(f"{variant} done", flush=True)
    print(report(rows, args.clients, args.handler))


def report(rows: list[tuple[str, float, list[float]]], clients: int, handler: str) -> str:
    """The medians, each beside FastAPI's, and what each BentoML layer adds (the differences)."""
    cost = {variant: median for variant, median, _ in rows}
    load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    lines = [f"== fraud /score in-process, {clients} clients, handler {handler} (load {load}) =="]
    for variant, median, rounds in rows:
        shown = ", ".join(f"{r:.0f}" for r in rounds)
        ratio = median / cost["fastapi"]
        lines.append(f"{variant:26s} {median:6.0f} us CPU/request {ratio:5.2f}x FastAPI ({shown})")
    parts = {
        "Prometheus metrics middleware": cost["api"] - cost["api-no-metrics"],
        "OpenTelemetry middleware": cost["api-no-metrics"] - cost["api-no-metrics-no-tracing"],
        "@bentoml.api route (vs mounted)": cost["api-no-metrics-no-tracing"] - cost["mounted"],
    }
    extra = cost["api"] - cost["mounted"]
    lines.append(f"BentoML's defaults add {extra:.0f} us a request to the mounted endpoint:")
    for name, part in parts.items():
        lines.append(f"  {name:32s} {part:6.0f} us ({part / cost['api']:4.0%} of api's)")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
