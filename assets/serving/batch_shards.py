"""Batch scoring in shards of whole entities, on the use case's engine (this process or Ray).

Why: a scoring run joins every (entity, window) row to its features as of the window's close
and calls the model on them; the join holds the rows, every feature column and DuckDB's working
set at once. Cut by a hash of the entity key (:func:`runtime.shards.split_frame`), each shard
is joined and scored on its own -- one shard at a time in this process, or as Ray tasks that
each read the feature tables' Parquet files themselves -- and only the scores come back. The
scores are the one-pass scores: the join and the model work row by row, and the rows are put
back in the one-pass order (window, then key) before anything is written.

The feature tables' files must be visible to every node (the home on storage all nodes mount),
as the shard folder under ``execution.storage`` is.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import partial
from typing import Any

import pandas as pd

from assets.training.build import join_features
from configs.schema.usecase import UseCaseSpec
from runtime.batch_predictions import scores
from runtime.shards import (
    ShardEngine,
    ShardResult,
    read_outputs,
    shard_count,
    shard_workspace,
    split_frame,
)

# What a scoring shard imports on a worker: checked on every node before a Ray run starts.
SCORING_MODULES = ("assets.serving.batch_shards", "assets.training.build")
_ROW = "__row"  # the one-pass position of a scoring row, to put the shards' rows back in order


def score_shard(
    source: str,
    target: str,
    *,
    spec: UseCaseSpec,
    model: str,
    scorer: Any,
    paths: dict[str, str],
    columns: tuple[str, ...],
) -> int:
    """One shard of scoring rows: joined to the feature tables, scored, the outputs written
    beside the rows' positions. Module-level so that Ray ships it by reference."""
    rows = pd.read_parquet(source)
    joined, _ = join_features(spec, model, rows.drop(columns=[_ROW]), paths)
    out = pd.DataFrame({_ROW: rows[_ROW].to_numpy(), **scores(scorer, joined, columns)})
    out.to_parquet(target, index=False)
    return len(out)


def score_in_shards(
    spec: UseCaseSpec,
    model: str,
    scorer: Any,
    rows: pd.DataFrame,
    key: str,
    paths: dict[str, str],
    columns: Sequence[str],
    engine: ShardEngine,
) -> tuple[dict[str, Any], list[ShardResult]] | None:
    """The outputs of :func:`runtime.batch_predictions.scores` for ``rows`` (in their order),
    computed shard by shard on ``engine``, and the shard runs; None when the engine would run
    one local shard (the caller's one pass is that)."""
    shards = shard_count(engine.execution, len(rows), engine.cpus)
    if len(rows) == 0 or (shards == 1 and engine.execution.engine == "local"):
        return None
    function = partial(
        score_shard,
        spec=spec,
        model=model,
        scorer=scorer,
        paths=dict(paths),
        columns=tuple(columns),
    )
    numbered = rows.reset_index(drop=True).assign(**{_ROW: range(len(rows))})
    with shard_workspace(engine.execution, f"{spec.name}/predictions") as folder:
        results = engine.run(function, split_frame(numbered, [key], shards, folder))
        table = read_outputs(results).sort_values(_ROW, ignore_index=True)
    return {c: table[c].to_numpy() for c in columns}, results
