"""Take the README's pictures of the Dagster UI in headless Chromium (retake after UI changes).

Starts ``dagster dev`` on 127.0.0.1 against the home directory that ``make run`` filled, opens the
global asset lineage and one asset's page, and writes PNGs to ``docs/``. Needs Debian's chromium
(``apt-get install chromium``) and the playwright package; no browser is downloaded.

Usage: python scripts/screenshot_ui.py [--home .playbook] [--port 3333]
"""

from __future__ import annotations

import argparse
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from playwright.sync_api import sync_playwright

REPO = Path(__file__).resolve().parents[1]
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for(url: str, seconds: float) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=2):
                return
        except OSError:
            time.sleep(0.5)
    raise TimeoutError(f"{url} did not answer within {seconds:.0f}s")


def start_dagster(home: Path, port: int) -> subprocess.Popen:
    env = {**os.environ, "PLAYBOOK_HOME": str(home), "DAGSTER_HOME": str(home / "dagster")}
    (home / "dagster").mkdir(parents=True, exist_ok=True)
    cmd = [
        sys.executable,
        "-m",
        "dagster",
        "dev",
        "-w",
        str(REPO / "workspace.yaml"),
        "-h",
        "127.0.0.1",
        "-p",
        str(port),
    ]
    return subprocess.Popen(
        cmd,
        cwd=REPO,
        env=env,
        start_new_session=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def stop(process: subprocess.Popen) -> None:
    """Signal the whole process group: dagster dev leaves its webserver running otherwise."""
    try:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(timeout=20)
    except (ProcessLookupError, subprocess.TimeoutExpired):
        os.killpg(process.pid, signal.SIGKILL)


ZOOM_OUT_STEPS = 3
SCROLL_TO = {"model": "plots"}
# The feed use case's lineage (every stage of one YAML file) and one asset's page.
PAGES = {
    "asset-graph": "/locations/dagster_project.definitions/asset-groups/feed/lineage",
    "raw-events": "/assets/fraud/raw_events",
    "training-set": "/assets/fraud/training_sets/scorer",
    "model": "/assets/fraud/models/scorer",
}


def shoot(base: str, pages: dict[str, str], out: Path) -> None:
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path="/usr/bin/chromium", args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1600, "height": 1000})
        for name, route in pages.items():
            page.goto(base + route, wait_until="networkidle", timeout=60000)
            try:
                page.get_by_role("button", name="Skip").click(timeout=8000)
            except Exception:  # noqa: BLE001 - the community dialog shows only on a first visit
                pass
            page.wait_for_timeout(3000)
            if "lineage" in route:  # zoom out (ctrl + wheel zooms the graph) so all stages show
                page.mouse.move(900, 600)
                page.keyboard.down("Control")
                for _ in range(ZOOM_OUT_STEPS):
                    page.mouse.wheel(0, 120)
                    page.wait_for_timeout(150)
                page.keyboard.up("Control")
                page.wait_for_timeout(1000)
            if name in SCROLL_TO:  # a section further down the page, e.g. the model's plots
                row = page.locator("tr", has=page.get_by_text(SCROLL_TO[name], exact=True)).first
                row.scroll_into_view_if_needed()
                row.get_by_text("[Show Markdown]").click()  # opens the plots dialog
                page.wait_for_timeout(1500)
            page.screenshot(path=str(out / f"{name}.png"))
            print(f"wrote {out / f'{name}.png'}")
        browser.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--home", default=os.environ.get("PLAYBOOK_HOME", str(REPO / ".playbook")))
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--out", default=str(REPO / "docs"))
    args = parser.parse_args()
    port = args.port or free_port()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    process = start_dagster(Path(args.home).resolve(), port)
    try:
        base = f"http://127.0.0.1:{port}"
        wait_for(base + "/server_info", 120)
        shoot(base, PAGES, out)
    finally:
        stop(process)


if __name__ == "__main__":
    main()
