"""Asset factory for ``<use case>/feature_store``: the use case's Feast repo, applied and loaded.

The feature tables stay where their assets wrote them; the Feast repo's file sources point at
those Parquet files (their paths come from each upstream materialization's ``path`` metadata, so
the store follows the IO manager wherever it writes). The asset applies the definitions — entities,
one feature view per feature table with the spec's TTL, and one feature service per model —, writes
them beside ``feature_store.yaml`` as the repo's Feast Python file (so ``feast plan`` and ``feast
apply`` run in the folder find nothing to change), and materializes incrementally into the online
store up to the data's last event time.
"""

import dataclasses

import dagster as dg
import pandas as pd
import yaml

from assets.features.on_demand_views import on_demand_view_defs
from assets.features.views import feature_tables
from assets.metadata import asset_identity, rounded_metadata
from assets.training.model_views import model_tables
from assets.upstream import materialized_path
from configs.schema.usecase import UseCaseSpec
from resources.feast_definitions import FEATURE_TYPES, EntityDef, FeatureRepoDef, FeatureViewDef
from resources.feature_store import EPOCH, FeatureStoreResource
from runtime import layout


def feature_repo_def(spec: UseCaseSpec, paths: dict[str, str]) -> FeatureRepoDef:
    """The Feast repo of a use case: every feature table as a view, a service per model."""
    views = []
    for table in feature_tables(spec):
        entities = tuple(
            EntityDef(name, spec.entities[name].key, spec.entities[name].dtype)
            for name in table.entities
        )
        views.append(
            FeatureViewDef(
                name=table.name,
                entities=entities,
                features=table.features,
                source_path=paths[table.name],
                ttl=table.ttl,
                description=f"{table.kind} of feature view {table.view!r}",
                tags={"use_case": spec.name, "view": table.view, "kind": table.kind},
            )
        )
    services = {
        model: tuple(table.name for table in model_tables(spec, model)) for model in spec.model
    }
    return FeatureRepoDef(
        project=spec.name,
        views=tuple(views),
        services={k: v for k, v in services.items() if v},
        on_demand=on_demand_view_defs(spec),
        origin=str(spec.path) if spec.path else "",
    )


def data_cutoff(split_plan: pd.DataFrame) -> pd.Timestamp:
    """The last event time of the data: the online store is loaded up to it."""
    if "data_end" in split_plan and split_plan["data_end"].notna().any():
        return pd.Timestamp(split_plan["data_end"].max()).ceil("us")  # Feast keeps µs
    return pd.Timestamp.now(tz="UTC").tz_localize(None)


def redefined_views(store: FeatureStoreResource, repo: FeatureRepoDef) -> set[str]:
    """Registered views whose features or TTL the spec now defines differently.

    Incremental materialization only loads rows newer than the last run, so a view that gained a
    column would serve nulls for it until new events arrive: such views are reloaded in full.
    """
    if not (store.repo_path(repo.project) / "feature_store.yaml").exists():
        return set()
    registered = {view.name: view for view in store.store(repo.project).list_feature_views()}
    changed = set()
    for view in repo.views:
        old = registered.get(view.name)
        if old is None:
            continue  # a new view: its first materialization loads its whole TTL window
        before = [(f.name, str(f.dtype)) for f in old.features]
        after = [(name, str(FEATURE_TYPES[dtype])) for name, dtype in view.features]
        if before != after or old.ttl != view.ttl:
            changed.add(view.name)
    return changed


def use_case_store(spec: UseCaseSpec, resource: FeatureStoreResource) -> FeatureStoreResource:
    """The deployment's feature-store resource with the online store the YAML asks for."""
    wanted = spec.serving.online_store if spec.serving else resource.online_store
    if resource.online_store == wanted:
        return resource
    return FeatureStoreResource(
        root=resource.root,
        online_store=wanted,
        redis_connection=resource.redis_connection,
    )


def feature_store_asset(spec: UseCaseSpec) -> dg.AssetsDefinition | None:
    """Apply and materialize the use case's Feast repo (None when it has no feature tables)."""
    tables = feature_tables(spec)
    if not tables:
        return None
    upstream = {
        table.name: dg.AssetKey(layout.feature_table_key(spec.name, table.name)) for table in tables
    }
    online_store = spec.serving.online_store if spec.serving else "sqlite"

    @dg.asset(
        key=dg.AssetKey(layout.feature_store_key(spec.name)),
        deps=list(upstream.values()),
        ins={"split_plan": dg.AssetIn(key=dg.AssetKey(layout.split_plan_key(spec.name)))},
        **asset_identity(spec, "features"),
        kinds={"feast", online_store},
        description=(
            f"Feast repo of {spec.name!r}: {len(tables)} feature views, one feature service per "
            f"model, DuckDB offline store, {online_store} online store, "
            "materialized incrementally up to the last event; its definitions written as the "
            "repo's Feast Python file."
        ),
    )
    def feature_store(
        context: dg.AssetExecutionContext,
        split_plan: pd.DataFrame,
        feature_store: FeatureStoreResource,
    ) -> dg.MaterializeResult:
        paths = {name: materialized_path(context, key) for name, key in upstream.items()}
        repo = feature_repo_def(spec, paths)
        store = use_case_store(spec, feature_store)
        changed = redefined_views(store, repo)
        applied = store.apply(repo)
        end = data_cutoff(split_plan).to_pydatetime()
        if changed:  # new columns or TTL: reload their whole window, not just what is new
            subset = dataclasses.replace(
                repo, views=tuple(v for v in repo.views if v.name in changed)
            )
            for view in subset.views:
                store.materialize(
                    dataclasses.replace(subset, views=(view,)),
                    end=end,
                    start=end - view.ttl if view.ttl else EPOCH,
                )
        loaded = store.materialize(repo, end=end)
        config = store.write_config(repo)
        written = pd.DataFrame(
            {
                "feature_view": list(loaded["rows_written"]),
                "entities_written": list(loaded["rows_written"].values()),
            }
        )
        return dg.MaterializeResult(
            metadata=rounded_metadata(
                {
                    "repo_path": dg.MetadataValue.path(applied["repo_path"]),
                    "feature_store.yaml": dg.MetadataValue.md(
                        f"```yaml\n{config.read_text(encoding='utf-8')}```"
                    ),
                    "definitions": dg.MetadataValue.path(applied["definitions"]),
                    "feature_views": ", ".join(applied["feature_views"]),
                    "feature_services": ", ".join(applied["feature_services"]) or "none",
                    "removed": ", ".join(applied["removed"]) or "none",
                    "reloaded (definition changed)": ", ".join(sorted(changed)) or "none",
                    "materialized_until": max(
                        (i["end"] for i in loaded["intervals"].values()),
                        default="already up to date",
                    ),
                    "online_rows_written": int(loaded["rows_written_total"]),
                    "online_writes": dg.MetadataValue.md(written.to_markdown(index=False)),
                    "intervals": dg.MetadataValue.md(
                        "```yaml\n" + yaml.safe_dump(loaded["intervals"], sort_keys=False) + "```"
                    ),
                }
            )
        )

    return feature_store
