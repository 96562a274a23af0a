"""Train a two-tower retriever of a use case and evaluate it the honest way.

Users (or queries) and items (or documents) come from the spec: the item side is the sampled
entity of ``negatives`` (else the events' last entity key), its tower reads the features of the
tables keyed by it plus the catalog's content columns, so a new item still gets an embedding.
Evaluation ranks the whole catalog for each test user, removes what the user clicked in
training, and counts only future clicks — beside the popularity ranking, also the cold-user
fallback. The gate compares versions on the same recall@k.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from assets.models.evaluation import compare
from assets.models.evaluation_rows import retrieval_options
from assets.models.plots import cutoff_plot
from assets.models.retrieval_eval import evaluate_retrieval, popularity_baseline, popularity_scores
from assets.models.retrieval_splits import RetrievalSplits, retrieval_splits, set_items
from assets.models.two_tower import train_two_tower
from assets.training.model_views import label_columns, model_tables
from assets.training.set_splits import SetSplits
from configs.schema.usecase import UseCaseSpec
from runtime import layout
from runtime.funnel_roles import retrieval_keys
from runtime.models.features import SECONDS_SINCE
from runtime.models.two_tower import TwoTowerConfig, TwoTowerModel


@dataclass
class TrainedRetrieval:
    """A fitted two-tower model, its catalog embeddings and its evaluation beside popularity."""

    model: TwoTowerModel
    user_key: str
    item_key: str
    metrics: dict[str, float]
    baseline_metrics: dict[str, float]
    comparison: pd.DataFrame
    primary: str
    item_ids: np.ndarray
    item_vectors: np.ndarray
    evaluate: Any
    higher_is_better: bool = True
    extra: dict[str, Any] = field(default_factory=dict)


def _tower_features(spec: UseCaseSpec, model: str, item_entity: str, columns: pd.Index):
    user, item = [], []
    for table in model_tables(spec, model):
        names = [layout.feature_column(table.name, f) for f in table.feature_names]
        names = [n for n in names if n in columns]
        (item if item_entity in table.entities else user).extend(names)
    seconds = [c for c in columns if SECONDS_SINCE in c]
    return user + [c for c in seconds if c not in user and c not in item], item


def train_retrieval(
    spec: UseCaseSpec, model: str, frame: pd.DataFrame | SetSplits, catalog: pd.DataFrame | None
) -> TrainedRetrieval:
    """Fit the two-tower model of ``model`` and evaluate it on the test split (``frame``: the
    set in memory, or read by split with train and validation left in its file)."""
    stage = spec.model[model]
    user_key, item_key, item_entity = retrieval_keys(spec, model)
    label = next(iter(label_columns(spec, model).values()))
    splits = retrieval_splits(spec, model, frame, label, [user_key, item_key])
    user_features, item_features = _tower_features(spec, model, item_entity, frame.columns)
    # the catalog table, or (no entity table) every item the training set mentions
    items = catalog if catalog is not None else set_items(frame, item_key)
    config = TwoTowerConfig(
        embedding_dim=stage.embedding_dim,
        epochs=stage.epochs,
        **{k: v for k, v in stage.params.items() if k in TwoTowerConfig.__dataclass_fields__},
    )
    fitted = train_two_tower(
        splits.train,
        splits.valid,
        user_key=user_key,
        item_key=item_key,
        label=label,
        user_features=user_features,
        item_features=item_features,
        items=items,
        config=config,
    )
    # which users are judged and which items are left out of their lists (the YAML's evaluation)
    options = retrieval_options(spec, model, splits.train, label)
    return evaluated_retrieval(
        spec, fitted, splits, label, user_key, item_key, options, "two-tower"
    )


CURVE_KS = (5, 10, 20, 50, 100)  # the cut-offs of the recall@k plot


def evaluated_retrieval(
    spec: UseCaseSpec,
    fitted: Any,
    splits: RetrievalSplits,
    label: str,
    user_key: str,
    item_key: str,
    options: dict[str, Any],
    name: str,
) -> TrainedRetrieval:
    """A fitted retriever (two-tower, sequence) judged on the test split beside the popular
    list: the same rows, seen items and cut-offs for both, a recall@k plot, and the promotion
    gate's evaluation of a candidate on the same rows."""
    train_pos = splits.positives
    test = splits.test
    test_pos = test[test[label] > 0]
    first_rows = test.drop_duplicates(user_key, keep="first")
    ks = tuple(spec.metrics.k)

    def evaluate_model(candidate: Any, cutoffs: tuple[int, ...] = ks) -> dict[str, float]:
        ids, vectors = candidate.item_embeddings()
        return evaluate_retrieval(
            candidate.user_vectors(first_rows),
            ids,
            vectors,
            train_pos,
            test_pos,
            user_key,
            item_key,
            cutoffs,
            fallback_scores=popularity_scores(train_pos, ids, item_key),
            **options,
        )

    metrics = evaluate_model(fitted)
    item_ids, item_vectors = fitted.item_embeddings()
    baseline = popularity_baseline(item_ids, train_pos, test_pos, user_key, item_key, ks, **options)
    model_curve = evaluate_model(fitted, CURVE_KS)
    popular_curve = popularity_baseline(
        item_ids, train_pos, test_pos, user_key, item_key, CURVE_KS, **options
    )
    plots = cutoff_plot(
        "recall@k over the whole catalog (future clicks)",
        {
            name: {k: model_curve[f"recall@{k}"] for k in CURVE_KS},
            "popularity": {k: popular_curve[f"recall@{k}"] for k in CURVE_KS},
        },
        "recall@k",
    )
    primary = f"recall@{ks[0]}"
    shown = {k: v for k, v in metrics.items() if "@" in k}
    return TrainedRetrieval(
        fitted,
        user_key,
        item_key,
        metrics,
        baseline,
        compare(shown, {k: v for k, v in baseline.items() if "@" in k}),
        primary,
        item_ids,
        item_vectors,
        lambda candidate: evaluate_model(candidate)[primary],
        extra={"plots": plots},
    )
