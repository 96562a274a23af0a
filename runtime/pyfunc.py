"""Served model objects as MLflow pyfunc models: one wrapper and its pinned requirements.

Every model family (LightGBM, torch two-towers, baselines) is logged the same way, as a
:class:`PredictWrapper` around the object from ``runtime.models``; the registry resource logs
them, and a loader unwraps ``unwrap_python_model().model`` to get that object back. The wrapper
is pickled into every logged model, so it lives in the runtime, where both sides find it. The
LightGBM boosters and torch towers inside are logged beside it with MLflow's own flavours
(:mod:`runtime.native` finds them).
"""

from __future__ import annotations

from collections.abc import Iterable
from functools import cache
from importlib import metadata
from typing import Any

import mlflow
import pandas as pd


class PredictWrapper(mlflow.pyfunc.PythonModel):
    """Any object with ``predict(DataFrame)`` as a pyfunc model, so one loader serves every
    model family (LightGBM, torch two-towers, baselines) the same way."""

    def __init__(self, model: Any) -> None:
        self.model = model

    # A DataFrame hint tells MLflow the signature comes from the logged one, not from hints.
    def predict(self, context: Any, model_input: pd.DataFrame, params: Any = None) -> Any:
        return self.model.predict(model_input)


def pip_requirements(model: Any) -> list[str]:
    """Pinned requirements of a logged model, without MLflow's inference.

    MLflow infers requirements by loading the model in a subprocess: seconds per run, and it
    warns when it cannot resolve a package. The model needs MLflow, cloudpickle, pandas, numpy
    and the distribution that ships its class, if any.
    """
    top = type(model).__module__.split(".")[0]
    return pinned(
        [
            "mlflow",
            "cloudpickle",
            "pandas",
            "numpy",
            *_distributions_of(top),
        ]
    )


@cache
def _distributions_of(module: str) -> tuple[str, ...]:
    """The installed distributions that ship top-level ``module``, looked up once per process:
    ``packages_distributions()`` reads every installed distribution's file list, 2.5 s here, and
    what is installed does not change under a running process."""
    return tuple(metadata.packages_distributions().get(module, []))


def pinned(names: Iterable[str]) -> list[str]:
    """``name==version`` for each installed distribution of ``names``, in order, once each."""
    pins = []
    for name in dict.fromkeys(names):
        try:
            pins.append(f"{name}=={metadata.version(name)}")
        except metadata.PackageNotFoundError:
            continue
    return pins
