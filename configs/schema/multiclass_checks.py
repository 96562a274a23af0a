"""What ``problem: multiclass_classification`` needs from the rest of the YAML.

Checked from the spec alone, so ``playbook validate`` reports each with its line instead of the
model asset failing after the features and training set were built: one label of kind
``multiclass`` whose declared ``values`` (when given) are the codes ``0..K-1`` that
``multiclass.classes`` names, class names that are not the review decision, a baseline that
scores classes, and a primary metric the gate can compare.
"""

from __future__ import annotations

from collections.abc import Iterator

from configs.schema.issues import Loc
from configs.schema.usecase import UseCaseSpec

Problem = tuple[Loc, str]
REVIEW_DECISION = "review"  # runtime.models.multiclass.REVIEW: the decision of a reviewed case
BASELINES = ("class_prior", "logistic_regression")
METRICS = ("macro_f1", "accuracy", "log_loss")


def multiclass_problems(spec: UseCaseSpec, model: str) -> Iterator[Problem]:
    """Every problem of model ``model`` (a multiclass_classification) with the rest of ``spec``."""
    stage = spec.model[model]
    at = ("model", model)
    if len(stage.labels) != 1:
        yield (*at, "labels"), f"multiclass_classification takes one label, got {len(stage.labels)}"
    label = spec.labels.get(stage.labels[0])
    if label is not None and label.kind != "multiclass":
        yield (
            (*at, "labels", 0),
            f"multiclass_classification needs a label of kind multiclass; {stage.labels[0]!r} is"
            f" {label.kind} (set labels.{stage.labels[0]}.kind: multiclass)",
        )
    classes = stage.multiclass.classes if stage.multiclass is not None else None
    column = spec.events.columns.get(label.column) if label is not None else None
    if classes is not None:
        if len(set(classes)) != len(classes):
            yield (*at, "multiclass", "classes"), f"class names repeat: {classes}"
        if REVIEW_DECISION in classes:
            yield (
                (*at, "multiclass", "classes"),
                f"{REVIEW_DECISION!r} is the decision of a case sent to people; rename the class",
            )
        if column is not None and column.values is not None:
            codes = list(range(len(classes)))
            if sorted(column.values) != codes:
                yield (
                    (*at, "multiclass", "classes"),
                    f"{len(classes)} classes name the codes {codes}, but events column"
                    f" {label.column!r} allows {column.values}",
                )
    if stage.baseline is not None and stage.baseline not in BASELINES:
        yield (
            (*at, "baseline"),
            f"baseline {stage.baseline!r} does not score classes; use one of {', '.join(BASELINES)}",
        )
    metrics = spec.metrics
    if metrics is not None and metrics.primary not in METRICS:
        yield (
            ("metrics", "primary"),
            f"{metrics.primary!r} is not a multiclass metric; use one of {', '.join(METRICS)}",
        )


def misplaced_multiclass(spec: UseCaseSpec) -> Iterator[Problem]:
    """A ``multiclass`` section on a model of another problem type (it would be ignored)."""
    for model, stage in spec.model.items():
        if stage.multiclass is not None and stage.problem != "multiclass_classification":
            yield (
                ("model", model, "multiclass"),
                "multiclass applies to problem multiclass_classification only",
            )
