"""The served classifier (fraud ``/score``): calibrated probability, decision band, reasons.

The transaction names its entities (``card_id``, ``merchant_id``...); their online features are
read as of the transaction's time (default now), request-time columns the model uses are taken
from the transaction itself, request-time features (``features.<view>.request``: ``log1p(amount)``,
``ratio(amount, card_velocity__amount_mean_30d)``...) are computed from its fields and the online
features by :mod:`runtime.request_features`, as the training set computed them from the event
row (its time: the transaction's, else the time of the request), and the calibrated model answers with P(positive), the
approve / review / decline band chosen on validation data, and the features that pushed the
score most (LightGBM's ``pred_contrib``: per-feature SHAP values in log-odds), for the reviewer.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from configs.schema.request_checks import event_inputs, request_features
from runtime.bundle import Bundle
from runtime.models.features import feature_array
from runtime.request_features import add_to_rows
from runtime.request_log import RequestLog, plain_json_value
from runtime.routing import Arm
from serving.handler import Handler, Served
from serving.request_schemas import score_schema
from serving.requests import RequestError, now

TOP_CONTRIBUTIONS = 5


class ScoreHandler(Handler):
    """``/score``: one calibrated binary classifier."""

    endpoint = "score"

    def __init__(self, bundle: Bundle, log: RequestLog | None = None) -> None:
        super().__init__(bundle, log)
        spec = bundle.spec
        scorers = [m for m, s in spec.model.items() if s.problem == "binary_classification"]
        if not scorers:
            raise ValueError(f"{spec.name}: /score needs a binary_classification model")
        self.scorer = scorers[0]
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

    def parse(self, payload: Mapping[str, Any]) -> Request:
        """The request as the transaction schema built from the spec's events columns
        (:func:`serving.request_schemas.score_schema`): keys in int64, finite numbers, times
        in range, no unknown fields; the first problem is a RequestError naming its field."""
        transaction = self.schema.validate(payload)["transaction"]
        keys = {key: transaction[key] for key in self.keys}
        as_of = transaction.get(self.timestamp)
        if as_of is None:
            as_of = now()
        unit = transaction.get(self.unit) if self.unit else None
        return Request(transaction, keys, as_of, unit, self.arm_for(unit))

    def serve_parsed(self, requests: list[Request]) -> list[Served | RequestError]:
        """One feature-store read for the batch and one pass over the trees per model version."""
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
            chosen = [i for i, v in enumerate(versions) if v == version]
            explained = self._explain(model, [requests[i].row for i in chosen])
            for i, outcome in zip(chosen, explained, strict=True):
                results[i] = (
                    outcome
                    if isinstance(outcome, RequestError)
                    else self._answer(model, requests[i], *outcome)
                )
        return [results[i] for i in range(len(requests))]

    def _explain(
        self, model: Any, rows: list[dict[str, Any]]
    ) -> list[tuple[np.ndarray, float] | RequestError]:
        """Per row (SHAP contributions, raw margin), or the error of a row that is not numbers.

        One ``pred_contrib`` pass: the contributions plus the expected value (the last column)
        add up to the raw margin, so the margin needs no second call over the trees.
        """
        columns = list(model.feature_columns)
        for row in rows:
            for column in columns:
                row.setdefault(column, None)
        try:
            matrix = feature_array(
                {c: [r[c] for r in rows] for c in columns}, columns, model.categories
            )
        except ValueError as error:  # e.g. a text where a number belongs: find which rows
            if len(rows) == 1:
                return [RequestError("transaction", str(error))]
            return [self._explain(model, [row])[0] for row in rows]
        explained = model.booster.predict(
            matrix, num_iteration=model.best_iteration, pred_contrib=True, num_threads=1
        )
        return [(values[:-1], float(values.sum())) for values in explained]

    def _answer(
        self, model: Any, request: Request, contributions: np.ndarray, margin: float
    ) -> Served:
        columns = list(model.feature_columns)
        row = request.row
        probability = float(model.calibrator.transform(np.array([margin]))[0])
        top = np.argsort(-np.abs(contributions), kind="stable")[:TOP_CONTRIBUTIONS]
        reasons = [
            {
                "feature": columns[i],
                "value": plain_json_value(row[columns[i]]),
                "contribution": float(contributions[i]),
            }
            for i in top
        ]
        decision = str(model.bands.apply_bands([probability])[0]) if model.bands else None
        arm = request.arm
        response = {
            "probability": probability,
            "decision": decision,
            "top_features": reasons,
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
    row: dict[str, Any] = field(default_factory=dict)
    misses: int = 0
