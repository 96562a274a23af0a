"""The ``slo`` section, its verdict and the requests the SLO check sends, without a server."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from assets.serving.latency_plot import latency_histogram, latency_preview
from assets.serving.load_test import LoadGeneratorMissing, require_wrk
from assets.serving.slo_requests import request_bodies, unit_column
from configs import CONFIG_DIR
from configs.schema import SpecError
from configs.schema.slo import SLOSpec, slo_problems
from dagster_project.loader import use_case_assets
from dagster_project.use_case_files import load_use_cases
from runtime.promotion import slo_verdict
from tests.conftest import write


def _shipped(name: str):
    (spec,) = load_use_cases([CONFIG_DIR / f"{name}.yaml"])
    return spec


def test_shipped_configs_state_the_serving_goals() -> None:
    """Fraud and the feed ship the SLOs the serving work set out to meet, switched on."""
    fraud, feed = _shipped("fraud").slo, _shipped("feed").slo
    assert (fraud.p99_ms, fraud.clients, fraud.workers) == (8, 8, 2)
    assert (feed.p99_ms, feed.clients, feed.workers) == (50, 8, 2)
    assert (fraud.warmup_s, fraud.duration_s, fraud.max_error_rate) == (2, 5, 0)
    assert _shipped("search").slo is None


def test_a_bad_slo_is_located(tmp_path: Path) -> None:
    text = (CONFIG_DIR / "fraud.yaml").read_text()
    old = "slo: {p99_ms: 8, clients: 8, workers: 2}"
    assert old in text
    path = write(tmp_path / "fraud.yaml", text.replace(old, "slo: {p99_ms: 0, workerz: 2}"))
    with pytest.raises(SpecError) as caught:
        load_use_cases([path])
    fields = {issue.field: issue for issue in caught.value.issues}
    assert "greater than 0" in fields["slo.p99_ms"].message
    assert "slo.workerz" in fields
    line = next(i for i, t in enumerate(path.read_text().splitlines(), 1) if "workerz" in t)
    assert fields["slo.p99_ms"].line == line


def test_an_slo_needs_something_served(tmp_path: Path) -> None:
    fraud = _shipped("fraud")
    assert list(slo_problems(fraud)) == []
    unserved = fraud.model_copy(update={"serving": None})
    assert list(slo_problems(unserved)) == [
        (("slo",), "an slo is measured on the served endpoint: add a serving section")
    ]


def test_verdict_names_every_failed_bound() -> None:
    slo = SLOSpec(p99_ms=8, peak_qps=500, max_error_rate=0.01, workers=2)
    held = slo_verdict(slo, p99_ms=7.5, qps=800, error_rate=0.0, answered=4000, workers_started=2)
    assert held.holds
    assert held.reason == "p99 7.50 ms <= 8 ms; error rate 0 <= 0.01; 800 req/s >= 500"
    slow = slo_verdict(
        slo, p99_ms=13.68, qps=420, error_rate=0.02, answered=2100, workers_started=2
    )
    assert not slow.holds
    assert slow.reasons == ("p99 13.68 ms > 8 ms", "error rate 0.02 > 0.01", "420 req/s < 500")
    short = slo_verdict(slo, p99_ms=1, qps=900, error_rate=0, answered=10, workers_started=1)
    assert short.reasons == ("only 1 of 2 workers started",)
    silent = slo_verdict(
        SLOSpec(p99_ms=8), p99_ms=0, qps=0, error_rate=0, answered=0, workers_started=1
    )
    assert not silent.holds and "no request was answered" in silent.reasons


def _fraud_test_rows() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "transaction_id": [11, 12, 13, 14],
            "card_id": [5, 6, 7, 8],
            "merchant_id": [1, 2, 1, 2],
            "event_time": pd.to_datetime(["2025-01-20"] * 4),
            "amount": [10.5, 20.0, float("nan"), 3.25],
            "mcc": ["fuel", "grocery", "fuel", "travel"],
            "device_id": [100, 101, 102, 103],
            "country": ["US", "DE", "US", "NL"],
            "hour": [1, 2, 3, 4],
            "channel": ["pos", "online", "pos", "pos"],
            "is_fraud": [0, 1, 0, 0],
            "label_time": pd.to_datetime(["2025-01-27"] * 4),
        }
    )


def test_score_bodies_are_transactions_without_labels_or_times() -> None:
    fraud = _shipped("fraud")
    rows = _fraud_test_rows()
    bodies = request_bodies(fraud, rows["card_id"], rows, SLOSpec(p99_ms=8, bodies=10))
    assert len(bodies) == 4  # no more than the test split has
    by_id = {b["transaction"]["transaction_id"]: b["transaction"] for b in bodies}
    assert by_id[11] == {
        "transaction_id": 11,
        "card_id": 5,
        "merchant_id": 1,
        "amount": 10.5,
        "mcc": "fuel",
        "device_id": 100,
        "country": "US",
        "hour": 1,
        "channel": "pos",
    }
    assert "amount" not in by_id[13]  # a missing value is left out, never sent as NaN
    assert all(type(t["card_id"]) is int for t in by_id.values())


def test_a_cold_share_sends_unseen_units() -> None:
    fraud = _shipped("fraud")
    assert unit_column(fraud) == "card_id"
    rows = _fraud_test_rows()
    bodies = request_bodies(fraud, rows["card_id"], rows, SLOSpec(p99_ms=8, cold_share=0.5))
    cards = sorted(b["transaction"]["card_id"] for b in bodies)
    assert cards[-2:] == [9, 10] and set(cards[:2]) < {5, 6, 7, 8}  # two new ids past the largest

    feed = _shipped("feed")
    assert unit_column(feed) == "user_id"
    users = pd.DataFrame({"user_id": [3, 4, 5, 6, 7, 8, 9, 10], "item_id": range(8)})
    bodies = request_bodies(feed, users["user_id"], users, SLOSpec(p99_ms=50, cold_share=0.25))
    assert all(set(b) == {"user_id", "k"} and b["k"] == 20 for b in bodies)
    assert sorted(b["user_id"] for b in bodies if b["user_id"] > 10) == [11, 12]


def test_latency_plots() -> None:
    histogram = [(0.8, 10), (1.2, 50), (3.0, 5), (25.0, 1)]
    png = latency_histogram(histogram, {"p50": 1.2, "p95": 3.0, "p99": 25.0}, 8.0, "fraud")
    assert png.startswith(b"\x89PNG")
    preview = latency_preview(histogram, 25.0, 8.0)
    assert preview.startswith("![latency](data:image/svg+xml,") and "SLO 8 ms" in preview


def test_the_slo_check_sits_between_the_models_and_the_bundle() -> None:
    def upstream(spec) -> dict[str, set[str]]:
        return {
            key.to_user_string(): {d.to_user_string() for d in asset.dependency_keys}
            for asset in use_case_assets(spec)
            for key in asset.keys
        }

    feed = upstream(_shipped("feed"))
    assert {
        "feed/models/retrieval_model",
        "feed/models/ranking_model",
        "feed/indices/retrieval_index",
        "feed/split_plan",
    } <= feed["feed/slo_check"]
    assert "feed/slo_check" in feed["feed/serving_bundle"]
    search = upstream(_shipped("search"))  # no slo section: no check, the bundle as before
    assert "search/slo_check" not in search
    assert not any("slo_check" in d for d in search["search/serving_bundle"])


def test_a_missing_load_generator_is_named(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))  # a PATH without wrk
    with pytest.raises(LoadGeneratorMissing, match="scripts/install_wrk.sh"):
        require_wrk()
