"""The BentoML services: one class per endpoint kind, chosen by the YAML's ``serving.endpoint``.

Each class loads the serving bundle (``PLAYBOOK_BUNDLE``, default ``./bundle``, which is where the
``bento`` asset puts it inside a Bento) and delegates every request to the endpoint's plain
handler (``serving.funnel`` or ``serving.scoring``) through a :class:`MicroBatcher`, which
answers concurrent requests in one batch, so the same code runs under BentoML, under the
bare-FastAPI benchmark and in tests. A body is checked twice before any model sees it: its
bytes by :class:`JSONObjectBody` (size, content type, UTF-8, JSON syntax, depth, top-level
fields; 413/415/422) and its fields by the handler's schema (:mod:`serving.request_schemas`:
types, int64 ids, finite numbers, times in range; 422). The API methods take their fields
untyped, so a bad request is an answer naming the field rather than BentoML's generic 400 or a
500 from Feast or a model; ``/health`` reports the loaded versions and counters.

Run one with ``bentoml serve serving.service:RecommendService`` (see the README), or serve a
built Bento by its tag. Deployment knobs are environment variables (:class:`ServeSettings`),
read when the module is imported: ``PLAYBOOK_WORKERS=2 bentoml serve playbook-feed:latest``.
"""

from __future__ import annotations

import inspect
import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Literal

import bentoml
from pydantic import BaseModel, Field, ValidationError
from starlette.responses import Response

from runtime.bundle import load_bundle
from runtime.layout import HOME_ENV, REQUEST_LOG_FILE, HomeLayout, home_location
from runtime.request_log import RequestLog, to_json
from serving.batching import ArrivalGate, Arrivals, MicroBatcher
from serving.funnel import FunnelHandler
from serving.handler import Handler
from serving.json_body import JSONObjectBody
from serving.requests import RequestError
from serving.scoring import ScoreHandler

BUNDLE_ENV = "PLAYBOOK_BUNDLE"
REQUEST_LOG_ENV = "PLAYBOOK_REQUEST_LOG"


WORKERS_ENV = "PLAYBOOK_WORKERS"
ACCESS_LOG_ENV = "PLAYBOOK_ACCESS_LOG"


class ServeSettings(BaseModel):
    """How the service runs on the machine at hand, from the environment of ``bentoml serve``.

    Environment variables, like ``PLAYBOOK_BUNDLE``, because they reach a built Bento and its
    container alike (``docker run -e PLAYBOOK_WORKERS=4``); BentoML's ``--arg`` does not: serving
    a built Bento replaces them with the arguments it was built with.
    """

    workers: Annotated[int, Field(ge=1)] | Literal["cpu_count"] = Field(
        1,
        description=f"{WORKERS_ENV}: worker processes, each with its own copy of the bundle."
        " Python serves one request at a time per process, so a CPU-bound service wants about"
        " one per core ('cpu_count').",
    )
    access_log: bool = Field(
        False,
        description=f"{ACCESS_LOG_ENV}: BentoML's per-request access log. Off by default: the"
        " request log already records every request, with far more, and a log line per"
        " request costs CPU.",
    )

    @classmethod
    def from_env(cls, env: Mapping[str, str] = os.environ) -> ServeSettings:
        """The settings the environment sets; ValueError naming the variable when one is bad."""
        given = {field: env[name] for field, (name, _) in _VARIABLES.items() if env.get(name)}
        try:
            return cls(**given)
        except ValidationError as error:
            field = str(error.errors()[0]["loc"][0])
            name, expected = _VARIABLES[field]
            raise ValueError(f"{name}={given[field]!r}: expected {expected}") from None


_VARIABLES = {  # field: (environment variable, what it takes)
    "workers": (WORKERS_ENV, "a whole number of at least 1, or 'cpu_count'"),
    "access_log": (ACCESS_LOG_ENV, "true or false"),
}
SETTINGS = ServeSettings.from_env()
# requests on their way to this worker process's batcher (see serving.batching.Arrivals)
ARRIVALS = Arrivals()
_CONFIG: dict[str, Any] = {
    # this machine only unless asked: `bentoml serve ... --host 0.0.0.0` (or BENTOML_HOST)
    "http": {"host": "127.0.0.1"},
    "traffic": {"timeout": 30},
    "workers": SETTINGS.workers,
    "logging": {"access": {"enabled": SETTINGS.access_log}},
}


def bundle_path() -> Path:
    return Path(os.environ.get(BUNDLE_ENV, "bundle")).resolve()


def request_log_path(use_case: str) -> Path:
    """``PLAYBOOK_REQUEST_LOG``, else ``<PLAYBOOK_HOME>/serving/<use case>/request_log.sqlite``,
    else ``request_log.sqlite`` in the working directory."""
    if os.environ.get(REQUEST_LOG_ENV):
        return Path(os.environ[REQUEST_LOG_ENV])
    if os.environ.get(HOME_ENV):
        return HomeLayout(Path(home_location())).request_log(use_case)
    return Path(REQUEST_LOG_FILE).resolve()


def build_handler(bundle_folder: str | Path, log: bool = True) -> Handler:
    """The ready handler of a bundle's endpoint (caches loaded, GC frozen: see
    :meth:`Handler.ready`), logging to :func:`request_log_path` when ``log``."""
    bundle = load_bundle(bundle_folder)
    request_log = RequestLog(request_log_path(bundle.spec.name)) if log else None
    handler_class = ScoreHandler if bundle.manifest.endpoint == "score" else FunnelHandler
    handler = handler_class(bundle, request_log)
    handler.ready()
    return handler


async def _answer(batcher: MicroBatcher, payload: dict[str, Any]) -> Any:
    """The handler's answer, batched with concurrent requests, as a ready JSON response; a
    RequestError is 422 ``{"error", "field"}``, as :class:`JSONObjectBody` answers.

    Handing BentoML a ``Response`` skips its output model, which builds a JSON schema of
    ``dict[str, Any]`` for every answer (about a tenth of a fraud request's CPU); NaN becomes
    null, as pydantic would write it.
    """
    try:
        answer = await batcher({k: v for k, v in payload.items() if v is not None})
    except RequestError as error:
        return Response(json.dumps(error.body()), status_code=422, media_type="application/json")
    return Response(to_json(answer), media_type="application/json")


class _Endpoint:
    """What the three services share: the handler, its batcher and ``/health``."""

    def __init__(self) -> None:
        self.handler = build_handler(bundle_path())
        self.batcher = MicroBatcher(self.handler.handle_many, arrivals=ARRIVALS)

    @bentoml.api
    async def health(self) -> dict[str, Any]:
        return {**self.handler.health(), "batching": self.batcher.stats()}


@bentoml.service(name="playbook-recommend", **_CONFIG)
class RecommendService(_Endpoint):
    """``POST /recommend {user_id, k, context}``: the feed funnel."""

    @bentoml.api
    async def recommend(
        self, user_id: Any = None, k: Any = None, context: Any = None, as_of: Any = None
    ) -> dict[str, Any]:
        payload = {"user_id": user_id, "k": k, "context": context, "as_of": as_of}
        return await _answer(self.batcher, payload)


@bentoml.service(name="playbook-search", **_CONFIG)
class SearchService(_Endpoint):
    """``POST /search {query, k}``: retrieval then learning-to-rank."""

    @bentoml.api
    async def search(self, query: Any = None, k: Any = None, as_of: Any = None) -> dict[str, Any]:
        return await _answer(self.batcher, {"query": query, "k": k, "as_of": as_of})


@bentoml.service(name="playbook-score", **_CONFIG)
class ScoreService(_Endpoint):
    """``POST /score {transaction}``: calibrated probability, decision band and reasons."""

    @bentoml.api
    async def score(self, transaction: Any = None) -> dict[str, Any]:
        return await _answer(self.batcher, {"transaction": transaction})


SERVICES = {"recommend": RecommendService, "search": SearchService, "score": ScoreService}
for _endpoint, _service in SERVICES.items():
    # the first added is the outermost of ours: a request counts as arriving before its body
    # is even read
    _service.add_asgi_middleware(ArrivalGate, arrivals=ARRIVALS, paths=(f"/{_endpoint}",))
    # the top-level fields are the API method's parameters: BentoML would drop any other
    _fields = frozenset(inspect.signature(_service.apis[_endpoint].func).parameters) - {"self"}
    _service.add_asgi_middleware(
        JSONObjectBody, paths=(f"/{_endpoint}",), fields={f"/{_endpoint}": _fields}
    )
