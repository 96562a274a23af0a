"""The served classifier (fraud ``/score``): calibrated probability, decision band, reasons.

The transaction names its entities (``card_id``, ``merchant_id``...); their online features are
read as of the transaction's time (default now), request-time columns the model uses are taken
from the transaction itself, and the calibrated model answers with P(positive), the
approve / review / decline band chosen on validation data, and the features that pushed the
score most (LightGBM's ``pred_contrib``: per-feature SHAP values in log-odds), for the reviewer.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from serving.bundle import Bundle
from serving.handler import Handler
from serving.models.features import feature_array
from serving.request_log import RequestLog
from serving.requests import RequestError, entity_value, mapping, moment

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
        self.unit = spec.experiment.unit if spec.experiment else next(iter(self.keys), None)

    def serve(self, payload: Mapping[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
        body = mapping("body", payload, required=True)
        unknown = sorted(set(body) - {"transaction"})
        if unknown:
            raise RequestError(unknown[0], "unknown field; expected 'transaction'")
        transaction = mapping("transaction", body.get("transaction"), required=True)
        keys = {
            key: entity_value(f"transaction.{key}", transaction.get(key), dtype)
            for key, dtype in self.keys.items()
        }
        timestamp = self.spec.events.timestamp
        as_of = moment(f"transaction.{timestamp}", transaction.get(timestamp))
        unit = transaction.get(self.unit) if self.unit else None
        arm = self.arm_for(unit)
        model = self.model(arm, self.scorer)
        row, misses = self.features.read_row(self.scorer, keys, as_of)
        for column in self.request_columns:
            row[column] = transaction.get(column)
        for column in model.feature_columns:
            row.setdefault(column, None)
        columns = list(model.feature_columns)
        try:
            matrix = feature_array(row, columns, model.categories)
        except ValueError as error:  # e.g. a text where a number belongs
            raise RequestError("transaction", str(error)) from error
        # one pass over the trees: SHAP contributions plus the expected value (the last column)
        # add up to the raw margin, so the margin needs no second predict call
        explained = model.booster.predict(
            matrix, num_iteration=model.best_iteration, pred_contrib=True, num_threads=1
        )[0]
        contributions, margin = explained[:-1], np.array([explained.sum()])
        probability = float(model.calibrator.transform(margin)[0])
        top = np.argsort(-np.abs(contributions), kind="stable")[:TOP_CONTRIBUTIONS]
        reasons = [
            {
                "feature": columns[i],
                "value": _plain(row[columns[i]]),
                "contribution": float(contributions[i]),
            }
            for i in top
        ]
        decision = str(model.bands.apply_bands([probability])[0]) if model.bands else None
        response = {
            "probability": probability,
            "decision": decision,
            "top_features": reasons,
            "arm": arm.name,
            "model_versions": {self.scorer: arm.versions[self.scorer]},
            "feature_misses": misses,
        }
        extras = {
            "unit": unit,
            "features": {c: row[c] for c in columns},
            "scores": {"probability": probability, "margin": float(margin[0])},
            "misses": misses,
        }
        return response, extras


def _plain(value: Any) -> Any:
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and np.isnan(value):
        return None
    return value
