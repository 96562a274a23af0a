"""The two-tower's training objective, shared by the local loop (``assets.models.two_tower``) and
the Ray Train workers (``runtime.ray_torch``), so both optimise exactly the same loss.

* **Sampled softmax** over the positives of a batch (in-batch negatives) with the logQ
  correction, repeats of a row's own item masked. On several workers the softmax columns are
  the positives of the *global* batch: each worker embeds its share of the rows, the item
  vectors are all-gathered with their gradients (``torch.distributed.nn.functional.all_gather``,
  whose backward sums every worker's gradient into the owner's rows) and each worker's rows are
  scored against all of them. DDP then averages the workers' gradients, which is the gradient
  of the mean loss over the global batch: the same objective as one process with the same
  batch size, not a softmax over half as many candidates.
* **Binary cross-entropy** on (user row, item) pairs of the batch, positives and the explicit
  sampled negatives, with a learned bias; skipped for a batch without negatives.

The step goes through :class:`TowerLoss`, a module whose ``forward`` returns the loss: DDP only
synchronises gradients of what runs inside the wrapped module's ``forward``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
import torch.distributed as dist
import torch.distributed.nn.functional as dist_functional
import torch.nn.functional as F
from torch import nn

from runtime.models.two_tower import TowerInputs, TwoTowerConfig, TwoTowerNet

# rows of one worker -> the same tensor from every worker, concatenated in rank order
Gather = Callable[[torch.Tensor], torch.Tensor]


@dataclass
class EncodedRows:
    """A training frame encoded: user inputs per row, item-table row per row, labels."""

    users: TowerInputs
    item_rows: torch.Tensor
    labels: torch.Tensor

    def positives(self) -> torch.Tensor:
        return torch.nonzero(self.labels > 0).flatten()

    def negatives(self) -> torch.Tensor:
        return torch.nonzero(self.labels <= 0).flatten()

    @classmethod
    def concat(cls, parts: Sequence[EncodedRows]) -> EncodedRows:
        """The rows of ``parts`` one after the other: a split encoded a chunk at a time."""
        if len(parts) == 1:
            return parts[0]
        return cls(
            TowerInputs.concat([p.users for p in parts]),
            torch.cat([p.item_rows for p in parts]),
            torch.cat([p.labels for p in parts]),
        )

    def to(self, device: torch.device) -> EncodedRows:
        users = self.users
        moved = TowerInputs(
            *(t.to(device) for t in (users.ids, users.cats, users.nums, users.seqs))
        )
        return EncodedRows(moved, self.item_rows.to(device), self.labels.to(device))


def gather_rows(tensor: torch.Tensor) -> torch.Tensor:
    """Every worker's ``tensor`` concatenated in rank order; differentiable when ``tensor``
    needs a gradient (each worker's rows get the sum of all workers' gradients)."""
    if tensor.requires_grad:
        return torch.cat(dist_functional.all_gather(tensor))
    parts = [torch.empty_like(tensor) for _ in range(dist.get_world_size())]
    dist.all_gather(parts, tensor.contiguous())
    return torch.cat(parts)


def softmax_loss(
    users: torch.Tensor,
    items: torch.Tensor,
    item_rows: torch.Tensor,
    log_q: torch.Tensor | None,
    temperature: float,
    gather: Gather | None = None,
    rank: int = 0,
) -> torch.Tensor:
    """In-batch sampled softmax with logQ correction; repeats of the positive are masked.

    Row ``i`` (user ``users[i]``, positive ``items[i]``) is scored against every column; with
    ``gather`` the columns are all workers' positives, this worker's at ``rank * len(users)``
    (every worker holds the same number of rows, as ``DistributedSampler`` pads them).
    """
    columns, column_rows, offset = items, item_rows, 0
    if gather is not None:
        columns, column_rows, offset = gather(items), gather(item_rows), rank * len(users)
    logits = users @ columns.T / temperature
    if log_q is not None:
        logits = logits - log_q[column_rows][None, :]
    targets = torch.arange(len(users), device=users.device) + offset
    same = item_rows[:, None] == column_rows[None, :]
    same[torch.arange(len(users), device=users.device), targets] = False
    logits = logits.masked_fill(same, float("-inf"))
    return F.cross_entropy(logits, targets)


def step_loss(
    net: TwoTowerNet,
    config: TwoTowerConfig,
    data: EncodedRows,
    table: TowerInputs,
    log_q: torch.Tensor | None,
    pos: torch.Tensor,
    neg: torch.Tensor,
    dropout: float,
    gather: Gather | None = None,
    rank: int = 0,
) -> torch.Tensor:
    """The loss of one batch: positives ``pos`` and explicit negatives ``neg`` (row indices)."""
    rows = torch.cat([pos, neg])
    users, items = net(data.users.take(rows), table.take(data.item_rows[rows]), dropout)
    n = len(pos)
    loss = softmax_loss(
        users[:n], items[:n], data.item_rows[pos], log_q, config.temperature, gather, rank
    )
    if config.bce_weight > 0 and len(neg):
        logits = (users * items).sum(dim=1) / config.temperature + net.bias
        loss = loss + config.bce_weight * F.binary_cross_entropy_with_logits(
            logits, data.labels[rows]
        )
    return loss


@torch.no_grad()
def validation_loss(
    net: TwoTowerNet,
    config: TwoTowerConfig,
    data: EncodedRows,
    table: TowerInputs,
    log_q: torch.Tensor | None,
) -> float:
    """Mean softmax loss over the validation positives, in batches of the training size."""
    pos = data.positives()
    losses = []
    empty = pos[:0]
    for start in range(0, len(pos), config.batch_size):
        batch = pos[start : start + config.batch_size]
        loss = step_loss(net, config, data, table, log_q, batch, empty, 0.0)
        losses.append(float(loss) * len(batch))
    return sum(losses) / max(len(pos), 1)


class TowerLoss(nn.Module):
    """The training loss as a module (what DDP wraps): ``forward(pos, neg)`` is one batch's loss.

    The encoded rows, item table and logQ are plain attributes, not buffers: every worker holds
    the same copies, so DDP has nothing to broadcast for them.
    """

    def __init__(
        self,
        net: TwoTowerNet,
        config: TwoTowerConfig,
        data: EncodedRows,
        table: TowerInputs,
        log_q: torch.Tensor | None,
        gather: Gather | None = None,
        rank: int = 0,
    ) -> None:
        super().__init__()
        self.net = net
        self.config = config
        self.data, self.table, self.log_q = data, table, log_q
        self.gather, self.rank = gather, rank

    def forward(self, pos: torch.Tensor, neg: torch.Tensor) -> torch.Tensor:
        return step_loss(
            self.net,
            self.config,
            self.data,
            self.table,
            self.log_q,
            pos,
            neg,
            self.config.id_dropout,
            self.gather,
            self.rank,
        )
