"""A real Triton server answers with the served models' own numbers.

Each shipped use case is materialized on a small world up to its ``triton_repository`` asset,
through the loader; a real ``tritonserver`` (CPU, from the PyPI wheel unpacked by
``scripts/install_triton.sh``) is started on free 127.0.0.1 ports with the CPU repository, and
every model in it is queried through ``serving.triton.client`` and compared with the champion
loaded from MLflow on the same rows: tower embeddings to 1e-4, margins and scores to 1e-5, and the
client-side calibration (and the feed's expected value) to the served model's own predictions.
"""

from __future__ import annotations

import os
import re
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import dagster as dg
import numpy as np
import pandas as pd
import pytest

from configs import CONFIG_DIR
from configs.schema import UseCaseSpec
from dagster_project.loader import load_use_cases, use_case_assets
from resources.mlflow_resource import MLflowResource
from runtime import layout
from runtime.funnel_roles import retrieval_keys
from runtime.models.classifier import CalibratedClassifier
from runtime.models.expected_value import ExpectedValueModel
from serving.triton.client import TritonClient, calibrated
from serving.triton.lightgbm_export import tree_heads
from serving.triton.onnx_export import item_tower_inputs, user_tower_inputs
from serving.triton.repository import read_manifest
from tests.integration.test_raw_assets import _run, _small
from tests.redis_server import free_port

pytestmark = pytest.mark.integration

TRITON_DIR = Path(
    os.environ.get("PLAYBOOK_TRITON_DIR", Path.home() / ".cache" / "playbook" / "triton")
)
USE_CASES = ("feed", "fraud", "search")
ROWS = 400  # per model; sent in chunks of CHUNK, concurrently, so the dynamic batcher merges
CHUNK = 64


@pytest.fixture(scope="session")
def triton_dir() -> Path:
    if not (TRITON_DIR / ".installed").is_file():
        pytest.skip(f"Triton server not installed in {TRITON_DIR}: run scripts/install_triton.sh")
    return TRITON_DIR


def _server_command(install: Path, repositories: list[Path]) -> tuple[list[str], dict[str, str]]:
    """The ``tritonserver`` command on free loopback ports, and its environment.

    Its Python-backend models run with the server's own virtualenv (numpy<2), never the
    project's: that venv is put first on PATH and the project's Python variables are dropped.
    """
    server = install / "pytriton" / "tritonserver"
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME")}
    env.update(
        PATH=f"{install / 'venv' / 'bin'}:{env.get('PATH', '')}",
        VIRTUAL_ENV=str(install / "venv"),
        LD_LIBRARY_PATH=str(install / "nvidia_pytriton.libs"),
    )
    command = [
        str(server / "bin" / "tritonserver"),
        *(f"--model-repository={repository}" for repository in repositories),
        f"--backend-directory={server / 'backends'}",
        *("--http-address", "127.0.0.1", "--http-port", str(free_port())),
        *("--grpc-address", "127.0.0.1", "--grpc-port", str(free_port())),
        *("--allow-metrics", "false", "--exit-timeout-secs", "5"),
    ]
    return command, env


@contextmanager
def triton_server(install: Path, repositories: list[Path], log: Path) -> Iterator[TritonClient]:
    """``tritonserver`` serving ``repositories``; a client for it; stopped on exit."""
    command, env = _server_command(install, repositories)
    http = command[command.index("--http-port") + 1]
    with log.open("wb") as out:
        process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, env=env)
    client = TritonClient(f"127.0.0.1:{http}")
    try:
        deadline = time.monotonic() + 60
        while not client.is_ready():
            if process.poll() is not None or time.monotonic() > deadline:
                tail = log.read_text(errors="replace")[-3000:]
                pytest.fail(f"tritonserver did not become ready (exit {process.poll()}):\n{tail}")
            time.sleep(0.1)
        yield client
    finally:
        client.close()
        process.terminate()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def _quick(spec: UseCaseSpec) -> UseCaseSpec:
    """The small world with short training: fewer boosting rounds, two tower epochs."""
    models = {
        name: stage.model_copy(update={"epochs": 2})
        if stage.problem == "two_tower"
        else stage.model_copy(update={"params": {**stage.params, "num_iterations": 40}})
        for name, stage in spec.model.items()
    }
    return _small(spec).model_copy(update={"model": models}).with_path(spec.path)


def _not_upstream(spec: UseCaseSpec) -> tuple[str, ...]:
    """Stages the Triton repository does not depend on (FAISS index, services, ...): skipped."""
    assets = use_case_assets(spec)
    needed = (
        dg.AssetSelection.assets(dg.AssetKey(layout.triton_repository_key(spec.name)))
        .upstream()
        .resolve(assets)
    )
    every = {key.path[1] for asset in assets for key in asset.keys}
    return tuple(sorted(every - {key.path[1] for key in needed}))


def _frame(home: Path, spec: UseCaseSpec, model: str) -> pd.DataFrame:
    """Rows of the model's training set from every split (later splits bring unseen levels)."""
    frame = pd.read_parquet(
        home / "tables" / spec.name / "training_sets" / f"{model}_training_set.parquet"
    )
    return frame.sample(n=min(ROWS, len(frame)), random_state=0)


def _catalog(home: Path, spec: UseCaseSpec, model: str) -> pd.DataFrame:
    table = spec.entities[retrieval_keys(spec, model)[2]].table
    return pd.read_parquet(home / "tables" / spec.name / f"raw_{table}.parquet").head(ROWS)


def _check_tower(client, name, served, part, home, spec, model) -> None:
    if part == "user":
        rows = _frame(home, spec, model).drop_duplicates(served.user_key)
        inputs, expected = user_tower_inputs(served, rows), served.user_embeddings(rows)
    else:
        items = _catalog(home, spec, model)
        inputs, expected = item_tower_inputs(served, items), served.item_embeddings(items)[1]
    got = client.infer(name, inputs, ["embedding"], batch_size=CHUNK)["embedding"]
    assert got.shape == expected.shape and len(got) > 1, name
    np.testing.assert_allclose(got, expected, atol=1e-4, rtol=0, err_msg=name)


def _check_trees(client, name, served, part, frame) -> None:
    tree = tree_heads(served)[part]
    got = client.margins(name, tree, frame, batch_size=CHUNK)
    if isinstance(tree, CalibratedClassifier):
        np.testing.assert_allclose(got, tree.margin(frame), atol=1e-5, rtol=0, err_msg=name)
        probability = tree.predict_proba(frame)
        np.testing.assert_allclose(calibrated(tree, got), probability, atol=1e-5, err_msg=name)
    else:  # a ranker's score is its raw margin
        np.testing.assert_allclose(got, tree.predict(frame), atol=1e-5, rtol=0, err_msg=name)


def _check_expected_value(client, source: str, served: ExpectedValueModel, frame) -> None:
    """What a service computes from the two served heads equals the served model's answer."""
    p_click = calibrated(
        served.click_model, client.margins(f"{source}.click", served.click_model, frame)
    )
    p_buy = calibrated(
        served.purchase_model, client.margins(f"{source}.purchase", served.purchase_model, frame)
    )
    expected = served.predict(frame)
    np.testing.assert_allclose(p_click * p_buy * served.value(frame), expected, atol=1e-5)


def gpu_load_errors(install: Path, repositories: list[Path]) -> dict[str, str]:
    """Why this CPU-only server cannot load each model of GPU ``repositories``, by model.

    The wheel's server has no ONNX Runtime or FIL backend, but it reads and normalizes every
    ``config.pbtxt`` before looking for the backend library: a model that fails *only* for the
    missing library has a config Triton itself accepted.
    """
    command, env = _server_command(install, repositories)
    run = subprocess.run(
        [*command, "--exit-on-error", "true"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        timeout=60,
    )
    failures = re.findall(r"failed to load '([^']+)' version \d+: (.+?)\"?$", run.stdout, re.M)
    return dict(failures)


def _materialize(spec: UseCaseSpec, home: Path, instance: dg.DagsterInstance) -> Path:
    """Run the use case up to its Triton repository; returns the repository folder."""
    result = _run(spec, home, instance=instance, stages_to_skip=_not_upstream(spec))
    assert result.success
    (event,) = [
        e
        for e in result.get_asset_materialization_events()
        if e.asset_key == dg.AssetKey(layout.triton_repository_key(spec.name))
    ]
    metadata = event.materialization.metadata
    assert metadata["onnx_parity_max_abs_diff"].value <= 1e-4
    folder = home / "triton" / spec.name
    assert metadata["path"].value == str(folder)
    return folder


def _check_use_case(client, spec: UseCaseSpec, home: Path, manifest: dict) -> None:
    """Every Triton model of one use case against its champion loaded from MLflow."""
    registry = MLflowResource(home=str(home))
    champions = {}
    for entry in manifest.values():
        source = entry["source"]
        assert entry["version"] == registry.version_by_alias(source, "champion")
        if source not in champions:
            model = registry.load_model(source, entry["version"])
            champions[source] = model.unwrap_python_model().model
    for triton_name, entry in manifest.items():
        served, part = champions[entry["source"]], entry["part"]
        model = entry["source"].split(".", 1)[1]
        if entry["format"] == "onnx":
            _check_tower(client, triton_name, served, part, home, spec, model)
        else:
            _check_trees(client, triton_name, served, part, _frame(home, spec, model))
    for source, served in champions.items():
        if isinstance(served, ExpectedValueModel):
            frame = _frame(home, spec, source.split(".", 1)[1])
            _check_expected_value(client, source, served, frame)


def test_triton_serves_every_champion(tmp_path: Path, triton_dir: Path) -> None:
    """Feed, fraud and search in one home, served together by one server (names are unique)."""
    home = tmp_path / "home"
    instance = dg.DagsterInstance.ephemeral()
    specs = [_quick(spec) for spec in load_use_cases([CONFIG_DIR / f"{n}.yaml" for n in USE_CASES])]
    folders = {spec.name: _materialize(spec, home, instance) for spec in specs}
    manifests = {name: read_manifest(folder) for name, folder in folders.items()}
    assert set(manifests["feed"]) == {
        "feed.retrieval.user",
        "feed.retrieval.item",
        "feed.ranking.click",
        "feed.ranking.purchase",
    }
    gpu = [folder / "gpu" for folder in folders.values()]
    missing_backend = re.compile(r"unable to find backend library for backend '(onnxruntime|fil)'")
    errors = gpu_load_errors(triton_dir, gpu)
    assert set(errors) == {n for m in manifests.values() for n in m}, errors
    assert all(missing_backend.search(e) for e in errors.values()), errors
    repositories = [folder / "cpu" for folder in folders.values()]
    with triton_server(triton_dir, repositories, tmp_path / "triton.log") as client:
        assert client.models() == sorted(n for m in manifests.values() for n in m)
        for spec in specs:
            _check_use_case(client, spec, home, manifests[spec.name])
