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

from runtime.layout import HomeLayout, home_location


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


def _ensure_python_logs(config: Path) -> None:
    """Merge our ``python_logs`` settings into an instance's ``dagster.yaml``.

    A home made before this setting existed gets it too, with every other setting kept. When
    the file has no ``python_logs`` section the block is appended as text, so the user's
    comments and layout survive; otherwise the section is merged and the file rewritten.
    """
    text = config.read_text(encoding="utf-8")
    current = yaml.safe_load(text) or {}
    if not isinstance(current, dict):
        return  # not an instance config we understand; Dagster will say what is wrong with it
    settings = python_logs_settings(current.get("python_logs"))
    if settings == current.get("python_logs"):
        return  # already there: leave the file (and its modification time) alone
    if "python_logs" not in current:
        block = yaml.safe_dump({"python_logs": settings}, sort_keys=False)
        separator = "" if text.endswith("\n") or not text else "\n"
        config.write_text(text + separator + block, encoding="utf-8")
    else:
        current["python_logs"] = settings
        config.write_text(yaml.safe_dump(current, sort_keys=False), encoding="utf-8")


def dagster_home(home: UPath) -> Path:
    """The Dagster instance folder inside a local home, created on first use.

    Its ``dagster.yaml`` turns telemetry off (new homes only) and makes the instance capture
    our packages' Python loggers (every home, merged into what is there): a run's log then
    shows training progress (LightGBM iterations, two-tower epochs) as it happens.
    """
    folder = Path(str(HomeLayout(home).dagster()))
    folder.mkdir(parents=True, exist_ok=True)
    config = folder / "dagster.yaml"
    if not config.exists():
        # No network here, and a telemetry banner on every command hides the summary.
        config.write_text("telemetry:\n  enabled: false\n", encoding="utf-8")
    _ensure_python_logs(config)
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
