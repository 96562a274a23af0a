"""The Feast feature store behind every use case: one Feast repo folder per project.

The assets stage turns a use case's ``features`` section into a ``FeatureRepoDef`` (plain
dataclasses, no Feast or YAML types: :mod:`resources.feast_definitions`) and hands it to
:class:`FeatureStoreResource`, which owns everything Feast: the ``feature_store.yaml``, the
registry, applying definitions (and removing the ones the YAML no longer has:
:mod:`resources.feast_apply`) and writing them as the repo's Feast Python file, so that ``feast
plan`` and ``feast apply`` in the folder find nothing to change (:mod:`resources.feast_repo_files`),
materializing to the online store, point-in-time training reads through the DuckDB offline store,
and online reads.

Feast stays the source of truth. Online reads have two paths over the same store:

* :meth:`FeatureStoreResource.online_features` is the serving path. Feast's SDK spends about
  0.1 ms of Python per entity row building and unpacking protobuf responses, several times the
  cost of the read itself; the fast path (``runtime.online_read``) calls the configured Feast
  ``OnlineStore.online_read`` directly with a plan resolved once per service, so it returns the
  same values several times faster.
* views named in ``cached_views`` (``["*"]``: all) are served by that path from an in-process
  cache loaded through the same Feast call and reloaded after each materialization: for small,
  slowly changing views, it removes the store read from the request.
* :meth:`FeatureStoreResource.sdk_online_features` is Feast's own ``get_online_features`` and is
  kept for comparison (tests assert both return identical frames).

What the repo folder holds can be moved and shown: ``feature_store.yaml`` names the registry and
the SQLite online store relative to the folder, and a Redis connection string (which may hold a
password) only as ``${PLAYBOOK_REDIS}``, read at run time (:mod:`runtime.feast_settings`). The
registry keeps the feature tables' absolute paths (Feast's DuckDB offline store reads them as
given); a repo opened in a home that was moved or copied has them re-rooted first
(:func:`runtime.relocate.relocate_feast_repo`).
"""

from __future__ import annotations

import logging
import os
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

import dagster as dg
import pandas as pd
import yaml
from feast import Entity, FeatureService, FeatureStore, FeatureView
from feast.repo_config import RepoConfig
from pydantic import PrivateAttr

from resources.feast_apply import keep_source_times, plan_nothing, source_times, stale_objects
from resources.feast_definitions import FeatureRepoDef, entities_in_window, feast_objects
from resources.feast_render import render_definitions
from resources.feast_repo_files import check_round_trip, definitions_path, write_text_atomic
from resources.home import playbook_home
from runtime.feast_settings import REDIS_ENV, expand, reference
from runtime.layout import HomeLayout
from runtime.online_read import OnlineReader, column_order
from runtime.relocate import relocate_feast_repo

logger = logging.getLogger(__name__)

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def _utc(moment: datetime) -> datetime:
    """A tz-aware UTC datetime (naive ones are taken as UTC, as Feast does)."""
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


class FeatureStoreResource(dg.ConfigurableResource):
    """Feast feature repos under ``root`` (default ``<home>/feast``), one folder per project.

    ``online_store`` picks SQLite (``<repo>/online.db``, no server) or Redis; the offline store
    is always DuckDB over the views' Parquet files. The Redis connection string of this process
    is ``redis_connection``, else ``$PLAYBOOK_REDIS`` (``redis_env``) at run time; it is never
    written: ``feature_store.yaml`` holds ``${PLAYBOOK_REDIS}``, so Feast's CLI in the folder and
    a served Bento read the variable where they run.
    """

    root: str | None = None
    online_store: Literal["sqlite", "redis"] = "sqlite"
    redis_connection: str | None = None
    redis_env: str = REDIS_ENV
    # Views whose online features are served from an in-process cache ("*": all); see
    # runtime.online_cache.ViewCache. Costs memory: every online entity of the view.
    cached_views: list[str] = []

    _stores: dict[str, FeatureStore] = PrivateAttr(default_factory=dict)
    _readers: dict[str, OnlineReader] = PrivateAttr(default_factory=dict)
    _opened: set[str] = PrivateAttr(default_factory=set)

    def home(self) -> Path:
        """The home the repos belong to: the folder holding ``root``, else the Playbook home.
        Paths under it are re-rooted when it moves."""
        if self.root:
            return Path(self.root).expanduser().resolve().parent
        return Path(str(playbook_home()))

    def repo_path(self, project: str) -> Path:
        """The Feast repo folder of ``project`` (created; re-rooted on first use if its home
        was moved or copied since it was last opened)."""
        base = Path(self.root) if self.root else Path(str(HomeLayout(self.home()).feast()))
        path = base.expanduser().resolve() / project
        path.mkdir(parents=True, exist_ok=True)
        if project not in self._opened:
            relocate_feast_repo(path, self.home())
            self._opened.add(project)
        return path

    def write_config(self, repo: FeatureRepoDef) -> Path:
        """Write ``<repo>/feature_store.yaml`` and return its path.

        Paths relative to the folder (Feast resolves them against the repo path), so the repo
        opens the same from any working directory and wherever its home is moved; a Redis
        connection string only as ``${PLAYBOOK_REDIS}``, so the file holds no secret.
        """
        path = self.repo_path(repo.project)
        if self.online_store == "redis":
            online: dict[str, Any] = {
                "type": "redis",
                "connection_string": reference(self.redis_env),
            }
        else:
            online = {"type": "sqlite", "path": "online.db"}
        config = {
            "project": repo.project,
            "provider": "local",
            "registry": "registry.db",
            "offline_store": {"type": "duckdb"},
            "online_store": online,
            "entity_key_serialization_version": 3,
        }
        target = path / "feature_store.yaml"
        if write_text_atomic(target, yaml.safe_dump(config, sort_keys=False)):
            self._forget(repo.project)
        return target

    def definitions_path(self, project: str) -> Path:
        """``<repo>/<project>_repo.py``: the Python definitions Feast's CLI reads."""
        return definitions_path(self.repo_path(project), project)

    def store(self, project: str) -> FeatureStore:
        """The Feast store of ``project`` (cached; call :meth:`write_config` first)."""
        cached = self._stores.get(project)
        if cached is None:
            path = self.repo_path(project)
            if not (path / "feature_store.yaml").exists():
                raise FileNotFoundError(
                    f"{path}/feature_store.yaml does not exist: apply the feature repo first"
                )
            cached = self._stores[project] = FeatureStore(
                repo_path=str(path), config=self._repo_config(path, project)
            )
        return cached

    def _repo_config(self, path: Path, project: str) -> RepoConfig:
        """The repo's ``feature_store.yaml`` as Feast loads it, its ``${NAME}`` settings taken
        from the environment, ``redis_connection`` (when set) standing for ``redis_env``."""
        file = path / "feature_store.yaml"
        env = dict(os.environ)
        if self.redis_connection:
            env[self.redis_env] = self.redis_connection
        raw = expand(yaml.safe_load(file.read_text(encoding="utf-8")), env, project, file)
        config = RepoConfig(**raw)
        config.repo_path = path
        return config

    def _forget(self, project: str) -> None:
        self._stores.pop(project, None)
        reader = self._readers.pop(project, None)
        if reader is not None:
            reader.close()

    def apply(self, repo: FeatureRepoDef) -> dict:
        """Register ``repo`` with Feast, drop registered objects it no longer defines, and write
        the same objects as the repo's Python definitions (:meth:`definitions_path`).

        Without the deletions a view removed from the YAML would stay in the registry (and its
        online table in the store) forever. Without the definitions file, Feast's own CLI in the
        repo folder would take it for an empty repo: ``feast apply`` would delete everything.
        The file is rendered from the objects applied and checked to rebuild them before anything
        is registered; after, Feast plans the file against the registry (it must find nothing to
        change), the registry records the online store's tables as ``feast apply`` would, and the
        file is written.
        """
        self.write_config(repo)
        store = self.store(repo.project)
        objects = feast_objects(repo)
        target = self.definitions_path(repo.project)
        places = {"folder": target.parent, "home": self.home()}
        check_round_trip(render_definitions(objects, repo.project, **places), objects, str(target))
        stale = stale_objects(store, objects)
        keep_source_times(store, objects)
        store.apply(objects, objects_to_delete=stale, partial=False)
        definitions = render_definitions(
            objects, repo.project, source_times(store), origin=repo.origin, **places
        )
        plan_nothing(store, definitions, str(target))
        write_text_atomic(target, definitions)
        return {
            "project": repo.project,
            "repo_path": str(self.repo_path(repo.project)),
            "definitions": str(target),
            "online_store": self.online_store,
            "entities": sorted(o.name for o in objects if isinstance(o, Entity)),
            "feature_views": sorted(o.name for o in objects if isinstance(o, FeatureView)),
            "feature_services": sorted(o.name for o in objects if isinstance(o, FeatureService)),
            "removed": sorted(f"{type(o).__name__}:{o.name}" for o in stale),
        }

    def materialize(
        self, repo: FeatureRepoDef, end: datetime, start: datetime | None = None
    ) -> dict:
        """Load the latest row per entity into the online store; returns a summary.

        With ``start`` it is ``FeatureStore.materialize(start, end)``. Without, it is incremental:
        a view continues from its last materialized end. A view never materialized starts at
        ``end - ttl``, not at Feast's ``now - ttl``, which would skip everything when ``end`` (the
        data) lies further back than the TTL, as it does for historical or synthetic data.
        """
        self.write_config(repo)  # the yaml follows this resource's online store settings
        store = self.store(repo.project)
        end = _utc(end)
        names = [view.name for view in repo.views]
        intervals: dict[str, tuple[datetime, datetime]] = {}
        if start is not None:
            store.materialize(_utc(start), end, feature_views=names)
            intervals = {name: (_utc(start), end) for name in names}
        else:
            intervals = self._materialize_incremental(store, repo, end)
        rows = {
            view.name: entities_in_window(view, *intervals[view.name])
            for view in repo.views
            if view.name in intervals
        }
        return {
            "project": repo.project,
            "feature_views": names,
            "intervals": {
                name: {"start": s.isoformat(), "end": e.isoformat()}
                for name, (s, e) in intervals.items()
            },
            "rows_written": rows,
            "rows_written_total": sum(rows.values()),
        }

    def _materialize_incremental(
        self, store: FeatureStore, repo: FeatureRepoDef, end: datetime
    ) -> dict[str, tuple[datetime, datetime]]:
        intervals: dict[str, tuple[datetime, datetime]] = {}
        resumed = []
        for view in repo.views:
            last = store.get_feature_view(view.name).most_recent_end_time
            if last is None:
                # a zero TTL never goes stale: load everything there is
                first = end - view.ttl if view.ttl else EPOCH
                store.materialize(first, end, feature_views=[view.name])
                intervals[view.name] = (first, end)
            elif _utc(last) < end:
                resumed.append(view.name)
                intervals[view.name] = (_utc(last), end)
        if resumed:
            store.materialize_incremental(end, feature_views=resumed)
        return intervals

    def historical_features(
        self, repo: FeatureRepoDef, entity_df: pd.DataFrame, service: str
    ) -> pd.DataFrame:
        """Point-in-time correct features of ``service`` for ``entity_df`` (join keys and
        ``event_timestamp``), through Feast's DuckDB offline store."""
        store = self.store(repo.project)
        job = store.get_historical_features(
            entity_df=entity_df,
            features=store.get_feature_service(service),
            full_feature_names=True,
        )
        return job.to_df()

    def online_features(
        self, repo: FeatureRepoDef, service: str, entity_rows: pd.DataFrame
    ) -> pd.DataFrame:
        """Online features of ``service`` for ``entity_rows``: its join keys first, then
        ``<view>__<feature>`` columns; the same frame as :meth:`sdk_online_features`, faster.

        Views in ``cached_views`` are answered from memory; the first read after a
        materialization reloads them. See ``runtime.online_read`` for why and how.
        """
        return self._reader(repo.project).read(service, entity_rows)

    def _reader(self, project: str) -> OnlineReader:
        reader = self._readers.get(project)
        if reader is None:
            reader = self._readers[project] = OnlineReader(
                self.store(project), cached_views=self.cached_views
            )
        return reader

    def sdk_online_features(
        self, repo: FeatureRepoDef, service: str, entity_rows: pd.DataFrame
    ) -> pd.DataFrame:
        """Feast's own ``get_online_features(...).to_df()``, the reference for the fast path.

        Columns are put in :meth:`online_features`' order: Feast groups a view's features in a
        ``set``, so its own order within a view changes with the string hash seed.
        """
        store = self.store(repo.project)
        response = store.get_online_features(
            features=store.get_feature_service(service, allow_cache=True),
            entity_rows=entity_rows.to_dict("list"),
            full_feature_names=True,
        )
        frame = response.to_df()
        return frame[column_order(frame, self._reader(repo.project).plan(service))]
