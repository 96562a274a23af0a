"""Delayed-label performance: served predictions joined with the labels that arrived since.

Plain functions, no Dagster: ``performance_assets`` wires them to the request log, the raw
events and metadata.

What is tracked: classifier endpoints only (``serving.endpoint: score`` with a
``binary_classification`` model, e.g. fraud). Each logged request of that endpoint is one
prediction: the model version that served it, its score (``scores.probability``) and its
decision (``response.decision``). A ranking endpoint (feed ``/recommend``, search) logs a slate,
not one prediction per labelled event: ``session_clicks`` turns its served items into
predictions labelled by clicks within the session, in the frame shape used here.

The join, as of a moment ``as_of``:

* the key is the events column declared ``unique: true`` (fraud: ``transaction_id``), read from
  the logged request, at its top level or one mapping down (``{"transaction": {...}}``); a
  request without it is counted as ``unkeyed``, one whose key is not in the events (yet) as
  ``unmatched``;
* the label is the model's first label (``labels.<name>.column``); it is known once its
  ``available_at`` column is at or before ``as_of`` (a label without ``available_at`` is known
  at the event time plus its ``maturity``). The label's row must carry that moment for negatives
  too (fraud: ``label_time`` of a legitimate transaction is when no chargeback is expected any
  more). A prediction whose label is not known yet is ``pending``: counted, never scored as a
  negative, since most of them would be positives that have not arrived yet.

The metrics, per model version and per day of the prediction (``logged_at``, UTC):

* ``labelled``, ``positives``; ``predicted_positive``, ``precision`` and ``recall`` of the served
  decision, where ``decline`` and ``review`` count as predicting a positive (both stop the
  transaction for a look) and ``approve`` as a negative, or of ``score >= threshold`` when a
  threshold is given; rows without a decision (a model without bands) are left out of these;
* ``auc`` (ROC) and ``pr_auc`` (average precision) of the scores, by scikit-learn.

A metric that is undefined (one class only, no predicted positive) is None in the returned
mappings and a null (``pd.NA``, nullable ``Float64``) in the tables, never NaN.

The log is read through :func:`runtime.request_log.load_request_log` with
:func:`prediction_needs`: a row whose score is not a number, whose key overflows int64 or whose
JSON is broken is skipped and counted there, so what reaches these functions is typed.
"""

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from sklearn.metrics import average_precision_score, roc_auc_score

from configs.schema.base import parse_duration
from configs.schema.usecase import UseCaseSpec
from runtime.request_log_rules import Need, request_field

CLASSIFIER_ENDPOINT = "score"
POSITIVE_DECISIONS = ("decline", "review")
METRICS = ("precision", "recall", "auc", "pr_auc")
COUNTS = ("predictions", "labelled", "pending", "unmatched", "positives", "predicted_positive")
TABLE_COLUMNS = ("version", "day", *COUNTS, *METRICS)
# the joined frame: one row per logged prediction
JOINED_COLUMNS = ("logged_at", "day", "version", "key", "score", "decision", "status", "label")
LABELLED, PENDING, UNMATCHED = "labelled", "pending", "unmatched"


@dataclass(frozen=True)
class ClassifierTarget:
    """Where a use case's served classifier and its delayed label live."""

    model: str  # the model section's name (``scorer``)
    label: str  # the events column of the label (``is_fraud``)
    available_at: str | None  # the events column of when it became known (``label_time``)
    maturity: pd.Timedelta  # when there is no available_at: known this long after the event
    key: str  # the events column declared unique (``transaction_id``)
    timestamp: str | None  # the events' time column
    endpoint: str = CLASSIFIER_ENDPOINT

    @property
    def event_columns(self) -> list[str]:
        """The events columns the label join reads (the asset reads only these)."""
        return list(
            dict.fromkeys(c for c in (self.key, self.label, self.available_at, self.timestamp) if c)
        )


@dataclass(frozen=True)
class JoinedPredictions:
    """Logged predictions with their labels as known at ``as_of``.

    ``frame`` has :data:`JOINED_COLUMNS`; ``status`` is ``labelled``, ``pending`` or
    ``unmatched`` and ``label`` is null unless labelled. ``unkeyed`` counts logged requests of
    the endpoint that carried no key (they cannot be joined at all).
    """

    frame: pd.DataFrame
    as_of: pd.Timestamp
    unkeyed: int

    def count(self, status: str) -> int:
        return int((self.frame["status"] == status).sum())


def classifier_target(spec: UseCaseSpec) -> ClassifierTarget | None:
    """The served classifier of ``spec``, or None when its endpoint is not a classifier's.

    Raises ``ValueError`` naming the config field when the events declare no unique column: the
    logged prediction could not be tied to its label.
    """
    if spec.serving is None or spec.serving.endpoint != CLASSIFIER_ENDPOINT:
        return None
    models = [m for m, s in spec.model.items() if s.problem == "binary_classification"]
    if not models:
        return None
    model = models[0]  # the one /score serves (serving.scoring.ScoreHandler)
    label = spec.labels[spec.model[model].labels[0]]
    keys = [c for c, column in spec.events.columns.items() if column.unique]
    if not keys:
        raise ValueError(
            f"{spec.name}: events.columns: no column has 'unique: true'; delayed-label tracking"
            " joins each logged request to its event by that column (e.g. transaction_id)"
        )
    return ClassifierTarget(
        model=model,
        label=label.column,
        available_at=label.available_at,
        maturity=pd.Timedelta(parse_duration(label.maturity)),
        key=keys[0],
        timestamp=spec.events.timestamp,
    )


def prediction_needs(target: ClassifierTarget) -> tuple[Need, ...]:
    """What :func:`logged_predictions` reads from each logged row of the endpoint: the score (a
    number, required), the decision (a text) and the serving version (an id). The key's type is
    the events column's, checked for every request field of that name."""
    return (
        Need(("scores", "probability"), "float", required=True),
        Need(("response", "decision"), "string"),
        Need(("model_versions", target.model), "id"),
    )


def logged_predictions(log: pd.DataFrame, target: ClassifierTarget) -> pd.DataFrame:
    """One row per logged request of the classifier endpoint: time, version, key, score,
    decision (columns ``logged_at``, ``day``, ``version``, ``key``, ``score``, ``decision``)."""
    columns = ["logged_at", "day", "version", "key", "score", "decision"]
    if log.empty:
        return pd.DataFrame({c: pd.Series(dtype=object) for c in columns})
    rows = log[log["endpoint"] == target.endpoint]
    logged_at = pd.to_datetime(rows["logged_at"], unit="s")  # unix seconds -> naive UTC
    frame = pd.DataFrame(
        {
            "logged_at": logged_at.to_numpy(),
            "day": logged_at.dt.floor("D").to_numpy(),
            "version": [str((v or {}).get(target.model, "")) or None for v in rows.model_versions],
            "key": [request_field(r, target.key) for r in rows["request"]],
            "score": [_probability(s) for s in rows["scores"]],
            "decision": [(r or {}).get("decision") for r in rows["response"]],
        }
    )
    return frame


def _probability(scores: Any) -> float:
    value = scores.get("probability") if isinstance(scores, Mapping) else None
    return math.nan if value is None else float(value)


def _same_dtype(keys: pd.Series, like: pd.Series) -> pd.Series:
    """Request keys (JSON: int or text) in the events key's type; unparseable ones null."""
    if pd.api.types.is_integer_dtype(like):
        numbers = pd.to_numeric(keys, errors="coerce").astype("Float64")
        return numbers.where(numbers.round() == numbers).astype("Int64")
    if pd.api.types.is_float_dtype(like):
        return pd.to_numeric(keys, errors="coerce").astype("Float64")
    return keys.map(lambda v: None if v is None else str(v)).astype(object)


def join_labels(
    predictions: pd.DataFrame,
    events: pd.DataFrame,
    target: ClassifierTarget,
    as_of: pd.Timestamp,
) -> JoinedPredictions:
    """Each prediction with its label as known at ``as_of`` (see the module docstring)."""
    as_of = pd.Timestamp(as_of)
    keyed = predictions[predictions["key"].notna()].reset_index(drop=True)
    table = events[target.event_columns].drop_duplicates(target.key, keep="last")
    if target.available_at:
        known_at = pd.to_datetime(table[target.available_at])
    elif target.timestamp:
        known_at = pd.to_datetime(table[target.timestamp]) + target.maturity
    else:  # no time at all: a label is known as soon as its row is there
        known_at = pd.Series(True, index=table.index)
    known = known_at if known_at.dtype == bool else known_at.notna() & (known_at <= as_of)
    lookup = pd.DataFrame(
        {
            "_key": _same_dtype(table[target.key], table[target.key]).to_numpy(),
            "_label": table[target.label].to_numpy(),
            "_known": (known & table[target.label].notna()).to_numpy(),
        }
    )
    keys = _same_dtype(keyed["key"], table[target.key]).rename("_key")
    joined = pd.concat([keyed, keys], axis=1).merge(lookup, on="_key", how="left", indicator=True)
    known = joined["_known"].astype("boolean").fillna(False).to_numpy(dtype=bool)
    status = np.where(joined["_merge"] == "left_only", UNMATCHED, PENDING)
    status = np.where(known, LABELLED, status)
    label = pd.to_numeric(joined["_label"]).astype("Float64").where(known).astype("Int64")
    frame = joined.assign(status=status, label=label)[list(JOINED_COLUMNS)]
    return JoinedPredictions(frame, as_of, len(predictions) - len(keyed))


def _fraction(numerator: int, denominator: int) -> float | None:
    return numerator / denominator if denominator else None


def classification_metrics(
    labels: Iterable[int],
    scores: Iterable[float],
    predicted: Iterable[float] | None = None,
) -> dict[str, float | int | None]:
    """Counts and metrics of labelled predictions; undefined metrics are None.

    ``predicted`` holds 1/0 for a predicted positive/negative and NaN where no decision is known
    (those rows are left out of precision and recall); omitted, precision and recall are None.
    """
    y = np.asarray(list(labels), dtype=float)
    s = np.asarray(list(scores), dtype=float)
    positives = int((y == 1).sum())
    both = 0 < positives < len(y) and not np.isnan(s).any()
    result: dict[str, float | int | None] = {
        "labelled": len(y),
        "positives": positives,
        "auc": float(roc_auc_score(y, s)) if both else None,
        "pr_auc": float(average_precision_score(y, s)) if both else None,
        "predicted_positive": 0,
        "precision": None,
        "recall": None,
    }
    if predicted is not None:
        p = np.asarray(list(predicted), dtype=float)
        decided = ~np.isnan(p)
        yd, pd_ = y[decided], p[decided] == 1
        true_positives = int(((yd == 1) & pd_).sum())
        result["predicted_positive"] = int(pd_.sum())
        result["precision"] = _fraction(true_positives, int(pd_.sum()))
        result["recall"] = _fraction(true_positives, int((yd == 1).sum()))
    return result


def predicted_positive(frame: pd.DataFrame, threshold: float | None = None) -> pd.Series:
    """1.0 / 0.0 per prediction (NaN where unknown): the served decision, or ``score >=
    threshold`` when a threshold is given."""
    if threshold is not None:
        return (frame["score"] >= threshold).astype(float).where(frame["score"].notna())
    decided = frame["decision"].notna()
    return frame["decision"].isin(POSITIVE_DECISIONS).astype(float).where(decided)


def _group_row(group: pd.DataFrame, threshold: float | None) -> dict[str, Any]:
    labelled = group[group["status"] == LABELLED]
    metrics = classification_metrics(
        labelled["label"].astype(int), labelled["score"], predicted_positive(labelled, threshold)
    )
    return {
        "predictions": len(group),
        "pending": int((group["status"] == PENDING).sum()),
        "unmatched": int((group["status"] == UNMATCHED).sum()),
        **metrics,
    }


def _table(rows: list[dict[str, Any]], columns: tuple[str, ...]) -> pd.DataFrame:
    frame = pd.DataFrame(rows, columns=list(columns))
    for column in COUNTS:
        frame[column] = frame[column].astype("int64")
    for column in METRICS:
        frame[column] = pd.array(
            [pd.NA if v is None else float(v) for v in frame[column]], dtype="Float64"
        )
    return frame


def _version_order(version: Any) -> tuple[int, str]:
    text = str(version)
    return (int(text), text) if text.isdigit() else (10**9, text)


def performance_table(joined: JoinedPredictions, threshold: float | None = None) -> pd.DataFrame:
    """One row per (model version, day of the prediction) with :data:`TABLE_COLUMNS`."""
    frame = joined.frame[joined.frame["version"].notna()]
    rows = [
        {"version": version, "day": day, **_group_row(group, threshold)}
        for (version, day), group in frame.groupby(["version", "day"], sort=False)
    ]
    table = _table(rows, TABLE_COLUMNS)
    order = sorted(
        table.index, key=lambda i: (_version_order(table.at[i, "version"]), table.at[i, "day"])
    )
    table = table.loc[order].reset_index(drop=True)
    table["day"] = pd.to_datetime(table["day"])
    return table


def version_summary(joined: JoinedPredictions, threshold: float | None = None) -> pd.DataFrame:
    """One row per model version over every day: the numbers the rollback rule compares."""
    frame = joined.frame[joined.frame["version"].notna()]
    rows = [
        {"version": version, **_group_row(group, threshold)}
        for version, group in frame.groupby("version", sort=False)
    ]
    columns = tuple(c for c in TABLE_COLUMNS if c != "day")
    table = _table(rows, columns)
    order = sorted(table.index, key=lambda i: _version_order(table.at[i, "version"]))
    return table.loc[order].reset_index(drop=True)


def summary_of(summary: pd.DataFrame, version: str | None) -> dict[str, Any] | None:
    """One version's summary row as a plain mapping (metrics None when undefined), or None."""
    if version is None:
        return None
    rows = summary[summary["version"] == str(version)]
    if rows.empty:
        return None
    row = rows.iloc[0].to_dict()
    return {
        k: (None if v is pd.NA or (isinstance(v, float) and math.isnan(v)) else v)
        for k, v in row.items()
    }
