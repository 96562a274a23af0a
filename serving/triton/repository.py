"""A use case's Triton model repository, in a GPU and a CPU variant of the same models.

Layout (one folder per served model, Triton's standard repository)::

    <folder>/
      manifest.json               what each Triton model is: source, version, tensors, features
      gpu/<name>/config.pbtxt     ONNX Runtime (towers) or FIL (LightGBM), KIND_GPU
      gpu/<name>/1/model.onnx | model.txt
      cpu/<name>/config.pbtxt     Python backend, KIND_CPU, same inputs and outputs
      cpu/<name>/1/model.onnx | model.txt + model.py

Both variants serve the same files with the same tensor names, so a client does not know which
it talks to; the CPU one runs where no GPU (and no ONNX Runtime or FIL backend) is available, as
on a developer machine or CI with the Triton wheel from PyPI. Its ``model.py`` runs in Triton's
Python stub with the packages of the virtualenv active when the server starts: numpy<2,
onnxruntime and lightgbm (``scripts/install_triton.sh`` makes one).

Model names are the MLflow registered name (``fraud.scorer``) plus the part for models served as
several Triton models: ``feed.retrieval.user`` / ``.item`` (the towers), ``feed.ranking.click`` /
``.purchase`` (the expected-value heads). Unique across use cases, so one server can load
several repositories. Every model has dynamic batching and one instance group.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from runtime.models.two_tower import TwoTowerModel
from serving.triton.config import (
    CONFIG_FILE,
    ModelConfig,
    TensorSpec,
    config_text,
    model_config,
    read_config,
)
from serving.triton.lightgbm_export import (
    booster_text,
    export_parity,
    feature_names,
    tree_heads,
    tree_signature,
)
from serving.triton.onnx_export import TOWERS, export_tower, onnx_parity

Variant = Literal["gpu", "cpu"]
VARIANTS: tuple[Variant, ...] = ("gpu", "cpu")
MANIFEST = "manifest.json"
VERSION = "1"  # one version per repository: the repository is rebuilt for each champion
MAX_BATCH_SIZE = 4096
MAX_QUEUE_DELAY_MICROSECONDS = 200  # wait at most 0.2 ms to fill a batch
PYTHON_MODEL = Path(__file__).with_name("python_models") / "model.py"


@dataclass(frozen=True)
class ExportedModel:
    """One Triton model: its artifact, tensors and where it came from."""

    name: str
    source: str  # the MLflow registered model
    version: str  # its version (the champion's when built by the asset)
    part: str  # "" for the whole model, else the tower or head
    format: Literal["onnx", "lightgbm"]
    artifact: bytes = field(repr=False)
    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]
    feature_columns: tuple[str, ...] = ()  # LightGBM: the columns of input__0, in order
    parity_max_abs_diff: float = 0.0  # export vs served model on check inputs

    @property
    def artifact_name(self) -> str:
        return "model.onnx" if self.format == "onnx" else "model.txt"

    @property
    def output_meaning(self) -> str:
        if self.format == "onnx":
            return "unit embedding of the tower"
        return "raw tree margin (classifiers: calibrate in the client; rankers: the score)"

    def manifest(self) -> dict[str, object]:
        return {
            "name": self.name,
            "source": self.source,
            "version": self.version,
            "part": self.part,
            "format": self.format,
            "inputs": [spec.to_dict() for spec in self.inputs],
            "outputs": [spec.to_dict() for spec in self.outputs],
            "output_meaning": self.output_meaning,
            "feature_columns": list(self.feature_columns),
            "parity_max_abs_diff": self.parity_max_abs_diff,
        }


def triton_name(registered_name: str, part: str = "") -> str:
    """``<use case>.<model>`` or ``<use case>.<model>.<part>``."""
    return f"{registered_name}.{part}" if part else registered_name


def export_model(registered_name: str, version: str, model: object) -> list[ExportedModel]:
    """The Triton models of one served model, each checked against it.

    Towers are exported to ONNX and checked with ONNX Runtime against PyTorch
    (:class:`~serving.triton.onnx_export.ParityError` past 1e-4); boosters are exported as
    LightGBM text and checked against the served booster.
    """
    if isinstance(model, TwoTowerModel):
        out = []
        for tower in TOWERS:
            onnx_model, signature = export_tower(model, tower)
            diff = onnx_parity(model, tower, onnx_model)
            out.append(
                ExportedModel(
                    name=triton_name(registered_name, tower),
                    source=registered_name,
                    version=version,
                    part=tower,
                    format="onnx",
                    artifact=onnx_model,
                    inputs=signature.inputs,
                    outputs=(signature.output,),
                    parity_max_abs_diff=diff,
                )
            )
        return out
    out = []
    for head, tree in tree_heads(model).items():
        text = booster_text(tree)
        inputs, output = tree_signature(tree)
        out.append(
            ExportedModel(
                name=triton_name(registered_name, head),
                source=registered_name,
                version=version,
                part=head,
                format="lightgbm",
                artifact=text.encode("utf-8"),
                inputs=(inputs,),
                outputs=(output,),
                feature_columns=tuple(feature_names(tree)),
                parity_max_abs_diff=export_parity(tree, text),
            )
        )
    return out


def gpu_config(model: ExportedModel) -> ModelConfig:
    """ONNX Runtime for towers, FIL for LightGBM (raw margin: a regressor), on GPU instances."""
    common = {
        "inputs": model.inputs,
        "outputs": model.outputs,
        "instance_kind": "KIND_GPU",
        "max_batch_size": MAX_BATCH_SIZE,
        "max_queue_delay_microseconds": MAX_QUEUE_DELAY_MICROSECONDS,
    }
    if model.format == "onnx":
        return model_config(
            model.name, backend="onnxruntime", platform="onnxruntime_onnx", **common
        )
    fil = {
        "model_type": "lightgbm",
        # the text's objective is the identity: as a regressor FIL returns the raw margin
        "output_class": "false",
        "predict_proba": "false",
        "storage_type": "AUTO",
    }
    return model_config(model.name, backend="fil", parameters=fil, **common)


def cpu_config(model: ExportedModel) -> ModelConfig:
    """The Python backend running the same artifact, on CPU instances."""
    return model_config(
        model.name,
        backend="python",
        inputs=model.inputs,
        outputs=model.outputs,
        instance_kind="KIND_CPU",
        max_batch_size=MAX_BATCH_SIZE,
        max_queue_delay_microseconds=MAX_QUEUE_DELAY_MICROSECONDS,
        parameters={"artifact": model.artifact_name},
    )


def write_variant(models: Sequence[ExportedModel], folder: Path, variant: Variant) -> Path:
    """One repository under ``folder``; every config is read back and checked after writing."""
    names = [m.name for m in models]
    if len(set(names)) != len(names):
        raise ValueError(f"duplicate Triton model names: {names}")
    build = gpu_config if variant == "gpu" else cpu_config
    folder.mkdir(parents=True, exist_ok=True)
    for model in models:
        version = folder / model.name / VERSION
        version.mkdir(parents=True)
        (version / model.artifact_name).write_bytes(model.artifact)
        if variant == "cpu":
            shutil.copyfile(PYTHON_MODEL, version / "model.py")
        header = (
            f"{model.name}: MLflow {model.source} version {model.version}, {model.format},"
            f" {variant} variant\n"
            "Written by serving.triton.repository; rebuilt with the repository, do not edit."
        )
        text = config_text(build(model), header)
        (folder / model.name / CONFIG_FILE).write_text(text, encoding="utf-8")
        read_config(folder / model.name)
    return folder


def write_repository(models: Sequence[ExportedModel], folder: Path) -> dict[Variant, Path]:
    """Both variants and ``manifest.json`` under ``folder`` (which must not exist yet)."""
    folder.mkdir(parents=True)
    paths = {variant: write_variant(models, folder / variant, variant) for variant in VARIANTS}
    manifest = {"version_folder": VERSION, "models": [m.manifest() for m in models]}
    (folder / MANIFEST).write_text(json.dumps(manifest, indent=2), encoding="utf-8")
    return paths


def read_manifest(folder: Path) -> dict[str, dict[str, object]]:
    """The manifest's models by Triton name."""
    data = json.loads((Path(folder) / MANIFEST).read_text(encoding="utf-8"))
    return {entry["name"]: entry for entry in data["models"]}
