"""Which process runs a Dagster run, whether it is still there, and failing the runs it left.

A ``playbook materialize`` killed with SIGKILL (or by the OOM killer) cannot record that its run
ended: the run stayed ``STARTED`` forever, in the UI and for the run queue, which counts it
against its use case's limit. So every run says which process runs it, and whoever looks next
marks the runs whose process is gone as failed, with a message saying so:

* runs ``playbook materialize`` executes carry :func:`worker_tags`: pid, host and the process's
  start time (which tells a reused pid from the original process);
* runs Dagster launches (UI, schedules, sensors) are started by :class:`LocalRunLauncher`, which
  tags the host when the run worker starts on this machine; the worker's pid is the one Dagster's
  own "Started process for run (pid: N)" engine event records.

The tag names the run it describes: the UI's re-execution copies a parent run's tags to the new
run, whose worker is another process, so a tag naming another run is ignored.

* :func:`fail_dead_runs` reports them failed; the CLI calls it before it runs anything, and
  ``run_monitoring`` in the instance's ``dagster.yaml`` (:mod:`resources.home`) makes the daemon
  of ``dagster dev`` ask :meth:`LocalRunLauncher.check_run_worker_health` about every started run.

A process on another host cannot be checked from here: such runs are left alone (reported as
running), never failed on a guess.
"""

from __future__ import annotations

import json
import os
import socket
from dataclasses import dataclass

import dagster as dg
import psutil
from dagster._core.launcher import CheckRunHealthResult, LaunchRunContext, WorkerStatus
from dagster._core.storage.tags import GRPC_INFO_TAG

WORKER_TAG = "playbook/worker"  # JSON: run id, host, and pid and start time when known
# what ``dagster api execute_run`` (and a resumed run) logs first, with its pid as metadata
_WORKER_EVENTS = ("Started process for run", "Started process for resuming job")
_LOCAL_HOSTS = {"localhost", "127.0.0.1", "::1"}
UNFINISHED = (
    dg.DagsterRunStatus.NOT_STARTED,
    dg.DagsterRunStatus.STARTING,
    dg.DagsterRunStatus.STARTED,
    dg.DagsterRunStatus.CANCELING,
)


def _tag(run_id: str, **fields: object) -> dict[str, str]:
    return {WORKER_TAG: json.dumps({"run": run_id, "host": socket.gethostname(), **fields})}


def worker_tags(run_id: str) -> dict[str, str]:
    """The tag naming this process as the one that runs ``run_id``."""
    return _tag(run_id, pid=os.getpid(), started=round(psutil.Process().create_time(), 3))


@dataclass(frozen=True)
class Worker:
    """The process running a run: ``started`` is its start time when known, ``seen`` a moment
    it was known to be running (a process started after that moment is another one)."""

    pid: int
    host: str
    started: float | None = None
    seen: float | None = None

    def gone(self) -> str | None:
        """Why this process is provably gone, or None (alive, or on another host)."""
        if self.host != socket.gethostname():
            return None
        try:
            process = psutil.Process(self.pid)
            created = process.create_time()
            zombie = process.status() == psutil.STATUS_ZOMBIE
        except psutil.NoSuchProcess:
            return f"no process {self.pid} on {self.host}"
        except psutil.AccessDenied:
            return None  # another user's process: it exists
        if zombie:
            return f"process {self.pid} on {self.host} has exited"
        if self.started is not None and abs(created - self.started) > 1:
            return f"pid {self.pid} on {self.host} now belongs to another process"
        if self.seen is not None and created > self.seen + 1:
            return f"pid {self.pid} on {self.host} now belongs to another process"
        return None


def run_worker(instance: dg.DagsterInstance, run: dg.DagsterRun) -> Worker | None:
    """The process running ``run``, when it is known and on a known host."""
    try:
        recorded = json.loads(run.tags.get(WORKER_TAG, "{}"))
    except ValueError:
        return None
    if not isinstance(recorded, dict) or recorded.get("run") != run.run_id:
        return None  # no tag, or one copied from the run this one re-executes
    host = str(recorded.get("host"))
    if "pid" in recorded:
        started = recorded.get("started")
        return Worker(int(recorded["pid"]), host, float(started) if started is not None else None)
    # the worker's first engine events; a long run logs thousands more after them
    records = instance.get_records_for_run(
        run.run_id, of_type=dg.DagsterEventType.ENGINE_EVENT, limit=20
    ).records
    for record in reversed(records):  # the latest start, should a run have been resumed
        entry = record.event_log_entry
        event = entry.dagster_event
        data = event.engine_event_data if event is not None else None
        if data is None or not (event.message or "").startswith(_WORKER_EVENTS):
            continue
        pid = data.metadata.get("pid")
        if pid is not None:
            return Worker(int(pid.value), host, seen=entry.timestamp)
    return None


@dataclass(frozen=True)
class DeadRun:
    """A run that was marked failed because its process had gone."""

    run_id: str
    job_name: str
    reason: str


def _message(reason: str) -> str:
    return (
        f"The process running this run is gone ({reason}): it was killed or crashed before it"
        f" could record how the run ended. Marked failed by pid {os.getpid()} on"
        f" {socket.gethostname()}."
    )


def fail_dead_runs(instance: dg.DagsterInstance) -> list[DeadRun]:
    """Mark every unfinished run whose process is provably gone as failed; returns them."""
    dead = []
    for record in instance.get_run_records(filters=dg.RunsFilter(statuses=list(UNFINISHED))):
        worker = run_worker(instance, record.dagster_run)
        reason = worker.gone() if worker is not None else None
        if reason is None:
            continue
        run = instance.get_run_by_id(record.dagster_run.run_id)  # it may have just ended
        if run is None or run.status not in UNFINISHED:
            continue
        if run.status == dg.DagsterRunStatus.CANCELING:
            instance.report_run_canceled(run, _message(reason))
        else:
            instance.report_run_failed(run, _message(reason))
        dead.append(DeadRun(run.run_id, run.job_name, reason))
    return dead


class LocalRunLauncher(dg.DefaultRunLauncher):
    """Dagster's default launcher (a run worker process per run, started by the code server),
    which also tells the daemon's run monitoring whether that process is still there."""

    def launch_run(self, context: LaunchRunContext) -> None:
        super().launch_run(context)
        run = self._instance.get_run_by_id(context.dagster_run.run_id)
        grpc = json.loads(run.tags.get(GRPC_INFO_TAG, "{}")) if run is not None else {}
        if "socket" in grpc or grpc.get("host") in _LOCAL_HOSTS:
            # the code server, and so the run worker it starts, is on this machine
            self._instance.add_run_tags(run.run_id, _tag(run.run_id))

    @property
    def supports_check_run_worker_health(self) -> bool:
        return True

    def check_run_worker_health(self, run: dg.DagsterRun) -> CheckRunHealthResult:
        worker = run_worker(self._instance, run)
        reason = worker.gone() if worker is not None else None
        if reason is not None:
            return CheckRunHealthResult(WorkerStatus.FAILED, _message(reason))
        # alive, not yet started, or on another host: nothing here says otherwise
        return CheckRunHealthResult(WorkerStatus.RUNNING)
