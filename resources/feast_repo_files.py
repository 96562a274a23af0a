"""The Feast Python file of a generated repo: what ``feast plan`` and ``feast apply`` read there.

Feast's CLI takes a repo folder's ``*.py`` files as the whole desired state: in a folder with only
``feature_store.yaml`` and a registry, ``feast plan`` lists every entity, view and service as
deleted, and ``feast apply`` deletes them. So beside the yaml the feature store writes
``<project>_repo.py``, rendered from the very Feast objects it applies
(:mod:`resources.feast_render`, which also tells why the sources' times are written).

Two checks keep the file and the registry one thing (both in ``FeatureStoreResource.apply``):

* before anything is registered, :func:`check_round_trip` executes the text and compares every
  object it defines, proto spec by proto spec, with the object about to be applied, so a field
  this renderer does not write (a file format, a projection alias, ...) fails there, named;
* after, the file's objects go through ``FeatureStore.plan`` as ``feast plan`` would send them
  (:func:`repo_contents`), and any change it reports fails the apply.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

from feast import Entity, FeatureService, FeatureView, OnDemandFeatureView, Project
from feast.data_source import DataSource
from feast.feature_view import DUMMY_ENTITY
from feast.protos.feast.core.DataSource_pb2 import DataSource as DataSourceProto
from feast.repo_contents import RepoContents

from resources.feast_render import feast_classes, identifier, object_key
from runtime.relocate import write_atomic

DEFINITIONS_SUFFIX = "_repo.py"


def definitions_path(repo_path: Path, project: str) -> Path:
    """``<repo>/<project>_repo.py``: a module name of its own per project, so two repos' files
    never answer for each other from ``sys.modules`` in one Python process."""
    return repo_path / f"{identifier(project)}{DEFINITIONS_SUFFIX}"


def load_definitions(source: str, filename: str = "<definitions>") -> list[Any]:
    """The Feast objects ``source`` defines at module level, as ``feast plan`` collects them: in
    the order of their variables' names (``dir(module)``'s), which orders what Feast plans.
    ``filename`` is the file's ``__file__``: sources are named relative to it."""
    namespace: dict[str, Any] = {"__name__": "playbook_feast_definitions", "__file__": filename}
    exec(compile(source, filename, "exec"), namespace)  # text this module generated
    objects = [namespace[name] for name in sorted(namespace)]
    return [obj for obj in objects if isinstance(obj, (Project, *feast_classes()))]


def repo_contents(objects: Iterable[Any]) -> RepoContents:
    """``objects``, as :func:`load_definitions` returns them, made the ``RepoContents`` that
    Feast's ``parse_repo`` makes of a repo's files: views' own sources added where they are not
    listed, Feast's dummy entity appended."""
    objects = list(objects)
    sources = [o for o in objects if isinstance(o, DataSource)]
    views = [o for o in objects if isinstance(o, FeatureView)]
    for view in views:
        if view.batch_source is not None and not any(view.batch_source is s for s in sources):
            sources.append(view.batch_source)
    return RepoContents(
        projects=[o for o in objects if isinstance(o, Project)],
        data_sources=sources,
        feature_views=views,
        on_demand_feature_views=[o for o in objects if isinstance(o, OnDemandFeatureView)],
        stream_feature_views=[],
        label_views=[],
        entities=[*(o for o in objects if isinstance(o, Entity)), DUMMY_ENTITY],
        feature_services=[o for o in objects if isinstance(o, FeatureService)],
        permissions=[],
    )


def check_round_trip(source: str, objects: Iterable[Any], filename: str = "<definitions>") -> None:
    """Raise ``ValueError`` unless ``source`` defines exactly ``objects``, field for field.

    The comparison is the one ``feast plan`` makes of each object's proto spec (a data source's
    whole proto), less the project and the data sources' creation times.
    """
    loaded = {
        object_key(o): o for o in load_definitions(source, filename) if not isinstance(o, Project)
    }
    wanted = {object_key(o): o for o in objects}
    problems = [f"{k[0]} {k[1]!r} is not written" for k in wanted.keys() - loaded.keys()]
    problems += [f"{k[0]} {k[1]!r} is written but not applied" for k in loaded.keys() - wanted]
    for key in sorted(wanted.keys() & loaded.keys()):
        want, got = plan_spec(wanted[key]), plan_spec(loaded[key])
        differ = [
            f.name for f in want.DESCRIPTOR.fields if getattr(want, f.name) != getattr(got, f.name)
        ]
        if differ:
            problems.append(f"{key[0]} {key[1]!r} differs in {', '.join(differ)}")
    if problems:
        raise ValueError(
            "the Feast definitions file would not reproduce the applied objects: "
            + "; ".join(problems)
        )


def write_text_atomic(path: Path, text: str) -> bool:
    """Write ``text`` to ``path`` through a temporary file and a rename, so a reader (or
    ``feast plan``) never sees half a file; returns False when it already held ``text``.

    The temporary name does not end in ``.py``: Feast would import a leftover one. The file
    keeps its mode (a new one is 0644, not the temporary file's 0600).
    """
    if path.exists() and path.read_text(encoding="utf-8") == text:
        return False
    write_atomic(path, text)
    return True


def plan_spec(obj: Any) -> Any:
    """The proto of a Feast object that ``feast plan`` compares (a spec, or a data source's
    whole proto), less the project, the data sources' ``meta`` (their times, which Feast's own
    ``DataSource.__eq__`` leaves out too) and an on-demand view's pickled function (``body``:
    Feast compares its source text, ``body_text``, and rebuilds the function from it)."""
    proto = obj.to_proto()
    spec = proto if isinstance(obj, DataSource) else proto.spec
    if "project" in spec.DESCRIPTOR.fields_by_name:
        spec.ClearField("project")
    if isinstance(obj, OnDemandFeatureView):
        spec.feature_transformation.user_defined_function.ClearField("body")
        spec.user_defined_function.ClearField("body")
    _clear_source_meta(spec)
    return spec


def _clear_source_meta(message: Any) -> None:
    if message.DESCRIPTOR.full_name == DataSourceProto.DESCRIPTOR.full_name:
        message.ClearField("meta")
    for field, value in message.ListFields():
        if field.message_type is None:
            continue
        if field.message_type.GetOptions().map_entry:  # e.g. an on-demand view's sources
            values = field.message_type.fields_by_name["value"]
            items = list(value.values()) if values.message_type is not None else []
        else:
            items = [value] if hasattr(value, "DESCRIPTOR") else list(value)  # one, or repeated
        for item in items:
            _clear_source_meta(item)
