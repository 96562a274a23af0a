"""A request the service fails to answer is logged with its unit, arm and error, alone.

The ``error_rate`` guardrail of an experiment counts, per arm, the logged requests whose
``error`` is set; so the served fraud scorer is given a fault (its booster raises on one
amount) and requests are sent together through the service's micro-batcher: the batch fails,
is retried one request at a time, and only the faulty request is logged as failed, with the
unit and arm it was routed to. The rest are logged as served, and the performance monitor reads
only those.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from runtime.bundle import load_bundle
from runtime.request_log import RequestLog, load_request_log, served
from serving.batching import MicroBatcher
from serving.scoring import ScoreHandler
from tests.integration.served import materialized_home

pytestmark = pytest.mark.integration
FAULTY_AMOUNT = 666.25


class FaultyBooster:
    """The real booster, raising on any matrix holding a row with the faulty amount."""

    def __init__(self, booster: Any, amount_column: int) -> None:
        self.booster = booster
        self.amount_column = amount_column

    def predict(self, matrix: np.ndarray, **kwargs: Any) -> np.ndarray:
        if np.any(matrix[:, self.amount_column] == FAULTY_AMOUNT):
            raise RuntimeError("model backend timed out")
        return self.booster.predict(matrix, **kwargs)


def _bodies(home: Path) -> list[dict]:
    files = sorted((home / "tables" / "fraud" / "raw_events").rglob("*.parquet"))
    events = pd.read_parquet(files[-1]).tail(5)
    bodies = [
        {
            "transaction": {
                "card_id": int(row.card_id),
                "merchant_id": int(row.merchant_id),
                "amount": float(row.amount),
                "event_time": "2026-11-20T12:00:00Z",
            }
        }
        for row in events.itertuples()
    ]
    bodies[2]["transaction"]["amount"] = FAULTY_AMOUNT
    return bodies


def test_a_failed_request_is_logged_alone_with_its_arm(
    tmp_path_factory: pytest.TempPathFactory, tmp_path: Path
) -> None:
    home = materialized_home(tmp_path_factory, "fraud")
    bundle = load_bundle(home / "serving" / "fraud" / "bundle")
    log = RequestLog(tmp_path / "requests.sqlite")
    handler = ScoreHandler(bundle, log)
    for model in bundle.models.values():
        amount = list(model.feature_columns).index("transaction_request__amount")
        model.booster = FaultyBooster(model.booster, amount)
    bodies = _bodies(home)

    async def send_together() -> list[Any]:
        batcher = MicroBatcher(handler.handle_many)
        return await asyncio.gather(*(batcher(b) for b in bodies), return_exceptions=True)

    answers = asyncio.run(send_together())
    assert isinstance(answers[2], RuntimeError)
    assert all(isinstance(a, dict) and "probability" in a for i, a in enumerate(answers) if i != 2)
    assert handler.counters["errors"] == 1 and handler.counters["requests"] == 4
    log.close()

    frame = load_request_log(tmp_path / "requests.sqlite").frame
    failed = frame[frame["error"].notna()]
    assert failed["error"].tolist() == ["RuntimeError"]
    (row,) = failed.itertuples()
    assert row.unit == str(bodies[2]["transaction"]["card_id"])
    assert row.arm == handler.arm_for(bodies[2]["transaction"]["card_id"]).name
    assert row.model_versions == handler.arm_for(bodies[2]["transaction"]["card_id"]).versions
    assert len(served(frame)) == 4 and served(frame)["error"].isna().all()
