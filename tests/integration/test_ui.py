"""The Dagster UI in a real browser: ``dagster dev`` on a materialized home, driven by Playwright.

What a user of ``make dev`` relies on, checked where they see it: every shipped use case's asset
graph renders, a model's evaluation plots show on its page (the main curve in place, all of
them in the plots dialog), its checks are listed, and a run launched from the UI succeeds. The
browser code is shared with ``scripts/screenshot_ui.py`` (``tests/ui_browser.py``, the server in
``tests/dagster_dev_server.py``), and the test takes the README's pictures too, so that script
cannot rot unnoticed.

One test function rather than one per point: they need the same home, server and browser, and
pytest-xdist would spread separate tests of one module over both workers, each paying for its own
home and server (about a minute each on two cores). The run from the UI is launched first and
awaited last, because it spends most of its minute loading the code location (once for the run,
once for its step), which overlaps the other checks.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import dagster as dg
import pytest
from playwright.sync_api import Page
from upath import UPath

from assets.models.plots import PREVIEW_SIZE
from configs import CONFIG_DIR
from dagster_project.use_case_files import load_use_cases
from resources.home import dagster_home
from tests.dagster_dev_server import DagsterUI, dagster_dev
from tests.integration.test_raw_assets import _run, _small
from tests.ui_browser import (
    GRAPH_GROUP,
    MODEL,
    PICTURES,
    browser_page,
    check_names,
    chromium_path,
    global_lineage_groups,
    group_nodes,
    inline_images,
    launch_materialization,
    loaded_images,
    open_markdown_metadata,
    run_status,
    show_group_lineage,
    take_pictures,
)

# slow: a browser over a home and a dagster dev (about 2 minutes on 2 cores); CI keeps the UI's
# GraphQL re-execution of a CLI run (test_materialize_jobs.py) and make dev's loopback
pytestmark = [pytest.mark.integration, pytest.mark.slow]

SHIPPED = {"feed", "fraud", "search"}
# Everything after the model: the UI test needs the model's page, not serving or monitoring.
SKIPPED_STAGES = (
    "indices",
    "funnel_evaluation",
    "serving_bundle",
    "bento",
    "triton_repository",
    "drift_report",
    "performance",
    "experiment_analysis",
)
MODEL_CHECKS = ("promotion_gate", "beats_baseline")
# Cheap and without inputs: the code location serves the shipped (full-size) specs, so an asset
# reading the small world's partitions (split_plan) would find days missing.
LAUNCHED_FROM_UI = ("fraud", "raw_merchants")


def _materialize_small_fraud(home: Path, instance: dg.DagsterInstance) -> None:
    """A small fraud world up to its model, recorded in the home's own Dagster instance.

    Not ``served.materialized_home``: that one records on an ephemeral instance, which the UI of
    ``DAGSTER_HOME=<home>/dagster`` would never see.
    """
    (spec,) = load_use_cases([CONFIG_DIR / "fraud.yaml"])
    result = _run(_small(spec, days=21), home, instance=instance, stages_to_skip=SKIPPED_STAGES)
    assert result.success


@pytest.fixture(scope="module")
def ui(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DagsterUI]:
    """``dagster dev`` on a home where a small fraud use case was materialized up to its model."""
    try:
        chromium_path()
    except FileNotFoundError as missing:
        pytest.skip(str(missing))
    home = tmp_path_factory.mktemp("ui") / "home"
    # The instance (its SQLite storage) is created here first, so that dagster dev and this
    # process never race to create it; the server then boots while the model trains.
    with dg.DagsterInstance.from_config(str(dagster_home(UPath(home)))) as instance:
        with dagster_dev(
            home,
            home / "dagster-dev.log",
            while_starting=lambda: _materialize_small_fraud(home, instance),
        ) as running:
            yield running


@contextmanager
def screenshot_on_failure(page: Page, path: Path) -> Iterator[None]:
    """Save what the browser showed when an assertion failed, and name the file in the error."""
    try:
        yield
    except Exception as error:
        page.screenshot(path=str(path))
        error.add_note(f"the page at failure ({page.url}): {path}")
        raise


def test_dagster_ui_in_a_real_browser(ui: DagsterUI, tmp_path: Path) -> None:
    groups = group_nodes()
    assert SHIPPED <= set(groups)
    with browser_page() as page, screenshot_on_failure(page, tmp_path / "failure.png"):
        # (d), launched now and awaited last (see the module docstring)
        run = launch_materialization(page, ui, LAUNCHED_FROM_UI)

        # (a) the global lineage shows every use case's group, and each group's lineage every node
        assert global_lineage_groups(page, ui, sorted(groups)) == []
        for group, names in groups.items():
            missing = show_group_lineage(page, ui, group, names)
            assert missing == [], f"{group}'s lineage does not show {missing}"

        # (b) the model's evaluation plots: an image the browser decoded, in the plots dialog
        plots = loaded_images(open_markdown_metadata(page, ui, MODEL, "plots"))
        assert plots, "the model's plots dialog shows no decoded image"
        # ... and its main curve in place, in the metadata table, with nothing clicked
        curve = inline_images(page, ui, MODEL, "curve")
        assert curve == [PREVIEW_SIZE], f"the model's curve row shows {curve}, no decoded preview"

        # (c) the model's checks tab lists its checks
        assert check_names(page, ui, MODEL, MODEL_CHECKS) == []

        # the README's pictures, from the same clicks (scripts/screenshot_ui.py)
        pictures = take_pictures(page, ui, tmp_path / "pictures", groups[GRAPH_GROUP])
        assert [p.stem for p in pictures] == [p.name for p in PICTURES]
        assert all(p.stat().st_size > 20_000 for p in pictures)

        # (d) the run launched from the UI succeeded, as its run page shows
        status = run_status(page, ui, run)
        assert status == "Success", f"run {run} ended {status}:\n{ui.log_tail()}"
