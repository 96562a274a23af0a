"""The Feast Python file of a generated repo: what ``feast plan`` and ``feast apply`` read there.

Feast's CLI takes a repo folder's ``*.py`` files as the whole desired state: in a folder with only
``feature_store.yaml`` and a registry, ``feast plan`` lists every entity, view and service as
deleted, and ``feast apply`` deletes them. So beside the yaml the feature store writes
``<project>_repo.py``, rendered from the very Feast objects it applies: each constructor call is
written from the object's fields, in the order the objects come (the YAML's), so the same
definitions and registry always give the same bytes.

Two checks keep the file and the registry one thing (both in ``FeatureStoreResource.apply``):

* before anything is registered, :func:`check_round_trip` executes the text and compares every
  object it defines, proto spec by proto spec, with the object about to be applied, so a field
  this renderer does not write (a file format, a projection alias, ...) fails there, named;
* after, the file's objects go through ``FeatureStore.plan`` as ``feast plan`` would send them
  (:func:`repo_contents`), and any change it reports fails the apply.

One quirk of Feast 0.67 is written into the file. Once a view has been materialized, Feast's
comparison of a view falls through to its source's proto, creation times included, and a new
``FileSource`` is stamped with the time it was constructed: every ``feast plan`` would then show
each view as updated, even in a fresh ``feast init`` repo. Each source's ``created_timestamp`` and
``last_updated_timestamp`` are therefore set to the ones the registry holds for it (which the
resource keeps from one apply to the next while the source is unchanged). Feast's own ``apply``
on a Redis repo (its older path, ``FeatureStore.apply`` of every object) restamps them; the next
run of the asset writes the new ones.
"""

from __future__ import annotations

import json
import keyword
import os
import re
import tempfile
from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import feast.types
from feast import Entity, FeatureService, FeatureView, Field, FileSource, Project
from feast.data_source import DataSource
from feast.feature_view import DUMMY_ENTITY
from feast.protos.feast.core.DataSource_pb2 import DataSource as DataSourceProto
from feast.repo_contents import RepoContents
from feast.types import Array, PrimitiveFeastType

DEFINITIONS_SUFFIX = "_repo.py"
LINE_LENGTH = 99

# (created_timestamp, last_updated_timestamp) of a data source, by source name
SourceTimes = Mapping[str, tuple[datetime, datetime]]

# Feast's own spelling of each primitive type (``Int64`` for PrimitiveFeastType.INT64).
_TYPE_NAMES = {
    value: name
    for name, value in vars(feast.types).items()
    if isinstance(value, PrimitiveFeastType) and not name.startswith("_")
}
_KINDS: tuple[tuple[type, str, str], ...] = (
    (Entity, "entity", "Entities"),
    (
        DataSource,
        "source",
        "Data sources: the Parquet files the feature tables were written to. Their times are the\n"
        "# registry's, or Feast 0.67 would show every materialized view as updated (a new source\n"
        "# is stamped now, and Feast compares a materialized view's source down to its times).",
    ),
    (FeatureView, "view", "Feature views"),
    (FeatureService, "service", "Feature services"),
)


def definitions_path(repo_path: Path, project: str) -> Path:
    """``<repo>/<project>_repo.py``: a module name of its own per project, so two repos' files
    never answer for each other from ``sys.modules`` in one Python process."""
    return repo_path / f"{_identifier(project)}{DEFINITIONS_SUFFIX}"


def render_definitions(
    objects: Sequence[Any],
    project: str,
    source_times: SourceTimes | None = None,
    origin: str = "",
) -> str:
    """Python source defining ``project`` and ``objects`` (entities, file sources, views,
    services), each source stamped with its ``source_times`` where given; the header names
    ``origin``, the file the definitions come from, where given."""
    names = _Names(objects)
    sections: dict[str, list[str]] = {title: [] for _, _, title in _KINDS}
    types: set[str] = set()
    for obj in objects:
        variable = names.of(obj)
        if isinstance(obj, Entity):
            text = _entity(obj)
        elif isinstance(obj, FileSource):
            text = _file_source(obj) + _times(variable, (source_times or {}).get(obj.name))
        elif isinstance(obj, FeatureView):
            text = _feature_view(obj, names, types)
        elif isinstance(obj, FeatureService):
            text = _feature_service(obj, names)
        else:
            raise ValueError(f"cannot write a {type(obj).__name__} ({obj.name!r}) as Python")
        sections[_kind(obj)[2]].append(f"{variable} = {text}")
    imports = []
    used = (["UTC", "datetime"] if source_times else []) + (
        ["timedelta"] if sections["Feature views"] else []
    )
    if used:
        imports += [f"from datetime import {', '.join(used)}", ""]
    feast_names = {type(o).__name__ for o in objects} | {"Project"}
    feast_names |= {"Field"} if types else set()
    feast_names |= {"ValueType"} if sections["Entities"] else set()
    imports.append(f"from feast import {', '.join(sorted(feast_names))}")
    if types:
        imports.append(f"from feast.types import {', '.join(sorted(types))}")
    project_line = f"project = Project(name={_string(project)})"
    body = [f"# {title}\n\n" + "\n\n".join(items) for title, items in sections.items() if items]
    return "\n\n".join([_header(project, origin), "\n".join(imports), project_line, *body]) + "\n"


def load_definitions(source: str, filename: str = "<definitions>") -> list[Any]:
    """The Feast objects ``source`` defines at module level, as ``feast plan`` collects them: in
    the order of their variables' names (``dir(module)``'s), which orders what Feast plans."""
    namespace: dict[str, Any] = {"__name__": "playbook_feast_definitions"}
    exec(compile(source, filename, "exec"), namespace)  # text this module generated
    objects = [namespace[name] for name in sorted(namespace)]
    return [obj for obj in objects if isinstance(obj, (Project, *_classes()))]


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
        on_demand_feature_views=[],
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
    loaded = {_key(o): o for o in load_definitions(source, filename) if not isinstance(o, Project)}
    wanted = {_key(o): o for o in objects}
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
    exists = path.exists()
    if exists and path.read_text(encoding="utf-8") == text:
        return False
    mode = path.stat().st_mode & 0o777 if exists else 0o644
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.fchmod(handle, mode)
        with os.fdopen(handle, "w", encoding="utf-8") as stream:
            stream.write(text)
            stream.flush()
            os.fsync(stream.fileno())
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    return True


def _header(project: str, origin: str) -> str:
    yaml = f"`{origin}`" if origin else "the use case's YAML"
    lines = [
        f'"""Feast definitions of project {project!r}. Generated by Playbook: do not edit.',
        "",
        "The `feature_store` asset writes this file each time it applies the repo, from",
        f"{yaml}: one feature view per feature table (its `features`",
        "section, TTLs included) and one feature service per model (its `model` section).",
        f"To change them, edit the YAML and run `playbook materialize {project}` again.",
        "",
        "The file holds what the registry holds: `feast plan` in this folder reports no",
        "changes, and `feast apply` leaves the registry as it is.",
        '"""',
    ]
    return "\n".join(lines)


def _classes() -> tuple[type, ...]:
    return tuple(kind for kind, _, _ in _KINDS)


def _kind(obj: Any) -> tuple[type, str, str]:
    return next(kind for kind in _KINDS if isinstance(obj, kind[0]))


def _key(obj: Any) -> tuple[str, str]:
    return (_kind(obj)[1], obj.name)


def plan_spec(obj: Any) -> Any:
    """The proto of a Feast object that ``feast plan`` compares (a spec, or a data source's
    whole proto), less the project and the data sources' ``meta``: their times, which Feast's
    own ``DataSource.__eq__`` leaves out too."""
    proto = obj.to_proto()
    spec = proto if isinstance(obj, DataSource) else proto.spec
    if "project" in spec.DESCRIPTOR.fields_by_name:
        spec.ClearField("project")
    _clear_source_meta(spec)
    return spec


def _clear_source_meta(message: Any) -> None:
    if message.DESCRIPTOR.full_name == DataSourceProto.DESCRIPTOR.full_name:
        message.ClearField("meta")
    for field, value in message.ListFields():
        if field.message_type is None or field.message_type.GetOptions().map_entry:
            continue
        for item in [value] if hasattr(value, "DESCRIPTOR") else value:  # one, or repeated
            _clear_source_meta(item)


def _identifier(name: str) -> str:
    text = re.sub(r"\W", "_", name)
    return f"_{text}" if not text or text[0].isdigit() or keyword.iskeyword(text) else text


class _Names:
    """A module-level variable per object: ``<name>_<kind>`` (no doubled suffix), unique."""

    def __init__(self, objects: Sequence[Any]) -> None:
        self._by_key: dict[tuple[str, str], str] = {}
        taken = {"project"}
        for obj in objects:
            suffix = "_" + _kind(obj)[1]
            base = _identifier(obj.name)
            base = base if base.endswith(suffix) else base + suffix
            name, n = base, 2
            while name in taken:
                name, n = f"{base}_{n}", n + 1
            taken.add(name)
            self._by_key[_key(obj)] = name

    def of(self, obj: Any) -> str:
        return self._by_key[_key(obj)]

    def named(self, kind: str, names: Iterable[str], owner: str) -> list[str]:
        """The variables of the ``kind`` objects called ``names``, in that order."""
        missing = [name for name in names if (kind, name) not in self._by_key]
        if missing:
            raise ValueError(f"{owner} names {kind} {missing}, which is not among the objects")
        return [self._by_key[(kind, name)] for name in names]


def _string(text: str) -> str:
    return json.dumps(text, ensure_ascii=False)  # a JSON string is a Python string literal


def _mapping(values: Mapping[str, str]) -> str:
    return "{" + ", ".join(f"{_string(k)}: {_string(v)}" for k, v in sorted(values.items())) + "}"


def _common(obj: Any) -> list[tuple[str, str]]:
    """``description``, ``tags`` and ``owner`` where set (empty is Feast's default)."""
    args = []
    if obj.description:
        args.append(("description", _string(obj.description)))
    if obj.tags:
        args.append(("tags", _mapping(obj.tags)))
    if obj.owner:
        args.append(("owner", _string(obj.owner)))
    return args


def _call(function: str, args: Sequence[tuple[str, str]], indent: int = 0) -> str:
    """``function(k=v, ...)``: on one line if it fits, else one argument a line."""
    flat = f"{function}({', '.join(f'{k}={v}' for k, v in args)})"
    if indent + len(flat) <= LINE_LENGTH and "\n" not in flat:
        return flat
    pad = " " * (indent + 4)
    lines = [f"{pad}{k}={v}," for k, v in args]
    return f"{function}(\n" + "\n".join(lines) + f"\n{' ' * indent})"


def _list(items: Sequence[str], indent: int, prefix: int) -> str:
    """``[a, b]`` if it fits after ``prefix`` characters, else one item a line."""
    flat = f"[{', '.join(items)}]"
    if indent + prefix + len(flat) <= LINE_LENGTH and "\n" not in flat:
        return flat
    pad = " " * (indent + 4)
    return "[\n" + "\n".join(f"{pad}{item}," for item in items) + f"\n{' ' * indent}]"


def _entity(entity: Entity) -> str:
    args = [
        ("name", _string(entity.name)),
        ("join_keys", f"[{_string(entity.join_key)}]"),
        ("value_type", f"ValueType.{entity.value_type.name}"),
        *_common(entity),
    ]
    return _call("Entity", args)


def _file_source(source: FileSource) -> str:
    args = [("name", _string(source.name)), ("path", _string(source.path))]
    if source.timestamp_field:
        args.append(("timestamp_field", _string(source.timestamp_field)))
    if source.created_timestamp_column:
        args.append(("created_timestamp_column", _string(source.created_timestamp_column)))
    if source.field_mapping:
        args.append(("field_mapping", _mapping(source.field_mapping)))
    return _call("FileSource", [*args, *_common(source)])


def _times(variable: str, times: tuple[datetime, datetime] | None) -> str:
    if times is None:
        return ""
    created, updated = times
    lines = [
        _assignment(f"{variable}.created_timestamp", created),
        _assignment(f"{variable}.last_updated_timestamp", updated),
    ]
    return "\n" + "\n".join(lines)


def _assignment(target: str, moment: datetime) -> str:
    """``target = datetime(...)`` in UTC, the call's arguments on a line of their own if long."""
    moment = moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)
    parts = (moment.year, moment.month, moment.day, moment.hour, moment.minute, moment.second)
    args = f"{', '.join(map(str, parts))}, {moment.microsecond}, tzinfo=UTC"
    line = f"{target} = datetime({args})"
    return line if len(line) <= LINE_LENGTH else f"{target} = datetime(\n    {args}\n)"


def _dtype(dtype: Any, types: set[str]) -> str:
    if isinstance(dtype, Array):
        types.add("Array")
        return f"Array({_dtype(dtype.base_type, types)})"
    if isinstance(dtype, PrimitiveFeastType):
        types.add(_TYPE_NAMES[dtype])
        return _TYPE_NAMES[dtype]
    raise ValueError(f"cannot write the Feast type {dtype!r} as Python")


def _field(field: Field, types: set[str]) -> str:
    args = [("name", _string(field.name)), ("dtype", _dtype(field.dtype, types))]
    if field.description:
        args.append(("description", _string(field.description)))
    if field.tags:
        args.append(("tags", _mapping(field.tags)))
    return _call("Field", args, indent=8)


def _timedelta(ttl: timedelta | None) -> str:
    if ttl is None:
        return "None"
    seconds, micros = divmod(ttl // timedelta(microseconds=1), 1_000_000)
    minutes, seconds = divmod(seconds, 60)
    hours, minutes = divmod(minutes, 60)
    days, hours = divmod(hours, 24)
    parts = {"days": days, "hours": hours, "minutes": minutes, "seconds": seconds}
    parts["microseconds"] = micros
    args = ", ".join(f"{unit}={value}" for unit, value in parts.items() if value)
    return f"timedelta({args or 0})"


def _feature_view(view: FeatureView, names: _Names, types: set[str]) -> str:
    owner = f"feature view {view.name!r}"
    if view.batch_source is None:
        raise ValueError(f"{owner} has no batch source")
    (source,) = names.named("source", [view.batch_source.name], owner)
    entities = names.named("entity", view.entities, owner)
    schema = [_field(field, types) for field in [*view.entity_columns, *view.features]]
    args = [
        ("name", _string(view.name)),
        ("entities", _list(entities, 4, len("entities="))),
        ("ttl", _timedelta(view.ttl)),
        ("schema", _list(schema, 4, len("schema="))),
        ("source", source),
        ("online", repr(view.online)),
    ]
    if view.offline:
        args.append(("offline", "True"))
    return _call("FeatureView", [*args, *_common(view)])


def _feature_service(service: FeatureService, names: _Names) -> str:
    owner = f"feature service {service.name!r}"
    projections = service.feature_view_projections
    if any(projection.name_alias for projection in projections):
        raise ValueError(f"{owner}: aliased projections cannot be written")
    features = names.named("view", [projection.name for projection in projections], owner)
    args = [
        ("name", _string(service.name)),
        ("features", _list(features, 4, len("features="))),
        *_common(service),
    ]
    return _call("FeatureService", args)
