"""Importing MLflow's PyTorch flavour leaves the root logger alone (no terminal echo of INFO)."""

from __future__ import annotations

import subprocess
import sys

PROBE = """
import logging
from resources.mlflow_native import pytorch_flavour
pytorch_flavour()
print(len(logging.getLogger().handlers), logging.getLogger().level)
"""


def test_pytorch_flavour_leaves_the_root_logger_as_it_was() -> None:
    # a fresh process: mlflow.pytorch's import-time basicConfig runs only once per process
    out = subprocess.run(
        [sys.executable, "-c", PROBE], capture_output=True, text=True, check=True
    ).stdout.split()
    assert out == ["0", str(30)]  # no handler added; level WARNING as Python starts it
