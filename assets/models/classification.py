"""A binary classifier's training and evaluation, with its set's splits read in chunks.

The model asset leaves a classifier's three splits in the set's file
(``assets.models.split_chunks``), and each pass reads what it needs a batch at a time: LightGBM bins the train and validation rows as
it reads them (``assets.models.streamed_matrix``), the validation margins, test scores and the
baseline's test scores are computed chunk by chunk, and only the test rows' other columns (the
predictions table: keys, time, labels, split) and one number per row are held. The baseline's
logistic regression fits on at most ``BASELINE_FIT_ROWS`` sampled train rows. A set held in
memory (tests, benchmarks, a Ray fit, whose trainer takes frames) goes the same way with its
splits as frames; the model and every number are the same (``tests/unit/test_streamed_matrix.py``).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from assets.models.baselines import baseline_reader, baseline_scores
from assets.models.card_precision import card_precision_metrics
from assets.models.evaluation import classification_metrics
from assets.models.evaluation_rows import plan_evaluation
from assets.models.plots import classification_plots
from assets.models.split_chunks import model_parts, scored_chunks
from assets.models.tabular import band_summary, decision_bands, train_classifier
from assets.training.model_views import label_columns
from configs.schema.usecase import UseCaseSpec
from runtime.table_chunks import Chunks

CLASSIFICATION = ("auc", "pr_auc", "log_loss", "ece")


def card_precision_ks(spec: UseCaseSpec) -> tuple[int, ...]:
    """The k of ``card_precision@k`` when the YAML's metrics name it, else none."""
    metrics = spec.metrics
    named = metrics is not None and "card_precision" in (metrics.primary, *metrics.others)
    return tuple(metrics.k) if named else ()


def classification_primary(spec: UseCaseSpec) -> str:
    """The gate's metric of a classifier: ``metrics.primary`` (card_precision at the first k),
    PR-AUC when the primary is a ranking metric."""
    primary = spec.metrics.primary
    if primary == "card_precision":
        return f"card_precision@{spec.metrics.k[0]}"
    return primary if primary in CLASSIFICATION else "pr_auc"


def _judge(spec, test: pd.DataFrame, label: str, unit: str, score: str):
    """``judge(scores, rows)``: the classification metrics (and card precision) of ``rows``."""
    ks = card_precision_ks(spec)
    y = test[label].to_numpy()

    def judge(scores, rows: np.ndarray) -> dict[str, float]:
        scores = np.asarray(scores, dtype=float)
        metrics = classification_metrics(y[rows], scores[rows])
        if ks:
            time = spec.events.timestamp
            part = test.loc[rows, [unit, time, label]].assign(**{score: scores[rows]})
            metrics.update(card_precision_metrics(part, unit, time, label, score, ks))
        return metrics

    return judge


def train_classification(spec, model, frame, features, params):
    """Fit, calibrate and evaluate a binary classifier against its baseline (``TRAINERS``)."""
    from assets.models.train import SCORE, model_input  # noqa: PLC0415 (cycle)

    stage = spec.model[model]
    label = next(iter(label_columns(spec, model).values()))
    name = stage.baseline or "random"
    parts = model_parts(spec, model, frame, features, label, baseline_reader(name, features, label))
    train, valid, test_chunks, test = parts.train, parts.valid, parts.scored, parts.test
    baseline_rows = parts.baseline_rows
    plan = plan_evaluation(spec, model, parts.units, test, label)
    del parts
    fitted = train_classifier(train, valid, features, label, params)
    scores = scored_chunks(fitted.predict_proba, test_chunks, fitted.feature_columns)
    judge = _judge(spec, test, label, plan.unit, SCORE)
    metrics = plan.metrics(lambda rows: judge(scores, rows), test)
    baseline = baseline_scores(name, baseline_rows, test_chunks, features, label)
    del baseline_rows
    baseline_metrics = plan.metrics(lambda rows: judge(baseline, rows), test)
    primary = classification_primary(spec)
    rows = plan.evaluated
    extra: dict[str, Any] = {}
    if stage.decision_bands is not None:
        y_valid = Chunks.of(valid).frame([label])[label]
        valid_scores = scored_chunks(fitted.predict_proba, valid, fitted.feature_columns)
        bands = decision_bands(y_valid, valid_scores, stage.decision_bands)
        extra["bands"] = fitted.bands = bands  # served with the model
        extra["bands_on_test"] = band_summary(
            test[label].to_numpy()[rows], np.asarray(scores)[rows], bands, stage.decision_bands
        )
    extra["plots"] = classification_plots(test[label][rows], scores[rows], baseline[rows], name)
    predictions = test[[c for c in test.columns if c not in features]].assign(**{SCORE: scores})
    if "bands" in extra:
        predictions["decision"] = extra["bands"].apply_bands(scores)

    def evaluate(candidate) -> float:
        candidate_scores = scored_chunks(
            lambda chunk: candidate.predict(model_input(chunk, features)), test_chunks, features
        )
        return plan.overall(lambda rows: judge(candidate_scores, rows))[primary]

    return fitted, metrics, baseline_metrics, primary, plan.annotate(predictions), evaluate, extra
