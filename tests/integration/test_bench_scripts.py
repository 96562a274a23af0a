"""Every benchmark runs as the README prints it: ``python bench/<script>.py`` from the repo root.

Run that way, Python puts ``bench/`` first on the path, not the repository, so a script that
imports ``bench.x`` or ``tests.x`` without putting the root there itself fails with
``ModuleNotFoundError: No module named 'bench'``; the installed packages hide the mistake from
any test that imports the script instead of running it. ``--help`` runs each script's imports
and argument parser, nothing else. Scripts are the files with a ``__main__`` block; the others
are their parts.
"""

from __future__ import annotations

import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from tests.conftest import REPO

SCRIPTS = sorted(
    path.relative_to(REPO)
    for path in (REPO / "bench").glob("*.py")
    if 'if __name__ == "__main__":' in path.read_text(encoding="utf-8")
)

pytestmark = pytest.mark.slow  # some scripts import Dagster, Feast and BentoML: ~10-30 s each


def _help(script: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(script), "--help"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_every_bench_script_runs_as_printed() -> None:
    assert len(SCRIPTS) >= 10, SCRIPTS
    with ThreadPoolExecutor(max_workers=2) as pool:  # each is one busy interpreter
        done = dict(zip(SCRIPTS, pool.map(_help, SCRIPTS), strict=True))
    failed = {
        str(script): result.stderr.strip().splitlines()[-1:]
        for script, result in done.items()
        if result.returncode != 0 or "usage:" not in result.stdout
    }
    assert not failed, failed
