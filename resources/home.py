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
from upath import UPath

from runtime.layout import HomeLayout, home_location


def playbook_home(override: str | os.PathLike[str] | None = None) -> UPath:
    """The home directory as a UPath (local paths are made absolute; ``s3://...`` is kept)."""
    return UPath(home_location(override))


def home_layout(override: str | os.PathLike[str] | None = None) -> HomeLayout[UPath]:
    """The layout of the home :func:`playbook_home` resolves to."""
    return HomeLayout(playbook_home(override))


def dagster_home(home: UPath) -> Path:
    """The Dagster instance folder inside a local home (created, telemetry off, on first use)."""
    folder = Path(str(HomeLayout(home).dagster()))
    folder.mkdir(parents=True, exist_ok=True)
    config = folder / "dagster.yaml"
    if not config.exists():
        # No network here, and a telemetry banner on every command hides the summary.
        config.write_text("telemetry:\n  enabled: false\n", encoding="utf-8")
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
