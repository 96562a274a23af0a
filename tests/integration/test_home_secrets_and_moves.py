"""Secrets stay off disk, and a home can be moved: both on one real fraud home.

The home is built once for the module, as ``playbook materialize`` builds one: a small fraud world
up to its Bento, a persistent Dagster instance in ``<home>/dagster``, real MLflow on SQLite, and a
Feast repo whose online store is a real redis-server that asks for a password, given to the
pipeline only as ``PLAYBOOK_REDIS``. Then:

* no file under the home holds the password (byte for byte, the Bento and every database
  included), the built Bento's service reads it from the environment when it starts, and a
  Bento started without it stops naming the variable and the use case;
* the home copied with ``cp -a`` and the original moved out of reach, the copy retrains,
  re-applies its Feast repo, rebuilds its bundle and Bento and serves, and nothing under the copy
  names the original (no file, no SQLite cell); the original, put back, is byte for byte as
  it was.
"""

from __future__ import annotations

import hashlib
import os
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import dagster as dg
import pandas as pd
import pytest
import redis
from upath import UPath

from configs import CONFIG_DIR
from dagster_project.loader import resources, use_case_assets
from dagster_project.use_case_files import load_use_cases
from resources.home import dagster_home
from resources.mlflow_resource import MLflowResource
from runtime import layout
from runtime.bundle import load_bundle
from runtime.feast_settings import REDIS_ENV, MissingSetting
from runtime.relocate import is_sqlite
from serving.service import build_handler
from tests.integration.served import free_port
from tests.integration.test_raw_assets import _run, _small
from tests.redis_server import INSTALL_HINT, RedisServerNotInstalled, redis_server

pytestmark = pytest.mark.integration

PASSWORD = "s3cr3t-Pa55word-for-the-online-store"
SKIP = ("funnel_evaluation", "triton_repository", "drift_report", "performance")
RETRAIN = ("feature_store", "training_sets", "models", "serving_bundle", "bento")


def fraud_spec():
    """The small fraud use case with the Redis online store."""
    (spec,) = load_use_cases([CONFIG_DIR / "fraud.yaml"])
    spec = _small(spec, days=14)
    serving = spec.serving.model_copy(update={"online_store": "redis"})
    return spec.model_copy(update={"serving": serving}).with_path(spec.path)


@pytest.fixture(scope="module")
def connection() -> Iterator[str]:
    """``PLAYBOOK_REDIS`` of a throwaway redis-server that refuses clients without the password,
    set in this process for the module."""
    try:
        with redis_server() as address:
            host, port = address.split(":")
            redis.Redis(host=host, port=int(port)).config_set("requirepass", PASSWORD)
            value = f"{address},password={PASSWORD}"
            with pytest.MonkeyPatch.context() as patch:
                patch.setenv(REDIS_ENV, value)
                yield value
    except RedisServerNotInstalled:
        pytest.skip(INSTALL_HINT)


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory, connection: str) -> Path:
    """The fraud home, materialized to its Bento with its Dagster instance inside it."""
    # a hidden folder, as the default home ./.playbook is: BentoML refuses some hidden paths
    home = tmp_path_factory.mktemp("homes") / ".origin"
    spec = fraud_spec()
    with dg.DagsterInstance.from_config(str(dagster_home(UPath(home)))) as instance:
        assert _run(spec, home, instance=instance, stages_to_skip=SKIP).success
    return home


def transaction(home: Path) -> dict:
    """A served request for the last transaction of the home's raw events."""
    files = sorted((home / "tables" / "fraud" / "raw_events").rglob("*.parquet"))
    row = pd.read_parquet(files[-1]).iloc[-1]
    return {
        "transaction": {
            "transaction_id": int(row.transaction_id),
            "card_id": int(row.card_id),
            "merchant_id": int(row.merchant_id),
            "amount": float(row.amount),
            "event_time": row.event_time.isoformat(),
        }
    }


def bento_bundle(home: Path) -> Path:
    """The bundle inside the home's latest Bento."""
    bentos = sorted((home / "bentoml" / "bentos" / "playbook-fraud").glob("*/src/bundle"))
    assert bentos, "no Bento was built"
    return max(bentos, key=lambda path: path.stat().st_mtime)


def files_naming(root: Path, needle: str, cells: bool) -> list[str]:
    """Files under ``root`` whose bytes hold ``needle``; with ``cells``, a SQLite database is
    read cell by cell (a page MLflow or Dagster freed may keep old bytes that no row holds)."""
    found = []
    for path in sorted(root.rglob("*")):
        if not path.is_file() or path.is_symlink():
            continue
        if cells and is_sqlite(path):
            found += [f"{path.relative_to(root)}:{cell}" for cell in cells_naming(path, needle)]
        elif needle.encode() in path.read_bytes():
            found.append(str(path.relative_to(root)))
    return found


def cells_naming(database: Path, needle: str) -> list[str]:
    """``table.column`` of every cell of ``database`` that holds ``needle``."""
    connection = sqlite3.connect(f"file:{database}?mode=ro", uri=True)
    try:
        found = []
        tables = connection.execute("SELECT name FROM sqlite_master WHERE type = 'table'")
        for (table,) in tables.fetchall():
            for column in [r[1] for r in connection.execute(f'PRAGMA table_info("{table}")')]:
                count = connection.execute(
                    f'SELECT count(*) FROM "{table}" WHERE instr(CAST("{column}" AS BLOB), ?)',
                    (needle.encode(),),
                ).fetchone()[0]
                if count:
                    found.append(f"{table}.{column}")
        return found
    finally:
        connection.close()


def fingerprint(root: Path) -> dict[str, str]:
    """Every file under ``root`` and the hash of its bytes."""
    return {
        str(path.relative_to(root)): hashlib.sha256(path.read_bytes()).hexdigest()
        for path in sorted(root.rglob("*"))
        if path.is_file() and not path.is_symlink()
    }


def test_the_redis_password_is_read_at_run_time_and_written_nowhere(
    home: Path, connection: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert files_naming(home, PASSWORD, cells=False) == []
    config = (home / "feast" / "fraud" / "feature_store.yaml").read_text()
    assert "${PLAYBOOK_REDIS}" in config and "connection_string" in config
    bundle = bento_bundle(home)

    # the Bento's own bundle serves from Redis with the variable set: every view found
    answer = build_handler(bundle, log=False).handle(transaction(home))
    assert answer["feature_misses"] == 0 and 0.0 <= answer["probability"] <= 1.0

    monkeypatch.delenv(REDIS_ENV)
    with pytest.raises(MissingSetting, match=r"fraud: .*PLAYBOOK_REDIS is not set"):
        _ = load_bundle(bundle).feature_repo

    # the real Bento, started without it, fails to start and says what is missing
    env = {k: v for k, v in os.environ.items() if k != REDIS_ENV}
    env.update({"BENTOML_HOME": str(home / "bentoml"), "BENTOML_DO_NOT_TRACK": "True"})
    command = [sys.executable, "-m", "bentoml", "serve", "playbook-fraud:latest"]
    command += ["--host", "127.0.0.1", "--port", str(free_port())]
    output = tmp_path / "serve.out"
    assert startup_error(command, env, output, "PLAYBOOK_REDIS is not set"), output.read_text()
    assert "fraud: " in output.read_text()


def startup_error(command: list[str], env: dict[str, str], output: Path, wanted: str) -> bool:
    """Whether ``command`` writes ``wanted`` within two minutes (BentoML then restarts the
    failed worker again and again, so the server is stopped here, not waited for)."""
    with open(output, "w") as sink:
        process = subprocess.Popen(command, env=env, stdout=sink, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 120
        while wanted not in output.read_text() and time.monotonic() < deadline:
            if process.poll() is not None:
                break
            time.sleep(0.5)
        return wanted in output.read_text()
    finally:
        process.terminate()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def test_a_copied_home_reads_and_writes_only_itself(
    home: Path, connection: str, tmp_path: Path
) -> None:
    before = fingerprint(home)
    copy = tmp_path / ".copy"
    subprocess.run(["cp", "-a", str(home), str(copy)], check=True)
    away = home.with_name(".origin-away")
    home.rename(away)  # root reads anything: the original is out of reach by not being there
    try:
        spec = fraud_spec()
        assets = use_case_assets(spec)
        keys = [k for a in assets for k in a.keys if k.path[1] in RETRAIN]
        with dg.DagsterInstance.from_config(str(dagster_home(UPath(copy)))) as instance:
            result = dg.materialize(
                assets, selection=keys, resources=resources(UPath(copy)), instance=instance
            )
        assert result.success
        assert not home.exists(), "a run on the copy wrote to the original's path"
    finally:
        away.rename(home)

    name = layout.registered_model_name("fraud", "scorer")
    assert MLflowResource(home=str(copy)).latest_version(name) == "2"  # retrained in the copy
    answer = build_handler(copy / "serving" / "fraud" / "bundle", log=False).handle(
        transaction(copy)
    )
    assert answer["feature_misses"] == 0
    assert files_naming(copy, str(home), cells=True) == []
    assert fingerprint(home) == before
    assert MLflowResource(home=str(home)).latest_version(name) == "1"
