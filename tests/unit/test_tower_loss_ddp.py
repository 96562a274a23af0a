"""Two DDP workers (gloo on 127.0.0.1) optimise the two-tower's single-process objective.

What ``runtime.ray_torch`` relies on: each worker scores its half of a batch against the
positives of both halves (all-gathered with their gradients), DDP averages the gradients, and
the result is the gradient one process computes on the whole batch, softmax over the same
candidates, BCE over the same pairs. Here two real ``torch.distributed`` processes (no Ray:
the same ``TowerLoss`` and ``gather_rows`` a Ray Train worker uses) compute the gradient of one
batch and it is compared with the single process's, parameter by parameter.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch.nn.parallel import DistributedDataParallel

from runtime.models.tower_inputs import FeatureEncoder
from runtime.models.tower_loss import EncodedRows, TowerLoss, gather_rows
from runtime.models.two_tower import TowerInputs, TwoTowerConfig, TwoTowerNet
from tests.gloo_pair import spawn_pair

CONFIG = TwoTowerConfig(embedding_dim=8, hidden_dim=16, id_dropout=0.0, seed=5)
N_USERS, N_ITEMS, ROWS, POSITIVES = 30, 20, 48, 32


def _ids_only(ids: torch.Tensor) -> TowerInputs:
    """Tower inputs with an id and no features (the towers' MLPs still run)."""
    n = len(ids)
    return TowerInputs(
        ids,
        torch.zeros((n, 0), dtype=torch.int64),
        torch.zeros((n, 0), dtype=torch.float32),
        torch.zeros((n, 0, 20), dtype=torch.int64),
    )


def _problem() -> tuple[TwoTowerNet, EncodedRows, TowerInputs, torch.Tensor]:
    """A seeded net and batch: rows 0..31 positives (with repeated items), 32..47 negatives."""
    torch.manual_seed(CONFIG.seed)
    rng = np.random.default_rng(CONFIG.seed)
    net = TwoTowerNet(N_USERS, N_ITEMS, FeatureEncoder(), FeatureEncoder(), CONFIG)
    users = torch.as_tensor(rng.integers(1, N_USERS + 1, ROWS))
    item_rows = torch.as_tensor(rng.integers(0, 12, ROWS))  # 12 items: repeats get masked
    labels = torch.as_tensor((np.arange(ROWS) < POSITIVES).astype(np.float32))
    table = _ids_only(torch.arange(1, N_ITEMS + 1))
    counts = np.bincount(item_rows[:POSITIVES].numpy(), minlength=N_ITEMS)
    log_q = torch.as_tensor(np.log(np.maximum(counts, 1) / counts.sum()), dtype=torch.float32)
    return net, EncodedRows(_ids_only(users), item_rows, labels), table, log_q


def _halves(rank: int) -> tuple[torch.Tensor, torch.Tensor]:
    """This worker's positives and negatives: its half of each (equal sizes, as the sampler)."""
    pos, neg = torch.arange(POSITIVES), torch.arange(POSITIVES, ROWS)
    return pos.chunk(2)[rank], neg.chunk(2)[rank]


def _worker(rank: int, folder: str) -> None:
    """One rank's share of the batch: its gradient to ``grads-<rank>.pt``."""
    net, data, table, log_q = _problem()
    loss_of = TowerLoss(net, CONFIG, data, table, log_q, gather_rows, rank)
    wrapped = DistributedDataParallel(loss_of, find_unused_parameters=True)
    pos, neg = _halves(rank)
    wrapped(pos, neg).backward()
    grads = {name: p.grad.clone() for name, p in net.named_parameters()}
    torch.save(grads, Path(folder, f"grads-{rank}.pt"))


def test_two_workers_get_the_single_process_gradient(tmp_path: Path) -> None:
    net, data, table, log_q = _problem()
    whole = TowerLoss(net, CONFIG, data, table, log_q)
    whole(torch.arange(POSITIVES), torch.arange(POSITIVES, ROWS)).backward()
    expected = {name: p.grad for name, p in net.named_parameters()}
    assert expected["bias"].abs() > 0 and expected["user.ids.weight"].abs().sum() > 0

    spawn_pair(_worker, str(tmp_path))
    for rank in range(2):
        grads = torch.load(tmp_path / f"grads-{rank}.pt", weights_only=True)
        assert grads.keys() == expected.keys()
        for name, grad in grads.items():
            torch.testing.assert_close(grad, expected[name], rtol=1e-4, atol=1e-6, msg=name)


def test_without_gather_each_worker_would_see_only_half_the_candidates() -> None:
    """The check above can fail: scoring each half alone is a different objective."""
    net, data, table, log_q = _problem()
    whole = TowerLoss(net, CONFIG, data, table, log_q)
    full = whole(torch.arange(POSITIVES), torch.arange(POSITIVES, ROWS))
    halves = [whole(*_halves(rank)) for rank in range(2)]
    assert not torch.isclose(full, sum(halves) / 2, rtol=1e-3)
