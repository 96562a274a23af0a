"""The served classifier (``/score``): calibrated probabilities, the decision, reasons.

The transaction names its entities (``card_id``, ``merchant_id``...); their online features are
read as of the transaction's time (default now), request-time columns the model uses are taken
from the transaction itself, request-time features (``features.<view>.request``: ``log1p(amount)``,
``ratio(amount, card_velocity__amount_mean_30d)``...) are computed from its fields and the online
features by :mod:`runtime.request_features`, as the training set computed them from the event
row (its time: the transaction's, else the time of the request), and the calibrated model answers with P(positive), the
approve / review / decline band chosen on validation data, and the features that pushed the
score most (LightGBM's ``pred_contrib``: per-feature SHAP values in log-odds), for the reviewer.

Which answers carry those reasons is the YAML's ``serving.reasons``: ``always``; ``flagged``, the
answers whose decision is not the benign one (approve; a multiclass scorer's first class); or
``on_request``; and any request with ``"explain": true``. The others answer ``top_features: []``.
Why: the SHAP pass is most of a request's model time (measured on the fraud scorer, 97 trees:
``pred_contrib`` 1.46 ms a row against 0.09 ms for the margin alone), and reasons are read where a
person or a notice acts on the decision, not on the approvals that are most of the traffic.

A multiclass classifier (moderation) is served by the same endpoint with the same request: the
answer holds every class's calibrated probability, the top class, and the decision, which is the
top class, or ``review`` when its probability is below the model's ``review_below`` (the human
review band); the reasons are the contributions to the top class's margin.

A regressor (pricing's delivery minutes) is served the same way too: the answer holds the point
``prediction`` and, when the model was trained with an interval (``regression.interval``), its
``lower`` and ``upper`` bounds (both null when it was not: the keys stay, so a client reads one
shape), with the features that moved the prediction most (SHAP values in the label's unit). The
request log's ``scores`` hold the prediction and the bounds.

Which model answers: the first model of the YAML whose problem is one of
:data:`configs.schema.request_checks.SERVED_PROBLEMS`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from configs.schema.request_checks import SERVED_PROBLEMS, event_inputs, request_features
from runtime.bundle import Bundle
from runtime.models.features import feature_array
from runtime.request_features import add_to_rows
from runtime.request_log import RequestLog, plain_json_value
from runtime.routing import Arm
from serving.handler import Handler, Served
from serving.request_schemas import score_schema
from serving.requests import RequestError, now

TOP_CONTRIBUTIONS = 5
# the binary decision band that gets no reasons under serving.reasons: flagged
BENIGN_DECISION = "approve"


class ScoreHandler(Handler):
    """``/score``: one calibrated classifier (binary or multiclass), or one regressor."""

    endpoint = "score"

    def __init__(self, bundle: Bundle, log: RequestLog | None = None) -> None:
        super().__init__(bundle, log)
        spec = bundle.spec
        scorers = [m for m, s in spec.model.items() if s.problem in SERVED_PROBLEMS]
        if not scorers:
            raise ValueError(f"{spec.name}: /score needs a {' or '.join(SERVED_PROBLEMS)} model")
        self.scorer = scorers[0]
        self.multiclass = spec.model[self.scorer].problem == "multiclass_classification"
        self.regression = spec.model[self.scorer].problem == "regression"
        keys = {e.key: e.dtype for e in spec.entities.values()}
        sample = self.model(self.arms[0], self.scorer)
        # join keys the scorer's features need, then every events column the model reads as is
        self.keys = {k: d for k, d in keys.items() if k in spec.events.columns}
        self.request_columns = [c for c in spec.events.columns if c in sample.feature_columns]
        # request features of any served version of the scorer (arms may serve several)
        served_columns = {
            column
            for (model, _), obj in bundle.models.items()
            if model == self.scorer
            for column in obj.feature_columns
        }
        self.request_features = [f for f in request_features(spec) if f.column in served_columns]
        self.request_inputs = event_inputs(spec, self.request_features)
        self.unit = spec.experiment.unit if spec.experiment else next(iter(self.keys), None)
        self.schema = score_schema(spec, self.keys)
        self.timestamp = spec.events.timestamp
        self.reasons = spec.serving.reasons if spec.serving is not None else "always"

    def parse(self, payload: Mapping[str, Any]) -> Request:
        """The request as the transaction schema built from the spec's events columns
        (:func:`serving.request_schemas.score_schema`): keys in int64, finite numbers, times
        in range, no unknown fields; the first problem is a RequestError naming its field."""
        body = self.schema.validate(payload)
        transaction = body["transaction"]
        keys = {key: transaction[key] for key in self.keys}
        as_of = transaction.get(self.timestamp)
        if as_of is None:
            as_of = now()
        unit = transaction.get(self.unit) if self.unit else None
        explain = bool(body.get("explain"))
        return Request(transaction, keys, as_of, unit, self.arm_for(unit), explain)

    def serve_parsed(self, requests: list[Request]) -> list[Served | RequestError]:
        """One feature-store read for the batch and one pass over the trees per model version,
        plus a SHAP pass over the rows whose answers carry reasons (:meth:`_wants_reasons`)."""
        keys = {key: [r.keys[key] for r in requests] for key in self.keys}
        rows, misses = self.features.read_rows(self.scorer, keys, [r.as_of for r in requests])
        for request, row, missed in zip(requests, rows, misses, strict=True):
            request.row, request.misses = row, missed
            for column in self.request_columns:
                row[column] = request.transaction.get(column)
            for column in self.request_inputs:  # the event row's fields, as in training
                row[column] = request.transaction.get(column)
            if self.timestamp in self.request_inputs:
                row[self.timestamp] = request.as_of
        add_to_rows(rows, self.request_features)
        results: dict[int, Served | RequestError] = {}
        versions = [r.arm.versions[self.scorer] for r in requests]
        for version in dict.fromkeys(versions):
            model = self.bundle.model(self.scorer, version)
            chosen = [requests[i] for i, v in enumerate(versions) if v == version]
            served = self._serve_version(model, chosen)
            for i, outcome in zip(
                (i for i, v in enumerate(versions) if v == version), served, strict=True
            ):
                results[i] = outcome
        return [results[i] for i in range(len(requests))]

    def _serve_version(self, model: Any, requests: list[Request]) -> list[Served | RequestError]:
        """The answers of one model version: predictions for every row first, then the SHAP
        reasons of the answers that carry them, in one ``pred_contrib`` pass over those rows."""
        columns = list(model.feature_columns)
        for request in requests:
            for column in columns:
                request.row.setdefault(column, None)
        try:
            matrix = feature_array(
                {c: [r.row[c] for r in requests] for c in columns}, columns, model.categories
            )
        except ValueError as error:  # e.g. a text where a number belongs: find which rows
            if len(requests) == 1:
                return [RequestError("transaction", str(error))]
            return [self._serve_version(model, [request])[0] for request in requests]
        answers = [
            self._answer(model, request, said)
            for request, said in zip(requests, self._predict(model, matrix), strict=True)
        ]
        explained = [
            i for i, (a, _) in enumerate(answers) if self._wants_reasons(model, requests[i], a)
        ]
        if explained:
            contributions = self._contributions(model, matrix[explained])
            for i, values in zip(explained, contributions, strict=True):
                response = answers[i][0]
                if self.multiclass:
                    values = values[model.classes.index(response["top_class"])]
                response["top_features"] = self._reasons(columns, requests[i].row, values)
        return list(answers)

    def _predict(self, model: Any, matrix: np.ndarray) -> list[Any]:
        """Per row what the model says: a binary scorer's (raw margin, calibrated probability,
        decision band or None without bands), a multiclass scorer's margins per class, or a
        regressor's (prediction, lower, upper), the bounds None without an interval. A
        regressor's prediction is its own ``predict`` (the objective's link applied, as the
        registered model answers) and its bounds its quantile models'."""
        if self.regression:
            predictions = model.predict(matrix)
            lower, upper = (
                model.predict_interval(matrix)
                if model.has_interval
                else ([None] * len(matrix),) * 2
            )
            return list(zip(predictions, lower, upper, strict=True))
        margins = model.booster.predict(
            matrix, num_iteration=model.best_iteration, raw_score=True, num_threads=1
        )
        if self.multiclass:
            return list(np.asarray(margins).reshape(len(matrix), -1))
        # calibrated and banded for the whole batch at once: both work value by value, and a
        # numpy call per request cost more than the values
        margins = np.asarray(margins, dtype=float)
        probabilities = model.calibrator.transform(margins).tolist()
        decisions = (
            model.bands.apply_bands(probabilities).tolist()
            if model.bands
            else [None] * len(probabilities)
        )
        return list(zip(margins.tolist(), probabilities, decisions, strict=True))

    def _contributions(self, model: Any, matrix: np.ndarray) -> np.ndarray:
        """Per row the features' SHAP values (LightGBM's ``pred_contrib``, the expected value
        dropped): ``[features]``, or ``[classes, features]`` for a multiclass model."""
        values = np.asarray(
            model.booster.predict(
                matrix, num_iteration=model.best_iteration, pred_contrib=True, num_threads=1
            )
        )
        if self.multiclass:
            return values.reshape(len(matrix), -1, len(model.feature_columns) + 1)[:, :, :-1]
        return values[:, :-1]

    def _wants_reasons(self, model: Any, request: Request, response: dict[str, Any]) -> bool:
        """Whether the answer carries its reasons: asked for (``explain: true``), or by the
        YAML's ``serving.reasons``; ``flagged`` spares the benign decision (a binary scorer's
        approve, a multiclass scorer's first class), which most traffic gets."""
        if request.explain or self.reasons == "always":
            return True
        if self.reasons == "on_request":
            return False
        decision = response.get("decision")
        if self.multiclass:
            return decision != model.classes[0]
        return decision is None or decision != BENIGN_DECISION

    def _reasons(self, columns: list[str], row: dict[str, Any], contributions: np.ndarray):
        top = np.argsort(-np.abs(contributions), kind="stable")[:TOP_CONTRIBUTIONS]
        return [
            {
                "feature": columns[i],
                "value": plain_json_value(row[columns[i]]),
                "contribution": float(contributions[i]),
            }
            for i in top
        ]

    def _answer_classes(self, model: Any, request: Request, margins: np.ndarray) -> Served:
        """A multiclass answer: every class's probability, the top class, the decision."""
        columns = list(model.feature_columns)
        probabilities = model.calibration.transform(margins[None, :])
        (top,), (decision,) = model.decide(probabilities)
        by_class = {name: float(p) for name, p in zip(model.classes, probabilities[0], strict=True)}
        arm = request.arm
        response = {
            "probabilities": by_class,
            "top_class": model.classes[top],
            "probability": by_class[model.classes[top]],
            "decision": str(decision),
            "review_below": model.review_below,
            "top_features": [],
            "arm": arm.name,
            "model_versions": {self.scorer: arm.versions[self.scorer]},
            "feature_misses": request.misses,
        }
        extras = {
            "unit": request.unit,
            "features": {c: request.row[c] for c in columns},
            "scores": {
                "probability": response["probability"],
                "probabilities": by_class,
                "margins": [float(m) for m in margins],
            },
            "misses": request.misses,
        }
        return response, extras

    def _answer_value(self, model: Any, request: Request, said: tuple) -> Served:
        """A regressor's answer: the prediction, its interval's bounds (null without one)."""
        columns = list(model.feature_columns)
        prediction, lower, upper = (None if v is None else float(v) for v in said)
        arm = request.arm
        scores = {"prediction": prediction, "lower": lower, "upper": upper}
        response = {
            **scores,
            "top_features": [],
            "arm": arm.name,
            "model_versions": {self.scorer: arm.versions[self.scorer]},
            "feature_misses": request.misses,
        }
        extras = {
            "unit": request.unit,
            "features": {c: request.row[c] for c in columns},
            "scores": scores,
            "misses": request.misses,
        }
        return response, extras

    def _answer(self, model: Any, request: Request, said: Any) -> Served:
        """The answer without its reasons (``top_features`` empty: :meth:`_serve_version` fills
        them in for the answers that carry them) and the request log's extras."""
        if self.multiclass:
            return self._answer_classes(model, request, said)
        if self.regression:
            return self._answer_value(model, request, said)
        margin, probability, decision = said
        columns = list(model.feature_columns)
        row = request.row
        arm = request.arm
        response = {
            "probability": probability,
            "decision": decision,
            "top_features": [],
            "arm": arm.name,
            "model_versions": {self.scorer: arm.versions[self.scorer]},
            "feature_misses": request.misses,
        }
        extras = {
            "unit": request.unit,
            "features": {c: row[c] for c in columns},
            "scores": {"probability": probability, "margin": margin},
            "misses": request.misses,
        }
        return response, extras


@dataclass
class Request:
    """One parsed ``/score`` request, and its features once read."""

    transaction: dict[str, Any]
    keys: dict[str, Any]
    as_of: pd.Timestamp
    unit: Any
    arm: Arm
    explain: bool = False  # the body's explain: reasons whatever serving.reasons says
    row: dict[str, Any] = field(default_factory=dict)
    misses: int = 0
