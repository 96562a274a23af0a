"""Which model and column plays which part in a use case's two-stage funnel.

The served funnel (``serving.funnel``), the offline funnel evaluation, training and the index
asset all ask the same questions of a spec -- which model retrieves and which ranks, which entity
is the user and which the item, which column the category cap groups by -- and get their answers
here, so the two sides cannot disagree.
"""

from __future__ import annotations

from itertools import chain, zip_longest

import numpy as np
import pandas as pd

from configs.schema.model_stage import RANKERS, RETRIEVERS  # noqa: F401 (re-exported)
from configs.schema.usecase import UseCaseSpec
from runtime.layout import FEATURE_SEPARATOR

_GAP = object()  # where a shorter pool has no item at a rank


def retrieval_keys(spec: UseCaseSpec, model: str) -> tuple[str, str, str]:
    """(user key, item key, item entity name) of a two-tower model."""
    stage = spec.model[model]
    in_events = [(n, e) for n, e in spec.entities.items() if e.key in spec.events.columns]
    if stage.negatives is not None:
        item_entity = stage.negatives.entity
    else:
        item_entity = in_events[-1][0]
    users = [e.key for n, e in in_events if n != item_entity]
    if not users:
        raise ValueError(f"{spec.name}: model.{model}: two_tower needs a user and an item entity")
    return users[0], spec.entities[item_entity].key, item_entity


def funnel_retrievers(spec: UseCaseSpec) -> list[str]:
    """Every candidate source of the funnel (two-tower and sequence retrievers), YAML order:
    the served funnel merges their candidates; the first is the primary one."""
    return [m for m, s in spec.model.items() if s.problem in RETRIEVERS]


def funnel_models(spec: UseCaseSpec) -> tuple[str, str] | None:
    """(primary retrieval model, ranking model) of a use case with both stages, else None."""
    retrievers = funnel_retrievers(spec)
    rankers = [m for m, s in spec.model.items() if s.problem in RANKERS]
    if not retrievers or not rankers or spec.events.group is None or spec.serving is None:
        return None
    return retrievers[0], rankers[0]


def merge_candidates(pools: dict[str, list], size: int) -> tuple[list, list[str]]:
    """One candidate list from several sources' ranked lists, and each item's source.

    Items are taken by rank across sources (every source's first, then every second, ...; at
    one rank the sources in the given order), a repeat is dropped, so each item keeps its
    better rank and the source that gave it; at most ``size`` items.

    Built in C rather than a loop per item (it runs for every request over two pools of 500):
    the pools interleaved by rank, each item's first position in that order (a dict built from
    the reversed order keeps the earliest), the items sorted by it.
    """
    names = list(pools)
    interleaved = list(chain.from_iterable(zip_longest(*pools.values(), fillvalue=_GAP)))
    first = dict(zip(reversed(interleaved), range(len(interleaved) - 1, -1, -1), strict=True))
    first.pop(_GAP, None)
    merged = sorted(first, key=first.__getitem__)[:size]
    return merged, [names[first[item] % len(names)] for item in merged]


def category_column(columns: list[str] | pd.Index) -> str | None:
    """The item category feature the diversity cap groups by (``<view>__category``)."""
    return next((c for c in columns if str(c).endswith(f"{FEATURE_SEPARATOR}category")), None)


def history_items(user_rows: pd.DataFrame) -> list[set]:
    """Per row, every id in the unit's list features (its recent history): already seen, not
    re-served. A column at a time, not a row frame at a time (``iloc`` per request cost more
    than the rest of the request's candidate filtering)."""
    seen: list[set] = [set() for _ in range(len(user_rows))]
    for column in user_rows.columns:
        for row, value in zip(seen, user_rows[column].tolist(), strict=True):
            if isinstance(value, list | tuple | np.ndarray):
                row.update(np.asarray(value).tolist())
    return seen
