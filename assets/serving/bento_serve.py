"""``bentoml serve`` of a built Bento as a subprocess on a free 127.0.0.1 port, stopped after.

The SLO check measures the service as it is deployed: the built Bento, served by the real
``bentoml serve`` with the configured worker processes. ``/readyz`` answers as soon as one worker
serves, so :func:`serve_bento` also waits until every worker has logged its start (BentoML's
``Service ... initialized`` line, one per worker); a load test started earlier would measure the
others loading their bundle. On exit the server and every process it started are stopped: a
left-over worker would hold the port and the CPU the next check measures with.
"""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
import psutil

from serving.service import WORKERS_ENV

# one line per worker in the server's output; the group captures the worker's id
BENTO_WORKER_STARTED = re.compile(r"\[entry_service:[^\]]*:(\d+)\] Service \S+ initialized")
READY_TIMEOUT_S = 240.0
STOP_TIMEOUT_S = 15.0


def free_port() -> int:
    """A TCP port nothing listens on now, on 127.0.0.1."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass(frozen=True)
class Served:
    """A running server: its base URL, its process id and the file its output goes to."""

    url: str
    pid: int
    output: Path


def _stop(process: subprocess.Popen) -> None:
    """Terminate ``process`` and every descendant it left, then kill what is still alive."""
    try:
        family = psutil.Process(process.pid).children(recursive=True)
    except psutil.NoSuchProcess:
        family = []
    process.terminate()
    try:
        process.wait(timeout=STOP_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
    _, alive = psutil.wait_procs(family, timeout=STOP_TIMEOUT_S)
    for child in alive:
        try:
            child.kill()
        except psutil.NoSuchProcess:
            pass


@contextmanager
def serving_process(
    command: list[str],
    env: Mapping[str, str],
    url: str,
    output: Path,
    timeout: float = READY_TIMEOUT_S,
) -> Iterator[Served]:
    """Run ``command`` until ``<url>/readyz`` answers 200; yields it; stops it and its children
    after. The output goes to ``output``; an exit or a timeout raises with its tail."""
    with open(output, "w", encoding="utf-8") as sink:
        process = subprocess.Popen(command, env=dict(env), stdout=sink, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + timeout
        while True:
            if process.poll() is not None:
                raise RuntimeError(
                    f"{' '.join(command[:4])} exited ({process.returncode}):"
                    f" {output.read_text(errors='replace')[-3000:]}"
                )
            try:
                if httpx.get(f"{url}/readyz", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                raise TimeoutError(
                    f"not ready in {timeout:g} s: {output.read_text(errors='replace')[-3000:]}"
                )
            time.sleep(0.5)
        yield Served(url, process.pid, output)
    finally:
        _stop(process)


def started_workers(output: Path, pattern: re.Pattern, expected: int, timeout: float) -> int:
    """How many workers logged their start to ``output`` (``pattern`` captures a worker id),
    waiting up to ``timeout`` seconds for ``expected`` of them."""
    deadline = time.monotonic() + timeout
    while True:
        seen = set(pattern.findall(output.read_text(errors="replace")))
        if len(seen) >= expected or time.monotonic() > deadline:
            return len(seen)
        time.sleep(0.5)


@contextmanager
def serve_bento(
    tag: str,
    store: Path,
    workers: int,
    output: Path,
    env: Mapping[str, str] | None = None,
    timeout: float = READY_TIMEOUT_S,
) -> Iterator[Served]:
    """``bentoml serve <tag>`` from the BentoML store ``store`` with ``workers`` workers
    (``PLAYBOOK_WORKERS``) and ``env`` added to this process's environment."""
    port = free_port()
    command = [sys.executable, "-m", "bentoml", "serve", tag]
    command += ["--host", "127.0.0.1", "--port", str(port)]
    settings = {
        **os.environ,
        "BENTOML_HOME": str(store),
        "BENTOML_DO_NOT_TRACK": "True",
        WORKERS_ENV: str(workers),
        **(env or {}),
    }
    url = f"http://127.0.0.1:{port}"
    with serving_process(command, settings, url, output, timeout) as served:
        yield served
