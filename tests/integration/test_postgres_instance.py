"""Dagster at scale on one machine: a Postgres-backed instance, the multiprocess executor, the daemon.

A real PostgreSQL server (``tests.postgres_server``) holds the instance that
``dagster_project.instance_config`` writes, as a user would run it (``dagster.yaml`` with the
password read from the environment). Two things must land in that database:

* a run of the fraud use case's raw, split and feature stages on the multiprocess executor, each
  step in its own process, all of them writing their events to Postgres at once;
* a sensor tick, recorded the way a deployment records it: ``dagster api grpc`` serves the
  ``playbook`` code location on 127.0.0.1 (what the Helm chart's user-code deployment runs),
  ``dagster sensor start`` turns the drift sensor on, and ``dagster-daemon run`` evaluates it.

The tests skip only when the PostgreSQL server binaries are missing (``make test`` installs them
with ``scripts/install_postgres.sh``); anything else that goes wrong is a failure.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import dagster as dg
import psycopg2
import pytest
import yaml

from dagster_project.instance_config import (
    PASSWORD_ENV,
    PostgresSettings,
    write_postgres_instance,
)
from dagster_project.loader import build_definitions
from tests.integration import postgres_jobs
from tests.postgres_server import (
    INSTALL_HINT,
    PostgresNotInstalled,
    PostgresServer,
    postgres_server,
)
from tests.redis_server import free_port

if TYPE_CHECKING:  # what the instance returns; not re-exported by ``dagster`` itself
    from dagster._core.scheduler.instigation import InstigatorState, InstigatorTick

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
DAYS = 4
LOCATION = "playbook"  # pyproject's [tool.dagster] code_location_name, as deployed
SENSOR = "fraud_drift_sensor"
STARTUP_S = 300  # the code server imports the whole project; CI has two shared cores
TICK_S = 180


@pytest.fixture(scope="module")
def postgres() -> Iterator[PostgresServer]:
    """One server for the module; each test gets its own database in it."""
    try:
        with postgres_server() as server:
            yield server
    except PostgresNotInstalled:
        pytest.skip(INSTALL_HINT)


@dataclass(frozen=True)
class PostgresInstance:
    instance: dg.DagsterInstance
    dagster_home: Path
    playbook_home: Path
    db_name: str
    server: PostgresServer

    def query(self, statement: str, *params: object) -> list[tuple]:
        """Rows straight from the database, to see what Dagster stored there (not elsewhere)."""
        connection = self.server.connect(self.db_name)
        try:
            with connection.cursor() as cursor:
                cursor.execute(statement, params)
                return cursor.fetchall()
        finally:
            connection.close()


@pytest.fixture
def pg_instance(
    postgres: PostgresServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[PostgresInstance]:
    """A fresh database and a DAGSTER_HOME whose dagster.yaml points at it.

    The environment (DAGSTER_HOME, the password, PLAYBOOK_HOME) is set for this process and so
    for every process the test starts: step workers, the code server, the CLI, the daemon.
    """
    db_name = f"dagster_{uuid.uuid4().hex[:12]}"
    postgres.create_database(db_name)
    dagster_home = tmp_path / "dagster"
    settings = PostgresSettings(
        hostname=postgres.host, port=postgres.port, username=postgres.username, db_name=db_name
    )
    write_postgres_instance(dagster_home, settings)
    monkeypatch.setenv(PASSWORD_ENV, postgres.password)
    monkeypatch.setenv("DAGSTER_HOME", str(dagster_home))
    monkeypatch.setenv("PLAYBOOK_HOME", str(tmp_path / "home"))
    with dg.DagsterInstance.get() as instance:
        yield PostgresInstance(instance, dagster_home, tmp_path / "home", db_name, postgres)


def test_instance_file_names_the_password_variable_not_the_password(
    pg_instance: PostgresInstance,
) -> None:
    text = (pg_instance.dagster_home / "dagster.yaml").read_text()
    assert pg_instance.server.password not in text
    database = yaml.safe_load(text)["storage"]["postgres"]["postgres_db"]
    assert database["password"] == {"env": PASSWORD_ENV}
    assert (database["hostname"], database["port"]) == ("127.0.0.1", pg_instance.server.port)
    # and the server does want it: no TCP login without the password
    with pytest.raises(psycopg2.OperationalError, match="password"):
        psycopg2.connect(
            host=pg_instance.server.host,
            port=pg_instance.server.port,
            user=pg_instance.server.username,
            dbname=pg_instance.db_name,
        )


def test_launched_runs_use_the_multiprocess_executor_by_default(tmp_path: Path) -> None:
    """Runs from the UI, a schedule, a sensor or the K8sRunLauncher run each step in a process.

    No executor is set on the project's Definitions, so its jobs take Dagster's default, which
    runs multiprocess unless a run's config asks for in_process (as ``playbook materialize``
    does, one asset per run). Its concurrency is the run's CPUs, or
    DAGSTER_MULTIPROCESS_EXECUTOR_MAX_CONCURRENT (deploy/dagster/values.yaml sets it).
    """
    defs = build_definitions(home=tmp_path)
    jobs = [job for job in defs.resolve_all_job_defs() if job.name.endswith("_retrain")]
    assert jobs
    for job in jobs:
        assert job.executor_def is dg.multi_or_in_process_executor
    default = dg.multi_or_in_process_executor.config_schema.as_field().default_value
    assert list(default) == ["multiprocess"]


def test_multiprocess_run_stores_its_events_in_postgres(pg_instance: PostgresInstance) -> None:
    instance = pg_instance.instance
    spec = postgres_jobs.small_fraud(DAYS)
    job = dg.build_reconstructable_job(
        postgres_jobs.__name__,
        postgres_jobs.fraud_stages_job.__name__,
        reconstructable_args=(str(pg_instance.playbook_home), DAYS),
    )
    with dg.execute_job(
        job, instance=instance, tags=postgres_jobs.partition_range_tags(spec)
    ) as result:
        assert result.success
        run_id = result.run_id
        events = list(result.all_events)

    # every step ran in a process of its own, none in this one
    starts = [e for e in events if e.event_type == dg.DagsterEventType.STEP_START]
    step_pids = {e.pid for e in starts}
    assert len(starts) >= 4 and os.getpid() not in step_pids and len(step_pids) == len(starts)
    checks = [
        e.event_specific_data
        for e in events
        if e.event_type == dg.DagsterEventType.ASSET_CHECK_EVALUATION
    ]
    assert checks and all(c.passed for c in checks)

    # the instance (Postgres) knows every stage's materialization from this run
    keys = postgres_jobs.stage_keys(spec)
    for key in keys:
        latest = instance.get_latest_materialization_event(key)
        assert latest is not None and latest.run_id == run_id, key
    raw_events = dg.AssetKey(["fraud", "raw_events"])
    partitions = postgres_jobs.partition_range_tags(spec).values()
    assert instance.get_materialized_partitions(raw_events) >= set(partitions)
    assert len(instance.get_materialized_partitions(raw_events)) == DAYS

    # and those rows are in the database itself
    materialized = [e for e in events if e.event_type == dg.DagsterEventType.ASSET_MATERIALIZATION]
    ((stored,),) = pg_instance.query(
        "SELECT count(*) FROM event_logs WHERE run_id = %s AND dagster_event_type = %s",
        run_id,
        "ASSET_MATERIALIZATION",
    )
    assert stored == len(materialized) == len(keys) - 1 + DAYS  # one per raw_events partition
    assert pg_instance.query("SELECT status FROM runs WHERE run_id = %s", run_id) == [("SUCCESS",)]


@contextmanager
def _process(command: list[str], log: Path) -> Iterator[subprocess.Popen[bytes]]:
    """Run ``command`` in its own process group; stop the group however the block ends."""
    with log.open("wb") as out:
        process = subprocess.Popen(
            command, cwd=REPO, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )
    try:
        yield process
    finally:
        _signal_group(process, signal.SIGTERM)  # the daemon stops its threads and code servers
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            _signal_group(process, signal.SIGKILL)
            process.wait()


def _signal_group(process: subprocess.Popen[bytes], signum: int) -> None:
    """Signal the group ``process`` leads (its children too, even after it has exited)."""
    try:
        os.killpg(process.pid, signum)
    except ProcessLookupError:
        pass  # the whole group is gone already


def _tail(log: Path, chars: int = 3000) -> str:
    return log.read_text(errors="replace")[-chars:] if log.exists() else ""


def _dagster(*args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(BIN / "dagster"), *args], cwd=REPO, capture_output=True, text=True, timeout=timeout
    )


def _wait_for_code_server(port: int, server: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + STARTUP_S
    while time.monotonic() < deadline:
        assert server.poll() is None, f"code server exited:\n{_tail(log)}"
        health = _dagster("api", "grpc-health-check", "--host", "127.0.0.1", "--port", str(port))
        if health.returncode == 0:
            return
        time.sleep(2)
    raise TimeoutError(f"code server not serving after {STARTUP_S} s:\n{_tail(log)}")


def _wait_for_tick(
    instance: dg.DagsterInstance, daemon: subprocess.Popen[bytes], log: Path
) -> tuple[InstigatorState, InstigatorTick]:
    """The sensor's first finished tick, read back from the instance."""
    deadline = time.monotonic() + TICK_S
    while time.monotonic() < deadline:
        assert daemon.poll() is None, f"dagster-daemon exited:\n{_tail(log)}"
        (state,) = [s for s in instance.all_instigator_state() if s.instigator_name == SENSOR]
        ticks = instance.get_ticks(state.instigator_origin_id, state.selector_id)
        finished = [t for t in ticks if t.is_completed]
        if finished:
            return state, finished[-1]
        time.sleep(1)
    raise TimeoutError(f"no {SENSOR} tick after {TICK_S} s:\n{_tail(log)}")


def test_daemon_records_a_sensor_tick_in_postgres(
    pg_instance: PostgresInstance, tmp_path: Path
) -> None:
    instance = pg_instance.instance
    # three raw partitions, as an ingestion outside Dagster would report them
    days = ["2025-01-01", "2025-01-02", "2025-01-03"]
    for day in days:
        instance.report_runless_asset_event(
            dg.AssetMaterialization(asset_key=["fraud", "raw_events"], partition=day)
        )
    port = free_port()
    workspace = tmp_path / "workspace.yaml"
    entry = {"host": "127.0.0.1", "port": port, "location_name": LOCATION}
    workspace.write_text(yaml.safe_dump({"load_from": [{"grpc_server": entry}]}))

    code_server = [str(BIN / "dagster"), "api", "grpc", "--module-name"]
    code_server += ["dagster_project.definitions", "--host", "127.0.0.1", "--port", str(port)]
    code_server += ["--location-name", LOCATION]
    server_log, daemon_log = tmp_path / "code_server.log", tmp_path / "daemon.log"
    with _process(code_server, server_log) as server:
        _wait_for_code_server(port, server, server_log)
        started = _dagster("sensor", "start", SENSOR, "-w", str(workspace))
        assert started.returncode == 0, started.stdout + started.stderr
        daemon_command = [str(BIN / "dagster-daemon"), "run", "-w", str(workspace)]
        with _process(daemon_command, daemon_log) as daemon:
            state, tick = _wait_for_tick(instance, daemon, daemon_log)

    assert state.is_running
    assert tick.status.value == "SKIPPED", tick.error
    # the sensor read the partitions from Postgres and kept them in its cursor there
    assert "3 partitions" in tick.skip_reason  # the first look takes them as the reference
    stored = instance.get_instigator_state(state.instigator_origin_id, state.selector_id)
    assert stored is not None
    assert json.loads(stored.instigator_data.cursor)["seen"] == days
    rows = pg_instance.query(
        "SELECT status FROM job_ticks WHERE selector_id = %s", state.selector_id
    )
    assert ("SKIPPED",) in rows
