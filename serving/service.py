"""The BentoML services: one class per endpoint kind, chosen by the YAML's ``serving.endpoint``.

Each class loads the serving bundle (``PLAYBOOK_BUNDLE``, default ``./bundle``, which is where the
``bento`` asset puts it inside a Bento) and delegates every request to the endpoint's plain
handler (``serving.funnel`` or ``serving.scoring``) through a :class:`MicroBatcher`, which
answers concurrent requests in one batch, so the same code runs under BentoML, under the
bare-FastAPI benchmark and in tests. A body is checked twice before any model sees it: its
bytes by :class:`JSONObjectBody` (size, content type, UTF-8, JSON syntax, depth, top-level
fields; 413/415/422) and its fields by the handler's schema (:mod:`serving.request_schemas`:
types, int64 ids, finite numbers, times in range; 422), so a bad request is an answer naming
the field rather than a 500 from Feast or a model; ``/health`` reports the loaded versions and
counters.

The endpoint itself (``POST /score``, ``/recommend``, ``/search``) is a one-route Starlette app
mounted on the service (``@bentoml.asgi_app``), not an ``@bentoml.api`` method, and BentoML's
per-request Prometheus metrics and OpenTelemetry spans are off unless asked for
(:class:`ServeSettings`). Driven in-process by ``bench/serving_layers.py`` (the fraud service's
ASGI app, 8 concurrent clients, the batch function replaced by a constant answer so that only
the framework was left, no sockets), ``@bentoml.api`` with BentoML's defaults cost 450 us of CPU
a request where the same checks behind bare FastAPI cost 83: OpenTelemetry's ASGI middleware
260 us (a span per request and per ASGI message, made although BentoML samples none by
default), the API route 65 (its input model, ``inspect.signature`` of the method on every call,
the request context, the response headers) and the Prometheus middleware 45. Mounted, with both
off, 80 us. With the real handler, a fraud request cost 2.14 ms of CPU behind ``@bentoml.api``,
1.57 mounted and 1.59 behind FastAPI. The worker processes, ``/readyz``, ``/livez``,
``/health``, the traffic timeout and the Bento stay BentoML's.

Run one with ``bentoml serve serving.service:RecommendService`` (see the README), or serve a
built Bento by its tag. Deployment knobs are environment variables (:class:`ServeSettings`),
read when the module is imported: ``PLAYBOOK_WORKERS=2 bentoml serve playbook-feed:latest``.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Annotated, Any, Literal

import bentoml
from pydantic import BaseModel, Field, ValidationError
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from runtime.bundle import load_bundle
from runtime.layout import HOME_ENV, REQUEST_LOG_FILE, HomeLayout, home_location
from runtime.request_log import RequestLog, to_json
from serving.batching import ArrivalGate, Arrivals, MicroBatcher
from serving.connections import KeepAliveLimit, WorkerShares
from serving.funnel import FunnelHandler
from serving.handler import Handler
from serving.json_body import JSONObjectBody
from serving.requests import RequestError
from serving.scoring import ScoreHandler

BUNDLE_ENV = "PLAYBOOK_BUNDLE"
REQUEST_LOG_ENV = "PLAYBOOK_REQUEST_LOG"


WORKERS_ENV = "PLAYBOOK_WORKERS"
ACCESS_LOG_ENV = "PLAYBOOK_ACCESS_LOG"
METRICS_ENV = "PLAYBOOK_METRICS"
TRACING_ENV = "PLAYBOOK_TRACING"
KEEPALIVE_ENV = "PLAYBOOK_KEEPALIVE_REQUESTS"
KEEPALIVE_AGE_ENV = "PLAYBOOK_KEEPALIVE_SECONDS"
# the top-level fields each endpoint takes; JSONObjectBody answers any other with 422
ENDPOINT_FIELDS = {
    "score": frozenset({"transaction", "explain"}),
    "recommend": frozenset({"user_id", "k", "context", "as_of"}),
    "search": frozenset({"query", "k", "as_of"}),
}
log = logging.getLogger(__name__)


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
    metrics: bool = Field(
        False,
        description=f"{METRICS_ENV}: BentoML's Prometheus metrics (GET /metrics) and the"
        " middleware that times every request for them. Off by default: about 45 us of CPU a"
        " request; the request log and /health have the figures.",
    )
    tracing: bool = Field(
        False,
        description=f"{TRACING_ENV}: BentoML's OpenTelemetry middleware, which makes a span per"
        " request and per ASGI message even when none is sampled (BentoML's default sample"
        " rate is 0). Off by default: about 260 us of CPU a request. Turn it on, with"
        " BentoML's tracing configuration (exporter, sample rate), to collect traces.",
    )

    keepalive_requests: Annotated[int, Field(ge=0)] = Field(
        100,
        description=f"{KEEPALIVE_ENV}: requests a kept-alive connection serves before its"
        " answer closes it (nginx's keepalive_requests), so that clients reconnect and even"
        " out across the workers (:mod:`serving.connections`); 0: no limit.",
    )
    keepalive_seconds: Annotated[float, Field(ge=0)] = Field(
        1.0,
        description=f"{KEEPALIVE_AGE_ENV}: seconds after its first request that a kept-alive"
        " connection is closed by its next answer (Envoy's max_connection_duration), for"
        " endpoints too slow to reach the request cap soon; 0: no limit.",
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
    "metrics": (METRICS_ENV, "true or false"),
    "tracing": (TRACING_ENV, "true or false"),
    "keepalive_requests": (KEEPALIVE_ENV, "a whole number of at least 0 (0: no limit)"),
    "keepalive_seconds": (KEEPALIVE_AGE_ENV, "a number of seconds of at least 0 (0: no limit)"),
}


def bentoml_config(settings: ServeSettings) -> dict[str, Any]:
    """The services' BentoML configuration (``@bentoml.service(**config)``) for ``settings``."""
    config: dict[str, Any] = {
        # this machine only unless asked: `bentoml serve ... --host 0.0.0.0` (or BENTOML_HOST)
        "http": {"host": "127.0.0.1"},
        "traffic": {"timeout": 30},
        "workers": settings.workers,
        "logging": {"access": {"enabled": settings.access_log}},
        "metrics": {"enabled": settings.metrics},
    }
    if not settings.tracing:
        # every URL excluded: the OpenTelemetry middleware hands each request straight on
        config["tracing"] = {"excluded_urls": [".*"]}
    return config


SETTINGS = ServeSettings.from_env()
_CONFIG = bentoml_config(SETTINGS)
# requests on their way to this worker process's batcher (see serving.batching.Arrivals)
ARRIVALS = Arrivals()
# with several workers, how many connections each holds (serving.connections): joined when a
# worker builds its service, so that importing this module (bentoml build) writes nothing
SHARES = WorkerShares.of_server() if SETTINGS.workers != 1 else None


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


def _json(body: Any, status: int = 200) -> Response:
    return Response(body, status_code=status, media_type="application/json")


async def _answer(batcher: MicroBatcher, payload: dict[str, Any]) -> Response:
    """The handler's answer, batched with concurrent requests, as JSON (NaN as null); a
    RequestError is 422 ``{"error", "field"}``, as :class:`JSONObjectBody` answers; anything
    else is logged and answered 500, as BentoML answers an API method that raises."""
    try:
        answer = await batcher({k: v for k, v in payload.items() if v is not None})
    except RequestError as error:
        return _json(json.dumps(error.body()), 422)
    except Exception:
        log.exception("a request failed")
        return _json(
            json.dumps({"error": "An unexpected error has occurred, see the server log"}), 500
        )
    return _json(to_json(answer))


def _service_batcher() -> MicroBatcher:
    """The batcher of this worker process's service instance."""
    return bentoml.get_current_service().batcher


def endpoint_app(
    endpoint: str, batcher: Callable[[], MicroBatcher] = _service_batcher
) -> Starlette:
    """``POST /<endpoint>`` as a one-route Starlette app, for a service to mount; it answers
    through ``batcher()``, by default the one of this worker's service instance.

    Behind the service's middlewares, the body reaches it checked by :class:`JSONObjectBody`: a
    JSON object of the endpoint's fields.
    """

    async def answer(request: Request) -> Response:
        return await _answer(batcher(), json.loads(await request.body()))

    return Starlette(routes=[Route(f"/{endpoint}", answer, methods=["POST"])])


class _Endpoint:
    """What the three services share: the handler, its batcher and ``/health``."""

    def __init__(self) -> None:
        self.handler = build_handler(bundle_path())
        self.batcher = MicroBatcher(self.handler.handle_many, arrivals=ARRIVALS)
        if SHARES is not None:
            SHARES.join()

    @bentoml.api
    async def health(self) -> dict[str, Any]:
        return {**self.handler.health(), "batching": self.batcher.stats()}


@bentoml.service(name="playbook-recommend", **_CONFIG)
@bentoml.asgi_app(endpoint_app("recommend"))
class RecommendService(_Endpoint):
    """``POST /recommend {user_id, k, context, as_of}``: the feed funnel."""


@bentoml.service(name="playbook-search", **_CONFIG)
@bentoml.asgi_app(endpoint_app("search"))
class SearchService(_Endpoint):
    """``POST /search {query, k, as_of}``: retrieval then learning-to-rank."""


@bentoml.service(name="playbook-score", **_CONFIG)
@bentoml.asgi_app(endpoint_app("score"))
class ScoreService(_Endpoint):
    """``POST /score {transaction}``: a classifier's calibrated probabilities, decision and
    reasons, or a regressor's prediction, interval and reasons (:mod:`serving.scoring`)."""


SERVICES = {"recommend": RecommendService, "search": SearchService, "score": ScoreService}
for _endpoint, _service in SERVICES.items():
    # the first added is the outermost of ours: a request counts as arriving before its body
    # is even read
    _service.add_asgi_middleware(ArrivalGate, arrivals=ARRIVALS, paths=(f"/{_endpoint}",))
    _service.add_asgi_middleware(
        KeepAliveLimit,
        limit=SETTINGS.keepalive_requests,
        max_age_s=SETTINGS.keepalive_seconds,
        shares=SHARES,
    )
    _service.add_asgi_middleware(
        JSONObjectBody,
        paths=(f"/{_endpoint}",),
        fields={f"/{_endpoint}": ENDPOINT_FIELDS[_endpoint]},
    )
