"""MLflow's own flavours for the boosters and towers inside a served model, beside its pyfunc.

A registered version has one source, the pyfunc (what serving and the gate load), and one MLflow
model cannot be both a custom pyfunc and a ``lightgbm`` or ``pytorch`` model. So each native part
that :func:`runtime.native.native_parts` finds is logged as its own MLflow model in the same run
(MLflow 3: a LoggedModel with its own id, named after the part: ``booster``, ``click_booster``,
``purchase_booster``, ``user_tower``, ``item_tower``), and linked three ways:

* the version's tags ``playbook.native_model_uri.<part>`` (``models:/<model id>``) and
  ``playbook.native_flavor.<part>`` (``lightgbm`` / ``pytorch``), which
  :meth:`resources.mlflow_resource.MLflowResource.load_native` reads;
* the pyfunc's own MLmodel metadata, ``playbook.native_models: {part: uri}``;
* each native model's tags: ``playbook.native_part``, ``playbook.registered_name``.

Both formats are pickle-free and load without Playbook's code: LightGBM's text model (saved with
exactly the trees the served object predicts with) and ``torch.export``'s ``pt2`` graph (MLflow's
default, signature over the four tower inputs, batch dimension dynamic). A tower that
``torch.export`` cannot trace falls back to MLflow's pickle format, with a warning.
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Mapping
from dataclasses import dataclass
from types import ModuleType
from typing import Any

import mlflow
import numpy as np
import pandas as pd
from mlflow.models import ModelSignature, infer_signature
from mlflow.models.model import ModelInfo
from mlflow.types import Schema, TensorSpec

from resources import mlflow_logging
from resources.mlflow_logging import dropping
from runtime.native import NativePart, native_parts
from runtime.pyfunc import pinned, pip_requirements

logger = logging.getLogger(__name__)

URI_TAG = "playbook.native_model_uri."  # + part: models:/<model id>
FLAVOR_TAG = "playbook.native_flavor."  # + part: lightgbm | pytorch
METADATA_KEY = "playbook.native_models"  # in the pyfunc's MLmodel metadata: {part: uri}
PART_TAG = "playbook.native_part"  # on each native model
# How towers are stored: "pt2" (torch.export: pickle-free, loads without Playbook's code; both
# towers of the feed cost 2.4 s of CPU on a process's first log, 0.4 s later) or "pickle" (the
# Tower class itself: 1.4 s, then 0.2 s; needs runtime/ and MLflow's pickle loading allowed).
TOWER_FORMAT = "pt2"
# MLflow's notice when a torch model is pickled.
NOTICES = ("Saving pytorch model by Pickle",)


@dataclass(frozen=True)
class NativeModel:
    """One logged native model of a registered version."""

    part: str
    flavor: str  # lightgbm | pytorch
    model_uri: str  # models:/<model id>: mlflow.<flavor>.load_model takes it as is


def log_models(
    model: Any, input_example: pd.DataFrame, registered_name: str
) -> tuple[ModelInfo, list[NativeModel]]:
    """The native models, then the pyfunc naming them in its metadata, in the active run."""
    natives = log_native_models(model, input_example, {"playbook.registered_name": registered_name})
    uris = {native.part: native.model_uri for native in natives}
    info = mlflow_logging.log_model(model, input_example, {METADATA_KEY: uris} if uris else None)
    return info, natives


def log_native_models(
    model: Any, input_example: pd.DataFrame, tags: Mapping[str, str]
) -> list[NativeModel]:
    """Log every native part of ``model`` in the active run; none for other objects.

    Each booster is loaded back and must predict as the served object's trees do on the example
    (milliseconds; it catches a wrong tree count). A tower is not: ``torch.export`` already ran
    its graph, and loading it back costs more than the check is worth.
    """
    logged = []
    for part in native_parts(model, input_example):
        log = _log_booster if part.flavor == "lightgbm" else _log_tower
        native = NativeModel(
            part.name, part.flavor, log(part, {**tags, PART_TAG: part.name}).model_uri
        )
        if part.flavor == "lightgbm":
            (matrix,) = part.inputs
            if not np.allclose(load(native).predict(matrix), part.predict(), rtol=1e-7):
                raise RuntimeError(f"{part.name}: the logged booster predicts differently")
        logged.append(native)
    return logged


def _log_booster(part: NativePart, tags: dict[str, str]) -> Any:
    """The booster as LightGBM's text model, cut to the trees the served object uses.

    The signature is a tensor of the feature matrix, not a frame: the booster was trained on
    pandas categoricals, so a DataFrame of codes would be refused; the column names are in the
    booster (``feature_name()``) and in the metadata. No input example: MLflow would reload the
    model to validate it (about a second), and a matrix of codes shows nothing useful.
    """
    (matrix,) = part.inputs
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*An input example was not provided")
        return mlflow.lightgbm.log_model(
            part.model,
            name=part.name,
            signature=infer_signature(matrix, part.predict()),
            pip_requirements=pinned(["mlflow", "lightgbm", "numpy", "pandas"]),
            metadata={"feature_columns": list(part.feature_columns)},
            tags=tags,
            num_iteration=part.num_iteration,  # Booster.save_model: these trees only
        )


def _log_tower(part: NativePart, tags: dict[str, str]) -> Any:
    """The tower in :data:`TOWER_FORMAT`; a ``pt2`` export that fails falls back to pickle."""
    output = part.predict()
    signature = ModelSignature(
        Schema([_tensor(name, a) for name, a in zip(part.input_names, part.inputs, strict=True)]),
        Schema([_tensor("embedding", output)]),
    )
    if TOWER_FORMAT == "pt2":
        try:
            return pytorch_flavour().log_model(
                part.model,
                name=part.name,
                input_example=part.inputs,  # torch.export traces the graph on it
                signature=signature,
                serialization_format="pt2",
                pip_requirements=pinned(["mlflow", "torch", "numpy"]),
                tags=tags,
            )
        except Exception as error:  # torch.export refuses some graphs: keep the model, pickled
            logger.warning("%s: torch.export failed (%s); logging it pickled", part.name, error)
    with dropping(logging.getLogger("mlflow.pytorch"), NOTICES):
        return pytorch_flavour().log_model(
            part.model,
            name=part.name,
            signature=signature,
            serialization_format="pickle",
            pip_requirements=pinned(["mlflow", "torch", "numpy"]) + pip_requirements(part.model),
            tags=tags,
        )


def _tensor(name: str, array: Any) -> TensorSpec:
    return TensorSpec(array.dtype, (-1, *array.shape[1:]), name)


def version_tags(natives: list[NativeModel]) -> dict[str, str]:
    """The registered version's tags that lead to its native models."""
    tags = {}
    for native in natives:
        tags[URI_TAG + native.part] = native.model_uri
        tags[FLAVOR_TAG + native.part] = native.flavor
    return tags


def from_version_tags(tags: Mapping[str, str]) -> dict[str, NativeModel]:
    """``{part: NativeModel}`` from a version's tags (empty for a version without any)."""
    return {
        key.removeprefix(URI_TAG): NativeModel(
            key.removeprefix(URI_TAG), tags.get(FLAVOR_TAG + key.removeprefix(URI_TAG), ""), uri
        )
        for key, uri in sorted(tags.items())
        if key.startswith(URI_TAG)
    }


def pick(natives: Mapping[str, NativeModel], part: str | None, label: str) -> NativeModel:
    """The native model ``part`` of a version (``label`` names it in errors); ``part`` may be
    None when there is only one (a classifier's or ranker's ``booster``).

    Parts: ``booster``; ``click_booster`` and ``purchase_booster`` (expected value);
    ``user_tower`` and ``item_tower`` (two-tower). A booster reads the ``feature_array`` matrix
    and returns LightGBM's own scores (``raw_score=True``: the margin; calibration and bands are
    in the pyfunc only); a tower takes the encoded ``(ids, cats, nums, seqs)`` tensors and
    returns unit vectors. A LookupError names the parts there are (none for a model without
    any, or one registered before these were logged).
    """
    if part is None and len(natives) == 1:
        return next(iter(natives.values()))
    if part in natives:
        return natives[part]
    raise LookupError(
        f"{label}: native parts are {sorted(natives) or 'none'}; asked for {part or 'the only one'}"
    )


def pytorch_flavour() -> ModuleType:
    """``mlflow.pytorch``, imported without its side effect on logging.

    Importing it runs ``logging.basicConfig`` (``mlflow/pytorch/_lightning_autolog.py``), which
    gives the root logger a stderr handler: every INFO record the Dagster instance captures
    (training progress) then also reached the terminal as ``INFO:assets.models...`` lines. The
    root logger is put back as it was.
    """
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    import mlflow.pytorch

    root.handlers[:] = handlers
    root.setLevel(level)
    return mlflow.pytorch


def load(native: NativeModel) -> Any:
    """The booster (``mlflow.lightgbm``) or module (``mlflow.pytorch``) behind ``native``."""
    if native.flavor == "lightgbm":
        return mlflow.lightgbm.load_model(native.model_uri)
    if native.flavor == "pytorch":
        return pytorch_flavour().load_model(native.model_uri)
    raise ValueError(f"{native.part}: unknown native flavor {native.flavor!r}")
