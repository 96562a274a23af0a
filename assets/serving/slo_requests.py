"""The request bodies the SLO check sends: recorded from the test split, with a cold share.

The test split is the traffic the model was not trained on, so its events stand for the
requests the service will get. Each sampled event becomes the body its endpoint takes:

* ``/score``: ``{"transaction": {...}}`` with the event's columns as the transaction, except
  labels and what reveals them (a label's column, ``available_at``, outcomes: unknown when a
  transaction is scored) and timestamps (a live request is scored as of its arrival);
* ``/recommend`` and ``/search``: the unit (``user_id``, ``query``) and ``k`` from the serving
  section.

``slo.cold_share`` of the bodies get a unit id never seen in the events (the largest id plus
one and up, or ``cold-<n>`` for string ids): a new user or card, answered without stored
features. Plain functions, no Dagster.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd
from upath import UPath

from assets.raw.event_log import log_columns, read_events
from assets.split.plan import assign_split
from configs.schema.slo import SLOSpec
from configs.schema.usecase import UseCaseSpec
from runtime.funnel_roles import funnel_models, retrieval_keys
from runtime.request_log import plain_json_value


def test_events(spec: UseCaseSpec, files: Sequence[UPath], plan: pd.DataFrame) -> pd.DataFrame:
    """The raw events of the test split, as the split plan assigns them, read one file at a
    time: a row's split depends on that row alone (its time, group or test-file mark), so only
    one file and the test rows are ever in memory; rows in log order, as from the whole log."""
    pieces = []
    for path in files:
        frame = read_events([path], log_columns([path]))
        split = assign_split(spec.split, frame, plan, spec.events.timestamp, spec.events.group)
        pieces.append(frame[split.to_numpy() == "test"])
        del frame
    rows = pd.concat(pieces, ignore_index=True)
    if rows.empty:
        raise ValueError(f"{spec.name}: the test split has no events to draw requests from")
    return rows


def unit_column(spec: UseCaseSpec) -> str:
    """The events column of the request's unit: the user (or query) key of a funnel, else the
    experiment's unit or the first entity key among the events columns."""
    models = funnel_models(spec)
    if models is not None:
        return retrieval_keys(spec, models[0])[0]
    if spec.experiment is not None:
        return spec.experiment.unit
    return next(e.key for e in spec.entities.values() if e.key in spec.events.columns)


def _transaction_columns(spec: UseCaseSpec) -> list[str]:
    hidden: set[str] = set()
    for label in spec.labels.values():
        hidden |= {label.column, *label.outcomes}
        if label.available_at:
            hidden.add(label.available_at)
    return [
        name
        for name, column in spec.events.columns.items()
        if name not in hidden and column.dtype != "timestamp"
    ]


def _cold_ids(known: pd.Series, count: int) -> list[Any]:
    if pd.api.types.is_integer_dtype(known):
        start = int(known.max()) + 1 if len(known) else 1
        return list(range(start, start + count))
    return [f"cold-{i}" for i in range(count)]


def request_bodies(
    spec: UseCaseSpec, known_units: pd.Series, test: pd.DataFrame, slo: SLOSpec, seed: int = 0
) -> list[dict[str, Any]]:
    """``slo.bodies`` bodies (fewer if the test split is smaller) for ``spec``'s endpoint, drawn
    from ``test``; ``known_units`` (the unit column of every event) tells which ids are known,
    so a cold one is none of them."""
    if spec.serving is None:
        raise ValueError(f"{spec.name}: no serving section, so no endpoint to send requests to")
    rows = test.sample(n=min(slo.bodies, len(test)), random_state=seed).reset_index(drop=True)
    unit = unit_column(spec)
    cold = np.random.default_rng(seed).permutation(len(rows))[: round(slo.cold_share * len(rows))]
    records = rows.to_dict("records")  # Python values, each column keeping its own type
    for position, new_id in zip(cold, _cold_ids(known_units, len(cold)), strict=True):
        records[position][unit] = new_id
    endpoint = spec.serving.endpoint
    if endpoint == "score":
        columns = _transaction_columns(spec)
        return [
            {
                "transaction": {
                    c: v for c in columns if (v := plain_json_value(record[c])) is not None
                }
            }
            for record in records
        ]
    field = "user_id" if endpoint == "recommend" else "query"
    return [{field: plain_json_value(record[unit]), "k": spec.serving.k} for record in records]
