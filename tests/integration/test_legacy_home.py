"""A home materialized by the code before the runtime layer still serves, reports and retrains.

Bundles and MLflow models pickle module paths. Before the runtime layer, the served model objects
lived in ``serving.models`` and the pyfunc wrapper in ``resources.mlflow_registry``; neither module
exists now (``runtime.legacy`` maps them). This test does it for real: it extracts the last commit
before the move from this repository's history, materializes a small fraud use case with *that*
code in a subprocess (bundle, MLflow registry, request log), then, with today's code, serves the
old bundle, reports on the old registry, and retrains on the old home, where the promotion gate
loads the old champion from MLflow.
"""

from __future__ import annotations

import io
import os
import subprocess
import sys
import tarfile
from pathlib import Path

import dagster as dg
import pytest
from upath import UPath

from configs import CONFIG_DIR
from dagster_project.report import model_reports
from dagster_project.use_case_files import load_use_cases
from resources.home import dagster_home
from resources.mlflow_resource import MLflowResource
from runtime import layout
from runtime.bundle import load_bundle
from runtime.models.classifier import CalibratedClassifier
from serving.scoring import ScoreHandler
from tests.integration.test_raw_assets import _run, _small

REPO = Path(__file__).resolve().parents[2]
# slow: the old tree materializes its own fraud world in a subprocess (about 40 s on 2 cores)
pytestmark = pytest.mark.slow
BEFORE_RUNTIME = "830f928956a9dac9ddb96750d317dec31af93b64"  # the last commit with serving.models and resources.mlflow_registry
DAYS = 21
TRANSACTION = {"card_id": 3, "merchant_id": 5, "amount": 42.0, "event_time": "2025-01-20T12:00"}

# Run by the old code, in its own tree: a small fraud world to the serving bundle, a persistent
# Dagster instance in the home, and a few served requests in the request log.
OLD_RUN = """
import os, sys
from pathlib import Path
home = Path(sys.argv[1])
os.environ["PLAYBOOK_HOME"] = str(home)
import dagster as dg
from upath import UPath
from configs import CONFIG_DIR
from dagster_project.loader import load_use_cases  # the old code: before use_case_files
from resources.home import dagster_home
from serving.service import build_handler
from tests.integration.test_raw_assets import _run, _small
os.environ["DAGSTER_HOME"] = str(dagster_home(UPath(home)))
(spec,) = load_use_cases([CONFIG_DIR / "fraud.yaml"])
spec = _small(spec, days=int(sys.argv[2]))
skip = ("funnel_evaluation", "triton_repository", "drift_report", "performance", "bento")
with dg.DagsterInstance.get() as instance:
    assert _run(spec, home, instance=instance, stages_to_skip=skip).success
handler = build_handler(home / "serving" / "fraud" / "bundle")
for card in range(1, 6):
    body = {"card_id": card, "merchant_id": 5, "amount": 10.0 * card, "event_time": "2025-01-20"}
    handler.handle({"transaction": body})
handler.log.close()
"""


def _old_tree(target: Path) -> Path:
    """The repository as of :data:`BEFORE_RUNTIME`, extracted from git history."""
    found = subprocess.run(
        ["git", "-C", str(REPO), "cat-file", "-e", f"{BEFORE_RUNTIME}^{{commit}}"],
        capture_output=True,
        check=False,
    )
    if found.returncode != 0:
        pytest.skip(f"commit {BEFORE_RUNTIME} is not in this clone's history (shallow clone?)")
    archive = subprocess.run(
        ["git", "-C", str(REPO), "archive", "--format=tar", BEFORE_RUNTIME],
        capture_output=True,
        check=True,
    ).stdout
    with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
        tar.extractall(target, filter="data")
    return target


@pytest.fixture(scope="module")
def legacy_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("legacy")
    tree = _old_tree(root / "src")
    home = root / ".home"  # hidden, like ./.playbook
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "DAGSTER_HOME")}
    env["PYTHONPATH"] = str(tree)  # the old packages shadow the installed (new) ones
    result = subprocess.run(
        [sys.executable, "-c", OLD_RUN, str(home), str(DAYS)],
        cwd=tree,
        env=env,
        capture_output=True,
        text=True,
        check=False,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr[-4000:]
    return home


def test_old_pickles_name_the_old_modules(legacy_home: Path) -> None:
    """The fixture is what it claims: its pickles name modules that no longer exist."""
    (pickled,) = (legacy_home / "serving" / "fraud" / "bundle" / "models").glob("*.pkl")
    assert b"serving.models.classifier" in pickled.read_bytes()
    wrappers = list((legacy_home / "mlflow").rglob("python_model.pkl"))
    assert wrappers and all(b"resources.mlflow_registry" in p.read_bytes() for p in wrappers)
    assert not (REPO / "serving" / "models").exists()
    assert not (REPO / "resources" / "mlflow_registry.py").exists()


def test_old_bundle_serves(legacy_home: Path) -> None:
    bundle = load_bundle(legacy_home / "serving" / "fraud" / "bundle")
    (model,) = bundle.models.values()
    assert isinstance(model, CalibratedClassifier)  # today's class, not a second copy
    handler = ScoreHandler(bundle)  # what build_handler makes, without freezing this process's GC
    answer = handler.handle({"transaction": TRANSACTION})
    assert 0.0 <= answer["probability"] <= 1.0
    assert answer["model_versions"] == {"scorer": "1"}


def test_old_registry_reports_and_retrains(legacy_home: Path) -> None:
    (spec,) = load_use_cases([CONFIG_DIR / "fraud.yaml"])
    spec = _small(spec, days=DAYS)
    registry = MLflowResource(home=str(legacy_home))
    with dg.DagsterInstance.from_config(str(dagster_home(UPath(legacy_home)))) as instance:
        (before,) = model_reports(spec, instance, registry)
        assert before.materialized and before.aliases[layout.CHAMPION] == "1"
        assert before.metrics and before.gate_passed
        # retrain with today's code: the gate loads the old champion (an old pickle) from MLflow
        retrained = _run(
            spec,
            legacy_home,
            instance=instance,
            stages_to_skip=("funnel_evaluation", "triton_repository", "drift_report", "bento"),
        )
        assert retrained.success
        (after,) = model_reports(spec, instance, registry)
    assert after.versions == ["1", "2"]
    gate = registry.version_tags(layout.registered_model_name("fraud", "scorer"), "2")
    assert gate["playbook.gate.champion_version"] == "1"  # compared against the old champion
    performance = [
        e
        for e in retrained.get_asset_materialization_events()
        if e.asset_key == dg.AssetKey(layout.performance_key("fraud", "scorer"))
    ]
    assert performance  # the old request log was read
    (pickled,) = (legacy_home / "serving" / "fraud" / "bundle" / "models").glob("*.pkl")
    assert b"runtime.models.classifier" in pickled.read_bytes()
