"""The BentoML services: one class per endpoint kind, chosen by the YAML's ``serving.endpoint``.

Each class loads the serving bundle (``PLAYBOOK_BUNDLE``, default ``./bundle``, which is where the
``bento`` asset puts it inside a Bento) and delegates every request to the endpoint's plain
handler (``serving.funnel`` or ``serving.scoring``), so the same code runs under BentoML, under
the bare-FastAPI benchmark and in tests. The API methods take their fields untyped and the
handler validates them, so a bad request is HTTP 422 naming the field rather than BentoML's
generic 400 or a 500 from a model; ``/health`` reports the loaded versions and counters.

Run one with ``bentoml serve serving.service:RecommendService`` (see the README), or serve a
built Bento by its tag.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import bentoml
from bentoml.exceptions import UnprocessableEntity

from serving.bundle import load_bundle
from serving.funnel import FunnelHandler
from serving.handler import Handler
from serving.json_body import JSONObjectBody
from serving.request_log import RequestLog
from serving.requests import RequestError
from serving.scoring import ScoreHandler

BUNDLE_ENV = "PLAYBOOK_BUNDLE"
REQUEST_LOG_ENV = "PLAYBOOK_REQUEST_LOG"
HOME_ENV = "PLAYBOOK_HOME"
_TRAFFIC = {"timeout": 30}


def bundle_path() -> Path:
    return Path(os.environ.get(BUNDLE_ENV, "bundle")).resolve()


def request_log_path(use_case: str) -> Path:
    """``PLAYBOOK_REQUEST_LOG``, else ``<PLAYBOOK_HOME>/serving/<use case>/request_log.sqlite``,
    else ``request_log.sqlite`` in the working directory."""
    if os.environ.get(REQUEST_LOG_ENV):
        return Path(os.environ[REQUEST_LOG_ENV])
    if os.environ.get(HOME_ENV):
        return Path(os.environ[HOME_ENV]) / "serving" / use_case / "request_log.sqlite"
    return Path("request_log.sqlite").resolve()


def build_handler(bundle_folder: str | Path, log: bool = True) -> Handler:
    """The handler of a bundle's endpoint, logging to :func:`request_log_path` when ``log``."""
    bundle = load_bundle(bundle_folder)
    request_log = RequestLog(request_log_path(bundle.spec.name)) if log else None
    if bundle.manifest.endpoint == "score":
        return ScoreHandler(bundle, request_log)
    return FunnelHandler(bundle, request_log)


def _answer(handler: Handler, payload: dict[str, Any]) -> dict[str, Any]:
    try:
        return handler.handle({k: v for k, v in payload.items() if v is not None})
    except RequestError as error:
        raise UnprocessableEntity(str(error)) from None


@bentoml.service(name="playbook-recommend", traffic=_TRAFFIC)
class RecommendService:
    """``POST /recommend {user_id, k, context}``: the feed funnel."""

    def __init__(self) -> None:
        self.handler = build_handler(bundle_path())

    @bentoml.api
    async def recommend(
        self, user_id: Any = None, k: Any = None, context: Any = None, as_of: Any = None
    ) -> dict[str, Any]:
        return _answer(
            self.handler, {"user_id": user_id, "k": k, "context": context, "as_of": as_of}
        )

    @bentoml.api
    async def health(self) -> dict[str, Any]:
        return self.handler.health()


@bentoml.service(name="playbook-search", traffic=_TRAFFIC)
class SearchService:
    """``POST /search {query, k}``: retrieval then learning-to-rank."""

    def __init__(self) -> None:
        self.handler = build_handler(bundle_path())

    @bentoml.api
    async def search(self, query: Any = None, k: Any = None, as_of: Any = None) -> dict[str, Any]:
        return _answer(self.handler, {"query": query, "k": k, "as_of": as_of})

    @bentoml.api
    async def health(self) -> dict[str, Any]:
        return self.handler.health()


@bentoml.service(name="playbook-score", traffic=_TRAFFIC)
class ScoreService:
    """``POST /score {transaction}``: calibrated probability, decision band and reasons."""

    def __init__(self) -> None:
        self.handler = build_handler(bundle_path())

    @bentoml.api
    async def score(self, transaction: Any = None) -> dict[str, Any]:
        return _answer(self.handler, {"transaction": transaction})

    @bentoml.api
    async def health(self) -> dict[str, Any]:
        return self.handler.health()


SERVICES = {"recommend": RecommendService, "search": SearchService, "score": ScoreService}
for _endpoint, _service in SERVICES.items():
    _service.add_asgi_middleware(JSONObjectBody, paths=(f"/{_endpoint}",))
