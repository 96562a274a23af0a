"""A real, throwaway ``dagster dev`` on a Playbook home, for the UI test and the README's pictures.

The UI test (``tests/integration/test_ui.py``) and ``scripts/screenshot_ui.py`` both need the
server a user of ``make dev`` gets, not an in-process stand-in: the webserver, its daemon and the
code location loaded from the project's ``workspace.yaml``. This module starts and stops it; what
the browser does on it lives in ``tests/ui_browser.py``. No pytest here, for the script's sake (as
``tests/redis_server.py``).

Why it is done this way (see ``../shared/notes/ui-screenshots.md``):

- ``dagster dev`` runs in its own process group and is stopped by signalling the group: signalling
  only the ``dagster dev`` process stops its daemon but leaves the webserver and code server up.
- The code location's name is read from the server (GraphQL) rather than written here, so a
  rename in ``workspace.yaml`` or ``pyproject.toml`` does not break the routes.
- The start is bounded (``STARTUP_TIMEOUT_S``) and fails at once, with the server's log, if
  ``dagster dev`` exits or the code location fails to load, instead of hanging the suite.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
STARTUP_TIMEOUT_S = 240.0  # dagster dev up and the code location loaded (imports take ~30 s)


class UIError(AssertionError):
    """The UI did not show what a user would expect (an AssertionError, so pytest reports it)."""


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass(frozen=True)
class DagsterUI:
    """A running ``dagster dev``: its base URL, its code location's name and its log file."""

    base: str
    location: str
    log: Path

    def url(self, route: str) -> str:
        return self.base + route

    def group_lineage(self, group: str) -> str:
        """The route of one asset group's lineage graph (one use case's assets)."""
        return f"/locations/{self.location}/asset-groups/{group}/lineage"

    def log_tail(self, chars: int = 3000) -> str:
        return _tail(self.log, chars)


def dagster_env(home: Path) -> dict[str, str]:
    """The environment of ``dagster dev`` on ``home``: its Playbook home and Dagster instance
    (as ``make dev`` sets them)."""
    return {**os.environ, "PLAYBOOK_HOME": str(home), "DAGSTER_HOME": str(home / "dagster")}


def start_dagster_dev(home: Path, log: Path, port: int) -> subprocess.Popen[bytes]:
    """Start ``dagster dev`` on the project's ``workspace.yaml`` in its own process group."""
    (home / "dagster").mkdir(parents=True, exist_ok=True)
    command = [sys.executable, "-m", "dagster", "dev", "-w", str(REPO / "workspace.yaml")]
    command += ["-h", "127.0.0.1", "-p", str(port)]
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "wb") as sink:
        return subprocess.Popen(
            command,
            cwd=REPO,
            env=dagster_env(home),
            stdout=sink,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own group: stop() signals the group (see module doc)
        )


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)  # signal 0: is anyone left in the group?
    except ProcessLookupError:
        return False
    return True


def stop(process: subprocess.Popen[bytes], grace_s: float = 20.0) -> None:
    """SIGTERM the process group, wait for it to go, then SIGKILL whatever is left."""
    pgid = process.pid  # start_new_session: the group's id is the leader's pid
    try:
        os.killpg(pgid, signal.SIGTERM)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + grace_s
    while time.monotonic() < deadline and (process.poll() is None or _group_alive(pgid)):
        time.sleep(0.2)
    if _group_alive(pgid):
        try:
            os.killpg(pgid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    try:
        process.wait(timeout=5)
    except subprocess.TimeoutExpired:
        pass


def graphql(base: str, query: str, timeout_s: float = 10.0) -> dict:
    """POST one GraphQL query to the webserver; its ``data``."""
    request = urllib.request.Request(
        base + "/graphql",
        data=json.dumps({"query": query}).encode(),
        headers={"content-type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=timeout_s) as answer:
        return json.load(answer)["data"]


LOCATIONS = """{ workspaceOrError { __typename ... on Workspace { locationEntries {
  name loadStatus locationOrLoadError { __typename ... on PythonError { message } } } } } }"""


def wait_until_loaded(
    base: str, process: subprocess.Popen[bytes], log: Path, timeout_s: float
) -> str:
    """Wait for the webserver and its one code location; the location's name.

    Fails at once if ``dagster dev`` exits or the location fails to load (with the error), rather
    than after a browser timeout on an empty page.
    """
    deadline = time.monotonic() + timeout_s
    last = "no answer"
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise UIError(f"dagster dev exited ({process.returncode}):\n{_tail(log)}")
        try:
            workspace = graphql(base, LOCATIONS)["workspaceOrError"]
        except (OSError, ValueError, KeyError, TypeError) as error:
            last = repr(error)
        else:
            entries = workspace.get("locationEntries") or []
            loaded = [e for e in entries if e["loadStatus"] == "LOADED"]
            if len(loaded) == 1 and len(entries) == 1:
                location = loaded[0]["locationOrLoadError"] or {}
                if location.get("__typename") == "PythonError":
                    raise UIError(f"code location failed to load: {location.get('message')}")
                return loaded[0]["name"]
            last = json.dumps(entries)
        time.sleep(1.0)
    raise UIError(f"dagster dev not ready in {timeout_s:.0f}s ({last}):\n{_tail(log)}")


def _tail(log: Path, chars: int = 3000) -> str:
    return log.read_text(errors="replace")[-chars:] if log.exists() else ""


@contextmanager
def dagster_dev(
    home: Path,
    log: Path,
    port: int = 0,
    startup_timeout_s: float = STARTUP_TIMEOUT_S,
    while_starting: Callable[[], object] | None = None,
) -> Iterator[DagsterUI]:
    """``dagster dev`` on ``home`` bound to 127.0.0.1, yielded once its code location loaded.

    ``while_starting`` runs after the server started and before it is waited for: work that
    takes as long as its start (materializing the home) then overlaps it.
    """
    port = port or free_port()
    process = start_dagster_dev(home, log, port)
    try:
        if while_starting is not None:
            while_starting()
        base = f"http://127.0.0.1:{port}"
        location = wait_until_loaded(base, process, log, startup_timeout_s)
        yield DagsterUI(base=base, location=location, log=log)
    finally:
        stop(process)
