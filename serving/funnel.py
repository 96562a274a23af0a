"""The served funnel (feed ``/recommend``, search ``/search``): retrieve, filter, rank, diversify.

Per request: the user's (or query's) online features -> each retriever's user vector (the
two-tower's query tower; a sequence model's encoder over the recent-items list read from the
store) -> its FAISS index returns ``serving.candidates`` items from the whole catalog -> items in
the unit's recent history lists are dropped -> the sources' lists are merged by rank
(:func:`runtime.funnel_roles.merge_candidates`: a repeat keeps its better rank, every item
records its source) into ``serving.candidates`` items; a source with nothing to go on for the
unit (cold: unknown id and no history) adds nothing, and a unit cold for every source gets the
most popular items -> the first ``k`` in that order within the category cap
(``serving.max_per_category``, the categories read from the item cache) are the answer's items ->
the ranking model scores those on their online features and orders them. The same rules as the
offline funnel evaluation (``assets.funnel.evaluate``): both take the roles of models and columns from
``runtime.funnel_roles`` and the post-processing from ``runtime.postprocess``.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import faiss
import numpy as np
import pandas as pd
import torch

from runtime.ann_index import ExactSearch
from runtime.bundle import Bundle
from runtime.funnel_roles import (
    category_column,
    funnel_models,
    funnel_retrievers,
    history_items,
    merge_candidates,
    retrieval_keys,
)
from runtime.postprocess import cap_per_category, filter_seen, order_by_score
from runtime.request_log import RequestLog, frame_records, plain_json_value
from runtime.routing import Arm
from serving.handler import Handler, Served
from serving.request_schemas import funnel_schema
from serving.requests import RequestError, now

POPULAR = "popular"  # the source of a unit cold for every retriever: the most popular items


class FunnelHandler(Handler):
    """``/recommend`` (feed) and ``/search``: the two-stage funnel of a use case."""

    def __init__(self, bundle: Bundle, log: RequestLog | None = None) -> None:
        spec = bundle.spec
        models = funnel_models(spec)
        if models is None:
            raise ValueError(
                f"{spec.name}: the funnel needs a retriever (two_tower or sequence) and a"
                " ranking model"
            )
        self.retrieval, self.ranking = models
        self.retrievers = funnel_retrievers(spec)
        self.user_key, self.item_key, item_entity = retrieval_keys(spec, self.retrieval)
        for other in self.retrievers:
            if retrieval_keys(spec, other)[:2] != (self.user_key, self.item_key):
                raise ValueError(
                    f"{spec.name}: retrievers {self.retrieval!r} and {other!r} rank different"
                    " units or items; the funnel merges candidates of one user and item key"
                )
        self.user_dtype = next(e.dtype for e in spec.entities.values() if e.key == self.user_key)
        super().__init__(bundle, log, cached_keys=(self.item_key,))
        # one query per request: OpenMP's thread start-up costs more than the search itself
        faiss.omp_set_num_threads(1)
        self.endpoint = spec.serving.endpoint
        self.unit_field = "user_id" if self.endpoint == "recommend" else "query"
        # the user views each retriever reads, one store read per distinct set of views
        self.user_reads: dict[str, list[str]] = {}
        for name in self.retrievers:
            views = self.features.views_keyed_by(name, {self.user_key})
            if views not in self.user_reads.values():
                self.user_reads[name] = views
        # the category the cap counts, and the (cached item) view it is read from
        self.category_views: list[str] = []
        self.category: str | None = None
        for view, columns in self.features.view_columns(self.ranking).items():
            self.category = category_column(list(columns))
            if self.category is not None:
                self.category_views = [view]
                break
        passthrough = [c for v in spec.features.values() for c in v.passthrough]
        self.context_columns = set(passthrough)
        self.schema = funnel_schema(spec, self.unit_field, self.user_dtype, passthrough)
        self.searchers: dict[tuple[str, str], Any] = {}  # (retriever, version) -> index
        self.popular: dict[tuple[str, str], np.ndarray] = {}
        for (name, version), model in bundle.models.items():
            if name not in self.retrievers:
                continue
            if bundle.manifest.index_versions.get(name) == version:
                self.searchers[name, version] = bundle.indices[name]
            else:
                self.searchers[name, version] = ExactSearch(
                    model.catalog_ids, model.catalog_vectors
                )
            order = np.argsort(-model.popularity, kind="stable")
            self.popular[name, version] = np.asarray(model.catalog_ids)[order]

    def ready(self) -> None:
        """As :meth:`Handler.ready`, and one torch thread for the query and sequence towers.

        A serving process is one worker per core, each answering one batch at a time; torch's
        default pool of a thread per core made the workers' towers fight over the cores. Measured
        on the feed behind both servers (2 workers, 8 clients, ``bench/serving_latency.py``):
        p95 232-239 ms with torch's default, 42-53 ms with one thread. Like ``gc.freeze``, it is a
        choice for the whole process, so it is made here, where the service readies its handler,
        not in ``__init__`` (a handler built in a test or a Dagster run leaves torch alone).
        """
        torch.set_num_threads(1)
        super().ready()

    def parse(self, payload: Mapping[str, Any]) -> _Request:
        """The request as the endpoint's schema (:func:`serving.request_schemas.funnel_schema`):
        the unit in the key's type, ``k`` in range, only passthrough columns in ``context``,
        ``as_of`` in range; the first problem is a RequestError naming its field."""
        sent = self.schema.validate(payload)
        unit = sent[self.unit_field]
        as_of = sent.get("as_of")
        return _Request(
            unit=unit,
            k=sent.get("k") or self.spec.serving.k,
            context=sent.get("context") or {},
            as_of=now() if as_of is None else as_of,
            arm=self.arm_for(unit),
        )

    def serve_parsed(self, requests: list[_Request]) -> list[Served | RequestError]:
        """The funnel for a batch: one user read per distinct set of user views, one encoder
        call and one FAISS search per retriever version, one candidate read and one ranker call
        per ranker version."""
        units = pd.DataFrame({self.user_key: [r.unit for r in requests]})
        as_of = pd.Series([r.as_of for r in requests])
        # the reads' columns gathered by name, one frame built at the end: a selection and a
        # concat per read copied every column, 5 % of a feed request
        columns: dict[str, pd.Series] = {self.user_key: units[self.user_key]}
        user_misses = np.zeros(len(requests), dtype=int)
        for service, views in self.user_reads.items():
            part, misses = self.features.read(service, units, as_of, views=views)
            for column in part.columns:
                columns.setdefault(column, part[column])
            user_misses = user_misses + misses
        user = pd.DataFrame(columns)
        self._retrieve(requests, user)
        candidates, item_misses, owners = self._rank(requests)
        return self._answers(requests, user, candidates, owners, user_misses, item_misses)

    def _retrieve(self, requests: list[_Request], user: pd.DataFrame) -> None:
        """Each request's candidate pool: every retriever's nearest items to its user vector,
        less what the unit has already seen, merged by rank (each item with its source); the
        popular items when no retriever has a vector for the unit."""
        candidates = self.spec.serving.candidates
        found = [self._search(name, requests, user, candidates) for name in self.retrievers]
        histories = history_items(user)
        for i, request in enumerate(requests):
            seen = histories[i]
            pools = {name: hits[i] for name, hits in zip(self.retrievers, found, strict=True)}
            pools = {name: filter_seen(pool, seen) for name, pool in pools.items() if pool}
            request.cold = not pools
            if request.cold:
                popular = self.popular[self.retrieval, request.arm.versions[self.retrieval]]
                pools = {POPULAR: filter_seen(popular[:candidates].tolist(), seen)}
            request.pool, request.sources = merge_candidates(pools, candidates)

    def _search(
        self, name: str, requests: list[_Request], user: pd.DataFrame, candidates: int
    ) -> list[list[Any] | None]:
        """One retriever's nearest items per request (None where the unit is cold for it): one
        encoder call and one index search per version of it."""
        out: list[list[Any] | None] = [None] * len(requests)
        versions = [r.arm.versions[name] for r in requests]
        for version in dict.fromkeys(versions):
            retriever = self.bundle.model(name, version)
            chosen = [i for i, v in enumerate(versions) if v == version]
            # the whole batch (one version, the usual case) is the frame itself, not a copy
            rows = user if len(chosen) == len(user) else user.iloc[chosen].reset_index(drop=True)
            lacking = [c for c in retriever.user_columns if c not in rows.columns]
            if lacking:  # a feature the store lacks reads as missing
                rows = rows.assign(**dict.fromkeys(lacking))
            warm = retriever.is_warm(rows)
            if not warm.any():
                continue
            if not warm.all():
                rows = rows[warm].reset_index(drop=True)
            vectors = retriever.user_embeddings(rows)
            found, _ = self.searchers[name, version].search(vectors, candidates)
            for i, hits in zip(np.asarray(chosen)[warm], found, strict=True):
                out[i] = hits[hits != -1].tolist()
        return out

    def _rank(self, requests: list[_Request]) -> tuple[pd.DataFrame, np.ndarray, np.ndarray]:
        """The candidates each request shows, in one frame with their features and ``__score``;
        the misses per row, and which request owns each row (a request's rows are together).

        Only the shown candidates are scored: the pick (the first ``k`` of the pool in retrieval
        order within the category cap, :meth:`_picks`) does not depend on the score, which only
        orders it (:func:`runtime.postprocess.select_and_order`). Scoring the whole pool (500 on
        the feed) for ``k`` shown items was two thirds of a request's CPU.
        """
        stamps = pd.to_datetime(pd.Series([r.as_of for r in requests], dtype=object))
        picks = self._picks(requests)
        owners = np.repeat(np.arange(len(requests)), [len(p) for p in picks])
        rows = self._item_rows([item for p in picks for item in p])
        rows.insert(0, self.user_key, [requests[o].unit for o in owners])
        # each request's time once, repeated per row: converting one object per row cost as
        # much as the ranker's feature matrix
        as_of = pd.Series(stamps.array[owners])
        candidates, misses = self.features.read(self.ranking, rows, as_of)
        asked = [c for r in requests for c in r.context if c in self.context_columns]
        for column in dict.fromkeys(asked):
            candidates[column] = [requests[o].context.get(column) for o in owners]
        scores = np.zeros(len(candidates))
        versions = np.array([requests[o].arm.versions[self.ranking] for o in owners], dtype=object)
        for version in dict.fromkeys(versions.tolist()):
            chosen = versions == version
            ranker = self.bundle.model(self.ranking, version)
            rows = candidates if chosen.all() else candidates[chosen].reset_index(drop=True)
            scores[chosen] = ranker.predict(rows)
        candidates["__score"] = scores
        return candidates, misses, owners

    def _picks(self, requests: list[_Request]) -> list[list[Any]]:
        """Per request, the items shown: the first ``k`` of its pool within the category cap
        (:func:`runtime.postprocess.cap_per_category`), the pool's categories read from the
        item cache in one read for the batch, without a frame."""
        cap = self.spec.serving.max_per_category
        if self.category is None or cap is None:
            return [r.pool[: r.k] for r in requests]
        sizes = [len(r.pool) for r in requests]
        items = {self.item_key: [item for r in requests for item in r.pool]}
        read, _ = self.features.read_columns(
            self.ranking, items, sum(sizes), views=self.category_views
        )
        categories = list(read[self.category])
        starts = np.concatenate([[0], np.cumsum(sizes)])
        return [
            cap_per_category(r.pool, categories[starts[i] : starts[i + 1]], r.k, cap)
            for i, r in enumerate(requests)
        ]

    def _item_rows(self, items: list[Any]) -> pd.DataFrame:
        """The item key column of a read, in the items' own type."""
        rows = pd.DataFrame({self.item_key: items})
        if items:
            rows[self.item_key] = rows[self.item_key].astype(np.asarray(items).dtype)
        return rows

    def _answers(
        self,
        requests: list[_Request],
        user: pd.DataFrame,
        candidates: pd.DataFrame,
        owners: np.ndarray,
        user_misses: np.ndarray,
        item_misses: np.ndarray,
    ) -> list[Served]:
        """Per request: its shown candidates best score first, ties in retrieval order
        (:func:`runtime.postprocess.order_by_score`, the rule the offline funnel evaluation
        measures); response and log. The log's ``features`` are ``{"user": the unit's features,
        "items": one row per shown item}``, an item's row without the unit's columns: repeated
        per item they were over half of the log's JSON, a tenth of a feed request's CPU with its
        encoding and writing. ``feature_misses`` counts the unit's views and the shown
        items' rows, the features the answer was scored on."""
        item_values = candidates[self.item_key].tolist()
        scores = candidates["__score"].to_numpy()
        starts = np.concatenate([[0], np.cumsum(np.bincount(owners, minlength=len(requests)))])
        finals, sources = [], []
        for i, request in enumerate(requests):
            start, end = starts[i], starts[i + 1]
            finals.append(order_by_score(list(range(start, end)), scores[start:end]))
            sources.append(dict(zip(request.pool, request.sources, strict=True)))
        # an item's row without the unit's features, logged once per request under "user";
        # every row is shown (only the shown items were scored), so the rows are taken by
        # position from the records, not from a copy of the frame
        unit_columns = {*user.columns, self.user_key, "__score"} - {self.item_key}
        item_rows = frame_records(candidates, skip=unit_columns)
        users = frame_records(user)
        out: list[Served] = []
        for i, request in enumerate(requests):
            rows = finals[i]
            misses = int(user_misses[i] + item_misses[starts[i] : starts[i + 1]].sum())
            items = [
                {
                    self.item_key: plain_json_value(item_values[j]),
                    "score": float(scores[j]),
                    "source": sources[i][item_values[j]],
                }
                for j in rows
            ]
            response = {
                "items": items,
                "arm": request.arm.name,
                "model_versions": dict(request.arm.versions),
                "cold_start": request.cold,
                "candidates": len(request.pool),
                "candidate_sources": dict(Counter(request.sources)),
                "feature_misses": misses,
            }
            extras = {
                "unit": request.unit,
                "features": {"user": users[i], "items": [item_rows[j] for j in rows]},
                "scores": [item["score"] for item in items],
                "misses": misses,
            }
            out.append((response, extras))
        return out


@dataclass
class _Request:
    """One parsed request, and its candidate pool once retrieved."""

    unit: Any
    k: int
    context: dict[str, Any]
    as_of: pd.Timestamp
    arm: Arm
    cold: bool = False
    pool: list[Any] = field(default_factory=list)
    sources: list[str] = field(default_factory=list)  # per pool item: the retriever that found it
