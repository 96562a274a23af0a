"""Where Playbook keeps its state: one home directory for artifacts and the Dagster instance.

Resolution order: an explicit ``--home`` flag, then ``PLAYBOOK_HOME``, then ``./.playbook``
(:func:`runtime.layout.home_location`). What lives where inside it is
:class:`runtime.layout.HomeLayout`. The Dagster instance lives in ``<home>/dagster`` so that
``dagster dev`` started with the same home shows every materialization the CLI made.
"""

from __future__ import annotations

import os
from pathlib import Path

import dagster as dg
import yaml
from upath import UPath

from runtime.layout import USE_CASE_RUN_TAG, HomeLayout, home_location
from runtime.relocate import relocate_dagster


def playbook_home(override: str | os.PathLike[str] | None = None) -> UPath:
    """The home directory as a UPath (local paths are made absolute; ``s3://...`` is kept)."""
    return UPath(home_location(override))


def home_layout(override: str | os.PathLike[str] | None = None) -> HomeLayout[UPath]:
    """The layout of the home :func:`playbook_home` resolves to."""
    return HomeLayout(playbook_home(override))


# Our packages log through ``logging.getLogger(__name__)`` (training progress, quality, indexing);
# the instance attaches its handler to these loggers during a run, so those lines land in the
# run's event log (the UI's run view), not only on a terminal nobody watches.
MANAGED_PYTHON_LOGGERS = ("assets", "resources", "runtime")
# Below INFO they would be dropped before any handler sees them (the root default is WARNING).
PYTHON_LOG_LEVEL = "INFO"


def python_logs_settings(current: object = None) -> dict:
    """The ``python_logs`` section of an instance's ``dagster.yaml``, ours merged into ``current``.

    Public so that whatever else writes an instance file (a Postgres instance, a Helm values
    file) can include it: our loggers are added to the user's, and a user's own
    ``python_log_level`` is kept.
    """
    settings = dict(current) if isinstance(current, dict) else {}
    loggers = list(settings.get("managed_python_loggers") or [])
    settings["managed_python_loggers"] = loggers + [
        name for name in MANAGED_PYTHON_LOGGERS if name not in loggers
    ]
    settings.setdefault("python_log_level", PYTHON_LOG_LEVEL)
    return settings


# One run at a time per use case, whoever launches it (UI, schedule, sensor): runs of a use case
# carry this tag (``dagster_project.jobs``), and the run queue starts a queued run only while no
# other run with the same value is in progress. ``playbook materialize`` holds the use case's
# home lock (``runtime.home_lock``) and will not start while such a run is in progress.
USE_CASE_RUN_LIMIT = {
    "key": USE_CASE_RUN_TAG,
    "value": {"applyLimitPerUniqueValue": True},
    "limit": 1,
}
# Dagster's default launcher, plus a worker health check (``resources.run_workers``): with run
# monitoring on, the daemon marks a run whose process died as failed instead of leaving it
# STARTED for ever.
RUN_LAUNCHER = {"module": "resources.run_workers", "class": "LocalRunLauncher"}
RUN_MONITORING = {"enabled": True, "poll_interval_seconds": 30}
# fields Dagster refuses to see both in ``run_queue`` (or a QueuedRunCoordinator's config) and in
# ``concurrency: runs``
_RUN_QUEUE_FIELDS = (
    "max_concurrent_runs",
    "tag_concurrency_limits",
    "block_op_concurrency_limited_runs",
)


def _with_limit(limits: object) -> list:
    """``limits`` with the one-run-per-use-case limit, unless one for that tag is there."""
    current = list(limits) if isinstance(limits, list) else []
    if any(isinstance(item, dict) and item.get("key") == USE_CASE_RUN_TAG for item in current):
        return current
    return [*current, USE_CASE_RUN_LIMIT]


def _run_queue_settings(current: dict) -> dict:
    """The top-level section(s) that put the use-case limit where this file's queue is set."""
    queue = current.get("run_queue")
    if isinstance(queue, dict) and any(field in queue for field in _RUN_QUEUE_FIELDS):
        return {
            "run_queue": {
                **queue,
                "tag_concurrency_limits": _with_limit(queue.get("tag_concurrency_limits")),
            }
        }
    coordinator = current.get("run_coordinator")
    config = coordinator.get("config") if isinstance(coordinator, dict) else None
    if (
        isinstance(config, dict)
        and coordinator.get("class") == "QueuedRunCoordinator"
        and any(field in config for field in _RUN_QUEUE_FIELDS)
    ):
        limits = _with_limit(config.get("tag_concurrency_limits"))
        return {
            "run_coordinator": {
                **coordinator,
                "config": {**config, "tag_concurrency_limits": limits},
            }
        }
    concurrency = current.get("concurrency")
    concurrency = dict(concurrency) if isinstance(concurrency, dict) else {}
    runs = concurrency.get("runs")
    runs = dict(runs) if isinstance(runs, dict) else {}
    runs["tag_concurrency_limits"] = _with_limit(runs.get("tag_concurrency_limits"))
    return {"concurrency": {**concurrency, "runs": runs}}


def instance_settings(current: dict | None = None) -> dict:
    """What Playbook needs in an instance's ``dagster.yaml``, merged into ``current``: our
    ``python_logs``, one run at a time per use case, and failing runs whose process died.

    A user's own launcher and run monitoring settings are kept; the use-case limit joins the
    limits already in the file, wherever the file sets them.
    """
    current = current or {}
    settings = {"python_logs": python_logs_settings(current.get("python_logs"))}
    settings.update(_run_queue_settings(current))
    settings["run_launcher"] = current.get("run_launcher") or RUN_LAUNCHER
    settings["run_monitoring"] = current.get("run_monitoring") or RUN_MONITORING
    return settings


def _ensure_instance_settings(config: Path) -> None:
    """Merge :func:`instance_settings` into an instance's ``dagster.yaml``.

    A home made before a setting existed gets it too, with every other setting kept. Sections
    the file does not have are appended as text, so the user's comments and layout survive;
    when a section the file has must change, the file is rewritten.
    """
    text = config.read_text(encoding="utf-8")
    current = yaml.safe_load(text) or {}
    if not isinstance(current, dict):
        return  # not an instance config we understand; Dagster will say what is wrong with it
    changed = {k: v for k, v in instance_settings(current).items() if current.get(k) != v}
    if not changed:
        return  # already there: leave the file (and its modification time) alone
    if all(key not in current for key in changed):
        block = yaml.safe_dump(changed, sort_keys=False)
        separator = "" if text.endswith("\n") or not text else "\n"
        config.write_text(text + separator + block, encoding="utf-8")
    else:
        config.write_text(yaml.safe_dump({**current, **changed}, sort_keys=False), encoding="utf-8")


def dagster_home(home: UPath) -> Path:
    """The Dagster instance folder inside a local home, created on first use.

    Its ``dagster.yaml`` turns telemetry off (new homes only) and, in every home (merged into
    what is there, :func:`instance_settings`), makes the instance capture our packages' Python
    loggers (a run's log then shows training progress as it happens), run one run at a time per
    use case, and fail the runs whose process died.
    """
    folder = Path(str(HomeLayout(home).dagster()))
    folder.mkdir(parents=True, exist_ok=True)
    relocate_dagster(folder, Path(str(home)))  # a moved home: its event log's paths re-rooted
    config = folder / "dagster.yaml"
    if not config.exists():
        # No network here, and a telemetry banner on every command hides the summary.
        config.write_text("telemetry:\n  enabled: false\n", encoding="utf-8")
    _ensure_instance_settings(config)
    return folder


class HomeResource(dg.ConfigurableResource):
    """The home directory, for assets that write files beside their tables (e.g. data docs)."""

    path: str

    @property
    def layout(self) -> HomeLayout[UPath]:
        """What lives where in this home."""
        return home_layout(self.path)

    def created(self, path: UPath) -> UPath:
        """``path`` (a folder of :attr:`layout`), created."""
        path.mkdir(parents=True, exist_ok=True)
        return path
