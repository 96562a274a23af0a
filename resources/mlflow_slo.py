"""An SLO check's verdict and figures, kept on the model versions it tested and on their runs.

The registry shows a version's ``playbook.slo.*`` tags beside its gate verdict (``holds``,
``reason``, ``at`` and each figure), so why a challenger did not become champion is read where
the aliases are; the training run gets the figures as ``slo.*`` metrics (one point per check,
so re-checks of the same version line up), ``playbook.slo.holds``/``reason`` tags and the
latency histogram under ``slo/``, so the MLflow UI compares serving cost across versions as it
compares their offline metrics.
"""

from __future__ import annotations

import os
import time
from collections.abc import Mapping, Sequence

from mlflow import MlflowClient

from resources.mlflow_logging import tag_text
from runtime.promotion import SLO_TAG_PREFIX, SLOVerdict

ARTIFACT_FOLDER = "slo"


def record(
    client: MlflowClient,
    name: str,
    version: str,
    verdict: SLOVerdict,
    figures: Mapping[str, float],
    artifacts: Sequence[str | os.PathLike[str]] = (),
) -> str:
    """Tag ``version`` of ``name`` and log to its training run; returns the run's id."""
    at = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    tags = {"holds": tag_text(verdict.holds), "reason": verdict.reason, "at": at}
    for key, value in {**tags, **{k: f"{v:.6g}" for k, v in figures.items()}}.items():
        client.set_model_version_tag(name, version, SLO_TAG_PREFIX + key, value)
    run_id = client.get_model_version(name, version).run_id
    now = int(time.time() * 1000)
    for key, value in figures.items():
        client.log_metric(run_id, f"slo.{key}", float(value), timestamp=now)
    for key, value in tags.items():
        client.set_tag(run_id, SLO_TAG_PREFIX + key, value)
    for path in artifacts:
        client.log_artifact(run_id, str(path), ARTIFACT_FOLDER)
    return run_id
