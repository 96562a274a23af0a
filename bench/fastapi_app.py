"""A bare FastAPI app around the same handler BentoML serves: the baseline of ``bench/serving_latency.py``.

One async route per endpoint (``/score``, ``/recommend`` or ``/search``, from the bundle's
manifest) that answers the JSON body through the same :class:`serving.batching.MicroBatcher` and
the same pre-serialized JSON response as the BentoML services, answering 422 with the error's
body on a ``RequestError``, behind the same three ASGI middlewares (``ArrivalGate`` outermost,
then ``KeepAliveLimit`` with the same settings and, with several workers, the same connection
shares, then ``JSONObjectBody`` with the same fields: both servers make the same checks of a
body and even out their connections alike),
plus ``/readyz`` and ``POST /health`` (the handler's health and the batching counters): the two
servers differ only in the framework. Loads the bundle named by ``PLAYBOOK_BUNDLE`` and logs
requests to ``PLAYBOOK_REQUEST_LOG`` exactly as the BentoML services do.

Processes are laid out as ``bentoml serve`` lays out its own: a supervisor (uvicorn's
``Multiprocess``, even for one worker) and ``--workers`` worker processes, each in a session of
its own, as circus starts each BentoML worker (``os.setsid``). That matters on Linux, whose
scheduler (autogroup, on by default) shares the CPU fairly between sessions: on this busy 2-core
box, a worker left in the session of the benchmark and of ``wrk`` answered one client in a p50
of 2.7 ms where BentoML's own-session worker took 8.0 ms; with both in sessions of their own,
2.4-3.6 ms and 2.4-3.7 ms.

uvicorn gets the app as the import string ``fastapi_app:make_app`` (``factory=True``, with this
folder on the path); each worker process builds its own app and handler, and prints
``fastapi_app: worker <pid> serving`` once it serves (the benchmark waits for all N). The heavy
imports are inside :func:`make_app`: a worker is spawned by re-importing this file, and uvicorn's
supervisor kills a worker that has not answered its health check within
``timeout_worker_healthcheck`` seconds of starting, which a slow import of the serving package on
a busy 2-core machine overran (a worker killed and restarted mid-benchmark).

    PLAYBOOK_BUNDLE=<home>/serving/fraud/bundle python bench/fastapi_app.py --port 8000
    PLAYBOOK_BUNDLE=<home>/serving/fraud/bundle python bench/fastapi_app.py --port 8000 --workers 2
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import uvicorn
from uvicorn.supervisors import Multiprocess

# Run as `python bench/<script>.py`, Python puts bench/ first on the path, not the repository:
# put the root first, for the project's packages and for bench.* and tests.* (not installed).
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

if TYPE_CHECKING:
    from fastapi import FastAPI

HEALTHCHECK_TIMEOUT_S = 60


def make_app() -> FastAPI:
    _own_session()
    from fastapi import Body, FastAPI
    from fastapi.responses import JSONResponse, Response

    from runtime.request_log import to_json
    from serving.batching import ArrivalGate, Arrivals, MicroBatcher
    from serving.connections import KeepAliveLimit
    from serving.json_body import JSONObjectBody
    from serving.requests import RequestError
    from serving.service import ENDPOINT_FIELDS, SETTINGS, SHARES, build_handler, bundle_path

    handler = build_handler(bundle_path())
    arrivals = Arrivals()
    batcher = MicroBatcher(handler.handle_many, arrivals=arrivals)
    endpoint = handler.bundle.manifest.endpoint

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        print(f"fastapi_app: worker {os.getpid()} serving", flush=True)
        yield

    app = FastAPI(lifespan=lifespan)
    # the same checks of the body as the BentoML services, in the same order: Starlette runs the
    # last added outermost, so the ArrivalGate (added last) counts a request before its body is read
    fields = {f"/{endpoint}": ENDPOINT_FIELDS[endpoint]}
    app.add_middleware(JSONObjectBody, paths=(f"/{endpoint}",), fields=fields)
    app.add_middleware(
        KeepAliveLimit,
        limit=SETTINGS.keepalive_requests,
        max_age_s=SETTINGS.keepalive_seconds,
        shares=SHARES,
    )
    app.add_middleware(ArrivalGate, arrivals=arrivals, paths=(f"/{endpoint}",))
    if SHARES is not None:
        SHARES.join()

    @app.get("/readyz")
    async def readyz() -> dict[str, str]:
        return {"status": "ok"}

    @app.post("/health")
    async def health() -> dict[str, Any]:
        return {**handler.health(), "batching": batcher.stats()}

    @app.post(f"/{endpoint}")
    async def answer(payload: dict[str, Any] = Body(...)) -> Any:  # noqa: B008
        try:
            answer = await batcher(payload)
        except RequestError as error:
            return JSONResponse(status_code=422, content=error.body())
        return Response(to_json(answer), media_type="application/json")

    return app


def _own_session() -> None:
    """This worker in a session of its own, as circus puts each BentoML worker (see above)."""
    try:
        os.setsid()
    except PermissionError:  # already a session leader
        pass


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--workers", type=int, default=1, help="uvicorn worker processes")
    args = parser.parse_args()
    # the workers read it as BentoML's do (serving.service.SETTINGS): connection shares on
    os.environ["PLAYBOOK_WORKERS"] = str(args.workers)
    sys.path.insert(0, str(Path(__file__).resolve().parent))  # for "fastapi_app:make_app"
    config = uvicorn.Config(
        "fastapi_app:make_app",
        factory=True,
        host=args.host,
        port=args.port,
        workers=args.workers,
        timeout_worker_healthcheck=HEALTHCHECK_TIMEOUT_S,
        log_level="warning",
    )
    # the supervisor and its workers even for one: the layout of `bentoml serve`
    Multiprocess(config, sockets=[config.bind_socket()]).run()


if __name__ == "__main__":
    main()
