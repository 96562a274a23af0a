"""The BentoML services: one class per endpoint kind, chosen by the YAML's ``serving.endpoint``.

Each class loads the serving bundle (``PLAYBOOK_BUNDLE``, default ``./bundle``, which is where the
``bento`` asset puts it inside a Bento) and delegates every request to the endpoint's plain
handler (``serving.funnel`` or ``serving.scoring``), so the same code runs under BentoML, under
the bare-FastAPI benchmark and in tests. The API methods take their fields untyped and the
handler validates them, so a bad request is HTTP 422 naming the field rather than BentoML's
generic 400 or a 500 from a model; ``/health`` reports the loaded versions and counters.

Run one with ``bentoml serve serving.service:RecommendService`` (see the README), or serve a
built Bento by its tag. Deployment knobs are BentoML *arguments* (:class:`ServeArguments`), read
when the module is imported: ``bentoml serve playbook-feed:latest --arg workers=2``.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Literal

import bentoml
from bentoml.exceptions import UnprocessableEntity
from pydantic import BaseModel, Field
from starlette.responses import Response

from serving.bundle import load_bundle
from serving.funnel import FunnelHandler
from serving.handler import Handler
from serving.json_body import JSONObjectBody
from serving.request_log import RequestLog, to_json
from serving.requests import RequestError
from serving.scoring import ScoreHandler

BUNDLE_ENV = "PLAYBOOK_BUNDLE"
REQUEST_LOG_ENV = "PLAYBOOK_REQUEST_LOG"
HOME_ENV = "PLAYBOOK_HOME"


class ServeArguments(BaseModel):
    """``bentoml serve ... --arg name=value``: how the service runs on the machine at hand."""

    workers: int | Literal["cpu_count"] = Field(
        1,
        description="Worker processes, each with its own copy of the bundle. Python serves one"
        " request at a time per process, so a CPU-bound service wants about one per core.",
    )
    access_log: bool = Field(
        False,
        description="BentoML's per-request access log. Off by default: the request log already"
        " records every request, with far more, and a log line per request costs CPU.",
    )


ARGUMENTS = bentoml.use_arguments(ServeArguments)
_CONFIG: dict[str, Any] = {
    "traffic": {"timeout": 30},
    "workers": ARGUMENTS.workers,
    "logging": {"access": {"enabled": ARGUMENTS.access_log}},
}


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


def _answer(handler: Handler, payload: dict[str, Any]) -> Any:
    """The handler's answer as a ready JSON response.

    Handing BentoML a ``Response`` skips its output model, which builds a JSON schema of
    ``dict[str, Any]`` for every answer (about a tenth of a fraud request's CPU); NaN becomes
    null, as pydantic would write it.
    """
    try:
        answer = handler.handle({k: v for k, v in payload.items() if v is not None})
    except RequestError as error:
        raise UnprocessableEntity(str(error)) from None
    return Response(to_json(answer), media_type="application/json")


@bentoml.service(name="playbook-recommend", **_CONFIG)
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


@bentoml.service(name="playbook-search", **_CONFIG)
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


@bentoml.service(name="playbook-score", **_CONFIG)
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
