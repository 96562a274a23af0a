"""``/score`` serving a regressor: pricing's delivery model answered online, in process.

The shipped ``pricing.yaml`` scores its per-store quote in batch; here it is turned into an
online use case (``serving: {endpoint: score}``, the per-order ``delivery`` model only) over a
small world, materialized up to its serving bundle, and the bundle's :class:`ScoreHandler`
answers orders. Its answer must be the registered model's own prediction on the features it
logged, inside the model's own interval; the hour and weekday must be computed from the order's
time (the request's time when it sends none), and move the prediction as the world's hour steps
do; a bad body must be a RequestError naming the field. The built Bento, run by ``bentoml
serve``, must answer as the handler does, and a bad body with 422 naming the field.
"""

from __future__ import annotations

from pathlib import Path

import httpx
import numpy as np
import pandas as pd
import pytest

from assets.models.train import model_input
from configs import CONFIG_DIR
from configs.schema.stages import ServingSpec
from dagster_project.use_case_files import load_use_cases
from resources.mlflow_resource import MLflowResource
from runtime.bundle import load_bundle
from runtime.request_log import RequestLog, read_request_log
from serving.requests import RequestError
from serving.scoring import ScoreHandler
from tests.integration.served import bento_server
from tests.integration.test_raw_assets import _run, _small

pytestmark = pytest.mark.integration

DAYS = 7
HOUR, WEEKDAY = "order_request__hour", "order_request__weekday"
# not needed to answer /score (and the Triton export knows classifiers and rankers only)
SKIPPED = ("triton_repository", "drift_report", "performance", "experiment_analysis")


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory):
    """(spec, home): pricing's delivery model served online, materialized to its bundle."""
    (shipped,) = load_use_cases([CONFIG_DIR / "pricing.yaml"])
    online = shipped.model_copy(
        update={
            "serving": ServingSpec(endpoint="score"),
            "model": {"delivery": shipped.model["delivery"]},
        }
    ).with_path(shipped.path)
    spec = _small(online, days=DAYS)
    # a hidden folder name, as the default home is: BentoML refuses some other paths
    home = tmp_path_factory.mktemp("pricing-online") / ".playbook"
    result = _run(spec, home, stages_to_skip=SKIPPED)
    assert result.success
    return spec, home


def _orders(home: Path, rows: int = 60) -> pd.DataFrame:
    files = sorted((home / "tables" / "pricing" / "raw_events").rglob("*.parquet"))
    return pd.read_parquet(files[-1]).tail(rows)


def _request(row, when: pd.Timestamp | None) -> dict:
    """A ``/score`` body of an order: its store, distance and items, and the time ``when``
    (None leaves it out: the service takes the time it answers at)."""
    transaction = {
        "store_id": int(row.store_id),
        "distance_km": float(row.distance_km),
        "items": int(row.items),
    }
    if when is not None:
        transaction["event_time"] = when.isoformat()
    return {"transaction": transaction}


def test_the_answer_is_the_registered_models_prediction_in_its_interval(
    served, tmp_path: Path
) -> None:
    spec, home = served
    log_path = tmp_path / "requests.sqlite"
    request_log = RequestLog(log_path)  # written by a background thread: flushed before reading
    handler = ScoreHandler(load_bundle(home / "serving" / "pricing" / "bundle"), request_log)
    orders = _orders(home)
    answers = [handler.handle(_request(row, row.event_time)) for row in orders.itertuples()]
    for answer in answers:
        assert set(answer) == {
            "prediction",
            "lower",
            "upper",
            "top_features",
            "arm",
            "model_versions",
            "feature_misses",
        }
        assert answer["lower"] <= answer["prediction"] <= answer["upper"]
        assert answer["model_versions"] == {"delivery": "1"} and answer["feature_misses"] == 0
        assert len(answer["top_features"]) == 5

    request_log.flush()
    logged = read_request_log(log_path)
    assert len(logged) == len(orders)
    features = pd.DataFrame(list(logged["features"]))
    registry = MLflowResource(home=str(home))
    loaded = registry.load_model("pricing.delivery", "champion")
    model = loaded.unwrap_python_model().model
    assert model.has_interval and list(features.columns) == list(model.feature_columns)
    frame = model_input(features, model.feature_columns)
    want = np.asarray(loaded.predict(frame), dtype=float)
    got = np.array([a["prediction"] for a in answers])
    np.testing.assert_allclose(got, want, rtol=1e-9)
    lower, upper = model.predict_interval(frame)
    np.testing.assert_allclose([a["lower"] for a in answers], lower, rtol=1e-9)
    np.testing.assert_allclose([a["upper"] for a in answers], upper, rtol=1e-9)
    scores = pd.DataFrame(list(logged["scores"]))
    np.testing.assert_allclose(scores["prediction"], got, rtol=1e-12)
    assert (scores["lower"] <= scores["upper"]).all()

    # the reasons are SHAP values in seconds: with the model's expected value they add up to the
    # prediction, so each is the part of it one feature explains
    first = answers[0]["top_features"]
    assert {r["feature"] for r in first} <= set(model.feature_columns)
    magnitudes = [abs(r["contribution"]) for r in first]
    assert magnitudes == sorted(magnitudes, reverse=True)

    # hour and weekday are the order's time (UTC, Monday 0), as the world stamped its steps
    times = pd.to_datetime(orders["event_time"]).reset_index(drop=True)
    assert (features[HOUR] == times.dt.hour).all()
    assert (features[WEEKDAY] == times.dt.weekday).all()


def test_request_features_follow_the_request_time(served, tmp_path: Path) -> None:
    spec, home = served
    log_path = tmp_path / "requests.sqlite"
    request_log = RequestLog(log_path)  # written by a background thread: flushed before reading
    handler = ScoreHandler(load_bundle(home / "serving" / "pricing" / "bundle"), request_log)
    orders = _orders(home, 30)
    last = pd.Timestamp(orders["event_time"].max()).normalize() + pd.Timedelta(days=1)
    saturday = last + pd.Timedelta(days=(5 - last.weekday()) % 7)
    # the world's slowest hour (19:00, +9 min) against a quiet one (15:00, +0 min), a Saturday
    quiet = [
        handler.handle(_request(r, saturday + pd.Timedelta(hours=15, minutes=5)))
        for r in orders.itertuples()
    ]
    rush = [
        handler.handle(_request(r, saturday + pd.Timedelta(hours=19, minutes=5)))
        for r in orders.itertuples()
    ]
    moved = np.array([b["prediction"] - a["prediction"] for a, b in zip(quiet, rush, strict=True)])
    assert moved.mean() > 4 * 60, moved  # 9 minutes in the world; at least 4 learnt

    before = pd.Timestamp.now(tz="UTC")
    untimed = handler.handle(_request(next(orders.itertuples()), None))
    after = pd.Timestamp.now(tz="UTC")
    assert untimed["lower"] <= untimed["prediction"] <= untimed["upper"]

    request_log.flush()
    features = pd.DataFrame(list(read_request_log(log_path)["features"]))
    n = len(orders)
    assert (features[HOUR].iloc[:n] == 15).all() and (features[HOUR].iloc[n : 2 * n] == 19).all()
    assert (features[WEEKDAY].iloc[: 2 * n] == 5).all()
    assert features[HOUR].iloc[-1] in {before.hour, after.hour}
    assert features[WEEKDAY].iloc[-1] in {before.weekday(), after.weekday()}


def test_a_bad_order_is_a_request_error_naming_its_field(served) -> None:
    _, home = served
    handler = ScoreHandler(load_bundle(home / "serving" / "pricing" / "bundle"))
    row = next(_orders(home, 1).itertuples())
    good = _request(row, row.event_time)["transaction"]
    cases = {
        "transaction.store_id": {k: v for k, v in good.items() if k != "store_id"},
        "transaction.distance_km": {**good, "distance_km": -1.0},
        "transaction.items": {**good, "items": "two"},
        # the hour is the order's time, not a field: a client cannot send one that disagrees
        "transaction.hour": {**good, "hour": 19},
        "transaction.event_time": {**good, "event_time": "yesterday"},
    }
    for field, transaction in cases.items():
        with pytest.raises(RequestError) as raised:
            handler.handle({"transaction": transaction})
        assert raised.value.field == field, (field, str(raised.value))


def test_a_model_without_interval_answers_null_bounds(served) -> None:
    """``regression.interval`` is optional: without it the bounds are null, the keys stay."""
    _, home = served
    bundle = load_bundle(home / "serving" / "pricing" / "bundle")
    handler = ScoreHandler(bundle)
    row = next(_orders(home, 1).itertuples())
    with_interval = handler.handle(_request(row, row.event_time))
    model = bundle.model("delivery", "1")
    model.lower = model.upper = None  # as trained without regression.interval
    answer = handler.handle(_request(row, row.event_time))
    assert answer["lower"] is None and answer["upper"] is None
    assert answer["prediction"] == with_interval["prediction"]


def test_bento_serves_the_regression_over_http(served, tmp_path: Path) -> None:
    _, home = served
    handler = ScoreHandler(load_bundle(home / "serving" / "pricing" / "bundle"))
    orders = _orders(home, 20)
    log = tmp_path / "requests.sqlite"
    with bento_server(home, "pricing", log) as url:
        for row in orders.itertuples():
            body = _request(row, row.event_time)
            answer = httpx.post(f"{url}/score", json=body, timeout=30)
            assert answer.status_code == 200, answer.text
            served_answer, local = answer.json(), handler.handle(body)
            for field in ("prediction", "lower", "upper"):
                assert served_answer[field] == pytest.approx(local[field], rel=1e-12)
            assert served_answer["model_versions"] == {"delivery": "1"}
        bad = httpx.post(f"{url}/score", json={"transaction": {"items": 2}}, timeout=30)
        assert bad.status_code == 422 and bad.json()["field"] == "transaction.store_id"
    logged = read_request_log(log)
    assert len(logged) == len(orders)
    assert set(logged.iloc[0]["scores"]) == {"prediction", "lower", "upper"}
