"""Dagster resources: the home directory, Parquet storage, the Feast feature store, MLflow.

Resources never import ``assets``, ``serving`` or ``dagster_project``; what they share with
serving lives in ``runtime``.
"""

import os

# MLflow reads these when imported (telemetry) or when logging (progress bars, run URLs), so they
# are set before any resource module imports it. No network here, and emoji/progress lines drown
# a CLI summary. setdefault keeps a user's explicit choice.
os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
os.environ.setdefault("MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT", "true")
