"""The native models inside a served object: what MLflow's ``lightgbm`` and ``pytorch`` flavours
can store on their own.

A served object from ``runtime.models`` wraps trees or networks in the code around them
(feature encoding, calibration, decision bands, the popularity fallback), which is why the
registry logs it as a pyfunc. The trees and networks themselves are plain library objects that
MLflow's own flavours store without pickling our classes. :func:`native_parts` finds them by
shape, so the registry needs no list of model classes:

* an object with a LightGBM ``booster`` (``CalibratedClassifier``, ``Ranker``): ``booster``,
  exactly the trees the object predicts with (its ``best_iteration``), reading the float64
  matrix of :func:`runtime.models.features.feature_array` (categories as codes, columns in
  ``feature_columns`` order). It gives the raw scores: calibration and bands stay in the pyfunc;
* an object with ``click_model`` and ``purchase_model`` (``ExpectedValueModel``): each head's
  booster, ``click_booster`` and ``purchase_booster``;
* an object with a two-tower ``net`` (``TwoTowerModel``): ``user_tower`` and ``item_tower``,
  each ``forward(ids, cats, nums, seqs)`` over encoded tower inputs (the vocabularies and
  scalers stay in the pyfunc), as CPU copies.

Anything else (a baseline, a test stand-in) has none. Each part carries example inputs built
from the request example, which the registry needs for a signature (and ``torch.export``).
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, replace
from typing import Any, Literal

import numpy as np
import pandas as pd

from runtime.models.features import feature_array

Flavor = Literal["lightgbm", "pytorch"]
TOWER_INPUTS = ("ids", "cats", "nums", "seqs")  # the order of a tower's forward arguments


@dataclass(frozen=True)
class NativePart:
    """One library model inside a served object, with example inputs for it."""

    name: str  # booster, click_booster, purchase_booster, user_tower, item_tower
    flavor: Flavor
    model: Any  # lightgbm.Booster or torch.nn.Module (on the CPU)
    inputs: tuple[np.ndarray, ...]  # one matrix for a booster, one array per tower argument
    input_names: tuple[str, ...]
    num_iteration: int | None = None  # trees a booster predicts with (<= 0: all)
    feature_columns: tuple[str, ...] = ()  # a booster's matrix columns

    def predict(self, *inputs: np.ndarray) -> np.ndarray:
        """What the native model returns for ``inputs`` (the examples when none are given)."""
        inputs = inputs or self.inputs
        if self.flavor == "lightgbm":
            (matrix,) = inputs
            return self.model.predict(matrix, num_iteration=self.num_iteration)
        import torch

        with torch.no_grad():
            return self.model(*(torch.as_tensor(a) for a in inputs)).numpy()


def native_parts(model: Any, example: pd.DataFrame) -> list[NativePart]:
    """The LightGBM boosters and torch towers inside ``model`` (none for other objects).

    ``example`` is the request example the pyfunc is logged with: the rows the parts' example
    inputs are encoded from.
    """
    if _has(model, "click_model", "purchase_model"):
        heads = (("click_", model.click_model), ("purchase_", model.purchase_model))
        return [
            replace(part, name=prefix + part.name)
            for prefix, head in heads
            for part in native_parts(head, example)
        ]
    booster = getattr(model, "booster", None)
    if booster is not None and _is_booster(booster):
        return [_booster_part(model, example)]
    net = getattr(model, "net", None)
    if net is not None and _has(net, "user", "item") and _has(model, "user_inputs", "item_inputs"):
        return _tower_parts(model, example)
    return []


def _has(obj: Any, *names: str) -> bool:
    return all(hasattr(obj, name) for name in names)


def _is_booster(obj: Any) -> bool:
    import lightgbm as lgb  # already imported wherever a model holds a booster

    return isinstance(obj, lgb.Booster)


def _booster_part(model: Any, example: pd.DataFrame) -> NativePart:
    columns = list(model.feature_columns)
    matrix = feature_array(example, columns, model.categories)
    return NativePart(
        name="booster",
        flavor="lightgbm",
        model=model.booster,
        inputs=(matrix,),
        input_names=("features",),
        num_iteration=int(model.best_iteration),
        feature_columns=tuple(columns),
    )


def _tower_parts(model: Any, example: pd.DataFrame) -> list[NativePart]:
    """Both towers, with inputs of at least two rows (``torch.export`` fixes a batch of one)."""
    users = example if len(example) > 1 else pd.concat([example] * 2, ignore_index=True)
    item_ids = list(model.catalog_ids[:2]) or list(model.item_ids[:2])
    items = pd.DataFrame({model.item_key: (item_ids * 2)[:2] if item_ids else [None, None]})
    encoder = model.item_encoder
    for column in [*encoder.numeric, *encoder.categorical, *encoder.sequence]:
        items[column] = None  # content unknown: the example only fixes shapes and dtypes
    sides = (("user_tower", model.net.user, model.user_inputs(users)),)
    sides += (("item_tower", model.net.item, model.item_inputs(items)),)
    return [
        NativePart(
            name=name,
            flavor="pytorch",
            model=_on_cpu(tower),
            inputs=_arrays(side),
            input_names=TOWER_INPUTS,
        )
        for name, tower, side in sides
    ]


def _on_cpu(module: Any) -> Any:
    """``module`` itself when it is on the CPU, else a CPU copy (the served one stays put)."""
    if all(p.device.type == "cpu" for p in module.parameters()):
        return module
    return copy.deepcopy(module).cpu()


def _arrays(side: Any) -> tuple[np.ndarray, ...]:
    return tuple(getattr(side, name).detach().cpu().numpy() for name in TOWER_INPUTS)
