"""Small use cases materialized once per test session up to their Bento, and services on ports.

Several test modules need a trained, bundled use case; each is built once under a folder shared
by the xdist workers (a file lock makes the second worker wait for the first), and a service is
a real ``bentoml serve`` subprocess on a free 127.0.0.1 port.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import sys
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path

import pytest
from filelock import FileLock

from assets.serving.bento_serve import (
    READY_TIMEOUT_S,
    free_port,
    serving_process,
)
from configs import CONFIG_DIR
from dagster_project.use_case_files import load_use_cases
from tests.integration.test_raw_assets import _run, _small

DAYS = {"fraud": 21, "feed": 14, "search": 14}
REPO = Path(__file__).resolve().parents[2]
SOURCE_PACKAGES = ("assets", "configs", "resources", "runtime", "serving")


def materialized_home(factory: pytest.TempPathFactory, use_case: str) -> Path:
    """A home with ``use_case`` (small world) materialized through its ``bento`` asset."""
    root = factory.getbasetemp().parent  # shared by every xdist worker of this session
    # a hidden folder, as the default home ./.playbook is: BentoML refuses some hidden paths
    # one home per version of the code: a home built by other code (an earlier session or
    # checkout) would serve that code's Bento. A new path, not the old one emptied: MLflow keeps
    # a connection per store path in the process, and a database replaced under it is read-only
    code = source_hash()
    home = root / f".served-{use_case}-{code[:12]}"
    done = home / "done"
    with FileLock(str(root / f"served-{use_case}.lock")):
        if not done.exists() or done.read_text() != code:
            for old in root.glob(f".served-{use_case}-*"):
                if old != home:
                    shutil.rmtree(old, ignore_errors=True)
            (spec,) = load_use_cases([CONFIG_DIR / f"{use_case}.yaml"])
            spec = _small(spec, days=DAYS[use_case])
            skip = ("funnel_evaluation", "triton_repository", "drift_report", "performance")
            result = _run(spec, home, stages_to_skip=(*skip, "experiment_analysis"))
            assert result.success
            done.write_text(code)
    return home


def source_hash() -> str:
    """A digest of the code and configs a materialized home and its Bento are built from."""
    digest = hashlib.sha256()
    for package in SOURCE_PACKAGES:
        for path in sorted((REPO / package).rglob("*")):
            if path.suffix in {".py", ".yaml", ".json"} and "__pycache__" not in path.parts:
                digest.update(str(path.relative_to(REPO)).encode())
                digest.update(path.read_bytes())
    return digest.hexdigest()


def bento_tag(home: Path, use_case: str) -> str:
    return f"playbook-{use_case}:latest"


@contextmanager
def subprocess_server(
    command: list[str],
    env: dict[str, str],
    url: str,
    output: Path,
    timeout: float = READY_TIMEOUT_S,
) -> Iterator[str]:
    """Run ``command`` until ``<url>/readyz`` answers 200; yields ``url``; stops it and the
    processes it started after (the SLO check's :func:`assets.serving.bento_serve.serving_process`)."""
    with serving_process(command, env, url, output, timeout) as served:
        yield served.url


@contextmanager
def bento_server(
    home: Path,
    use_case: str,
    log: Path,
    timeout: float = READY_TIMEOUT_S,
    settings: Mapping[str, str] | None = None,
) -> Iterator[str]:
    """``bentoml serve`` of the use case's built Bento; yields its base URL. ``settings`` are
    extra environment variables (``{"PLAYBOOK_WORKERS": "2"}``); the server's output goes to
    ``log.with_suffix(".out")``."""
    port = free_port()
    env = {
        **os.environ,
        "BENTOML_HOME": str(home / "bentoml"),
        "BENTOML_DO_NOT_TRACK": "True",
        "PLAYBOOK_REQUEST_LOG": str(log),
        **(settings or {}),
    }
    command = [sys.executable, "-m", "bentoml", "serve", bento_tag(home, use_case)]
    command += ["--host", "127.0.0.1", "--port", str(port)]
    url = f"http://127.0.0.1:{port}"
    with subprocess_server(command, env, url, log.with_suffix(".out"), timeout) as served:
        yield served
