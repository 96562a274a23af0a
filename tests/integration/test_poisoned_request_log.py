"""A poisoned request log under a real home: monitoring reads around the bad rows, and says so.

The issue as filed: the fraud service accepted ``amount: "abc"``, ``Infinity`` and a 400-digit
``transaction_id``; the rows went to the request log and ``fraud/performance/scorer`` failed with
OverflowError until they were deleted by hand. Here a real home holds the small fraud (and feed)
world's raw events; the request log gets good rows through the real writer, for real
transactions, and the poisoned rows as raw SQL, as an older version or a hand edit leaves them.
The asset, materialized before and after the poison, must give the same table, count the skipped
rows by reason and fail its warning check ``request_log_rows``.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

import dagster as dg
import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import average_precision_score, roc_auc_score

from assets.experiments.experiment_analysis_assets import SRM_CHECK
from assets.log_rows import REQUEST_LOG_CHECK
from assets.monitoring.performance_assets import ROLLBACK_CHECK
from configs import CONFIG_DIR
from dagster_project.use_case_files import load_use_cases
from runtime import layout
from runtime.request_log import RequestLog
from runtime.request_log_frame import UNREADABLE
from tests.integration.test_raw_assets import _run, _small

pytestmark = pytest.mark.integration

DAYS = 7
LEGITIMATE = 150  # sampled legitimate transactions logged beside every fraud


def _spec(name: str):
    (spec,) = load_use_cases([CONFIG_DIR / f"{name}.yaml"])
    return _small(spec, days=DAYS)


def _events(home: Path, name: str) -> pd.DataFrame:
    files = sorted((home / "tables" / name / "raw_events").glob("*.parquet"))
    return pd.concat([pd.read_parquet(f) for f in files], ignore_index=True)


def _insert(path: Path, rows: list[dict]) -> None:
    """Raw rows, as stored text: nothing checks them on the way in."""
    with sqlite3.connect(path) as connection:
        for row in rows:
            full = {
                "logged_at": pd.Timestamp.now().timestamp(),
                "endpoint": "score",
                "unit": "1",
                "arm": "champion",
                "model_versions": '{"scorer":"1"}',
                "features": "{}",
                "scores": '{"probability":0.99,"margin":4.6}',
                "response": '{"probability":0.99,"decision":"decline"}',
                "feature_misses": 0,
                "latency_ms": 1.0,
                **row,
            }
            marks = ", ".join("?" * len(full))
            connection.execute(
                f"INSERT INTO requests ({', '.join(full)}) VALUES ({marks})", list(full.values())
            )


def _fraud_log(path: Path, events: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Good rows for every fraud and a sample of legitimate transactions (scores that rank
    frauds higher, with noise); returns them and the legitimate rows left out of the log."""
    rng = np.random.default_rng(3)
    legitimate = events[events.is_fraud == 0]
    chosen = legitimate.sample(LEGITIMATE, random_state=0)
    good = pd.concat([events[events.is_fraud == 1], chosen]).sort_values("event_time")
    good = good.assign(score=np.clip(0.45 * good.is_fraud + rng.uniform(0, 0.6, len(good)), 0, 1))
    log = RequestLog(path)
    for row in good.itertuples():
        transaction = {
            "transaction_id": int(row.transaction_id),
            "card_id": int(row.card_id),
            "merchant_id": int(row.merchant_id),
            "amount": float(row.amount),
            "event_time": row.event_time.isoformat(),
        }
        log.write(
            endpoint="score",
            unit=int(row.card_id),
            arm="champion",
            request={"transaction": transaction},
            model_versions={"scorer": "1"},
            features={"amount": float(row.amount)},
            scores={"probability": float(row.score), "margin": 0.0},
            response={"decision": "decline" if row.score >= 0.5 else "approve"},
            feature_misses=0,
            latency_ms=1.0,
        )
    log.flush()
    log.close()
    return good, legitimate.drop(chosen.index)


def _poison(path: Path, spare: pd.DataFrame) -> dict[str, int]:
    """The rows of the issue, each naming a real transaction the good rows do not (read, every
    one would add a confident false positive); returns the expected count per reason."""
    ids = [int(i) for i in spare.transaction_id.head(8)]

    def request(i: int, **fields: str) -> str:
        parts = [f'"transaction_id":{ids[i]}', *(f'"{k}":{v}' for k, v in fields.items())]
        return '{"transaction":{' + ",".join(parts) + "}}"

    _insert(
        path,
        [
            {"request": request(0, amount='"abc"')},  # wrong type
            {"request": request(1, amount="Infinity")},  # Infinity written raw
            {"request": request(2), "scores": '{"probability":Infinity}'},
            {"request": '{"transaction":{"transaction_id":' + "7" * 400 + "}}"},
            {"request": request(4, card_id="12345678901234567890")},  # beyond int64
            {"request": request(5, event_time='"2025-02-30T25:00:00"')},  # not a time
            {"request": request(6), "logged_at": "last tuesday"},
            {"request": request(7)[:-5]},  # truncated JSON
        ],
    )
    return {"wrong_type": 1, "non_finite": 2, "int_overflow": 2, "bad_time": 2, "bad_json": 1}


def _materialize(spec, home: Path, key: dg.AssetKey) -> dg.ExecuteInProcessResult:
    result = _run(spec, home, select=key.path[-1])
    assert result.success
    return result


def _checks(result: dg.ExecuteInProcessResult) -> dict[str, dg.AssetCheckEvaluation]:
    return {c.check_name: c for c in result.get_asset_check_evaluations()}


def test_performance_reads_around_a_poisoned_log_and_says_so(tmp_path: Path) -> None:
    spec = _spec("fraud")
    home = tmp_path / "home"
    assert _run(spec, home, select="raw_events").success
    key = dg.AssetKey(layout.performance_key(spec.name, "scorer"))
    path = home / "serving" / "fraud" / "request_log.sqlite"
    good, spare = _fraud_log(path, _events(home, "fraud"))

    clean = _materialize(spec, home, key)
    clean_table = clean.asset_value(key)
    clean_checks = _checks(clean)
    assert clean_checks[REQUEST_LOG_CHECK].passed
    (event,) = clean.get_asset_materialization_events()
    assert event.materialization.metadata[UNREADABLE].value == 0

    expected = _poison(path, spare)
    poisoned = _materialize(spec, home, key)
    table = poisoned.asset_value(key)
    pd.testing.assert_frame_equal(table, clean_table)

    # the numbers are those of the good rows alone (every label is known by now)
    assert table["labelled"].sum() == len(good) and table["pending"].sum() == 0
    assert table["positives"].sum() == good.is_fraud.sum()
    summary = table.groupby("version")[["labelled"]].sum()
    assert summary.index.tolist() == ["1"]
    if len(table) == 1:  # one day of logging: the day's metrics are the version's
        (row,) = table.to_dict("records")
        assert row["auc"] == pytest.approx(roc_auc_score(good.is_fraud, good.score))
        assert row["pr_auc"] == pytest.approx(average_precision_score(good.is_fraud, good.score))

    # and the skipped rows are said: metadata per reason, a failed warning check
    (event,) = poisoned.get_asset_materialization_events()
    metadata = event.materialization.metadata
    assert metadata[UNREADABLE].value == sum(expected.values())
    for reason, count in expected.items():
        assert metadata[f"{UNREADABLE}/{reason}"].value == count
    assert "400 digits" in metadata["unreadable_log_rows_examples"].value
    checks = _checks(poisoned)
    check = checks[REQUEST_LOG_CHECK]
    assert not check.passed and check.severity == dg.AssetCheckSeverity.WARN
    assert check.metadata[UNREADABLE].value == sum(expected.values())
    assert "8 unreadable request-log row(s) skipped" in check.metadata["summary"].value
    assert checks[ROLLBACK_CHECK].passed  # nothing to roll back: no champion was registered


def test_experiment_analysis_reads_around_a_poisoned_log(tmp_path: Path) -> None:
    spec = _spec("feed")
    home = tmp_path / "home"
    assert _run(spec, home, select="raw_events").success
    key = dg.AssetKey(layout.experiment_analysis_key(spec.name))
    path = home / "serving" / "feed" / "request_log.sqlite"
    users = np.unique(_events(home, "feed").user_id)
    middle = pd.Timestamp("2025-01-04")
    log = RequestLog(path)
    for i, user in enumerate(users):
        arm = ("control", "treatment")[i % 2]
        log.write(
            endpoint="recommend",
            unit=int(user),
            arm=arm,
            request={"user_id": int(user), "k": 10, "as_of": middle.isoformat()},
            model_versions={"ranking": "1"},
            features={},
            scores=[0.5],
            response={"arm": arm, "items": [{"item_id": 1, "score": 0.5}]},
            feature_misses=0,
            latency_ms=2.0,
        )
    log.flush()
    log.close()
    clean = _materialize(spec, home, key)
    clean_frame = clean.asset_value(key)
    assert _checks(clean)[REQUEST_LOG_CHECK].passed

    unit = {"endpoint": "recommend", "arm": "treatment", "model_versions": '{"ranking":"1"}'}
    unit |= {"scores": "[0.5]", "response": '{"arm":"treatment","items":[]}'}
    _insert(
        path,
        [
            {**unit, "unit": "1", "request": '{"user_id":1,"as_of":"the day after"}'},
            {**unit, "unit": "2", "request": '{"user_id":12345678901234567890}'},
            {**unit, "unit": "3", "request": '{"user_id":3,"k":NaN}'},
            {**unit, "unit": "4", "request": '{"user_id":4,"as_of":"2025-01-0'},
        ],
    )
    poisoned = _materialize(spec, home, key)
    pd.testing.assert_frame_equal(poisoned.asset_value(key), clean_frame)
    (event,) = poisoned.get_asset_materialization_events()
    metadata = event.materialization.metadata
    assert metadata[UNREADABLE].value == 4
    assert metadata["requests"].value == len(users)
    checks = _checks(poisoned)
    assert not checks[REQUEST_LOG_CHECK].passed
    assert checks[SRM_CHECK].passed
