"""LightGBM boosters as ``model.txt`` for Triton's FIL backend, and their float32 input matrix.

**What is served: the raw tree margin.** The exported text keeps the trees up to the model's
best iteration and declares ``objective=regression``, so every reader of the file returns the
plain sum of the trees: FIL with ``output_class: false``, ``lightgbm.Booster(model_file=...)``
in the CPU variant's Python model, and Treelite alike. For a classifier that is the log-odds
before calibration (class-weighted, so not a probability); the client applies the served model's
own calibrator (:func:`serving.triton.client.calibrated`), exactly what
``CalibratedClassifier.predict_proba`` does. Why not serve probabilities: FIL would apply only
LightGBM's sigmoid, not our Platt / isotonic calibrator, and recovering the margin from a float32
probability near 1 loses digits. Rankers' scores are raw margins already (LambdaRank has no
output transform), so they are served the same way.

**The input matrix.** FIL reads one float32 tensor ``input__0`` of shape ``[batch, features]``
in the booster's feature order. LightGBM's categorical splits compare *category codes*: what
``prepare_features`` gives as a pandas ``category`` with levels fixed at training time, the
booster sees as the level's position (``cat.codes``), with a missing or never-seen level as NaN
(LightGBM itself turns pandas' code -1 into NaN). FIL and ``lightgbm`` both read those codes from
the float32 matrix, so :func:`feature_array` produces exactly that: numerics as float32, category
columns as their codes, NaN when missing. Numerics are rounded to float32 because FIL computes
in single precision; LightGBM's thresholds sit halfway between training values, so the rounding
moves a row across a split only for values within float32 precision of a threshold.
"""

from __future__ import annotations

from typing import Protocol

import lightgbm as lgb
import numpy as np
import pandas as pd

from runtime.models.classifier import CalibratedClassifier
from runtime.models.expected_value import ExpectedValueModel
from runtime.models.features import Categories
from runtime.models.features import feature_array as feature_matrix
from runtime.models.ranker import Ranker
from runtime.models.regressor import Regressor
from serving.triton.config import TensorSpec

INPUT = "input__0"  # the names FIL requires; the CPU variant uses the same
OUTPUT = "output__0"
IDENTITY_OBJECTIVE = "objective=regression"
EXPORT_TOLERANCE = 1e-9  # same trees, same double arithmetic: equal up to summation order


class TreeModel(Protocol):
    """What the served LightGBM models share (``CalibratedClassifier``, ``Ranker``)."""

    booster: lgb.Booster
    feature_columns: list[str]
    categories: Categories
    best_iteration: int


def tree_heads(model: object) -> dict[str, TreeModel]:
    """The boosters of a served model by head name: ``""`` for a single booster.

    The expected-value model has two (``click``, ``purchase``); its value multiplication and
    calibration happen in the client, on the two served margins.
    """
    if isinstance(model, ExpectedValueModel):
        return {"click": model.click_model, "purchase": model.purchase_model}
    if isinstance(model, CalibratedClassifier | Ranker | Regressor):
        return {"": model}  # a regressor's raw score is its prediction (identity objective)
    raise TypeError(f"{type(model).__name__} has no LightGBM booster to export")


def booster_text(model: TreeModel) -> str:
    """LightGBM's text model up to the best iteration, with an identity output transform."""
    text = model.booster.model_to_string(num_iteration=model.best_iteration)
    lines = text.splitlines()
    header_end = next((i for i, line in enumerate(lines) if line.startswith("Tree=")), len(lines))
    found = [i for i in range(header_end) if lines[i].startswith("objective=")]
    if len(found) != 1:
        raise ValueError(f"LightGBM model text has {len(found)} 'objective=' header lines, not 1")
    lines[found[0]] = IDENTITY_OBJECTIVE
    return "\n".join(lines) + "\n"


def feature_names(model: TreeModel) -> list[str]:
    """The booster's input columns, in order (list features are not among them)."""
    return list(model.booster.feature_name())


def feature_array(model: TreeModel, frame: pd.DataFrame) -> np.ndarray:
    """The float32 ``[rows, features]`` matrix FIL and the CPU variant read for ``frame``.

    ``runtime.models.features.feature_array`` is the matrix LightGBM reads from
    ``prepare_features`` (categories as their codes in the training levels, NaN when missing or
    unseen), in the booster's column order; here rounded to the float32 FIL computes in.
    """
    return feature_matrix(frame, feature_names(model), model.categories).astype(np.float32)


def tree_signature(model: TreeModel) -> tuple[TensorSpec, TensorSpec]:
    """``input__0`` float32 ``[features]`` and ``output__0`` float32 ``[1]`` (the margin)."""
    return (
        TensorSpec(INPUT, "float32", (len(feature_names(model)),)),
        TensorSpec(OUTPUT, "float32", (1,)),
    )


def exported_margins(text: str, x: np.ndarray) -> np.ndarray:
    """What a reader of the exported text computes: LightGBM on the float32 matrix."""
    return lgb.Booster(model_str=text).predict(x)


def export_parity(model: TreeModel, text: str, rows: int = 256, seed: int = 0) -> float:
    """Max |exported text - served booster| raw margins on random valid rows; raises if not ~0.

    Any matrix exercises the same trees, so random rows (category columns as random codes or
    NaN, numerics with NaN) check the truncation at the best iteration and the objective
    rewrite without needing data.
    """
    rng = np.random.default_rng(seed)
    names = feature_names(model)
    x = rng.normal(scale=3.0, size=(rows, len(names))).astype(np.float32)
    for i, column in enumerate(names):
        if column in model.categories:
            x[:, i] = rng.integers(0, max(len(model.categories[column]), 1), rows)
    x[rng.random(x.shape) < 0.1] = np.nan
    served = model.booster.predict(x, num_iteration=model.best_iteration, raw_score=True)
    diff = float(np.abs(exported_margins(text, x) - served).max()) if rows else 0.0
    if not diff <= EXPORT_TOLERANCE:
        raise ValueError(f"exported LightGBM text differs from the served booster by {diff:.3g}")
    return diff
