"""BentoML's per-request layers, served for real: off by default, on when the settings ask.

The fraud Bento (the suite's small world) is served twice by ``bentoml serve``: with the
defaults, ``/metrics`` does not exist (no Prometheus middleware) and the endpoint, mounted as a
Starlette app, answers a good body, a bad one (422 from the body check) and another method
(405); with ``PLAYBOOK_METRICS`` and ``PLAYBOOK_TRACING`` on, the same answers, and ``/metrics``
counts the requests to ``/score``.
"""

from __future__ import annotations

from pathlib import Path

import httpx
import pandas as pd
import pytest

from serving.service import METRICS_ENV, TRACING_ENV
from tests.integration.served import bento_server, materialized_home

# slow: two Bento servers for one equality (the layers are off by default, as CI serves them)
pytestmark = [pytest.mark.integration, pytest.mark.slow]


def _good_body(home: Path) -> dict:
    files = sorted((home / "tables" / "fraud" / "raw_events").rglob("*.parquet"))
    row = pd.read_parquet(files[-1]).iloc[-1]
    return {"transaction": {"card_id": int(row.card_id), "merchant_id": int(row.merchant_id)}}


def _answers(url: str, good: dict) -> tuple[httpx.Response, ...]:
    with httpx.Client(base_url=url, timeout=30) as client:
        return (
            client.post("/score", json=good),
            client.post("/score", json={"transaction": good["transaction"], "typo": 1}),
            client.get("/score"),
            client.get("/metrics"),
        )


@pytest.mark.parametrize("layers", ["off", "on"])
def test_endpoint_answers_alike_with_bentoml_metrics_and_tracing_off_or_on(
    tmp_path_factory: pytest.TempPathFactory, tmp_path: Path, layers: str
) -> None:
    home = materialized_home(tmp_path_factory, "fraud")
    good = _good_body(home)
    settings = {METRICS_ENV: "true", TRACING_ENV: "true"} if layers == "on" else {}
    with bento_server(home, "fraud", tmp_path / "requests.sqlite", settings=settings) as url:
        answer, typo, get, metrics = _answers(url, good)
    assert answer.status_code == 200, answer.text
    assert 0.0 <= answer.json()["probability"] <= 1.0
    assert typo.status_code == 422 and typo.json()["field"] == "typo"
    assert get.status_code == 405
    if layers == "off":
        assert metrics.status_code == 404
    else:
        assert metrics.status_code == 200
        assert 'endpoint="/score"' in metrics.text, metrics.text[:2000]
