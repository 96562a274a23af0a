"""Two DDP workers (gloo on 127.0.0.1) optimise the sequence retriever's single-process objective.

What ``runtime.ray_sequence`` relies on: each worker encodes its half of a batch's histories,
with in-batch negatives scores them against the targets of both halves (their item vectors
all-gathered with their gradients), with sampled negatives against one draw shared by both
(generators seeded alike), and DDP averages the gradients: the result is the gradient one
process computes on the whole batch. Here two real ``torch.distributed`` processes (no Ray: the
same ``SequenceLoss`` and ``gather_rows`` a Ray Train worker uses, DDP as Ray Train wraps it)
compute the gradient of one batch and it is compared with the single process's, parameter by
parameter.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from torch.nn.parallel import DistributedDataParallel

from runtime.models.sequence_encoder import SequenceConfig, SequenceNet
from runtime.models.sequence_loss import SequenceLoss
from runtime.models.tower_loss import gather_rows
from tests.gloo_pair import spawn_pair

N_ITEMS, ROWS, SEED = 20, 32, 5
CONTENT = [4]  # one content column (a category of 4 values): its embeddings get gradients too


def _config(negatives: str) -> SequenceConfig:
    return SequenceConfig(
        encoder="gru", max_len=5, embedding_dim=8, negatives=negatives, num_sampled=6, seed=SEED
    )


def _problem(
    negatives: str,
) -> tuple[SequenceNet, SequenceConfig, torch.Tensor, torch.Tensor, torch.Tensor]:
    """A seeded net and batch: left-padded histories, targets with repeats (masked in-batch)."""
    config = _config(negatives)
    torch.manual_seed(SEED)
    rng = np.random.default_rng(SEED)
    net = SequenceNet(N_ITEMS, config, CONTENT)
    net.codes[1:, 0] = torch.as_tensor(rng.integers(0, CONTENT[0] + 1, N_ITEMS))
    codes = torch.as_tensor(rng.integers(1, N_ITEMS + 1, (ROWS, config.max_len)))
    codes[: ROWS // 2, :2] = 0  # half the histories shorter than max_len
    targets = torch.as_tensor(rng.integers(1, 12, ROWS))  # 11 items over 32 rows: repeats
    counts = np.bincount(targets.numpy(), minlength=N_ITEMS + 1)
    log_q = torch.as_tensor(np.log(np.maximum(counts, 1) / counts.sum()), dtype=torch.float32)
    return net, config, codes, targets, log_q


def _loss_module(negatives: str, gather=None, rank: int = 0) -> SequenceLoss:
    net, config, codes, targets, log_q = _problem(negatives)
    generator = torch.Generator().manual_seed(SEED)  # as every Ray worker seeds it
    return SequenceLoss(net, config, codes, targets, log_q, generator, gather, rank)


def _worker(rank: int, folder: str, negatives: str) -> None:
    """One rank's share of the batch: its gradient to ``grads-<rank>.pt``."""
    loss_of = _loss_module(negatives, gather_rows if negatives == "in_batch" else None, rank)
    wrapped = DistributedDataParallel(loss_of, broadcast_buffers=False)
    wrapped(torch.arange(ROWS).chunk(2)[rank]).backward()
    grads = {name: p.grad.clone() for name, p in loss_of.net.named_parameters()}
    torch.save(grads, Path(folder, f"grads-{rank}.pt"))


@pytest.mark.parametrize("negatives", ["in_batch", "sampled"])
def test_two_workers_get_the_single_process_gradient(tmp_path: Path, negatives: str) -> None:
    whole = _loss_module(negatives)
    whole(torch.arange(ROWS)).backward()
    expected = {name: p.grad for name, p in whole.net.named_parameters()}
    assert expected["items.weight"].abs().sum() > 0 and expected["content.0.weight"].abs().sum() > 0
    assert expected["encoder.weight_hh_l0"].abs().sum() > 0

    spawn_pair(_worker, str(tmp_path), negatives)
    for rank in range(2):
        grads = torch.load(tmp_path / f"grads-{rank}.pt", weights_only=True)
        assert grads.keys() == expected.keys()
        for name, grad in grads.items():
            torch.testing.assert_close(grad, expected[name], rtol=1e-4, atol=1e-6, msg=name)


def test_without_gather_each_worker_would_see_only_half_the_candidates() -> None:
    """The check above can fail: scoring each half against its own targets alone is a
    different objective."""
    whole = _loss_module("in_batch")
    full = whole(torch.arange(ROWS))
    halves = [whole(half) for half in torch.arange(ROWS).chunk(2)]
    assert not torch.isclose(full, sum(halves) / 2, rtol=1e-3)
