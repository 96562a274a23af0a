"""Asset factory for ``<use case>/funnel_evaluation``: the served funnel measured offline.

It reads the champions from the MLflow registry (what serving would load), the FAISS index from
the home directory and the ranking model's feature tables, so it measures the deployed chain,
not the last training run. A check warns when the funnel does not beat the popular list; its
metadata says by how much, and the evaluation table shows the same list in retrieval order too,
so a ranker whose order costs NDCG shows.
"""

import dagster as dg
import numpy as np
import pandas as pd

from assets.funnel.evaluate import Retrieval, evaluate_funnel
from assets.metadata import asset_identity, rounded_metadata
from assets.models.train import model_input
from assets.training.model_views import model_tables
from assets.upstream import materialized_path
from configs.schema.usecase import UseCaseSpec
from resources.home import HomeResource
from resources.mlflow_resource import MLflowResource
from runtime import layout
from runtime.ann_index import BuiltIndex
from runtime.funnel_roles import funnel_models, funnel_retrievers

CHECK = "beats_popular_list"


def _retrieval(use_case: str, model: str, mlflow: MLflowResource, home: HomeResource) -> Retrieval:
    """A candidate source: its champion and the search of its FAISS index."""
    loaded = mlflow.load_model(layout.registered_model_name(use_case, model), layout.CHAMPION)
    index = BuiltIndex.load(str(home.layout.index(use_case, model)))

    def search(vectors: np.ndarray, k: int) -> np.ndarray:
        return index.search(vectors.astype("float32"), k)[0]

    return loaded.unwrap_python_model().model, search


def funnel_asset(spec: UseCaseSpec) -> dg.AssetsDefinition | None:
    models = funnel_models(spec)
    if models is None:
        return None
    retrieval, ranking = models
    sources = funnel_retrievers(spec)  # every candidate source, ``retrieval`` first
    key = dg.AssetKey(layout.funnel_evaluation_key(spec.name))
    tables = {
        t.name: dg.AssetKey(layout.feature_table_key(spec.name, t.name))
        for t in model_tables(spec, ranking)
    }
    serving = spec.serving

    @dg.asset(
        key=key,
        ins={
            "ranking_set": dg.AssetIn(key=dg.AssetKey(layout.training_set_key(spec.name, ranking))),
            "retrieval_set": dg.AssetIn(
                key=dg.AssetKey(layout.training_set_key(spec.name, retrieval))
            ),
        },
        deps=[
            *(dg.AssetKey(layout.model_key(spec.name, m)) for m in sources),
            dg.AssetKey(layout.model_key(spec.name, ranking)),
            *(dg.AssetKey(layout.index_key(spec.name, m)) for m in sources),
        ],
        **asset_identity(spec, "evaluation"),
        kinds={"faiss", "lightgbm"},
        description=(
            f"The funnel end to end on test requests: {' + '.join(map(repr, sources))} retrieve"
            f" {serving.candidates} candidates from the whole catalog (FAISS), the user's recent"
            f" history is dropped, the first {serving.k} in retrieval order with at most"
            f" {serving.max_per_category or 'any'} per category are shown, ordered by"
            f" {ranking!r}; recall, hit rate and NDCG vs the popular list under the same rules."
        ),
        check_specs=[dg.AssetCheckSpec(CHECK, asset=key, description="Beats the popular list.")],
    )
    def funnel_evaluation(
        context: dg.AssetExecutionContext,
        ranking_set: pd.DataFrame,
        retrieval_set: pd.DataFrame,
        mlflow: MLflowResource,
        home: HomeResource,
    ):
        retrievers = {m: _retrieval(spec.name, m, mlflow, home) for m in sources}
        ranker = mlflow.load_model(
            layout.registered_model_name(spec.name, ranking), layout.CHAMPION
        )
        features = ranker.metadata.get_input_schema().input_names()

        def rank(frame: pd.DataFrame) -> np.ndarray:
            return np.asarray(ranker.predict(model_input(frame, features)), dtype=float)

        paths = {name: materialized_path(context, k) for name, k in tables.items()}
        result = evaluate_funnel(spec, retrievers, rank, ranking_set, retrieval_set, paths)
        primary = f"recall@{serving.k}"
        comparison = pd.DataFrame(
            [
                {
                    "metric": m,
                    "funnel": v,
                    "popular list": result.baseline.get(m, np.nan),
                    "retrieval order": result.retrieval_order.get(m, np.nan),
                }
                for m, v in result.metrics.items()
            ]
        )
        yield dg.Output(
            result.requests,
            metadata=rounded_metadata(
                {
                    "dagster/row_count": len(result.requests),
                    **{f"metric/{k}": float(v) for k, v in result.metrics.items()},
                    "evaluation": dg.MetadataValue.md(comparison.to_markdown(index=False)),
                }
            ),
        )
        funnel, popular = float(result.metrics[primary]), float(result.baseline[primary])
        yield dg.AssetCheckResult(
            check_name=CHECK,
            passed=bool(funnel > popular),
            severity=dg.AssetCheckSeverity.WARN,
            description=f"{primary}: funnel {funnel:.3f} vs popular list {popular:.3f}",
            metadata=rounded_metadata(
                {
                    "metric": primary,
                    "funnel": funnel,
                    "popular list": popular,
                    "relative": funnel / popular - 1 if popular else float("nan"),
                }
            ),
        )

    return funnel_evaluation
