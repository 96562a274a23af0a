"""The servers Playbook starts or documents listen on 127.0.0.1 only, as documented: ``dagster
dev`` as ``make dev`` runs it, and ``bentoml serve`` of a built Bento as the README shows it
(no ``--host``). What listens is read from the kernel's socket table (psutil reads
``/proc/net/tcp``), not from the servers' own logs: BentoML logs "localhost" while it listens on
every address."""

from __future__ import annotations

import json
import os
import shlex
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path

import dagster as dg
import psutil
import pytest
from upath import UPath

from resources.home import dagster_home
from resources.run_workers import WORKER_TAG
from tests.conftest import REPO
from tests.dagster_dev_server import dagster_env, free_port, stop, wait_until_loaded
from tests.integration.served import bento_tag, materialized_home, subprocess_server

pytestmark = pytest.mark.integration

LOOPBACK = {"127.0.0.1", "::1"}
MONITORING_TIMEOUT_S = 120  # the daemon's first run-monitoring pass, then one 30 s poll


def _listening(pids: set[int]) -> set[tuple[str, int]]:
    """(address, port) of every TCP socket these processes listen on."""
    found = set()
    for pid in pids:
        try:
            connections = psutil.Process(pid).net_connections(kind="inet")
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
        found |= {(c.laddr.ip, c.laddr.port) for c in connections if c.status == "LISTEN"}
    return found


def _tree(pid: int) -> set[int]:
    """``pid`` and every process below it."""
    try:
        return {pid} | {child.pid for child in psutil.Process(pid).children(recursive=True)}
    except psutil.NoSuchProcess:
        return set()


def _make_dev_command(port: int) -> list[str]:
    """The command ``make dev`` runs (``make -n`` prints it among the install steps it would
    take first; under an outer ``make``, as in CI, it also prints directory lines), with a free
    port added; ``$(BIN)`` is this interpreter's folder,
    whichever virtual environment runs the tests."""
    printed = subprocess.run(
        ["make", "-n", "--no-print-directory", "dev", f"BIN={Path(sys.executable).parent}"],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    recipes = [line for line in printed.splitlines() if "dagster dev -w workspace.yaml" in line]
    assert len(recipes) == 1, printed
    recipe = recipes[0]
    return ["bash", "-c", f"exec env {recipe} -p {port}"]


def _dead_run(home: Path) -> str:
    """A run left STARTED by a process that has gone, as a SIGKILLed ``playbook materialize``
    leaves it; for the daemon of ``dagster dev`` to find."""
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    run_id = str(uuid.uuid4())
    worker = {"run": run_id, "host": socket.gethostname(), "pid": gone.pid, "started": 1.0}
    with dg.DagsterInstance.from_config(str(dagster_home(UPath(home)))) as instance:
        instance.add_run(
            dg.DagsterRun(
                job_name="movies__raw",
                run_id=run_id,
                status=dg.DagsterRunStatus.STARTED,
                tags={WORKER_TAG: json.dumps(worker)},
            )
        )
    return run_id


def test_make_dev_listens_on_loopback_and_its_daemon_fails_dead_runs(
    ratings_config: Path, tmp_path: Path
) -> None:
    home = tmp_path / "home"
    run_id = _dead_run(home)
    port = free_port()
    log = tmp_path / "dagster-dev.log"
    env = {**dagster_env(home), "PLAYBOOK_CONFIGS": str(ratings_config.parent)}
    with open(log, "wb") as sink:
        process = subprocess.Popen(
            _make_dev_command(port),
            cwd=REPO,
            env=env,
            stdout=sink,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # stop() signals the group
        )
    try:
        wait_until_loaded(f"http://127.0.0.1:{port}", process, log, timeout_s=240)
        listening = _listening(_tree(process.pid))
        assert ("127.0.0.1", port) in listening, listening
        assert {address for address, _ in listening} <= LOOPBACK, listening
        deadline = time.monotonic() + MONITORING_TIMEOUT_S
        with dg.DagsterInstance.from_config(str(home / "dagster")) as instance:
            while instance.get_run_by_id(run_id).status == dg.DagsterRunStatus.STARTED:
                assert time.monotonic() < deadline, log.read_text()[-3000:]
                time.sleep(2)
            assert instance.get_run_by_id(run_id).status == dg.DagsterRunStatus.FAILURE
            (failure,) = instance.all_logs(run_id, of_type=dg.DagsterEventType.RUN_FAILURE)
        # the daemon's run monitoring asked the launcher (resources.run_workers) about it
        assert "The process running this run is gone" in (failure.dagster_event.message or "")
    finally:
        stop(process)


def test_bentoml_serve_of_a_built_bento_as_documented_listens_on_loopback(
    tmp_path_factory: pytest.TempPathFactory, tmp_path: Path
) -> None:
    home = materialized_home(tmp_path_factory, "fraud")
    port = free_port()
    env = {
        **os.environ,
        "BENTOML_HOME": str(home / "bentoml"),
        "BENTOML_DO_NOT_TRACK": "True",
        "PLAYBOOK_REQUEST_LOG": str(tmp_path / "requests.sqlite"),
    }
    env.pop("BENTOML_HOST", None)
    # the README's line, as typed: no --host
    command = [sys.executable, "-m", "bentoml", "serve", bento_tag(home, "fraud")]
    command += ["--port", str(port)]
    with subprocess_server(command, env, f"http://127.0.0.1:{port}", tmp_path / "serve.out"):
        on_port = {
            (c.laddr.ip, c.laddr.port)
            for c in psutil.net_connections(kind="inet")
            if c.status == "LISTEN" and c.laddr.port == port
        }
    assert on_port, "nothing listens on the port the server answered on"
    assert {address for address, _ in on_port} <= LOOPBACK, (on_port, shlex.join(command))
