"""One writer per home and use case, and runs whose process died, with real ``playbook``
processes on one home (the six-rating ``movies`` use case: three quick runs)."""

from __future__ import annotations

import json
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import time
import uuid
from pathlib import Path

import dagster as dg
import pytest
import yaml
from dagster._core.events import EngineEventData
from upath import UPath

from resources.home import USE_CASE_RUN_LIMIT, USE_CASE_RUN_TAG, dagster_home
from resources.run_workers import WORKER_TAG, LocalRunLauncher, fail_dead_runs, worker_tags
from runtime.home_lock import holder_of
from tests.conftest import REPO

pytestmark = pytest.mark.integration

PLAYBOOK = Path(sys.executable).with_name("playbook")
CLI_TIMEOUT_S = 300  # a fresh process imports Dagster, Feast and MLflow; CI has two shared cores


def _materialize(config: Path, home: Path, *options: str) -> subprocess.Popen[str]:
    env = {k: v for k, v in os.environ.items() if k not in ("DAGSTER_HOME", "PLAYBOOK_HOME")}
    return subprocess.Popen(
        [str(PLAYBOOK), "materialize", str(config), "--home", str(home), *options],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={**env, "PYTHONUNBUFFERED": "1"},  # lines as they are printed
        start_new_session=True,  # its own process group: a kill reaches the workers it started
    )


def _started_run(home: Path, process: subprocess.Popen[str], timeout_s: float) -> str:
    """The id of a run in status STARTED, read-only from the runs database (the CLI is still
    creating the instance when this starts looking; opening it here could race that)."""
    database = home / "dagster" / "history" / "runs.db"
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        assert process.poll() is None, process.communicate()[0]
        if database.exists():
            try:
                with sqlite3.connect(f"file:{database}?mode=ro", uri=True) as db:
                    row = db.execute("SELECT run_id FROM runs WHERE status = 'STARTED'").fetchone()
            except sqlite3.OperationalError:  # tables not created yet, or a writer holds it
                row = None
            if row:
                return row[0]
        time.sleep(0.05)
    raise TimeoutError(f"no run started in {timeout_s}s")


def _failure_message(instance: dg.DagsterInstance, run_id: str) -> str:
    (entry,) = instance.all_logs(run_id, of_type=dg.DagsterEventType.RUN_FAILURE)
    return entry.dagster_event.message or ""


def test_two_materializes_of_a_use_case_on_one_home_one_runs_the_other_is_told(
    ratings_config: Path, tmp_path: Path
) -> None:
    home = tmp_path / "home"
    processes = [_materialize(ratings_config, home) for _ in range(2)]
    outputs = [p.communicate(timeout=CLI_TIMEOUT_S)[0] for p in processes]
    codes = [p.returncode for p in processes]
    assert sorted(codes) == [0, 75], outputs
    winner = processes[codes.index(0)]
    told = outputs[codes.index(75)]
    assert outputs[codes.index(0)].rstrip().endswith("all 3 assets ok, all checks passed")
    # one line, naming the use case, the home and the holder, and what to do
    assert told.count("\n") == 1, told
    assert told.startswith(f"Error: use case 'movies' on home {home} is being written by pid")
    assert f"pid {winner.pid} on {socket.gethostname()} since 20" in told
    assert f"(playbook materialize {ratings_config} --home {home})" in told
    assert "--wait" in told
    # the second one ran nothing: every run in the home is the winner's
    assert holder_of(home, "movies") is None
    with dg.DagsterInstance.from_config(str(home / "dagster")) as instance:
        runs = instance.get_runs()
    assert len(runs) == 3
    assert {json.loads(run.tags[WORKER_TAG])["pid"] for run in runs} == {winner.pid}
    assert {run.status for run in runs} == {dg.DagsterRunStatus.SUCCESS}
    # the tag the run queue limits by (resources.home): Dagster's runs wait while one is running
    assert {run.tags[USE_CASE_RUN_TAG] for run in runs} == {"movies"}


def test_a_killed_materialize_frees_the_use_case_and_its_run_is_failed_by_the_next(
    ratings_config: Path, tmp_path: Path
) -> None:
    home = tmp_path / "home"
    killed = _materialize(ratings_config, home)
    try:
        run_id = _started_run(home, killed, CLI_TIMEOUT_S)
    finally:
        # the command and every process it started, as a killed terminal or container would:
        # a step worker left alive keeps the output pipe open and the run going
        os.killpg(killed.pid, signal.SIGKILL)
        killed.communicate(timeout=30)
    assert holder_of(home, "movies") is None  # the kernel dropped the lock with the process
    with dg.DagsterInstance.from_config(str(home / "dagster")) as instance:
        assert instance.get_run_by_id(run_id).status == dg.DagsterRunStatus.STARTED

    again = _materialize(ratings_config, home)
    output = again.communicate(timeout=CLI_TIMEOUT_S)[0]
    assert again.returncode == 0, output
    assert f"run {run_id} (movies__" in output and "marked failed" in output
    assert output.rstrip().endswith("all 3 assets ok, all checks passed")
    with dg.DagsterInstance.from_config(str(home / "dagster")) as instance:
        assert instance.get_run_by_id(run_id).status == dg.DagsterRunStatus.FAILURE
        message = _failure_message(instance, run_id)
        latest = instance.get_runs(limit=3)
    assert "The process running this run is gone" in message
    assert f"no process {killed.pid} on {socket.gethostname()}" in message
    assert [run.status for run in latest] == [dg.DagsterRunStatus.SUCCESS] * 3


@pytest.mark.slow  # CI keeps the lock between two materializes and the killed run's release
def test_materialize_stops_or_waits_while_dagster_runs_the_use_case(
    ratings_config: Path, tmp_path: Path
) -> None:
    """A run launched from the UI, a schedule or a sensor is in progress (this process stands
    for its worker): the command changes nothing and says so, or with --wait lets go of the
    lock, waits for the run to end, then runs."""
    home = tmp_path / "home"
    run_id = str(uuid.uuid4())
    with dg.DagsterInstance.from_config(str(dagster_home(UPath(home)))) as instance:
        launched = _run(
            instance, {USE_CASE_RUN_TAG: "movies", **worker_tags(run_id)}, run_id, "movies__models"
        )
        told = _materialize(ratings_config, home)
        output = told.communicate(timeout=CLI_TIMEOUT_S)[0]
        assert told.returncode == 75, output
        assert f"use case 'movies' on home {home} has a Dagster run {run_id} of movies__models" in (
            " ".join(output.split())
        )
        assert len(instance.get_runs()) == 1  # nothing ran

        waiting = _materialize(ratings_config, home, "--wait")
        assert waiting.stdout is not None
        lines = []
        while not (line := waiting.stdout.readline()).startswith("waiting:"):
            assert line, "".join(lines)
            lines.append(line)
        assert holder_of(home, "movies") is None  # not held while it waits
        instance.report_run_canceled(launched)
        output = waiting.communicate(timeout=CLI_TIMEOUT_S)[0]
    assert waiting.returncode == 0, output
    assert output.rstrip().endswith("all 3 assets ok, all checks passed")


def _run(
    instance: dg.DagsterInstance, tags: dict[str, str], run_id: str, job: str = "movies__raw"
) -> dg.DagsterRun:
    run = dg.DagsterRun(job_name=job, run_id=run_id, status=dg.DagsterRunStatus.STARTED, tags=tags)
    return instance.add_run(run)


def _reaped() -> int:
    """The pid of a process that has exited and been reaped."""
    process = subprocess.Popen([sys.executable, "-c", "pass"])
    process.wait()
    return process.pid


def test_only_runs_whose_process_is_provably_gone_are_failed(tmp_path: Path) -> None:
    """Which runs the CLI and the daemon's run monitoring fail: a dead pid, a pid reused by
    another process, a Dagster-launched run whose worker (known by its start event) is gone;
    never a live process, one on another host, or a tag copied from the run re-executed."""
    folder = dagster_home(UPath(tmp_path / "home"))
    ids = {
        name: str(uuid.uuid4())
        for name in ("dead", "reused", "launched", "alive", "other", "copied")
    }
    host = socket.gethostname()
    dead = _reaped()

    def tag(run_id: str, **fields: object) -> dict[str, str]:
        return {WORKER_TAG: json.dumps({"run": run_id, "host": host, **fields})}

    with dg.DagsterInstance.from_config(str(folder)) as instance:
        assert isinstance(instance.run_launcher, LocalRunLauncher)  # what dagster.yaml names
        _run(instance, tag(ids["dead"], pid=dead, started=1.0), ids["dead"])
        _run(instance, tag(ids["reused"], pid=os.getpid(), started=1.0), ids["reused"])
        launched = _run(instance, tag(ids["launched"]), ids["launched"])
        instance.report_engine_event(
            f"Started process for run (pid: {dead}).", launched, EngineEventData.in_process(dead)
        )
        _run(instance, worker_tags(ids["alive"]), ids["alive"])
        elsewhere = {"run": ids["other"], "host": f"not-{host}", "pid": dead}
        _run(instance, {WORKER_TAG: json.dumps(elsewhere)}, ids["other"])
        _run(instance, tag(ids["dead"], pid=dead, started=1.0), ids["copied"])

        health = {
            name: instance.run_launcher.check_run_worker_health(instance.get_run_by_id(run_id))
            for name, run_id in ids.items()
        }
        failed = {run.run_id for run in fail_dead_runs(instance)}
        statuses = {name: instance.get_run_by_id(run_id).status for name, run_id in ids.items()}
        message = _failure_message(instance, ids["reused"])
    gone = {"dead", "reused", "launched"}
    assert failed == {ids[name] for name in gone}
    assert {n for n, s in statuses.items() if s == dg.DagsterRunStatus.FAILURE} == gone
    assert {n for n, h in health.items() if h.status.value == "FAILED"} == gone
    assert f"pid {os.getpid()} on {host} now belongs to another process" in message


@pytest.mark.parametrize(
    ("existing", "where"),
    [
        ("", ("concurrency", "runs")),
        ("run_queue:\n  max_concurrent_runs: 4\n", ("run_queue",)),
        (
            "run_coordinator:\n  module: dagster.core.run_coordinator\n"
            "  class: QueuedRunCoordinator\n  config:\n    max_concurrent_runs: 4\n",
            ("run_coordinator", "config"),
        ),
    ],
)
def test_the_use_case_run_limit_joins_the_queue_settings_a_home_already_has(
    tmp_path: Path, existing: str, where: tuple[str, ...]
) -> None:
    """Dagster refuses a file that sets the run queue in two places, so the one-run-per-use-case
    limit goes where the file already sets it; a second pass changes nothing."""
    folder = tmp_path / "home" / "dagster"
    folder.mkdir(parents=True)
    config = folder / "dagster.yaml"
    config.write_text(existing)
    dagster_home(UPath(tmp_path / "home"))
    text = config.read_text()
    section = yaml.safe_load(text)
    for key in where:
        section = section[key]
    assert section["tag_concurrency_limits"] == [USE_CASE_RUN_LIMIT]
    dagster_home(UPath(tmp_path / "home"))
    assert config.read_text() == text
    with dg.DagsterInstance.from_config(str(folder)) as instance:
        limits = instance.get_concurrency_config().run_queue_config.tag_concurrency_limits
        assert limits == [USE_CASE_RUN_LIMIT]
        assert isinstance(instance.run_launcher, LocalRunLauncher)
        assert instance.run_monitoring_enabled
