"""Without an ``execution`` section and without ``RAY_ADDRESS``, tuning never imports Ray.

Ray Tune is the trials' engine only when the model asset trains on a Ray cluster; a local run
must not pay Ray's import (seconds, and a process-wide logging and signal setup) or need it
installed. A fresh interpreter runs a whole local search and lists the Ray modules loaded.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = """
import sys
from tests.unit.test_regression_tuning import test_search_minimises_validation_rmse
test_search_minimises_validation_rmse()
print(sorted(m for m in sys.modules if m == "ray" or m.startswith("ray.")))
"""


def test_a_local_search_does_not_import_ray() -> None:
    environ = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    done = subprocess.run(
        [sys.executable, "-c", SCRIPT],
        capture_output=True,
        text=True,
        env=environ,
        timeout=120,
        cwd=ROOT,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip().splitlines()[-1] == "[]", done.stdout
