"""``problem: multiclass_classification``: a LightGBM softmax model, calibrated per class, with a
human-review band, evaluated on the test split beside a class-prior baseline.

The label column holds class codes (``0..K-1`` when ``multiclass.classes`` names them, in that
order; else the codes seen in the train split, named by their value). Rare classes are given
balanced sample weights so they shape the trees; the distortion that causes is undone by the
one-vs-rest calibrators fit on validation (:class:`runtime.models.multiclass.ClassCalibration`).
Evaluation: macro-F1 (every class counts the same, which is what a moderation team cares
about), accuracy and log-loss, per-class precision / recall, a confusion matrix, and, with
``review_below``, the share of test rows sent to review and the accuracy of the automatic
decisions on the rest. :func:`train_multiclass_model` returns what every trainer of
:data:`assets.models.train.TRAINERS` returns.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import dagster as dg
import numpy as np
import pandas as pd
from sklearn.utils.class_weight import compute_sample_weight

from assets.models.baselines import baseline_reader
from assets.models.evaluation_rows import plan_evaluation
from assets.models.lightgbm_inputs import (
    COMMON_DEFAULTS,
    check_params,
    label_rows,
    label_values,
    merge_params,
    train_booster,
)
from assets.models.multiclass_metrics import (
    MULTICLASS_BASELINES,
    MULTICLASS_METRICS,
    class_prior,
    multiclass_metrics,
    multinomial_logistic,
    per_class_table,
    review_summary,
)
from assets.models.multiclass_plots import multiclass_plots
from assets.models.split_chunks import model_parts, scored_chunks
from assets.models.streamed_matrix import fit_splits, training_datasets
from assets.training.model_views import label_columns
from configs.schema.multiclass import MulticlassSpec
from configs.schema.usecase import UseCaseSpec
from runtime.models.multiclass import ClassCalibration, MulticlassClassifier
from runtime.table_chunks import Chunks

SCORE = "score"  # the top class's probability, as train.SCORE
PREDICTED = "predicted_class"
DECISION = "decision"
MULTICLASS_DEFAULTS: dict[str, Any] = {"objective": "multiclass", "metric": "multi_logloss"}


def class_codes(spec: MulticlassSpec | None, y_train: np.ndarray) -> tuple[list[str], list[int]]:
    """(class names, label code of each): ``classes`` name codes ``0..K-1``; without them the
    codes seen in the train split, named by their value."""
    if spec is not None and spec.classes is not None:
        return list(spec.classes), list(range(len(spec.classes)))
    codes = sorted(int(v) for v in np.unique(y_train))
    if len(codes) < 2:
        raise ValueError(f"the train split has a single class ({codes}); nothing to classify")
    return [str(c) for c in codes], codes


def class_index(frame: pd.DataFrame, label: str, codes: list[int], part: str) -> np.ndarray:
    """The label as class indices (positions in ``codes``); a code outside them is an error
    naming it, since a class the model has no output for cannot be scored."""
    values = label_values(frame, label, part)
    if not np.all(values == np.round(values)):
        raise ValueError(f"label {label!r} has non-integer values in {part}: expected class codes")
    known = np.asarray(codes)
    index = np.searchsorted(known, values.astype(int))
    inside = (index < len(known)) & (known[np.minimum(index, len(known) - 1)] == values)
    if not inside.all():
        unknown = sorted(set(values[~inside].astype(int).tolist()))[:5]
        raise ValueError(
            f"label {label!r} has codes {unknown} in {part} outside the classes {codes}"
            " (multiclass.classes names codes 0..K-1 in order)"
        )
    return index


def _margins(model: MulticlassClassifier, rows: pd.DataFrame | Chunks) -> np.ndarray:
    """The trees' raw per-class scores of every row, a chunk at a time (a frame is one)."""
    parts = [model.margins(c) for c in Chunks.of(rows)(model.feature_columns) if len(c)]
    return np.concatenate(parts) if parts else np.empty((0, len(model.classes)))


def train_multiclass(
    train: pd.DataFrame | Chunks,
    valid: pd.DataFrame | Chunks,
    features: list[str],
    label: str,
    params: Mapping[str, Any] | None = None,
    *,
    spec: MulticlassSpec | None = None,
) -> MulticlassClassifier:
    """LightGBM multiclass, balanced class weights, early-stopped on validation log-loss,
    calibrated per class on validation. Either split may be read in chunks (binned as it is
    read, ``assets.models.streamed_matrix``: the same trees); on Ray they are read whole."""
    spec = spec or MulticlassSpec()
    params = dict(params or {})
    check_params(params)
    train, valid, train_labels, valid_labels = fit_splits(train, valid, label)
    classes, codes = class_codes(spec, label_values(train_labels, label, "train"))
    y_train = class_index(train_labels, label, codes, "train")
    y_valid = class_index(valid_labels, label, codes, "validation")
    del train_labels, valid_labels
    merged = merge_params({**COMMON_DEFAULTS, **MULTICLASS_DEFAULTS}, params)
    merged["num_class"] = len(classes)
    weights = compute_sample_weight("balanced", y_train)
    data = training_datasets(train, valid, features, (y_train, y_valid), merged, weight=weights)
    booster = train_booster(data.params, data.train, data.valid)
    best = booster.best_iteration or booster.current_iteration()
    model = MulticlassClassifier(
        booster,
        data.columns,
        data.categories,
        label,
        classes,
        codes,
        ClassCalibration("none"),
        best,
        merged,
        spec.review_below,
    )
    model.calibration = ClassCalibration.fit(_margins(model, valid), y_valid, spec.calibration)
    return model


def multiclass_primary(spec: UseCaseSpec) -> str:
    """The gate's metric: ``metrics.primary`` when it is a multiclass metric, else macro-F1."""
    primary = spec.metrics.primary if spec.metrics is not None else None
    return primary if primary in MULTICLASS_METRICS else "macro_f1"


def _baseline(name, train, test: pd.DataFrame | Chunks, features, y_train, n_classes):
    """The baseline's class probabilities of the test rows (held, or read in chunks)."""
    if name == "class_prior":
        rows = len(test) if isinstance(test, pd.DataFrame) else len(test.frame(test.columns[:1]))
        return class_prior(y_train, rows, n_classes)
    if name == "logistic_regression":
        return multinomial_logistic(train, test, features, y_train, n_classes)
    raise ValueError(
        f"baseline {name!r} does not score classes; multiclass_classification takes"
        f" {', '.join(MULTICLASS_BASELINES)}"
    )


def _markdown(frame: pd.DataFrame) -> dg.MetadataValue:
    return dg.MetadataValue.md(frame.round(4).to_markdown(index=False))


def train_multiclass_model(spec: UseCaseSpec, model: str, frame, features, params):
    """Fit, evaluate beside the baseline and describe one multiclass model (a TRAINERS entry)."""
    from assets.models.train import model_input  # train.py registers this trainer

    stage = spec.model[model]
    options = stage.multiclass or MulticlassSpec()
    label = next(iter(label_columns(spec, model).values()))
    baseline_name = stage.baseline_name
    rows = baseline_reader(baseline_name, features, label)
    parts = model_parts(spec, model, frame, features, label, rows)
    train, valid, test_chunks, test = parts.train, parts.valid, parts.scored, parts.test
    baseline_rows = parts.baseline_rows
    plan = plan_evaluation(spec, model, parts.units, test, label)
    del parts
    fitted = train_multiclass(train, valid, features, label, params, spec=options)
    y_test = class_index(test, label, fitted.codes, "test")
    y_train = class_index(label_rows(train, label, "train"), label, fitted.codes, "train")
    n_classes = len(fitted.classes)
    scores = scored_chunks(fitted.predict_proba, test_chunks, fitted.feature_columns)

    def judge(p: np.ndarray, rows: np.ndarray) -> dict[str, float]:
        return multiclass_metrics(y_test[rows], np.asarray(p)[rows])

    metrics = plan.metrics(lambda rows: judge(scores, rows), test)
    y_fit = y_train  # the baseline's rows' classes: every train row, or its sample
    if baseline_name == "logistic_regression" and len(baseline_rows) != len(y_train):
        y_fit = class_index(baseline_rows, label, fitted.codes, "train")
    baseline = _baseline(baseline_name, baseline_rows, test_chunks, features, y_fit, n_classes)
    del baseline_rows
    baseline_metrics = plan.metrics(lambda rows: judge(baseline, rows), test)
    rows = plan.evaluated
    table = per_class_table(y_test[rows], scores[rows], fitted.classes)
    metadata: dict[str, Any] = {"per_class": _markdown(table)}
    extra: dict[str, Any] = {"classes": fitted.classes, "per_class": table, "metadata": metadata}
    if options.review_below is not None:
        review = review_summary(y_test[rows], scores[rows], fitted.classes, options.review_below)
        metrics.update({f"review/{name}": value for name, value in review.items()})
        extra["review_on_test"] = review
        metadata["review_on_test"] = _markdown(
            pd.DataFrame([{"review_below": options.review_below, **review}])
        )
    extra["plots"] = multiclass_plots(
        y_test[rows], scores[rows], baseline[rows], fitted.classes, baseline_name
    )
    top, decision = fitted.decide(scores)
    kept = test[[c for c in test.columns if c not in features]]
    predictions = kept.assign(
        **{f"p_{name}": scores[:, k] for k, name in enumerate(fitted.classes)},
        **{SCORE: scores.max(axis=1), PREDICTED: np.asarray(fitted.classes)[top]},
        **{DECISION: decision},
    )
    primary = multiclass_primary(spec)

    def evaluate(candidate) -> float:
        candidate_scores = scored_chunks(
            lambda chunk: candidate.predict(model_input(chunk, features)), test_chunks, features
        )
        return plan.overall(lambda rows: judge(candidate_scores, rows))[primary]

    return fitted, metrics, baseline_metrics, primary, plan.annotate(predictions), evaluate, extra


def multiclass_validation_score(spec: UseCaseSpec, model: str, train, valid, features, params):
    """``("log_loss", value)``: the calibrated validation log-loss of a fit on train, what a
    tuning search minimises (the test split is never looked at)."""
    options = spec.model[model].multiclass or MulticlassSpec()
    label = next(iter(label_columns(spec, model).values()))
    fitted = train_multiclass(train, valid, features, label, params, spec=options)
    y_valid = class_index(valid, label, fitted.codes, "validation")
    return "log_loss", multiclass_metrics(y_valid, fitted.predict_proba(valid))["log_loss"]
