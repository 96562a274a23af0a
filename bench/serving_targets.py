"""The two servers ``bench/serving_latency.py`` compares, started as subprocesses on free ports.

Bare FastAPI (``bench/fastapi_app.py`` on uvicorn) and ``bentoml serve`` answer the same bundle
with the same number of workers and the same request log, so the comparison stays fair; this
module starts each one and waits until every worker has logged its start.
"""

from __future__ import annotations

import os
import re
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from assets.serving.bento_serve import (
    BENTO_WORKER_STARTED,
    free_port,
    serve_bento,
    serving_process,
    started_workers,
)
from bench.serving_world import ENDPOINTS
from serving.service import BUNDLE_ENV, REQUEST_LOG_ENV, SERVICES, WORKERS_ENV

APP = Path(__file__).with_name("fastapi_app.py")
WORKER_STARTED = {  # one line per worker in the server's output, the worker's id in the group
    "fastapi": re.compile(r"fastapi_app: worker (\d+) serving"),
    "bentoml": BENTO_WORKER_STARTED,
}


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
    with serving_process(command, env, url, logs / "fastapi.out", 180) as served:
        yield served.url


@contextmanager
def bentoml_server(home: Path, use_case: str, logs: Path, workers: int = 1) -> Iterator[str]:
    """``bentoml serve`` with ``PLAYBOOK_WORKERS=N`` of the built Bento, else of
    ``serving.service``."""
    settings = {WORKERS_ENV: str(workers)}
    log = logs / "bentoml.sqlite"
    if (home / "bentoml" / "bentos" / f"playbook-{use_case}").is_dir():
        tag, output = f"playbook-{use_case}:latest", log.with_suffix(".out")
        env = {REQUEST_LOG_ENV: str(log)}
        with serve_bento(tag, home / "bentoml", workers, output, env, timeout=180) as served:
            yield served.url
        return
    print(f"[{use_case}] no built Bento: serving serving.service from the bundle", flush=True)
    port = free_port()
    target = f"serving.service:{SERVICES[ENDPOINTS[use_case]].inner.__name__}"
    command = [sys.executable, "-m", "bentoml", "serve", target]
    command += ["--host", "127.0.0.1", "--port", str(port)]
    env = {**_env(home, use_case, log), **settings}
    url = f"http://127.0.0.1:{port}"
    with serving_process(command, env, url, log.with_suffix(".out"), 180) as served:
        yield served.url


def workers_up(target: str, output: Path, workers: int, timeout: float = 180) -> int:
    """Waits until ``workers`` workers of ``target`` logged their start to ``output``; how many did.

    ``readyz`` answers as soon as one worker serves: without this, the first levels would run
    while the others still load their bundle.
    """
    seen = started_workers(output, WORKER_STARTED[target], workers, timeout)
    if seen < workers:
        print(f"warning: {seen} of {workers} {target} workers started in {timeout:g} s")
    return seen
