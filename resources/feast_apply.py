"""What applying a repo asks of the Feast registry, beside ``FeatureStore.apply`` itself.

:meth:`resources.feature_store.FeatureStoreResource.apply` registers the objects of a repo; these
helpers read and adjust the registry around that call: the registered objects the repo no longer
defines (to delete them), the source times to keep (so an unchanged YAML leaves the registry and
the definitions file unchanged), the times to write into the file, and the ``feast plan`` check
that the file written finds nothing to change. They hold the Feast-registry details, so the
resource keeps to its own job.
"""

from __future__ import annotations

from typing import Any

from feast import FeatureStore, FeatureView
from feast.diff.property_diff import TransitionType

from resources.feast_render import SourceTimes
from resources.feast_repo_files import load_definitions, repo_contents


def keep_source_times(store: FeatureStore, objects: list[Any]) -> None:
    """Give each view's source the times the registry holds for it, unless the source changed.

    Feast writes a view's source, times included, into the view at every apply, and ``feast
    plan`` compares them once the view is materialized; new objects are stamped now. Keeping the
    registered times keeps the registry, and the definitions file that repeats them, unchanged
    when the YAML is.
    """
    registered = {view.name: view for view in store.list_feature_views()}
    for view in objects:
        old = registered.get(view.name) if isinstance(view, FeatureView) else None
        if old is None or old.batch_source is None or old.batch_source != view.batch_source:
            continue  # DataSource equality leaves the times out
        view.batch_source.created_timestamp = old.batch_source.created_timestamp
        view.batch_source.last_updated_timestamp = old.batch_source.last_updated_timestamp


def source_times(store: FeatureStore) -> SourceTimes:
    """Each view's source's times as the registry holds them inside the view (what
    ``feast plan`` compares once the view is materialized)."""
    times = {}
    for view in store.list_feature_views():
        source = view.batch_source
        if source is not None and source.created_timestamp and source.last_updated_timestamp:
            times[source.name] = (source.created_timestamp, source.last_updated_timestamp)
    return times


def plan_nothing(store: FeatureStore, definitions: str, filename: str) -> None:
    """Plan ``definitions`` against the registry as ``feast plan`` does, raise if that would
    change anything, and record the planned infrastructure (the online store's tables) in the
    registry, which ``FeatureStore.apply`` leaves out and ``feast plan`` compares."""
    registry_diff, _, infra = store.plan(repo_contents(load_definitions(definitions, filename)))
    changes = [
        f"{diff.transition_type.name.lower()} {diff.feast_object_type.value} {diff.name!r}"
        for diff in registry_diff.feast_object_diffs
        if diff.transition_type != TransitionType.UNCHANGED
    ]
    if changes:
        raise ValueError(
            f"feast plan of {filename} would change the registry just applied: "
            + "; ".join(changes)
        )
    store.registry.update_infra(infra, store.project, commit=True)


def stale_objects(store: FeatureStore, wanted: list[Any]) -> list[Any]:
    """Registered entities, sources, views and services that ``wanted`` no longer has."""
    keep = {(type(o).__name__, o.name) for o in wanted}
    registered: list[Any] = [
        *(e for e in store.list_entities() if not e.name.startswith("__")),
        *store.list_data_sources(),
        *store.list_feature_views(),
        *store.list_on_demand_feature_views(),
        *store.list_feature_services(),
    ]
    # by class name: a RequestSource and a FileSource of one name are different objects
    return [o for o in registered if (type(o).__name__, o.name) not in keep]
