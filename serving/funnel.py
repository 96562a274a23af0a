"""The served funnel (feed ``/recommend``, search ``/search``): retrieve, filter, rank, diversify.

Per request: the user's (or query's) online features -> query-tower embedding -> the FAISS index
returns ``serving.candidates`` items from the whole catalog (a cold unit -- unknown id and no
history -- gets the most popular items instead) -> items in the unit's recent history lists are
dropped -> the ranking model scores the candidates on their online features -> the category cap
(``serving.max_per_category``) and ``k`` make the answer. The same rules as the offline funnel
evaluation (``assets.funnel.evaluate``): both take the roles of models and columns from
``runtime.funnel_roles`` and the post-processing from ``runtime.postprocess``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import faiss
import numpy as np
import pandas as pd

from runtime.ann_index import ExactSearch
from runtime.bundle import Bundle
from runtime.funnel_roles import category_column, funnel_models, history_items, retrieval_keys
from runtime.postprocess import filter_seen, select_and_order
from runtime.request_log import RequestLog, plain_json_value
from runtime.routing import Arm
from serving.handler import Handler, Served
from serving.request_schemas import funnel_schema
from serving.requests import RequestError, now


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
        self.schema = funnel_schema(spec, self.unit_field, self.user_dtype, passthrough)
        self.searchers: dict[str, Any] = {}
        self.popular: dict[str, np.ndarray] = {}
        for (name, version), model in bundle.models.items():
            if name != self.retrieval:
                continue
            if bundle.manifest.index_versions.get(name) == version:
                self.searchers[version] = bundle.indices[name]
            else:
                self.searchers[version] = ExactSearch(model.catalog_ids, model.catalog_vectors)
            order = np.argsort(-model.popularity, kind="stable")
            self.popular[version] = np.asarray(model.catalog_ids)[order]

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
        """The funnel for a batch: one user read, one query-tower call and one FAISS search per
        retriever version, one candidate read and one ranker call per ranker version."""
        user, user_misses = self.features.read(
            self.retrieval,
            pd.DataFrame({self.user_key: [r.unit for r in requests]}),
            pd.Series([r.as_of for r in requests]),
            views=self.user_views,
        )
        self._retrieve(requests, user)
        candidates, item_misses, owners = self._rank(requests)
        return self._answers(requests, user, candidates, owners, user_misses, item_misses)

    def _retrieve(self, requests: list[_Request], user: pd.DataFrame) -> None:
        """Each request's candidate pool: the index's nearest items to its query-tower vector
        (the popular items when the unit is cold), less what the unit has already seen."""
        candidates = self.spec.serving.candidates
        versions = [r.arm.versions[self.retrieval] for r in requests]
        for version in dict.fromkeys(versions):
            retriever = self.bundle.model(self.retrieval, version)
            chosen = [i for i, v in enumerate(versions) if v == version]
            rows = user.iloc[chosen].reset_index(drop=True)
            for column in retriever.user_columns:
                if column not in rows.columns:
                    rows[column] = None  # a feature the store lacks reads as missing
            warm = retriever.is_warm(rows)
            found = np.zeros((0, 0), dtype=np.int64)
            if warm.any():
                vectors = retriever.user_embeddings(rows[warm].reset_index(drop=True))
                found, _ = self.searchers[version].search(vectors, candidates)
            nearest = iter(found)
            for row, (i, is_warm) in enumerate(zip(chosen, warm, strict=True)):
                request = requests[i]
                request.cold = not bool(is_warm)
                if request.cold:
                    pool = self.popular[version][:candidates]
                else:
                    hits = next(nearest)
                    pool = hits[hits != -1]
                request.pool = filter_seen(pool.tolist(), history_items(rows.iloc[[row]]))

    def _rank(self, requests: list[_Request]) -> tuple[pd.DataFrame, np.ndarray, np.ndarray]:
        """Every request's candidates in one frame with their features and ``__score`` column,
        the misses per row, and which request owns each row."""
        sizes = [len(r.pool) for r in requests]
        owners = np.repeat(np.arange(len(requests)), sizes)
        items = [item for r in requests for item in r.pool]
        rows = pd.DataFrame(
            {self.user_key: [requests[o].unit for o in owners], self.item_key: items}
        )
        if items:
            rows[self.item_key] = rows[self.item_key].astype(np.asarray(items).dtype)
        as_of = pd.Series([requests[o].as_of for o in owners], dtype=object)
        candidates, misses = self.features.read(self.ranking, rows, pd.to_datetime(as_of))
        asked = [c for r in requests for c in r.context if c in self.context_columns]
        for column in dict.fromkeys(asked):
            candidates[column] = [requests[o].context.get(column) for o in owners]
        scores = np.zeros(len(candidates))
        versions = np.array([requests[o].arm.versions[self.ranking] for o in owners], dtype=object)
        for version in dict.fromkeys(versions.tolist()):
            chosen = versions == version
            ranker = self.bundle.model(self.ranking, version)
            scores[chosen] = ranker.predict(candidates[chosen].reset_index(drop=True))
        candidates["__score"] = scores
        return candidates, misses, owners

    def _answers(
        self,
        requests: list[_Request],
        user: pd.DataFrame,
        candidates: pd.DataFrame,
        owners: np.ndarray,
        user_misses: np.ndarray,
        item_misses: np.ndarray,
    ) -> list[Served]:
        """Per request: the first ``k`` candidates in retrieval order within the category cap,
        ordered by the ranker's score (:func:`runtime.postprocess.select_and_order`, the rule the
        offline funnel evaluation measures); response and log."""
        serving = self.spec.serving
        category = category_column(candidates.columns)
        item_values = candidates[self.item_key].tolist()
        categories = candidates[category].tolist() if category else [None] * len(candidates)
        scores = candidates["__score"].to_numpy()
        starts = np.concatenate([[0], np.cumsum([len(r.pool) for r in requests])])
        finals, shown = [], []
        for i, request in enumerate(requests):
            start, end = starts[i], starts[i + 1]
            final = select_and_order(
                item_values[start:end],
                categories[start:end],
                scores[start:end],
                request.k,
                serving.max_per_category,
            )
            row_of = {item_values[j]: j for j in range(start, end)}
            finals.append([row_of[item] for item in final])
            shown.extend(finals[-1])
        logged = candidates.drop(columns=[self.user_key, "__score"]).iloc[shown]
        logged_rows = iter(logged.to_dict("records"))
        users = user.to_dict("records")
        out: list[Served] = []
        for i, request in enumerate(requests):
            rows = finals[i]
            misses = int(user_misses[i] + item_misses[owners == i].sum())
            items = [
                {self.item_key: plain_json_value(item_values[j]), "score": float(scores[j])}
                for j in rows
            ]
            response = {
                "items": items,
                "arm": request.arm.name,
                "model_versions": dict(request.arm.versions),
                "cold_start": request.cold,
                "candidates": len(request.pool),
                "feature_misses": misses,
            }
            extras = {
                "unit": request.unit,
                "features": {"user": users[i], "items": [next(logged_rows) for _ in rows]},
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
