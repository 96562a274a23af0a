"""Train a next-item retriever (``problem: sequence``) and evaluate it as the two-tower is.

**Examples.** Every positive of the train split whose user had a history: the target is the
item, the input is the user's recent-items list (a ``last_n`` aggregate of the item key,
:func:`configs.schema.requirements.history_feature`) as joined to the row by the training set's
point-in-time join, i.e. as of 1 µs before the event: items of the same moment (the rest of
the slate) and every later one are out, and serving reads the same list from Feast.

**Loss.** A softmax over the catalog approximated by sampling, as the YAML's ``negatives`` says:
``in_batch`` uses the other targets of the batch as negatives, with the logQ correction of
Yi et al. (RecSys 2019) for their popularity-skewed sampling (the same as the two-tower);
``sampled`` draws ``num_sampled`` items uniformly per batch (a constant logQ: no correction).
A repeat of the positive among the negatives is masked. The epoch with the lowest validation
loss is kept. The objective is :mod:`runtime.models.sequence_loss`'s.

**Where.** Here, or, inside a model asset whose execution is Ray (``execution`` section or
``RAY_ADDRESS``, ``runtime.training_engine``), data-parallel through Ray Train's TorchTrainer
(``runtime.ray_sequence``: DDP over gloo, one CPU worker per node, in-batch negatives over the
global batch). Both paths build the vocabulary, content codes and encoded examples here; the
best epoch's weights come back into the same ``SequenceModel``.

**Evaluation.** The two-tower's protocol and rows (:mod:`assets.models.retrieval_eval`): each
test user's history as of their first test row, exact search over the whole catalog, train
positives removed, future clicks counted, popularity for users without a history, beside the
popularity baseline.
"""

from __future__ import annotations

import copy
import logging
import math
import time
from collections.abc import Sequence

import numpy as np
import pandas as pd
import torch

from assets.models.evaluation_rows import retrieval_options
from assets.models.retrieval import TrainedRetrieval, evaluated_retrieval
from assets.models.retrieval_eval import popularity_scores
from assets.models.retrieval_splits import positive_rows, retrieval_splits, set_items
from assets.training.model_views import label_columns
from assets.training.set_splits import SetSplits
from configs.schema.requirements import history_feature
from configs.schema.sequence import SequenceSpec
from configs.schema.usecase import UseCaseSpec
from runtime.funnel_roles import retrieval_keys
from runtime.models.sequence_encoder import (
    OOV,
    SequenceConfig,
    SequenceModel,
    SequenceNet,
    device_for,
)
from runtime.models.sequence_loss import SequenceLoss, held_out_loss
from runtime.models.tower_inputs import is_sequence
from runtime.training_engine import TrainingEngine, current_training_engine

logger = logging.getLogger(__name__)


def next_item_examples(
    frame: pd.DataFrame, *, history_column: str, item_key: str, label: str
) -> pd.DataFrame:
    """The positives of ``frame`` whose history is not empty, in time order as given.

    The history column is taken as the point-in-time join left it (known strictly before the
    row's event); nothing here looks at other rows, so no later event can leak in.
    """
    positive = frame[label].to_numpy(dtype=float) > 0
    lengths = frame[history_column].map(lambda v: len(v) if is_sequence(v) else 0).to_numpy()
    return frame.loc[positive & (lengths > 0), [history_column, item_key]].reset_index(drop=True)


def sequence_config(stage_dim: int, epochs: int, spec: SequenceSpec | None, params: dict):
    """The trainer's config from the YAML: ``sequence`` section, ``embedding_dim``, ``epochs``
    and any :class:`SequenceConfig` field given in ``params``."""
    section = spec or SequenceSpec()
    known = {k: v for k, v in params.items() if k in SequenceConfig.__dataclass_fields__}
    return SequenceConfig(
        **{
            "encoder": section.encoder,
            "max_len": section.max_len,
            "negatives": section.negatives,
            "num_sampled": section.num_sampled,
            "embedding_dim": stage_dim,
            "epochs": epochs,
            **known,
        }
    )


def _tensors(
    model: SequenceModel, examples: pd.DataFrame, history_column: str
) -> tuple[torch.Tensor, torch.Tensor]:
    """Encoded histories and target rows, keeping examples whose target and history are known."""
    codes = model.encode(examples[history_column].tolist())
    targets = model.encode([[item] for item in examples[model.item_key].tolist()])[:, -1]
    keep = (targets != OOV) & (codes != OOV).any(axis=1)
    device = model.device
    return torch.as_tensor(codes[keep], device=device), torch.as_tensor(
        targets[keep], device=device
    )


def train_sequence(
    train: pd.DataFrame,
    valid: pd.DataFrame | None,
    *,
    user_key: str,
    item_key: str,
    label: str,
    history_column: str,
    items: pd.DataFrame,
    content_columns: Sequence[str] = (),
    config: SequenceConfig | None = None,
) -> SequenceModel:
    """Fit on the train rows' positives with a history; keep the best validation epoch.

    ``items`` is the catalog (``item_key`` and the ``content_columns``, e.g. category and
    brand): its ids get the catalog vectors and the popularity ranking of cold users. The
    vocabulary is the catalog plus every item of the train histories and positives; other ids
    have no vector.
    """
    config = config or SequenceConfig()
    torch.manual_seed(config.seed)
    generator = torch.Generator().manual_seed(config.seed)
    examples = next_item_examples(
        train, history_column=history_column, item_key=item_key, label=label
    )
    if examples.empty:
        raise ValueError(f"no positive {label!r} row of the train split has a {history_column!r}")
    catalog = items.drop_duplicates(item_key, keep="last")
    seen = pd.concat(
        [catalog[item_key], examples[history_column].explode().dropna(), examples[item_key]],
        ignore_index=True,
    )
    vocabulary = pd.unique(seen.astype(train[item_key].dtype)).tolist()
    content = {
        c: sorted(catalog[c].dropna().astype(str).unique().tolist()) for c in content_columns
    }
    net = SequenceNet(len(vocabulary), config, [len(v) for v in content.values()])
    net = net.to(device_for(config))
    model = SequenceModel(config, user_key, item_key, history_column, vocabulary, net, content)
    _set_content_codes(model, catalog)
    codes, targets = _tensors(model, examples, history_column)
    log_q = None
    if config.logq_correction and config.negatives == "in_batch":
        counts = np.bincount(targets.cpu().numpy(), minlength=len(vocabulary) + 1)
        log_q = torch.as_tensor(np.log(np.maximum(counts, 1) / counts.sum()), device=model.device)
        log_q = log_q.float()
    held_out = None
    if valid is not None:
        valid_examples = next_item_examples(
            valid, history_column=history_column, item_key=item_key, label=label
        )
        if len(valid_examples):
            held_out = _tensors(model, valid_examples, history_column)
    engine = current_training_engine()
    if engine is not None:
        _fit_distributed(engine, model, codes, targets, held_out, log_q)
    else:
        _fit(model, codes, targets, held_out, log_q, generator)
    positives = train[train[label].to_numpy(dtype=float) > 0]
    model.catalog_ids, model.catalog_vectors = model.item_embeddings(
        items[[item_key]].drop_duplicates(item_key, keep="last")
    )
    model.popularity = popularity_scores(positives, model.catalog_ids, item_key)
    return model


def _set_content_codes(model: SequenceModel, catalog: pd.DataFrame) -> None:
    """Each vocabulary row's content value codes (0: unknown), from the catalog."""
    rows = pd.Index(catalog[model.item_key]).get_indexer(pd.Index(model.item_ids))
    codes = np.zeros((len(model.item_ids) + 1, len(model.content)), dtype=np.int64)
    for column, (name, values) in enumerate(model.content.items()):
        found = rows >= 0
        raw = catalog[name].to_numpy()[rows[found]]
        known = pd.Series(raw).notna().to_numpy()
        position = pd.Index(values).get_indexer(pd.Series(raw).astype(str)) + 1
        codes[1:, column][found] = np.where(known, position, 0)
    model.net.codes.copy_(torch.as_tensor(codes, device=model.device))


def content_columns(catalog: pd.DataFrame, item_key: str) -> list[str]:
    """The catalog's categorical columns (text or category dtype), the key excepted."""
    return [
        c
        for c in catalog.columns
        if c != item_key
        and (
            pd.api.types.is_string_dtype(catalog[c])
            or isinstance(catalog[c].dtype, pd.CategoricalDtype)
        )
    ]


def _fit(
    model: SequenceModel,
    codes: torch.Tensor,
    targets: torch.Tensor,
    held_out: tuple[torch.Tensor, torch.Tensor] | None,
    log_q: torch.Tensor | None,
    generator: torch.Generator,
) -> None:
    """The training loop: shuffled batches, Adam, the best validation epoch's weights kept."""
    config, net = model.config, model.net
    loss_of = SequenceLoss(net, config, codes, targets, log_q, generator)
    optimizer = torch.optim.Adam(net.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    best, best_state = math.inf, None
    started = time.perf_counter()
    for epoch in range(config.epochs):
        net.train()
        order = torch.randperm(len(targets), generator=generator).to(targets.device)
        total, steps = 0.0, 0
        for start in range(0, len(order), config.batch_size):
            batch = order[start : start + config.batch_size]
            loss = loss_of(batch)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            total, steps = total + loss.item(), steps + 1
        net.eval()
        record = {"epoch": float(epoch), "train_loss": total / max(steps, 1)}
        if held_out is not None and len(held_out[1]):
            record["valid_loss"] = held_out_loss(net, config, *held_out, log_q, generator)
            if record["valid_loss"] < best:
                best, best_state = record["valid_loss"], copy.deepcopy(net.state_dict())
        model.history.append(record)
        _log_epoch(record, config.epochs, time.perf_counter() - started)
    if best_state is not None:
        net.load_state_dict(best_state)
    net.eval()
    model.train_seconds = time.perf_counter() - started
    model.examples_per_second = len(targets) * config.epochs / max(model.train_seconds, 1e-9)


def _log_epoch(record: dict[str, float], epochs: int, seconds: float) -> None:
    """``sequence epoch 3/10: train loss 4.1234, validation loss 4.5678, 1.2 s`` (since the
    fit started)."""
    logger.info(
        "sequence epoch %d/%d: train loss %.4f, validation loss %.4f, %.1f s",
        int(record["epoch"]) + 1,
        epochs,
        record["train_loss"],
        record.get("valid_loss", math.nan),
        seconds,
    )


def _fit_distributed(
    engine: TrainingEngine,
    model: SequenceModel,
    codes: torch.Tensor,
    targets: torch.Tensor,
    held_out: tuple[torch.Tensor, torch.Tensor] | None,
    log_q: torch.Tensor | None,
) -> None:
    """The same fit through Ray Train's TorchTrainer on the engine's cluster (DDP, gloo, CPU):
    the best epoch's weights come back into ``model.net``, the fit's record into ``engine``."""
    from runtime.ray_sequence import train_sequence_on_ray  # only a Ray run imports Ray

    fit = train_sequence_on_ray(model, codes, targets, held_out, log_q, engine.execution)
    engine.fits.append(fit)
    model.net.load_state_dict(fit.state_dict)
    model.net.eval()
    model.history = list(fit.history)
    model.train_seconds = fit.seconds
    model.examples_per_second = fit.examples / max(fit.seconds, 1e-9)
    elapsed = 0.0
    for record, seconds in zip(fit.history, fit.epoch_seconds, strict=True):
        elapsed += seconds
        _log_epoch(record, model.config.epochs, elapsed)
    logger.info(
        "sequence model trained on Ray Train: %d workers on %d node(s), examples per worker"
        " %s, %.1f s",
        fit.layout.workers,
        len(fit.nodes),
        "/".join(str(w["rows"]) for w in fit.workers),
        fit.seconds,
    )


def train_sequence_retrieval(
    spec: UseCaseSpec, model: str, frame: pd.DataFrame | SetSplits, catalog: pd.DataFrame | None
) -> TrainedRetrieval:
    """Fit the sequence model of ``model`` and evaluate it on the test split like a two-tower.

    Only the positives of train and validation become examples, so those are all it holds of
    them (their user, item and history), read a chunk at a time when the splits are streamed."""
    stage = spec.model[model]
    user_key, item_key, _ = retrieval_keys(spec, model)
    label = next(iter(label_columns(spec, model).values()))
    history = history_feature(spec, model)
    if history is None or history[0] not in frame.columns:
        raise ValueError(
            f"{spec.name}: model.{model}: the training set has no recent-items list"
            f" ({history[0] if history else 'a last_n aggregate of ' + item_key}); materialize"
            " it again after adding the aggregate"
        )
    columns = [user_key, item_key, history[0]]
    splits = retrieval_splits(spec, model, frame, label, columns)
    items = catalog if catalog is not None else set_items(frame, item_key)
    config = sequence_config(stage.embedding_dim, stage.epochs, stage.sequence, stage.params)
    fitted = train_sequence(
        splits.positives,  # its examples and popularity are the train positives
        positive_rows(splits.valid, label, [*columns, label]),
        user_key=user_key,
        item_key=item_key,
        label=label,
        history_column=history[0],
        items=items,
        content_columns=content_columns(items, item_key),
        config=config,
    )
    options = retrieval_options(spec, model, splits.train, label)
    if stage.evaluation.exclude_seen is None:
        # the two-tower's default: the same rows, the same rule
        options["seen"] = splits.positives
    name = f"sequence ({config.encoder})"
    trained = evaluated_retrieval(spec, fitted, splits, label, user_key, item_key, options, name)
    trained.metrics["train_examples"] = float(
        len(
            next_item_examples(
                splits.positives, history_column=history[0], item_key=item_key, label=label
            )
        )
    )
    return trained
