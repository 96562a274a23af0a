"""Asset factory for ``<use case>/indices/<model>``: the FAISS index over a retriever's items.

The index type follows the catalog size and the YAML's recall target (``model.<m>.index``); its
search parameter is tuned, and its recall@k against exact search measured, at build time on
query-tower vectors of the training users (what serving searches with); the recall is stored as
metadata and enforced by a blocking asset check, so serving never loads an index that misses it. The index, its id
map and the build choices are written to ``<home>/indices/<use case>/<model>`` (published with
``runtime.publish``: staged, loaded back and only then swapped in, so a failed build keeps the
previous index).
"""

from pathlib import Path

import dagster as dg
import numpy as np
import pandas as pd

from assets.indexing.faiss_index import build_index
from assets.metadata import asset_identity, rounded_metadata
from assets.training.build import SPLIT
from configs.schema.model_stage import RETRIEVERS
from configs.schema.stages import IndexSpec
from configs.schema.usecase import UseCaseSpec
from resources.home import HomeResource
from resources.mlflow_resource import MLflowResource
from runtime import layout
from runtime.ann_index import BuiltIndex
from runtime.funnel_roles import retrieval_keys
from runtime.publish import publishing

RECALL_CHECK = "index_recall"


def _user_queries(
    spec: UseCaseSpec, model: str, training_set: pd.DataFrame, mlflow: MLflowResource
) -> np.ndarray | None:
    """Query-tower vectors of the training split's warm users, from the version that made the
    embeddings (the latest registered): recall is tuned and measured on what will be searched.
    Item vectors are a poor stand-in: on the feed's trained embeddings an IVF setting tuned on
    them reached recall@10 0.88 on user queries against a 0.95 target (bench/faiss_trained.py)."""
    name = layout.registered_model_name(spec.name, model)
    version = mlflow.latest_version(name)
    if version is None:
        return None
    retriever = mlflow.load_model(name, version).unwrap_python_model().model
    vectors = retriever.user_vectors(training_set[training_set[SPLIT] == "train"])
    return np.stack(list(vectors.values())).astype("float32") if vectors else None


def index_asset(spec: UseCaseSpec, model: str) -> dg.AssetsDefinition:
    key = dg.AssetKey(layout.index_key(spec.name, model))
    target = spec.model[model].index or IndexSpec()
    _, item_key, item_entity = retrieval_keys(spec, model)

    @dg.asset(
        key=key,
        ins={
            "embeddings": dg.AssetIn(key=dg.AssetKey(layout.model_key(spec.name, model))),
            "training_set": dg.AssetIn(key=dg.AssetKey(layout.training_set_key(spec.name, model))),
        },
        **asset_identity(spec, "indexing"),
        kinds={"faiss"},
        description=(
            f"FAISS index of the {item_entity} embeddings of {model!r}: {target.kind} (exact below"
            f" {target.exact_below:,} items), search parameters tuned to recall@{target.k}"
            f" >= {target.target_recall} against exact search."
        ),
        check_specs=[
            dg.AssetCheckSpec(
                RECALL_CHECK,
                asset=key,
                blocking=True,
                description=f"recall@{target.k} vs exact search reaches {target.target_recall}.",
            )
        ],
    )
    def faiss_index(
        embeddings: pd.DataFrame,
        training_set: pd.DataFrame,
        home: HomeResource,
        mlflow: MLflowResource,
    ):
        vectors = np.stack(embeddings["embedding"].to_numpy()).astype("float32")
        queries = _user_queries(spec, model, training_set, mlflow)
        built = build_index(embeddings[item_key].to_numpy(), vectors, target, queries)
        final = Path(str(home.layout.index(spec.name, model)))
        with publishing(final, verify=BuiltIndex.load) as staging:
            built.save(staging)
        info = built.metadata()
        yield dg.MaterializeResult(
            metadata=rounded_metadata(
                {
                    **{k: v for k, v in info.items() if not isinstance(v, dict)},
                    "params": ", ".join(f"{k}={v}" for k, v in info["params"].items()) or "none",
                    "path": dg.MetadataValue.path(str(final)),
                }
            )
        )
        yield dg.AssetCheckResult(
            check_name=RECALL_CHECK,
            passed=built.recall_at_k >= target.target_recall,
            metadata=rounded_metadata(
                {"recall_at_k": float(built.recall_at_k), "target": target.target_recall}
            ),
        )

    return faiss_index


def index_assets(spec: UseCaseSpec) -> list[dg.AssetsDefinition]:
    """One index per retriever (two-tower or sequence): both answer ``user_vectors``."""
    return [index_asset(spec, m) for m, s in spec.model.items() if s.problem in RETRIEVERS]
