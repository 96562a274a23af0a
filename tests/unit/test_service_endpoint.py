"""The services' lean request path: the mounted endpoint app and BentoML's per-request layers.

``endpoint_app`` is driven over ASGI (httpx's transport) with a real :class:`MicroBatcher` around
a plain batch function, for the answers it gives: the handler's answer as JSON, 422 for a bad
request, 500 (logged) for a crash that reaches only its own request, 405 for another method.
``bentoml_config`` is checked for what the settings turn on and off.
"""

from __future__ import annotations

import asyncio
import logging
import math
from collections.abc import Mapping, Sequence
from typing import Any

import httpx
import pytest

from serving.batching import MicroBatcher
from serving.requests import RequestError
from serving.service import (
    METRICS_ENV,
    SERVICES,
    TRACING_ENV,
    ServeSettings,
    bentoml_config,
    endpoint_app,
)


def _score_many(payloads: Sequence[Mapping[str, Any]]) -> list[Any]:
    """A fraud-like batch function: a card of 0 is a bad request, of -1 a crash."""
    if any(p["transaction"]["card_id"] == -1 for p in payloads):
        raise RuntimeError("model blew up")
    return [
        RequestError("transaction.card_id", "must be positive")
        if p["transaction"]["card_id"] == 0
        else {"probability": 0.25, "margin": math.nan, "card": p["transaction"]["card_id"]}
        for p in payloads
    ]


def _send(requests: list[tuple[str, Any]]) -> list[httpx.Response]:
    """Each ``(method, body)`` sent to ``/score`` of the endpoint app, all at once."""

    async def run() -> list[httpx.Response]:
        batcher = MicroBatcher(_score_many)
        app = endpoint_app("score", lambda: batcher)
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            calls = [
                client.request(method, "/score", json=body)
                if body is not None
                else client.request(method, "/score")
                for method, body in requests
            ]
            return list(await asyncio.gather(*calls))

    return asyncio.run(run())


def test_the_endpoint_answers_through_the_batcher(caplog: pytest.LogCaptureFixture) -> None:
    card = {"transaction": {"card_id": 7, "amount": None}}
    with caplog.at_level(logging.ERROR, logger="serving.service"):
        good, bad, crash, other, get = _send(
            [
                ("POST", card),
                ("POST", {"transaction": {"card_id": 0}}),
                ("POST", {"transaction": {"card_id": -1}}),
                ("POST", {"transaction": {"card_id": 8}, "k": None}),  # null is absent
                ("GET", None),
            ]
        )
    assert good.status_code == 200 and good.headers["content-type"] == "application/json"
    assert good.json() == {"probability": 0.25, "margin": None, "card": 7}  # NaN as null
    assert bad.status_code == 422
    assert bad.json() == {
        "error": "transaction.card_id: must be positive",
        "field": "transaction.card_id",
    }
    # the crash is answered 500 and logged; the requests batched with it are still answered
    assert crash.status_code == 500 and "error" in crash.json()
    assert "a request failed" in caplog.text and "model blew up" in caplog.text
    assert other.status_code == 200 and other.json()["card"] == 8
    assert get.status_code == 405


def test_bentoml_per_request_layers_are_off_unless_asked_for() -> None:
    default = bentoml_config(ServeSettings.from_env({}))
    assert default["http"] == {"host": "127.0.0.1"}
    assert default["metrics"] == {"enabled": False}
    assert default["tracing"] == {"excluded_urls": [".*"]}
    on = bentoml_config(ServeSettings.from_env({METRICS_ENV: "true", TRACING_ENV: "1"}))
    assert on["metrics"] == {"enabled": True} and "tracing" not in on
    with pytest.raises(ValueError, match="PLAYBOOK_TRACING='sometimes': expected true or false"):
        ServeSettings.from_env({TRACING_ENV: "sometimes"})


@pytest.mark.parametrize("endpoint", sorted(SERVICES))
def test_each_service_mounts_its_endpoint_and_keeps_health_an_api(endpoint: str) -> None:
    service = SERVICES[endpoint]
    assert set(service.apis) == {"health"}
    (mounted,) = service.mount_apps
    assert [route.path for route in mounted[0].routes] == [f"/{endpoint}"]
