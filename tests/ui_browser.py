"""Drive the Dagster UI in headless Chromium: what a user clicks, on a running ``dagster dev``.

One module for the UI test (``tests/integration/test_ui.py``) and the README's pictures
(``scripts/screenshot_ui.py``), so that the pictures come from the same clicks the test checks and
cannot silently go stale. The server itself is started by ``tests/dagster_dev_server.py``. No
pytest here, for the script's sake (as ``tests/redis_server.py``).

Why it is done this way (see ``../shared/notes/ui-screenshots.md``):

- Debian's ``chromium`` (``scripts/install_chromium.sh``) rather than Playwright's own browser
  download: no download at test time, and one browser for the test and the pictures.
- Every wait is bounded (``ELEMENT_TIMEOUT_MS`` for an element, ``RUN_TIMEOUT_S`` for a run), so a
  broken page fails in seconds with what was missing, instead of hanging the suite.
- Elements are found by role, visible text or the ``title`` the UI gives truncated names; the one
  exception is the lineage graph's node label, which has neither and is found by its class name
  (``AssetNode_assetName``): if that class is renamed the test fails saying no node was found.
"""

from __future__ import annotations

import os
import re
import shutil
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from playwright.sync_api import Locator, Page, ViewportSize, sync_playwright

from tests.dagster_dev_server import DagsterUI, UIError

CHROMIUM_ENV = "PLAYBOOK_CHROMIUM"  # a Chromium binary elsewhere than Debian's /usr/bin/chromium
CHROMIUM_ARGS = [
    "--no-sandbox",  # root in a container has no user namespace for the sandbox
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
VIEWPORT: ViewportSize = {"width": 2200, "height": 1400}  # the feed group whole, labels readable
ELEMENT_TIMEOUT_MS = 30_000  # one element; a loaded 2-core machine renders a graph in seconds
RUN_TIMEOUT_S = 180.0  # a run loads the code twice (run, then step process): ~1 min on 2 cores
RUN_STATUSES = ("Success", "Failure", "Canceled")  # the run page's terminal status labels
NODE_LABEL = "svg foreignObject [class*='AssetNode_assetName']"
ZOOM_OUT_STEPS = 8  # below ~0.15 the graph draws boxes without labels: stop well before


def chromium_path() -> str:
    """The Chromium binary: ``$PLAYBOOK_CHROMIUM``, else ``chromium`` on PATH (Debian's)."""
    found = os.environ.get(CHROMIUM_ENV) or shutil.which("chromium") or "/usr/bin/chromium"
    if not Path(found).exists():
        raise FileNotFoundError(
            f"no Chromium at {found}: run scripts/install_chromium.sh "
            f"(apt-get install chromium) or set {CHROMIUM_ENV}"
        )
    return found


@contextmanager
def browser_page(timeout_ms: int = ELEMENT_TIMEOUT_MS) -> Iterator[Page]:
    """A page in headless Chromium whose every wait is bounded by ``timeout_ms``.

    The "Join the Dagster community" dialog that covers the first page a browser opens is
    dismissed by a locator handler whenever it gets in the way of a click or an assertion.
    """
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium_path(), args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport=VIEWPORT)
            page.set_default_timeout(timeout_ms)
            page.set_default_navigation_timeout(timeout_ms)
            page.add_locator_handler(skip_button(page), lambda button: button.click())
            yield page
        finally:
            browser.close()


def skip_button(page: Page) -> Locator:
    return page.get_by_role("button", name="Skip", exact=True)


def open_route(page: Page, ui: DagsterUI, route: str) -> None:
    page.goto(ui.url(route), wait_until="domcontentloaded")


# ---- (a) lineage graphs --------------------------------------------------------------------


def group_nodes() -> dict[str, list[str]]:
    """Each use case's group and the node labels its lineage should show (last key parts).

    Read from the same configs ``dagster dev`` loads (``PLAYBOOK_CONFIGS`` or ``configs/``), so
    a new use case or stage is expected without editing the test. The project is imported here,
    on use: nothing else in this module needs it.
    """
    from dagster_project.loader import load_use_cases, use_case_assets

    return {
        spec.name: [key.path[-1] for asset in use_case_assets(spec) for key in asset.keys]
        for spec in load_use_cases()
    }


def node_labels(page: Page) -> list[str]:
    """The labels of the asset nodes a user sees in the lineage graph now, whole.

    The graph also draws nodes a little outside its pane (off screen, or under the toolbar that
    floats over its top), so a label counts only where the browser finds it on top at both ends.
    """
    return page.locator(NODE_LABEL).evaluate_all(
        """els => els.filter(e => {
            const r = e.getBoundingClientRect(), node = e.closest('foreignObject');
            const onTop = (x, y) => { const hit = document.elementFromPoint(x, y);
                                      return hit !== null && node.contains(hit); };
            return r.width > 0 && onTop(r.left + 1, r.top + 1) && onTop(r.right - 1, r.bottom - 1);
        }).map(e => e.textContent)"""
    )


def label_matches(label: str, name: str) -> bool:
    """Whether a node label shows ``name``: in full, or cut in the middle as ``card_v…_attributes``."""
    if "…" not in label:
        return label == name
    head, _, tail = label.partition("…")
    return len(name) > len(head) + len(tail) and name.startswith(head) and name.endswith(tail)


def missing_nodes(labels: Sequence[str], names: Sequence[str]) -> list[str]:
    """The names (with repeats: three assets may be called ``scorer``) no label accounts for."""
    left = list(labels)
    missing = []
    for name in sorted(names, key=len, reverse=True):  # full names before ones a cut might hide
        match = next((label for label in left if label_matches(label, name)), None)
        if match is None:
            missing.append(name)
        else:
            left.remove(match)
    return missing


def show_group_lineage(page: Page, ui: DagsterUI, group: str, names: Sequence[str]) -> list[str]:
    """Open a group's lineage and zoom out until every node in ``names`` is in view, whole.

    The graph opens zoomed in on part of a large group, so it is zoomed out step by step and left
    at the first zoom that shows them all (the most readable one). Returns the names still not
    shown after ``ZOOM_OUT_STEPS`` (empty when the whole group is in view).
    """
    open_route(page, ui, ui.group_lineage(group))
    page.locator(NODE_LABEL).first.wait_for(state="visible")
    zoom_out = page.get_by_role("button", name="zoom_out", exact=True)
    missing = missing_nodes(node_labels(page), names)
    for _ in range(ZOOM_OUT_STEPS):
        if not missing:
            break
        zoom_out.click()
        page.wait_for_timeout(400)  # the graph re-renders on the next animation frames
        missing = missing_nodes(node_labels(page), names)
    return missing


def global_lineage_groups(page: Page, ui: DagsterUI, groups: Sequence[str]) -> list[str]:
    """Open the global lineage (every group collapsed to one box); the groups it does not show."""
    open_route(page, ui, "/asset-groups")
    graph = page.locator("svg foreignObject")
    graph.first.wait_for(state="visible")
    missing = []
    for group in groups:
        try:
            graph.get_by_text(group, exact=True).first.wait_for(state="visible", timeout=5000)
        except Exception:  # noqa: BLE001 - Playwright's TimeoutError: reported by name below
            missing.append(group)
    return missing


# ---- (b) and (c) an asset's page ------------------------------------------------------------


def asset_route(key: Sequence[str]) -> str:
    return "/assets/" + "/".join(key)


def open_markdown_metadata(page: Page, ui: DagsterUI, key: Sequence[str], entry: str) -> Locator:
    """Open an asset's page and the dialog of one Markdown metadata entry (e.g. ``plots``)."""
    open_route(page, ui, asset_route(key))
    row = page.get_by_role("row").filter(has=page.get_by_role("cell", name=entry, exact=True))
    row.first.scroll_into_view_if_needed()
    row.first.get_by_text("[Show Markdown]").click()
    dialog = page.get_by_role("dialog").filter(has_text=entry)
    dialog.wait_for(state="visible")
    return dialog


def loaded_images(dialog: Locator, min_side: int = 100) -> list[tuple[int, int]]:
    """Width and height of each picture in ``dialog`` (or any part of a page) that the browser
    decoded and that is at least ``min_side`` on each side, waiting for one to show.

    ``naturalWidth`` is 0 for a broken image, so this tells a drawn plot from a broken ``<img>``.
    """
    images = dialog.locator("img")
    images.first.wait_for(state="visible")
    sizes = images.evaluate_all(
        "els => Promise.all(els.map(e => e.decode().then("
        "() => [e.naturalWidth, e.naturalHeight], () => [0, 0])))"
    )
    return [(w, h) for w, h in sizes if min(w, h) >= min_side]


def inline_images(
    page: Page, ui: DagsterUI, key: Sequence[str], entry: str, min_side: int = 1
) -> list[tuple[int, int]]:
    """Open an asset's page; the decoded pictures its metadata row ``entry`` shows in place.

    Nothing is clicked: the UI inlines Markdown metadata under 1,000 characters (the model's
    ``curve`` preview) and puts longer values behind "[Show Markdown]", so a row that still
    offers that link shows no picture in place, whatever its dialog holds.
    """
    open_route(page, ui, asset_route(key))
    row = page.get_by_role("row").filter(has=page.get_by_role("cell", name=entry, exact=True))
    row.first.scroll_into_view_if_needed()
    sizes = loaded_images(row.first, min_side=min_side)
    if row.first.get_by_text("[Show Markdown]").count():
        raise UIError(f"the {entry!r} row hides its Markdown behind [Show Markdown]")
    return sizes


def check_names(
    page: Page, ui: DagsterUI, key: Sequence[str], expected: Sequence[str]
) -> list[str]:
    """Open an asset's Checks tab; which of ``expected`` it does not list.

    Each check's row shows its name in an element whose ``title`` is the full name (the visible
    text may be cut in the middle).
    """
    open_route(page, ui, asset_route(key))
    page.get_by_role("tab", name="Checks", exact=True).click()
    page.get_by_text(re.compile(r"^Checks \(\d+\)$")).wait_for(state="visible")
    missing = []
    for name in expected:
        try:
            page.get_by_title(name, exact=True).first.wait_for(state="visible", timeout=5000)
        except Exception:  # noqa: BLE001 - Playwright's TimeoutError: reported by name below
            missing.append(name)
    return missing


# ---- (d) a run launched from the UI ----------------------------------------------------------


def launch_materialization(page: Page, ui: DagsterUI, key: Sequence[str]) -> str:
    """Click an asset page's Materialize button; the launched run's route (``/runs/<id>``).

    The button's accessible name carries its icon's (``materialization Materialize``), hence the
    pattern; the run's id comes from the "Launched run" toast's View link.
    """
    open_route(page, ui, asset_route(key))
    page.get_by_role("button", name=re.compile(r"(^|\s)Materialize$")).click()
    toast = page.get_by_role("listitem").filter(has_text=re.compile(r"Launched run"))
    link = toast.get_by_role("link", name="View")
    link.wait_for(state="visible")
    route = link.get_attribute("href") or ""
    if not route.startswith("/runs/"):
        raise UIError(f"the Launched run toast links to {route!r}, not a run")
    return route


def run_status(page: Page, ui: DagsterUI, route: str, timeout_s: float = RUN_TIMEOUT_S) -> str:
    """Open a run's page and wait for its status to end (``Success``, ``Failure``, ``Canceled``).

    The page updates itself as the run goes (queued, starting, started), so one visit suffices.
    """
    open_route(page, ui, route)
    done = page.get_by_text(re.compile(r"^(" + "|".join(RUN_STATUSES) + r")$")).first
    done.wait_for(state="visible", timeout=timeout_s * 1000)
    return done.inner_text().strip()


# ---- the README's pictures -------------------------------------------------------------------


@dataclass(frozen=True)
class Picture:
    """One README picture: ``docs/<name>.png``."""

    name: str
    what: str


PICTURES = (
    Picture("asset-graph", "the feed use case's lineage, every stage of one YAML file"),
    Picture("raw-events", "fraud/raw_events: row count, schema, time range, preview"),
    Picture(
        "training-set", "fraud/training_sets/scorer_training_set: rows and label rate per split"
    ),
    Picture("model", "fraud/models/scorer_model with its evaluation plots open"),
)
GRAPH_GROUP = "feed"
RAW_EVENTS = ("fraud", "raw_events")
TRAINING_SET = ("fraud", "training_sets", "scorer_training_set")
MODEL = ("fraud", "models", "scorer_model")
SETTLE_MS = 2500  # metadata tables and images fill in after the page's first paint


def take_pictures(page: Page, ui: DagsterUI, out: Path, graph_nodes: Sequence[str]) -> list[Path]:
    """Write the README's pictures to ``out`` (``graph_nodes``: the feed group's node names)."""
    out.mkdir(parents=True, exist_ok=True)
    written = []

    def shoot(name: str) -> None:
        # Nodes and tables fetch their status after they come into view (the last zoom's nodes
        # last): wait for a lull between the UI's 2-second polls, then for the paint.
        page.wait_for_load_state("networkidle")
        page.wait_for_timeout(SETTLE_MS)
        # A screenshot is no action, so the locator handler would leave the dialog in the picture.
        skip = skip_button(page)
        if skip.is_visible():
            skip.click()
            page.wait_for_timeout(500)
        path = out / f"{name}.png"
        page.screenshot(path=str(path))
        written.append(path)

    missing = show_group_lineage(page, ui, GRAPH_GROUP, graph_nodes)
    if missing:
        raise UIError(
            f"the {GRAPH_GROUP} lineage does not show {missing}: no picture of half a graph"
        )
    shoot("asset-graph")
    for name, key in (("raw-events", RAW_EVENTS), ("training-set", TRAINING_SET)):
        open_route(page, ui, asset_route(key))
        page.get_by_role("tab", name="Overview", exact=True).wait_for(state="visible")
        shoot(name)
    loaded_images(open_markdown_metadata(page, ui, MODEL, "plots"))
    shoot("model")
    return written
