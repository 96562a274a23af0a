"""Two-tower towers as ONNX files, with a parity check against PyTorch.

Each tower (``net.user``, ``net.item`` of a :class:`~runtime.models.two_tower.TwoTowerModel`)
becomes one ONNX graph with a dynamic batch axis. Inputs are the tensors the model's own encoders
produce, so a client encodes requests exactly as training did:

* ``ids``  int64 ``[batch, 1]``: the vocabulary index of the user / item (0 = unknown);
* ``nums`` float32 ``[batch, 2 * numeric]``: standardised numerics and their missing flags;
* ``cats`` int64 ``[batch, categorical]``: category indices (0 = unknown or missing);
* ``seqs`` int64 ``[batch, sequence, max_length]``: list features, padded with 0.

An input whose width is zero for a tower (no categorical feature, say) is left out of the graph:
Triton refuses a zero dimension. ``ids`` is ``[batch, 1]`` rather than ``[batch]`` so every
tensor has at least one non-batch dimension, which ONNX Runtime, FIL and Python backends alike
batch without a ``reshape`` in the config. The output ``embedding`` is the unit vector, float32
``[batch, embedding_dim]``.

Why the graph is traced from :class:`_ExportableTower` and not from ``Tower`` itself: PyTorch's
ONNX exporter cannot export ``EmbeddingBag`` with ``padding_idx``, which the history features
use. The wrapper computes the same mean over non-padding entries with a gather and a masked sum
on the *same* parameters; :func:`onnx_parity` runs ONNX Runtime against the original ``Tower``
so any drift between the two fails the build (tolerance 1e-4).
"""

from __future__ import annotations

import copy
import io
import warnings
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from torch import nn

from runtime.models.tower_inputs import FeatureEncoder, content_frame
from runtime.models.two_tower import Tower, TowerInputs, TwoTowerModel
from serving.triton.config import TensorSpec

EMBEDDING = "embedding"
PARITY_TOLERANCE = 1e-4
OPSET = 17  # ONNX Runtime 1.15+ (Triton 23.05+) runs it
TOWERS = ("user", "item")


class ParityError(RuntimeError):
    """ONNX Runtime and PyTorch disagree by more than the tolerance."""


@dataclass(frozen=True)
class TowerSignature:
    """The tensors of one exported tower (batch dimension excluded)."""

    inputs: tuple[TensorSpec, ...]
    output: TensorSpec

    @property
    def input_names(self) -> list[str]:
        return [spec.name for spec in self.inputs]


def tower_signature(tower: Tower, encoder: FeatureEncoder) -> TowerSignature:
    """Inputs present in this tower (zero-width ones left out) and its embedding output."""
    dim = tower.ids.embedding_dim
    inputs = [TensorSpec("ids", "int64", (1,))]
    if encoder.numeric_width:
        inputs.append(TensorSpec("nums", "float32", (encoder.numeric_width,)))
    if len(tower.cats):
        inputs.append(TensorSpec("cats", "int64", (len(tower.cats),)))
    if len(tower.seqs):
        inputs.append(TensorSpec("seqs", "int64", (len(tower.seqs), encoder.max_length)))
    return TowerSignature(tuple(inputs), TensorSpec(EMBEDDING, "float32", (dim,)))


class _ExportableTower(nn.Module):
    """``Tower.forward`` on the same parameters, in operations the ONNX exporter supports."""

    def __init__(self, tower: Tower, input_names: list[str]) -> None:
        super().__init__()
        self.tower = tower
        self.input_names = input_names

    def forward(self, *tensors: torch.Tensor) -> torch.Tensor:
        given = dict(zip(self.input_names, tensors, strict=True))
        tower = self.tower
        parts = [tower.ids(given["ids"][:, 0])]
        if "nums" in given:
            parts.append(given["nums"])
        cats = given.get("cats")
        parts += [embedding(cats[:, i]) for i, embedding in enumerate(tower.cats)]
        seqs = given.get("seqs")
        for i, bag in enumerate(tower.seqs):
            codes = seqs[:, i]
            vectors = F.embedding(codes, bag.weight)
            # EmbeddingBag(mode="mean", padding_idx): the mean over non-padding entries, 0 if none
            keep = (codes != bag.padding_idx).unsqueeze(-1).to(vectors.dtype)
            count = keep.sum(dim=1).clamp(min=1.0)
            parts.append((vectors * keep).sum(dim=1) / count)
        return F.normalize(tower.mlp(torch.cat(parts, dim=1)), dim=1)


def tower_encoder(model: TwoTowerModel, tower: str) -> FeatureEncoder:
    """The encoder that feeds ``tower`` (``"user"`` or ``"item"``)."""
    if tower not in TOWERS:
        raise ValueError(f"unknown tower {tower!r}: use one of {TOWERS}")
    return model.user_encoder if tower == "user" else model.item_encoder


def _cpu_tower(model: TwoTowerModel, tower: str) -> Tower:
    """A CPU copy in eval mode: export and parity never touch the serving model's device."""
    return copy.deepcopy(getattr(model.net, tower)).cpu().eval()


def export_tower(model: TwoTowerModel, tower: str) -> tuple[bytes, TowerSignature]:
    """One tower as ONNX bytes (dynamic batch axis) and the signature of its tensors."""
    module = _cpu_tower(model, tower)
    signature = tower_signature(module, tower_encoder(model, tower))
    names = signature.input_names
    example = sample_tower_inputs(signature, module, rows=4)
    args = tuple(torch.as_tensor(example[name]) for name in names)
    axes = {name: {0: "batch"} for name in [*names, EMBEDDING]}
    buffer = io.BytesIO()
    with warnings.catch_warnings():
        # the TorchScript exporter's deprecation notice: the dynamo exporter needs onnxscript
        warnings.simplefilter("ignore", DeprecationWarning)
        torch.onnx.export(
            _ExportableTower(module, names),
            args,
            buffer,
            dynamo=False,
            input_names=names,
            output_names=[EMBEDDING],
            dynamic_axes=axes,
            opset_version=OPSET,
        )
    return buffer.getvalue(), signature


def sample_tower_inputs(
    signature: TowerSignature, tower: Tower, rows: int = 256, seed: int = 0
) -> dict[str, np.ndarray]:
    """Valid random inputs over the whole vocabulary, plus the edge rows serving will see.

    Random indices cover every embedding row, not only the ones a data sample happens to hit;
    row 0 is the fully unknown request (OOV id, no numerics, every list empty) and row 1 has a
    full-length history, so padding and the empty-bag case are always checked.
    """
    rng = np.random.default_rng(seed)
    out: dict[str, np.ndarray] = {}
    for spec in signature.inputs:
        shape = (rows, *spec.dims)
        if spec.name == "ids":
            out["ids"] = rng.integers(0, tower.ids.num_embeddings, shape, dtype=np.int64)
        elif spec.name == "nums":
            nums = rng.normal(size=shape).astype(np.float32)
            nums[:, 1::2] = rng.random(nums[:, 1::2].shape) < 0.2  # missing flags are 0 / 1
            out["nums"] = nums
        elif spec.name == "cats":
            sizes = np.array([e.num_embeddings for e in tower.cats])
            out["cats"] = (rng.random(shape) * sizes).astype(np.int64)
        else:
            sizes = np.array([bag.num_embeddings for bag in tower.seqs])[None, :, None]
            seqs = (rng.random(shape) * sizes).astype(np.int64)
            lengths = rng.integers(0, spec.dims[1] + 1, (rows, spec.dims[0], 1))
            seqs[np.arange(spec.dims[1])[None, None, :] >= lengths] = 0  # pad the tail
            out["seqs"] = seqs
    for name, array in out.items():
        array[0] = 0  # the cold request: unknown id, zero numerics, empty lists
        if name == "seqs" and rows > 1:
            array[1] = np.maximum(array[1], 1)  # a history with no padding at all
    return out


def torch_embeddings(tower: Tower, inputs: Mapping[str, np.ndarray]) -> np.ndarray:
    """The original ``Tower.forward`` on exported-signature inputs (absent ones as empty)."""
    ids = torch.as_tensor(inputs["ids"][:, 0])
    n = len(ids)
    empty = {
        "nums": torch.zeros((n, 0), dtype=torch.float32),
        "cats": torch.zeros((n, 0), dtype=torch.int64),
        "seqs": torch.zeros((n, 0, 1), dtype=torch.int64),
    }
    given = {k: torch.as_tensor(v) for k, v in inputs.items() if k != "ids"}
    with torch.no_grad():
        out = tower(ids, *({**empty, **given}[k] for k in ("cats", "nums", "seqs")))
    return out.float().cpu().numpy()


def onnx_embeddings(onnx_model: bytes, inputs: Mapping[str, np.ndarray]) -> np.ndarray:
    """The ONNX graph's embeddings under ONNX Runtime on the CPU."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.log_severity_level = 3  # warnings about unused initializers are noise here
    session = ort.InferenceSession(onnx_model, options, providers=["CPUExecutionProvider"])
    names = {i.name for i in session.get_inputs()}
    return session.run([EMBEDDING], {k: v for k, v in inputs.items() if k in names})[0]


def onnx_parity(
    model: TwoTowerModel,
    tower: str,
    onnx_model: bytes,
    inputs: Mapping[str, np.ndarray] | None = None,
    tolerance: float = PARITY_TOLERANCE,
) -> float:
    """Max absolute difference of ONNX Runtime vs PyTorch embeddings; raises past ``tolerance``.

    ``inputs`` default to :func:`sample_tower_inputs`; pass encoded real rows to check those.
    """
    module = _cpu_tower(model, tower)
    signature = tower_signature(module, tower_encoder(model, tower))
    inputs = inputs if inputs is not None else sample_tower_inputs(signature, module)
    expected = torch_embeddings(module, inputs)
    got = onnx_embeddings(onnx_model, inputs)
    if got.shape != expected.shape:
        raise ParityError(f"{tower} tower: ONNX shape {got.shape} != PyTorch {expected.shape}")
    diff = float(np.abs(got - expected).max()) if expected.size else 0.0
    if not diff <= tolerance:  # NaN fails too
        raise ParityError(
            f"{tower} tower: ONNX Runtime differs from PyTorch by {diff:.3g} > {tolerance:g}"
        )
    return diff


# --------------------------------------------------------------------------- request encoding


def _as_inputs(side: TowerInputs, signature_names: list[str]) -> dict[str, np.ndarray]:
    arrays = {
        "ids": side.ids.cpu().numpy().astype(np.int64)[:, None],
        "nums": side.nums.cpu().numpy().astype(np.float32),
        "cats": side.cats.cpu().numpy().astype(np.int64),
        "seqs": side.seqs.cpu().numpy().astype(np.int64),
    }
    return {name: np.ascontiguousarray(arrays[name]) for name in signature_names}


def user_tower_inputs(model: TwoTowerModel, frame: pd.DataFrame) -> dict[str, np.ndarray]:
    """The query tower's tensors for request rows (user key + user features), as served."""
    names = tower_signature(model.net.user, model.user_encoder).input_names
    return _as_inputs(model.user_inputs(frame), names)


def item_tower_inputs(model: TwoTowerModel, items: pd.DataFrame) -> dict[str, np.ndarray]:
    """The item tower's tensors for catalog rows (item key + content columns).

    The same preparation as :meth:`TwoTowerModel.item_embeddings`: content columns are found
    by feature name or by their source name, and a missing one reads as missing values.
    """
    features = model.item_encoder.numeric + model.item_encoder.categorical
    content = content_frame(items, model.item_key, features)
    for column in set(features) - set(content.columns):
        content[column] = None
    names = tower_signature(model.net.item, model.item_encoder).input_names
    return _as_inputs(model.item_inputs(content), names)
