"""The served funnel (feed ``/recommend``, search ``/search``): retrieve, filter, rank, diversify.

Per request: the user's (or query's) online features -> query-tower embedding -> the FAISS index
returns ``serving.candidates`` items from the whole catalog (a cold unit -- unknown id and no
history -- gets the most popular items instead) -> items in the unit's recent history lists are
dropped -> the ranking model scores the candidates on their online features -> the category cap
(``serving.max_per_category``) and ``k`` make the answer. The same rules as the offline funnel
evaluation (``assets.funnel.evaluate``), which imports the helpers below.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import faiss
import numpy as np
import pandas as pd

from configs.schema.usecase import UseCaseSpec
from serving.bundle import Bundle
from serving.handler import Handler
from serving.postprocess import cap_per_category, filter_seen
from serving.request_log import RequestLog
from serving.requests import entity_value, mapping, moment, no_extra, top_k

RANKERS = ("learning_to_rank", "multi_task")


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


def funnel_models(spec: UseCaseSpec) -> tuple[str, str] | None:
    """(retrieval model, ranking model) of a use case with both stages, else None."""
    retrievers = [m for m, s in spec.model.items() if s.problem == "two_tower"]
    rankers = [m for m, s in spec.model.items() if s.problem in RANKERS]
    if not retrievers or not rankers or spec.events.group is None or spec.serving is None:
        return None
    return retrievers[0], rankers[0]


def category_column(columns: list[str] | pd.Index) -> str | None:
    """The item category feature the diversity cap groups by (``<view>__category``)."""
    return next((c for c in columns if str(c).endswith("__category")), None)


def history_items(user_rows: pd.DataFrame) -> set:
    """Every id in the unit's list features (its recent history): already seen, not re-served."""
    seen: set = set()
    for column in user_rows.columns:
        for value in user_rows[column]:
            if isinstance(value, list | tuple | np.ndarray):
                seen.update(np.asarray(value).tolist())
    return seen


class _Exact:
    """Exact inner-product search over a retriever's own catalog vectors (an arm whose retriever
    version is not the one the FAISS index was built from)."""

    def __init__(self, ids: np.ndarray, vectors: np.ndarray) -> None:
        self.ids = np.asarray(ids)
        self.index = faiss.IndexFlatIP(vectors.shape[1])
        self.index.add(np.ascontiguousarray(vectors, dtype=np.float32))

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        scores, positions = self.index.search(np.ascontiguousarray(queries, np.float32), k)
        return np.where(positions >= 0, self.ids[np.maximum(positions, 0)], -1), scores


class FunnelHandler(Handler):
    """``/recommend`` (feed) and ``/search``: the two-stage funnel of a use case."""

    def __init__(self, bundle: Bundle, log: RequestLog | None = None) -> None:
        spec = bundle.spec
        models = funnel_models(spec)
        if models is None:
            raise ValueError(f"{spec.name}: the funnel needs a two_tower and a ranking model")
        self.retrieval, self.ranking = models
        self.user_key, self.item_key, item_entity = retrieval_keys(spec, self.retrieval)
        self.user_dtype = next(e.dtype for e in spec.entities.values() if e.key == self.user_key)
        super().__init__(bundle, log, cached_keys=(self.item_key,))
        # one query per request: OpenMP's thread start-up costs more than the search itself
        faiss.omp_set_num_threads(1)
        self.endpoint = spec.serving.endpoint
        self.unit_field = "user_id" if self.endpoint == "recommend" else "query"
        self.user_views = self.features.views_keyed_by(self.retrieval, {self.user_key})
        passthrough = [c for v in spec.features.values() for c in v.passthrough]
        self.context_columns = set(passthrough)
        self.searchers: dict[str, Any] = {}
        self.popular: dict[str, np.ndarray] = {}
        for (name, version), model in bundle.models.items():
            if name != self.retrieval:
                continue
            if bundle.manifest.index_versions.get(name) == version:
                self.searchers[version] = bundle.indices[name]
            else:
                self.searchers[version] = _Exact(model.catalog_ids, model.catalog_vectors)
            order = np.argsort(-model.popularity, kind="stable")
            self.popular[version] = np.asarray(model.catalog_ids)[order]

    def _parse(self, payload: Mapping[str, Any]) -> tuple[Any, int, dict, pd.Timestamp]:
        payload = mapping("body", payload, required=True)
        unit_field = self.unit_field if self.unit_field in payload else self.user_key
        no_extra(payload, {self.unit_field, self.user_key, "k", "context", "as_of"})
        unit = entity_value(unit_field, payload.get(unit_field), self.user_dtype)
        k = top_k(payload.get("k"), self.spec.serving.k)
        return (
            unit,
            k,
            mapping("context", payload.get("context")),
            moment("as_of", payload.get("as_of")),
        )

    def serve(self, payload: Mapping[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
        unit, k, context, as_of = self._parse(payload)
        serving = self.spec.serving
        arm = self.arm_for(unit)
        retriever = self.model(arm, self.retrieval)
        ranker = self.model(arm, self.ranking)
        version = arm.versions[self.retrieval]

        user, user_misses = self.features.read(
            self.retrieval, pd.DataFrame({self.user_key: [unit]}), as_of, views=self.user_views
        )
        for column in retriever.user_columns:
            if column not in user.columns:
                user[column] = None  # a feature the store lacks reads as missing
        cold = not bool(retriever.is_warm(user)[0])
        if cold:
            pool = self.popular[version][: serving.candidates]
        else:
            found, _ = self.searchers[version].search(
                retriever.user_embeddings(user), serving.candidates
            )
            pool = found[0][found[0] != -1]
        pool = filter_seen(pool.tolist(), history_items(user))

        rows = pd.DataFrame({self.user_key: [unit] * len(pool), self.item_key: pool})
        if pool:
            rows[self.item_key] = rows[self.item_key].astype(np.asarray(pool).dtype)
        candidates, item_misses = self.features.read(self.ranking, rows, as_of)
        for column, value in context.items():
            if column in self.context_columns:
                candidates[column] = value
        scores = ranker.predict(candidates) if len(candidates) else np.zeros(0)
        order = np.argsort(-scores, kind="stable")
        ranked = candidates.iloc[order]
        category = category_column(ranked.columns)
        cats = ranked[category].tolist() if category else [None] * len(ranked)
        final = cap_per_category(ranked[self.item_key].tolist(), cats, k, serving.max_per_category)
        by_item = dict(zip(ranked[self.item_key].tolist(), scores[order].tolist(), strict=True))
        items = [{self.item_key: _plain(i), "score": float(by_item[i])} for i in final]
        response = {
            "items": items,
            "arm": arm.name,
            "model_versions": dict(arm.versions),
            "cold_start": cold,
            "candidates": len(pool),
            "feature_misses": user_misses + item_misses,
        }
        shown = ranked[ranked[self.item_key].isin(final)]
        extras = {
            "unit": unit,
            "features": {
                "user": user.iloc[0].to_dict(),
                "items": shown.drop(columns=[self.user_key]).to_dict("records"),
            },
            "scores": [item["score"] for item in items],
            "misses": user_misses + item_misses,
        }
        return response, extras


def _plain(value: Any) -> Any:
    return value.item() if isinstance(value, np.generic) else value
