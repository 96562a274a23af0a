"""What every LightGBM learner here shares: parameter defaults and checks, label checks.

The feature matrix itself is ``runtime.models.features.prepare_features``, shared with the
services so training and serving see exactly the same matrix. Parameters are
checked by name against LightGBM's own list, since LightGBM only warns on unknown ones.

Training progress goes to this module's ``logging`` logger, not to a Dagster context: the
learners stay plain functions (the benchmarks and tuning call them too), and the Dagster
instance captures the logger during a run (``resources.home`` lists it in ``dagster.yaml``'s
``python_logs``), so the run's log shows the iterations as they happen.
"""

from __future__ import annotations

import functools
import logging
import time
from collections.abc import Mapping, Sized
from typing import Any

import lightgbm as lgb
import numpy as np
import pandas as pd
from lightgbm.basic import LightGBMError, _ConfigAliases

from runtime.table_chunks import Chunks
from runtime.training_engine import TrainingEngine, current_training_engine

# Defaults every learner starts from; a user parameter (or any alias of it) replaces the default.
COMMON_DEFAULTS: dict[str, Any] = {
    "learning_rate": 0.05,
    "num_leaves": 31,
    "min_data_in_leaf": 20,
    "num_iterations": 1000,
    "early_stopping_round": 50,
    "first_metric_only": True,
    "seed": 0,
    "deterministic": True,
    "force_row_wise": True,
    "verbosity": -1,
}
# AUC is blind to the score shift that ``scale_pos_weight`` causes, so it is the fair stopping
# criterion for a model whose probabilities are calibrated afterwards anyway.
CLASSIFIER_DEFAULTS: dict[str, Any] = {"objective": "binary", "metric": "auc"}
RANKER_DEFAULTS: dict[str, Any] = {"objective": "lambdarank", "metric": "ndcg", "eval_at": [10]}
# LightGBM's own default gains stop at label 30; beyond that 2**label - 1 stops being sensible.
MAX_EXPONENTIAL_LABEL = 30
# A progress line every this many boosting iterations: a few lines for a typical early-stopped
# fit (100-300 iterations), still a sign of life every few seconds on a large one.
LOG_EVERY = 25

logger = logging.getLogger(__name__)


# --------------------------------------------------------------------------- parameters


@functools.cache
def lightgbm_parameter_names() -> frozenset[str]:
    """Every parameter name and alias LightGBM knows, read from the library itself.

    LightGBM only *warns* on an unknown parameter and trains on, so a typo would silently train
    the default model; ``LGBM_DumpParamAliases`` (wrapped by ``_ConfigAliases``) lists them all.
    """
    aliases = _ConfigAliases._get_all_param_aliases()
    return frozenset(name for names in aliases.values() for name in names)


def check_params(params: Mapping[str, Any]) -> None:
    """Reject parameter names LightGBM does not know, naming them."""
    unknown = sorted(set(params) - lightgbm_parameter_names())
    if unknown:
        raise ValueError(f"unknown LightGBM parameter(s): {', '.join(map(repr, unknown))}")


def has_param(params: Mapping[str, Any], name: str) -> bool:
    return bool(_ConfigAliases.get(name) & set(params))


def merge_params(defaults: Mapping[str, Any], params: Mapping[str, Any]) -> dict[str, Any]:
    """User parameters over defaults; a default is dropped when the user set any of its aliases."""
    kept = {key: value for key, value in defaults.items() if not has_param(params, key)}
    return {**kept, **params}


def _scores(results: list[tuple]) -> str:
    """``validation auc=0.9123`` for each (data, metric, value, ...) of an evaluation list."""
    return ", ".join(f"{item[0]} {item[1]}={item[2]:.5g}" for item in results)


class LogProgress:
    """A LightGBM callback like ``lgb.log_evaluation``, but to :data:`logger` (Python logging).

    ``lgb.log_evaluation`` writes through LightGBM's own logger, which the Dagster instance
    does not capture; this one logs the first iteration and every ``period``-th with the
    validation metrics, at INFO. It also remembers how many iterations ran: after early
    stopping the returned booster is cut back to the best iteration, so the booster alone
    cannot say how long training went on.
    """

    order = 10  # where lgb.log_evaluation runs among the callbacks

    def __init__(self, period: int = LOG_EVERY) -> None:
        self.period = period
        self.iterations = 0

    def __call__(self, env: Any) -> None:
        self.iterations = env.iteration + 1
        if env.evaluation_result_list and (
            self.iterations == 1 or self.iterations % self.period == 0
        ):
            logger.info(
                "LightGBM iteration %d/%d: %s",
                self.iterations,
                env.end_iteration,
                _scores(env.evaluation_result_list),
            )


def _rejected(error: Exception) -> ValueError | None:
    """LightGBM's refusal of the parameters as the ValueError the learners raise, else None."""
    if isinstance(error, LightGBMError):
        return ValueError(f"LightGBM rejected the parameters: {error}")
    return None


def _train_distributed(
    engine: TrainingEngine, params: dict[str, Any], train_set: lgb.Dataset, valid_set: lgb.Dataset
) -> lgb.Booster:
    """The same fit through Ray Train's LightGBM trainer on the engine's cluster."""
    from runtime.ray_lightgbm import train_on_ray  # only a Ray run imports Ray

    # the worker's CPU share sets LightGBM's threads on Ray, whatever the YAML asked of one
    # machine; rows are split across the workers, so the learner must be a row-parallel one
    params = {k: v for k, v in params.items() if not has_param({k: v}, "num_threads")}
    learner = next((v for k, v in params.items() if has_param({k: v}, "tree_learner")), "")
    if not str(learner).startswith("voting"):
        params = {k: v for k, v in params.items() if not has_param({k: v}, "tree_learner")}
        params["tree_learner"] = "data_parallel"
    fit = train_on_ray(params, train_set, valid_set, engine.execution, on_error=_rejected)
    engine.fits.append(fit)
    booster = fit.booster
    best = [
        (data, metric, value)
        for data, scores in booster.best_score.items()
        for metric, value in scores.items()
    ]
    logger.info(
        "LightGBM done on Ray Train (%d workers on %d node(s), rows %s): %d iterations in"
        " %.1f s, best iteration %d (%s)",
        fit.layout.workers,
        len(fit.nodes),
        "/".join(str(w["rows"]) for w in fit.workers),
        fit.workers[0]["iterations"],
        fit.seconds,
        booster.best_iteration or fit.workers[0]["iterations"],
        _scores(best) or "no validation metric",
    )
    return booster


def train_booster(
    params: dict[str, Any], train_set: lgb.Dataset, valid_set: lgb.Dataset
) -> lgb.Booster:
    """``lgb.train`` with early stopping on the validation set; LightGBM errors as ValueError.

    Progress is logged every :data:`LOG_EVERY` iterations, and the outcome (iterations run,
    best iteration and its validation score, seconds) once at the end. Inside a model asset
    whose execution is Ray (``runtime.training_engine``), the same fit runs data-parallel on
    the cluster through Ray Train and returns the same kind of booster.
    """
    engine = current_training_engine()
    if engine is not None:
        return _train_distributed(engine, params, train_set, valid_set)
    progress = LogProgress()
    started = time.perf_counter()
    try:
        booster = lgb.train(
            params,
            train_set,
            valid_sets=[valid_set],
            valid_names=["validation"],
            callbacks=[progress],
        )
    except LightGBMError as err:
        raise ValueError(f"LightGBM rejected the parameters: {err}") from err
    best = [
        (data, metric, value)
        for data, scores in booster.best_score.items()
        for metric, value in scores.items()
    ]
    logger.info(
        "LightGBM done: %d iterations in %.1f s, best iteration %d (%s)",
        progress.iterations,
        time.perf_counter() - started,
        booster.best_iteration or progress.iterations,
        _scores(best) or "no validation metric",
    )
    return booster


# --------------------------------------------------------------------------- labels


def check_rows(train: Sized, valid: Sized) -> None:
    """Rows in both splits (a frame, or a split's labels when it is read in chunks)."""
    if len(train) == 0:
        raise ValueError("the training set is empty")
    if len(valid) == 0:
        raise ValueError("the validation set is empty: early stopping and calibration need it")


def label_rows(rows: pd.DataFrame | Chunks, label: str, part: str) -> pd.DataFrame:
    """The label column of a split, held or read in chunks (one number a row)."""
    table = Chunks.of(rows)
    if label not in table.columns:
        raise ValueError(f"label {label!r} is not a column of the {part} set")
    return table.frame([label])


def label_values(frame: pd.DataFrame, label: str, part: str) -> np.ndarray:
    """The label column as floats: present and never missing, or a ValueError naming it."""
    if label not in frame.columns:
        raise ValueError(f"label {label!r} is not a column of the {part} set")
    values = frame[label]
    if values.isna().any():
        raise ValueError(f"label {label!r} has {int(values.isna().sum())} missing values in {part}")
    return values.to_numpy(dtype=float)


def binary_label(frame: pd.DataFrame, label: str, part: str) -> np.ndarray:
    """The label as 0/1 ints; both classes must be present for a classifier to learn anything."""
    y = label_values(frame, label, part)
    if not np.isin(y, (0.0, 1.0)).all():
        raise ValueError(f"label {label!r} is not binary 0/1 in {part}")
    if len(np.unique(y)) < 2:
        raise ValueError(f"label {label!r} has a single class ({int(y[0])}) in {part}")
    return y.astype(int)
