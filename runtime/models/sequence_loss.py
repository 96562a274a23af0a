"""The sequence retriever's training objective, shared by the local loop
(``assets.models.sequence``) and the Ray Train workers (``runtime.ray_sequence``), so both
optimise exactly the same loss.

* **In-batch negatives**: the two-tower's sampled softmax (:func:`runtime.models.tower_loss
  .softmax_loss`, one implementation): each history is scored against the target items of the
  batch, logQ-corrected, repeats of its own target masked. On several workers the columns are
  the targets of the *global* batch: the targets' item vectors are all-gathered with their
  gradients, so the mean of the workers' losses, which DDP's gradient averaging optimises, is
  the single-process loss of the whole batch.
* **Sampled negatives**: ``num_sampled`` item rows drawn uniformly per batch from a generator
  seeded alike on every worker, so each step's workers share one draw, as the single process's
  batch does, and the average of their losses is again the whole batch's.

The step goes through :class:`SequenceLoss`, a module whose ``forward`` returns the loss: DDP
only synchronises gradients of what runs inside the wrapped module's ``forward``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from runtime.models.sequence_encoder import SequenceConfig, SequenceNet
from runtime.models.tower_loss import Gather, softmax_loss


def sequence_loss(
    net: SequenceNet,
    codes: torch.Tensor,
    targets: torch.Tensor,
    log_q: torch.Tensor | None,
    config: SequenceConfig,
    generator: torch.Generator,
    gather: Gather | None = None,
    rank: int = 0,
) -> torch.Tensor:
    """Sampled softmax of ``targets`` (item-table rows) given the encoded histories ``codes``;
    with ``gather``, in-batch columns are every worker's targets (equal batch sizes)."""
    users = net(codes)
    table = net.item_vectors()
    if config.negatives == "in_batch":
        return softmax_loss(users, table[targets], targets, log_q, config.temperature, gather, rank)
    n_items = table.shape[0] - 1
    sampled = torch.randint(1, n_items + 1, (config.num_sampled,), generator=generator)
    sampled = sampled.to(codes.device)
    positive = (users * table[targets]).sum(dim=1, keepdim=True)
    negative = users @ table[sampled].T
    negative = negative.masked_fill(targets[:, None] == sampled[None, :], float("-inf"))
    logits = torch.cat([positive, negative], dim=1) / config.temperature
    return F.cross_entropy(logits, torch.zeros(len(targets), dtype=torch.long, device=codes.device))


@torch.no_grad()
def held_out_loss(
    net: SequenceNet,
    config: SequenceConfig,
    codes: torch.Tensor,
    targets: torch.Tensor,
    log_q: torch.Tensor | None,
    generator: torch.Generator,
) -> float:
    """Mean loss over held-out examples, in batches of the training size (one process)."""
    size = config.batch_size
    total = 0.0
    for start in range(0, len(targets), size):
        batch = slice(start, start + size)
        loss = sequence_loss(net, codes[batch], targets[batch], log_q, config, generator)
        total += float(loss) * len(targets[batch])
    return total / max(len(targets), 1)


class SequenceLoss(nn.Module):
    """The training loss as a module (what DDP wraps): ``forward(rows)`` is one batch's loss.

    Encoded histories, targets and logQ are plain attributes, not buffers: every worker holds
    the same copies, so DDP has nothing to broadcast for them.
    """

    def __init__(
        self,
        net: SequenceNet,
        config: SequenceConfig,
        codes: torch.Tensor,
        targets: torch.Tensor,
        log_q: torch.Tensor | None,
        generator: torch.Generator,
        gather: Gather | None = None,
        rank: int = 0,
    ) -> None:
        super().__init__()
        self.net = net
        self.config = config
        self.codes, self.targets, self.log_q = codes, targets, log_q
        self.generator = generator
        self.gather, self.rank = gather, rank

    def forward(self, rows: torch.Tensor) -> torch.Tensor:
        return sequence_loss(
            self.net,
            self.codes[rows],
            self.targets[rows],
            self.log_q,
            self.config,
            self.generator,
            self.gather,
            self.rank,
        )
