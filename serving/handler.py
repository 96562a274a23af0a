"""What every endpoint handler shares: experiment arms, online features, the request log, health.

A handler is a plain object (no BentoML, no Dagster) built from a loaded bundle; the BentoML
service, the bare-FastAPI benchmark app and the tests all call the same ``handle`` method, so what
is measured and tested is what is served.
"""

from __future__ import annotations

import gc
import time
from collections.abc import Hashable, Mapping, Sequence
from typing import Any

from runtime.bundle import Bundle
from runtime.online_features import OnlineFeatures
from runtime.request_log import RequestLog
from runtime.routing import Arm, assign
from serving.requests import RequestError

# (response, log extras): what a handler gives for one request it served
Served = tuple[dict[str, Any], dict[str, Any]]


def _held(bundle: Bundle) -> tuple[str, ...]:
    """The join keys of the YAML's ``serving.cached_entities``: their views are held in memory."""
    serving = bundle.spec.serving
    names = serving.cached_entities if serving is not None else []
    return tuple(bundle.spec.entities[name].key for name in names)


class Handler:
    """Base of the endpoint handlers; subclasses implement :meth:`parse` and :meth:`serve_parsed`."""

    endpoint = ""

    def __init__(
        self, bundle: Bundle, log: RequestLog | None = None, cached_keys: tuple[str, ...] = ()
    ) -> None:
        self.bundle = bundle
        self.spec = bundle.spec
        self.arms = bundle.manifest.arm_objects()
        self.salt = bundle.manifest.salt
        self.log = log
        self.features = OnlineFeatures(bundle.feature_repo, (*cached_keys, *_held(bundle)))
        self.counters = {"requests": 0, "cold_start": 0, "feature_misses": 0, "errors": 0}
        for model in bundle.models.values():
            for part in (model, *vars(model).values()):
                if hasattr(part, "predict_threads"):
                    part.predict_threads = 1  # one row or a few hundred: threads cost more

    def ready(self) -> None:
        """Load what the first request would, then take everything loaded out of the garbage
        collector's reach.

        A bundle and its item cache are millions of long-lived Python objects; every full
        collection walked them all, a 200 ms pause in the middle of some request (measured
        on the feed's 100K-item catalog). ``gc.freeze`` moves them to the permanent generation,
        so collections only see what requests allocate. Freezing is a choice for the whole process,
        right for a serving process: :func:`serving.service.build_handler` makes it, not
        ``__init__`` (a handler built inside a test or a Dagster run leaves the GC alone).
        """
        self.features.warm()
        gc.collect()
        gc.freeze()

    def arm_for(self, unit: Hashable) -> Arm:
        """The unit's experiment arm (the only arm when there is no experiment)."""
        return assign(self.salt, unit, self.arms) if len(self.arms) > 1 else self.arms[0]

    def model(self, arm: Arm, name: str) -> Any:
        return self.bundle.model(name, arm.versions[name])

    def parse(self, payload: Mapping[str, Any]) -> Any:
        """One request body as the subclass's request object; RequestError names what is wrong."""
        raise NotImplementedError

    def serve_parsed(self, requests: list[Any]) -> list[Served | RequestError]:
        """Per parsed request, in order: (response, log extras with ``unit``, ``features``,
        ``scores``, ``misses``), or the RequestError of one that cannot be served.

        Subclasses answer the batch with one feature read and one model call per model version,
        which is what makes serving concurrent requests together (:mod:`serving.batching`)
        cheaper than one at a time.
        """
        raise NotImplementedError

    def serve_many(self, payloads: Sequence[Mapping[str, Any]]) -> list[Served | RequestError]:
        """:meth:`serve_parsed` of the payloads that parse; a bad one's entry is its error,
        and leaves the others served."""
        errors: dict[int, RequestError] = {}
        parsed = []
        for position, payload in enumerate(payloads):
            try:
                parsed.append(self.parse(payload))
            except RequestError as error:
                errors[position] = error
        served = iter(self.serve_parsed(parsed) if parsed else [])
        return [errors[p] if p in errors else next(served) for p in range(len(payloads))]

    def handle_many(self, payloads: Sequence[Mapping[str, Any]]) -> list[dict | RequestError]:
        """Serve a batch and log each request; a bad request's entry is its error."""
        started = time.perf_counter()
        try:
            results = self.serve_many(payloads)
        except Exception as error:
            if len(payloads) == 1:  # the batcher retries a failed batch one request at a time
                self._log_failure(payloads[0], error, started)
            raise
        latency_ms = (time.perf_counter() - started) * 1000
        answers: list[dict | RequestError] = []
        for payload, result in zip(payloads, results, strict=True):
            if isinstance(result, RequestError):
                answers.append(result)
                continue
            response, extras = result
            self.counters["requests"] += 1
            self.counters["cold_start"] += int(bool(response.get("cold_start")))
            self.counters["feature_misses"] += extras["misses"]
            if self.log is not None:
                self.log.write(
                    endpoint=self.endpoint,
                    unit=extras["unit"],
                    arm=response.get("arm"),
                    request=payload,
                    model_versions=response.get("model_versions", {}),
                    features=extras["features"],
                    scores=extras["scores"],
                    response=response,
                    feature_misses=extras["misses"],
                    latency_ms=latency_ms,
                )
            answers.append(response)
        return answers

    def _log_failure(self, payload: Mapping[str, Any], error: Exception, started: float) -> None:
        """Log a request the service failed to answer, with its unit and arm, so an
        experiment's ``error_rate`` guardrail sees which arm failed it. A batch that fails is
        retried one request at a time (:class:`serving.batching.MicroBatcher`): only a request
        that fails alone is logged as failed, and one arm's failures stay its own."""
        self.counters["errors"] += 1
        if self.log is None:
            return
        try:
            request = self.parse(payload)  # it parsed inside serve_many, before the failure
        except Exception:  # the failure was in parsing after all: no unit, no arm to blame
            return
        self.log.write(
            endpoint=self.endpoint,
            unit=request.unit,
            arm=request.arm.name,
            request=payload,
            model_versions=request.arm.versions,
            features={},
            scores={},
            response={},
            feature_misses=0,
            latency_ms=(time.perf_counter() - started) * 1000,
            error=type(error).__name__,
        )

    def handle(self, payload: Mapping[str, Any]) -> dict[str, Any]:
        """Serve one request and log it; :class:`serving.requests.RequestError` on bad input."""
        (answer,) = self.handle_many([payload])
        if isinstance(answer, RequestError):
            raise answer
        return answer

    def health(self) -> dict[str, Any]:
        """Loaded versions per arm and the serving counters."""
        manifest = self.bundle.manifest
        return {
            "status": "ok",
            "use_case": manifest.use_case,
            "endpoint": self.endpoint,
            "bundle_created_at": manifest.created_at,
            "arms": [
                {"name": a.name, "weight": a.weight, "versions": a.versions} for a in self.arms
            ],
            "registered_models": manifest.registered,
            "feature_store": self.features.available,
            "counters": dict(self.counters),
        }
