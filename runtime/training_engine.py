"""Where LightGBM boosters and the retrievers (two-tower, sequence) are trained: this process, or
Ray Train on the use case's cluster (``runtime.ray_lightgbm``, ``runtime.ray_torch``,
``runtime.ray_sequence``).

Every LightGBM learner trains through one function (``assets.models.lightgbm_inputs
.train_booster``), called several layers below the model asset. Rather than thread an engine
argument through every learner's signature (and the benchmarks and tuning that call them too),
the model asset opens the training engine around its training call and ``train_booster`` asks
:func:`current_training_engine`; a ``ContextVar`` keeps that scoped to the asset's own call stack.
Outside :meth:`TrainingEngine.active` (tuning trials, benchmarks, tests calling a learner
directly) the answer is None: train here, as always.

Nothing here imports Ray. :func:`open_training` checks a Ray cluster (reachable, every node
imports the training code and sees the storage, via ``runtime.shards.open_engine``) before any
training starts, and keeps the connection while the asset trains.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any

from runtime.shards import Execution, open_engine

# What a Ray Train worker imports: checked on every node before a Ray run trains anything.
TRAINING_MODULES = (
    "lightgbm",
    "runtime.ray_lightgbm",
    "torch",
    "runtime.ray_torch",
    "runtime.ray_sequence",
)

_CURRENT: ContextVar[TrainingEngine | None] = ContextVar("training_engine", default=None)


@dataclass
class TrainingEngine:
    """The execution LightGBM and the retrievers train on, and what each distributed fit
    reported (``nodes``, ``workers`` with their ``rows``, ``layout``, ``seconds``)."""

    execution: Execution
    # runtime.ray_lightgbm.RayTraining or runtime.ray_ddp.TorchTraining, in order
    fits: list[Any] = field(default_factory=list)

    @property
    def distributed(self) -> bool:
        return self.execution.engine == "ray"

    @contextmanager
    def active(self) -> Iterator[TrainingEngine]:
        """Make this engine the one ``train_booster`` uses inside the block (a local engine
        leaves training exactly as it is)."""
        token = _CURRENT.set(self if self.distributed else None)
        try:
            yield self
        finally:
            _CURRENT.reset(token)

    def metadata(self) -> dict[str, Any]:
        """Where the boosters were trained, for the model asset (empty when trained here)."""
        if not self.fits:
            return {}
        nodes = sorted({node for fit in self.fits for node in fit.nodes})
        last = self.fits[-1]
        return {
            "training": (
                f"ray train, {last.layout.workers} workers x {last.layout.threads} thread(s)"
                f" on {len(nodes)} node(s)"
            ),
            "training_nodes": nodes,
            "training_rows_per_worker": [w["rows"] for w in last.workers],
            "training_ray_s": sum(fit.seconds for fit in self.fits),
        }


def current_training_engine() -> TrainingEngine | None:
    """The distributed engine ``train_booster`` must use now, or None to train here."""
    return _CURRENT.get()


@contextmanager
def open_training(execution: Execution) -> Iterator[TrainingEngine]:
    """The training engine of ``execution``; for Ray, connected and checked before it yields
    (an unreachable address is one ``ExecutionError`` naming the setting)."""
    with open_engine(execution, TRAINING_MODULES):
        yield TrainingEngine(execution)
