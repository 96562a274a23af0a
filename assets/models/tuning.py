"""Optuna search of a LightGBM model's parameters on the validation split.

Each trial fits the problem's learner on the train split with sampled parameters and scores it
on validation with the use case's primary metric — the test split is never looked at, so the
final evaluation stays honest. Where the model asset leaves the splits in the set's file, each
trial here reads the train split a chunk at a time (LightGBM bins it as it reads) and the
validation split is read once. The best parameters train the final model; every trial is kept
(parameters, score, seconds) so the asset can log them as nested MLflow runs.

Where the trials run follows the training engine (``runtime.training_engine``): in this process
one after the other, or, when the model asset trains on a Ray cluster, as Ray Tune trials over
its nodes (``runtime.ray_tune``: the same seeded TPE sampler, the same define-by-run space, the
same objective and trial count, one CPU and one local LightGBM fit per trial). Either way the
caller gets the same :class:`TuningResult`; on Ray its trials also say which node ran them.
"""

from __future__ import annotations

import functools
import logging
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import optuna
import pandas as pd

from assets.models.evaluation import classification_metrics, higher_is_better
from assets.models.multiclass import multiclass_validation_score
from assets.models.regression import regression_primary, regression_validation_score
from assets.models.split_chunks import model_splits, split_chunks
from assets.models.tabular import train_classifier, train_expected_value, train_ranker
from assets.models.train import (
    REVENUE,
    feature_columns,
    primary_ranking_metric,
    split_ranking_metrics,
)
from assets.training.model_views import label_columns
from assets.training.set_splits import SetSplits
from configs.schema.stages import SearchRangeSpec
from configs.schema.usecase import UseCaseSpec
from runtime.shards import open_engine
from runtime.training_engine import TrainingEngine, current_training_engine

# What a Ray Tune trial imports on its node (checked on every node before any trial runs): the
# objective below, pickled by reference, and the learners it fits.
TUNING_MODULES = ("lightgbm", "optuna", "ray.tune", "assets.models.tuning")

optuna.logging.set_verbosity(logging.WARNING)


@dataclass
class TuningResult:
    best_params: dict
    best_score: float
    metric: str
    trials: list[dict] = field(default_factory=list)  # params, score, seconds (node on Ray)
    engine: str = "optuna"  # "optuna": in this process; "ray tune": trials on a Ray cluster
    max_concurrent: int = 1
    seconds: float = 0.0

    @property
    def nodes(self) -> list[str]:
        """The Ray nodes that ran trials (empty when they ran here)."""
        return sorted({t["node"] for t in self.trials if "node" in t})

    def metadata(self) -> dict[str, Any]:
        """Where the trials ran, for the model asset (empty when they ran here)."""
        if self.engine == "optuna":
            return {}
        per_node = Counter(t["node"] for t in self.trials)
        return {
            "tuning_engine": (
                f"{self.engine}, {len(self.trials)} trials, at most {self.max_concurrent} at once,"
                f" on {len(per_node)} node(s)"
            ),
            "tuning_nodes": self.nodes,
            "tuning_trials_per_node": [per_node[node] for node in self.nodes],
            "tuning_ray_s": self.seconds,
        }


def _sample(trial: optuna.Trial, name: str, space: SearchRangeSpec):
    if space.integer:
        return trial.suggest_int(name, int(space.low), int(space.high), log=space.log)
    return trial.suggest_float(name, space.low, space.high, log=space.log)


def define_space(trial: optuna.Trial, space: dict[str, SearchRangeSpec]) -> None:
    """Suggest every tuned parameter on ``trial``: the search space, for Optuna here and for
    Ray Tune's ``OptunaSearch`` (a define-by-run function) alike."""
    for name, spec in space.items():
        _sample(trial, name, spec)


def _validation_score(spec, model, train, valid, features, params) -> tuple[str, float]:
    """Fit on train and score on validation with the primary metric."""
    stage = spec.model[model]
    labels = list(label_columns(spec, model).values())
    if stage.problem == "multiclass_classification":
        return multiclass_validation_score(spec, model, train, valid, features, params)
    if stage.problem == "regression":
        return regression_validation_score(spec, model, train, valid, features, params)
    if stage.problem == "binary_classification":
        fitted = train_classifier(train, valid, features, labels[0], params)
        metrics = classification_metrics(valid[labels[0]], fitted.predict_proba(valid))
        metric = spec.metrics.primary if spec.metrics.primary in metrics else "pr_auc"
        return metric, metrics[metric]
    metric = primary_ranking_metric(spec)
    if stage.problem == "learning_to_rank":
        fitted = train_ranker(train, valid, features, labels[0], spec.events.group, params)
        return metric, split_ranking_metrics(spec, valid, fitted.predict(valid), labels[0])[metric]
    click, purchase = labels
    fitted = train_expected_value(
        train, valid, features, click, purchase, stage.value_feature, params
    )
    value = valid[stage.value_feature].astype(float).fillna(0.0)
    scored = valid.assign(**{REVENUE: valid[purchase] * value})
    return metric, split_ranking_metrics(spec, scored, fitted.predict(scored), REVENUE)[metric]


def _trial_score(
    params: dict, *, spec: UseCaseSpec, model: str, train, valid, features
) -> tuple[str, float]:
    """One Ray Tune trial: the stage's fixed parameters with the sampled ones, fit and scored."""
    merged = {**spec.model[model].params, **params}
    return _validation_score(spec, model, train, valid, features, merged)


def _probe_metric(spec: UseCaseSpec, model: str) -> str:
    """The metric the search optimises, known before any trial: it sets the direction."""
    stage = spec.model[model]
    if stage.problem == "multiclass_classification":
        return "log_loss"  # minimised on validation, whatever the gate's metric
    if stage.problem == "regression":
        return regression_primary(spec)  # rmse, mae or mape: minimised
    if stage.problem == "binary_classification":
        primary = spec.metrics.primary
        return primary if primary in ("auc", "pr_auc", "log_loss", "ece") else "pr_auc"
    return primary_ranking_metric(spec)


def tune(
    spec: UseCaseSpec,
    model: str,
    frame: pd.DataFrame | SetSplits,
    engine: TrainingEngine | None = None,
) -> TuningResult:
    """Run the YAML's search for ``model``; returns the best parameters and every trial.

    ``engine`` (default: the training engine active around this call, if any) decides where
    the trials run: a distributed one runs them as Ray Tune trials on its cluster.
    """
    engine = engine if engine is not None else current_training_engine()
    if engine is not None and engine.distributed:
        return _tune_on_ray(spec, model, frame, engine)
    stage = spec.model[model]
    tuning = stage.tuning
    features = feature_columns(spec, model, frame)
    train, valid = _trial_splits(spec, model, frame)
    trials: list[dict] = []
    metric_name = {"name": ""}

    def objective(trial: optuna.Trial) -> float:
        sampled = {name: _sample(trial, name, space) for name, space in tuning.space.items()}
        started = time.perf_counter()
        metric, score = _validation_score(
            spec, model, train, valid, features, {**stage.params, **sampled}
        )
        metric_name["name"] = metric
        trials.append({"params": sampled, "score": score, "seconds": time.perf_counter() - started})
        return score

    probe = _probe_metric(spec, model)
    started = time.perf_counter()
    study = optuna.create_study(
        direction="maximize" if higher_is_better(probe) else "minimize",
        sampler=optuna.samplers.TPESampler(seed=tuning.seed),
    )
    study.optimize(objective, n_trials=tuning.trials, timeout=tuning.timeout_s)
    return TuningResult(
        study.best_params,
        study.best_value,
        metric_name["name"] or probe,
        trials,
        seconds=time.perf_counter() - started,
    )


def _trial_splits(spec: UseCaseSpec, model: str, frame: pd.DataFrame | SetSplits):
    """What every trial here fits on and scores: the train split in chunks when the set leaves
    it in its file (each trial's LightGBM bins it as it reads, and grows the trees it would
    grow from the frame), else held; validation held, read once (each trial scores all of it).
    The test split is never read."""
    parts = split_chunks(spec, model, frame)
    if parts is None:
        train, valid, _ = model_splits(spec, model, frame)
        return train, valid
    assert isinstance(frame, SetSplits)  # split_chunks streams a set read by split only
    return parts["train"], frame.part("validation")


def _tune_on_ray(
    spec: UseCaseSpec, model: str, frame: pd.DataFrame | SetSplits, engine: TrainingEngine
) -> TuningResult:
    """The same search as Ray Tune trials on the engine's cluster, one CPU per trial."""
    from runtime.ray_tune import tune_on_ray  # only a Ray run imports Ray

    tuning = spec.model[model].tuning
    features = feature_columns(spec, model, frame)
    train, valid, _ = model_splits(spec, model, frame)
    probe = _probe_metric(spec, model)
    # already connected by the model asset's open_training; this checks that every node can
    # import the trial's code, and counts the CPUs that bound the concurrent trials
    with open_engine(engine.execution, TUNING_MODULES) as cluster:
        run = tune_on_ray(
            functools.partial(_trial_score, spec=spec, model=model),
            functools.partial(define_space, space=tuning.space),
            {"train": train, "valid": valid, "features": features},
            trials=tuning.trials,
            seed=tuning.seed,
            mode="max" if higher_is_better(probe) else "min",
            timeout_s=tuning.timeout_s,
            execution=engine.execution,
            max_concurrent=cluster.cpus,
        )
    trials = [
        {key: t[key] for key in ("params", "score", "seconds", "node", "pid", "threads")}
        for t in run.trials
    ]
    best = run.best
    return TuningResult(
        best["params"],
        best["score"],
        best["metric"],
        trials,
        engine="ray tune",
        max_concurrent=run.max_concurrent,
        seconds=run.seconds,
    )
