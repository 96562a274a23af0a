"""Triton ``config.pbtxt`` files as ``ModelConfig`` protobufs: build, write, parse, check.

Configs are built as ``tritonclient``'s ``ModelConfig`` messages and written with protobuf's text
format, never assembled from strings, so a typo in a field name cannot reach a server. Reading a
file back goes through the same message type: :func:`parse_config` fails on anything Triton's own
parser would reject (unknown fields, wrong types, bad enum names) and names the file, and
:func:`check_config` adds the rules Triton only enforces at load time (names, batching, shapes),
so a malformed repository fails in the build or in the tests, not at deploy time.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from google.protobuf import text_format
from tritonclient.grpc import model_config_pb2 as mc

CONFIG_FILE = "config.pbtxt"
ModelConfig = mc.ModelConfig

# numpy dtype name -> Triton data type (the subset our models use)
_DATA_TYPES = {
    "float32": mc.TYPE_FP32,
    "float64": mc.TYPE_FP64,
    "int32": mc.TYPE_INT32,
    "int64": mc.TYPE_INT64,
}


class ConfigError(ValueError):
    """A ``config.pbtxt`` that Triton would refuse; the message names the file and field."""


@dataclass(frozen=True)
class TensorSpec:
    """One input or output of a served model; ``dims`` exclude the batch dimension."""

    name: str
    dtype: str  # numpy dtype name: float32, int64, ...
    dims: tuple[int, ...]

    def data_type(self) -> int:
        try:
            return _DATA_TYPES[self.dtype]
        except KeyError:
            raise ConfigError(f"tensor {self.name!r}: unsupported dtype {self.dtype!r}") from None

    def to_dict(self) -> dict[str, object]:
        return {"name": self.name, "dtype": self.dtype, "dims": list(self.dims)}


def model_config(
    name: str,
    *,
    backend: str,
    inputs: Sequence[TensorSpec],
    outputs: Sequence[TensorSpec],
    instance_kind: str,
    max_batch_size: int,
    max_queue_delay_microseconds: int,
    platform: str = "",
    parameters: Mapping[str, str] | None = None,
    instance_count: int = 1,
) -> ModelConfig:
    """A batched model's config: dynamic batching on, one instance group of ``instance_kind``."""
    config = ModelConfig(name=name, backend=backend, max_batch_size=max_batch_size)
    if platform:
        config.platform = platform
    for spec in inputs:
        config.input.add(name=spec.name, data_type=spec.data_type(), dims=list(spec.dims))
    for spec in outputs:
        config.output.add(name=spec.name, data_type=spec.data_type(), dims=list(spec.dims))
    kind = mc.ModelInstanceGroup.Kind.Value(instance_kind)
    config.instance_group.add(kind=kind, count=instance_count)
    config.dynamic_batching.max_queue_delay_microseconds = max_queue_delay_microseconds
    for key, value in (parameters or {}).items():
        config.parameters[key].string_value = value
    return config


def config_text(config: ModelConfig, header: str = "") -> str:
    """The protobuf text form Triton reads from ``config.pbtxt``, after ``#`` comment lines."""
    comment = "".join(f"# {line}\n" for line in header.splitlines())
    return comment + text_format.MessageToString(config)


def parse_config(text: str, source: str | Path = CONFIG_FILE) -> ModelConfig:
    """``ModelConfig`` from ``config.pbtxt`` text; a :class:`ConfigError` naming ``source``."""
    try:
        return text_format.Parse(text, ModelConfig())
    except text_format.ParseError as error:
        raise ConfigError(f"{source}: not a valid Triton ModelConfig: {error}") from None


def read_config(path: str | Path) -> ModelConfig:
    """Parse and check the ``config.pbtxt`` at ``path`` (a model folder or the file itself)."""
    path = Path(path)
    if path.is_dir():
        path = path / CONFIG_FILE
    config = parse_config(path.read_text(encoding="utf-8"), path)
    check_config(config, path)
    return config


def check_config(config: ModelConfig, source: str | Path = CONFIG_FILE) -> None:
    """The load-time rules Triton enforces, checked now; raises :class:`ConfigError`."""
    problems: list[str] = []
    if not config.name:
        problems.append("name: empty")
    if not config.backend and not config.platform:
        problems.append("backend: neither backend nor platform is set")
    if config.max_batch_size < 0:
        problems.append(f"max_batch_size: {config.max_batch_size} < 0")
    if config.HasField("dynamic_batching") and config.max_batch_size == 0:
        problems.append("dynamic_batching: needs max_batch_size > 0")
    for field, tensors in (("input", config.input), ("output", config.output)):
        if not tensors:
            problems.append(f"{field}: no tensors")
        names = [t.name for t in tensors]
        if len(set(names)) != len(names):
            problems.append(f"{field}: duplicate names {names}")
        for tensor in tensors:
            if not tensor.name:
                problems.append(f"{field}: a tensor without a name")
            if tensor.data_type == mc.TYPE_INVALID:
                problems.append(f"{field} {tensor.name!r}: data_type not set")
            if not tensor.dims or any(d == 0 or d < -1 for d in tensor.dims):
                problems.append(
                    f"{field} {tensor.name!r}: dims {list(tensor.dims)} (need >= 1 or -1)"
                )
    if not config.instance_group:
        problems.append("instance_group: none (Triton would pick one; we always say which)")
    if problems:
        raise ConfigError(f"{source}: " + "; ".join(problems))
