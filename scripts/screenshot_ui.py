"""Take the README's pictures of the Dagster UI in headless Chromium (retake after UI changes).

Starts ``dagster dev`` on 127.0.0.1 against the home directory that ``make run`` filled and writes
``docs/asset-graph.png`` (the feed use case's lineage), ``raw-events.png``, ``training-set.png``
and ``model.png`` (fraud's pages, the model's with its plots open). The clicks are those of the UI
test (``tests/ui_browser.py``, the server ``tests/dagster_dev_server.py``, both checked by
``tests/integration/test_ui.py``), so a UI change that would spoil a picture fails the test first.
Needs Debian's chromium (``scripts/install_chromium.sh``) and the playwright package; no browser
is downloaded.

Usage: python scripts/screenshot_ui.py [--home .playbook] [--port 3333] [--out docs]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # `python scripts/x.py` puts scripts/, not the repo root, on the path

from tests.dagster_dev_server import dagster_dev  # noqa: E402 - needs the path above
from tests.ui_browser import (  # noqa: E402 - needs the path above
    GRAPH_GROUP,
    PICTURES,
    browser_page,
    group_nodes,
    take_pictures,
)


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--home", default=os.environ.get("PLAYBOOK_HOME", str(REPO / ".playbook")))
    parser.add_argument("--port", type=int, default=0, help="default: a free port")
    parser.add_argument("--out", default=str(REPO / "docs"))
    args = parser.parse_args()
    home = Path(args.home).resolve()
    if not (home / "dagster").is_dir():
        sys.exit(f"{home} has no Dagster instance: run `make run` (or pass --home) first")
    nodes = group_nodes()[GRAPH_GROUP]
    with tempfile.TemporaryDirectory(prefix="screenshot-ui-") as scratch:
        log = Path(scratch) / "dagster-dev.log"
        with dagster_dev(home, log, port=args.port) as ui, browser_page() as page:
            for path in take_pictures(page, ui, Path(args.out), nodes):
                print(f"wrote {path}")
    print("pictures:", ", ".join(f"{p.name} ({p.what})" for p in PICTURES))


if __name__ == "__main__":
    main()
