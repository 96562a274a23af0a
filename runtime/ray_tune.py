"""An Optuna search run as Ray Tune trials on the use case's cluster, one local fit per trial.

Imported only when a model is tuned while its execution is Ray (``assets.models.tuning``), so a
local run never imports Ray. Ray must be connected and checked already (``runtime.shards
.open_engine``: the address answers, every node imports the trial's code and sees the storage).

How it keeps the search the one local tuning runs, and why:

- **The same sampler and space.** ``OptunaSearch`` keeps an Optuna study in this process with a
  ``TPESampler`` seeded like the local one and fills every trial from the caller's define-by-run
  function, the very function local tuning samples with, so the ranges, log scales and integer
  parameters are identical. The study and its history never leave the driver.
- **One trial per cluster CPU at once.** A ``ConcurrencyLimiter`` caps the running trials at the
  cluster's CPU count and each trial takes one CPU, so Ray places them over the nodes; LightGBM in
  a trial runs with Ray's ``OMP_NUM_THREADS`` for that one CPU. TPE then proposes a trial while
  others are still running, seeing fewer finished trials than the sequential search would: the
  best trial is close to the local one, not the same one.
- **One whole fit inside each trial.** A trial's worker process has no training engine active
  (``runtime.training_engine`` is a ``ContextVar`` of the driver), so its booster trains there
  with plain ``lgb.train``; Ray Train is never nested inside Tune.
- **The frames once through the object store** (``tune.with_parameters``), not once per trial.
- **The timeout as Optuna means it.** ``tuning.timeout_s`` stops *starting* trials; the searcher
  answers "finished" after it and running trials complete (Tune's ``time_budget_s`` would stop
  them half-trained).
- **Storage every node sees.** The experiment folder lives under the execution's storage (checked
  shared) and is removed once the results are read: the trial table is returned to the caller.
"""

from __future__ import annotations

import logging
import math
import os
import shutil
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

import ray
from ray import tune
from ray.tune.search import ConcurrencyLimiter, Searcher
from ray.tune.search.optuna import OptunaSearch

from runtime.shards import Execution

RUNS_FOLDER = "ray_tune"  # under the execution's storage
SCORE = "score"  # the metric every trial reports, whatever the use case's metric is called

# objective(params, **data) -> (metric name, validation score); a module-level function (or a
# partial of one) so that Ray ships it by reference to a node that has the project installed
Objective = Callable[..., tuple[str, float]]
# define_space(trial): suggests every tuned parameter on an Optuna trial, returns None
DefineSpace = Callable[[Any], None]

logger = logging.getLogger(__name__)


class _Deadline(ConcurrencyLimiter):
    """At most ``max_concurrent`` live trials, and none started once ``timeout_s`` has passed
    since the first was (Optuna's clock starts with the search too, not with Tune's set-up)."""

    def __init__(self, searcher: Searcher, max_concurrent: int, timeout_s: float) -> None:
        super().__init__(searcher, max_concurrent=max_concurrent)
        self.timeout_s = timeout_s
        self.deadline: float | None = None

    def suggest(self, trial_id: str) -> dict | None:
        now = time.time()
        if self.deadline is None:
            self.deadline = now + self.timeout_s
        elif now >= self.deadline:
            return Searcher.FINISHED
        return super().suggest(trial_id)


def run_trial(config: dict, objective: Objective, data: Mapping[str, Any]) -> None:
    """One trial, on whichever node Tune placed it: fit, score, report where it ran."""
    started = time.perf_counter()
    metric, score = objective(dict(config), **data)
    tune.report(
        {
            SCORE: float(score),
            "metric": metric,
            "node": ray.get_runtime_context().get_node_id(),
            "pid": os.getpid(),
            "threads": os.environ.get("OMP_NUM_THREADS", ""),
            "seconds": time.perf_counter() - started,
        }
    )


@dataclass(frozen=True)
class TuneRun:
    """Every trial in the order Tune created them, the best one, and how the search ran."""

    trials: list[dict]  # params, score, metric, seconds, node, pid, threads
    best: dict
    max_concurrent: int
    seconds: float

    @property
    def nodes(self) -> list[str]:
        return sorted({t["node"] for t in self.trials})


class TrialFailed(RuntimeError):
    """A trial raised; the message is the trial's own exception (its last line)."""


def _failure(error: Exception) -> Exception:
    """The exception a trial raised, as the caller would have seen it in this process: a
    ``ValueError`` (e.g. LightGBM rejecting parameters) stays a ``ValueError``."""
    cause = getattr(error, "cause", None) or error.__cause__ or error
    if isinstance(cause, ValueError):
        return ValueError(str(cause))
    text = str(cause).strip().splitlines()
    return TrialFailed(text[-1] if text else type(cause).__name__)


def tune_on_ray(
    objective: Objective,
    define_space: DefineSpace,
    data: Mapping[str, Any],
    *,
    trials: int,
    seed: int,
    mode: Literal["max", "min"],
    timeout_s: float,
    execution: Execution,
    max_concurrent: int,
) -> TuneRun:
    """Run ``trials`` Optuna trials as Ray Tune trials, at most ``max_concurrent`` at once.

    ``objective(params, **data)`` scores one parameter set (``data`` travels once through the
    object store); a trial that raises fails the search with its own exception, as
    ``study.optimize`` would. Returns every finished trial and the best by ``mode``.
    """
    started = time.perf_counter()
    searcher = OptunaSearch(space=define_space, metric=SCORE, mode=mode, seed=seed)
    storage = execution.storage / RUNS_FOLDER
    storage.mkdir(parents=True, exist_ok=True)
    name = f"tuning-{uuid.uuid4().hex[:12]}"
    tuner = tune.Tuner(
        tune.with_resources(
            tune.with_parameters(run_trial, objective=objective, data=dict(data)), {"cpu": 1}
        ),
        tune_config=tune.TuneConfig(
            search_alg=_Deadline(searcher, max(1, max_concurrent), timeout_s),
            num_samples=trials,
            metric=SCORE,
            mode=mode,
        ),
        run_config=tune.RunConfig(
            name=name,
            storage_path=str(storage),
            verbose=0,
            # the first trial that raises ends the search, as in study.optimize
            failure_config=tune.FailureConfig(max_failures=0, fail_fast=True),
        ),
    )
    try:
        grid = tuner.fit()
        records = []
        for result in grid:
            if result.error is not None:
                raise _failure(result.error) from None
            metrics = result.metrics
            records.append(
                {
                    "params": dict(result.config),
                    "score": metrics[SCORE],
                    "metric": metrics["metric"],
                    "seconds": metrics["seconds"],
                    "node": metrics["node"],
                    "pid": metrics["pid"],
                    "threads": metrics["threads"],
                    "trial_id": metrics["trial_id"],
                }
            )
    finally:
        shutil.rmtree(storage / name, ignore_errors=True)
    records.sort(key=lambda r: r["trial_id"])  # "<experiment>_<index>": creation order
    scored = [r for r in records if math.isfinite(r["score"])]
    if not scored:
        raise TrialFailed(f"none of the {len(records)} Ray Tune trials returned a finite score")
    sign = 1.0 if mode == "max" else -1.0
    best = max(scored, key=lambda r: sign * r["score"])  # the first of equals, as Optuna's
    seconds = time.perf_counter() - started
    logger.info(
        "Ray Tune: %d trials on %d node(s) in %.1f s, best %s=%.5g",
        len(records),
        len({r["node"] for r in records}),
        seconds,
        best["metric"],
        best["score"],
    )
    return TuneRun(records, best, max(1, max_concurrent), seconds)
