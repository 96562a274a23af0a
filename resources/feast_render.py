"""Feast objects written as Python source: the text of a generated repo's definitions file.

:func:`render_definitions` writes each constructor call from the object's fields, in the order
the objects come (the YAML's), so the same definitions and registry always give the same bytes;
:mod:`resources.feast_repo_files` loads, checks and writes the file. Each source's times are the
registry's (``resources.feast_apply`` keeps them while the source is unchanged): Feast 0.67
compares a materialized view down to its source's proto, times included, and stamps a new
``FileSource`` when constructed, so ``feast plan`` would otherwise show every such view updated.
Feast's own ``apply`` on a Redis repo restamps them; the next asset run writes the new ones.

A source under the repo's home is written relative to the file (``_here("../../tables/...")``,
made absolute when the file is run, as the registry needs it), so the file names no host path
and stays true when the home is moved or copied (:mod:`runtime.relocate` re-roots the registry).

An on-demand feature view (request-time features) is written as the call that made it:
``feast_udf(name, {feature: expression})`` from :mod:`runtime.request_features`, so the file
shows the expressions and runs the function training and serving run; its ``udf_string`` is the
self-contained source Feast rebuilds the function from.
"""

from __future__ import annotations

import json
import keyword
import os
import re
from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import feast.types
from feast import (
    Entity,
    FeatureService,
    FeatureView,
    Field,
    FileSource,
    OnDemandFeatureView,
    RequestSource,
)
from feast.data_source import DataSource
from feast.types import Array, PrimitiveFeastType

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
    (
        OnDemandFeatureView,
        "on_demand_view",
        "On-demand feature views: request-time features, computed when read from the request's\n"
        "# fields and the views' features by Playbook's runtime.request_features (Playbook must be\n"
        "# installed where they are read), the function its training sets and /score use.",
    ),
    (FeatureService, "service", "Feature services"),
)


def render_definitions(
    objects: Sequence[Any],
    project: str,
    source_times: SourceTimes | None = None,
    origin: str = "",
    folder: Path | None = None,
    home: Path | None = None,
) -> str:
    """Python source defining ``project`` and ``objects`` (entities, file sources, views,
    services), each source stamped with its ``source_times`` where given; the header names
    ``origin``, the file the definitions come from, where given. With ``folder`` (where the file
    is written) and ``home``, the paths of sources under ``home`` are written relative to
    ``folder``."""
    names = _Names(objects)
    sections: dict[str, list[str]] = {title: [] for _, _, title in _KINDS}
    types: set[str] = set()
    relative = False
    for obj in objects:
        variable = names.of(obj)
        if isinstance(obj, Entity):
            text = _entity(obj)
        elif isinstance(obj, FileSource):
            path = _source_path(obj.path, folder, home)
            relative |= path.startswith("_here(")
            text = _file_source(obj, path) + _times(variable, (source_times or {}).get(obj.name))
        elif isinstance(obj, RequestSource):
            text = _request_source(obj, types)
        elif isinstance(obj, FeatureView):
            text = _feature_view(obj, names, types)
        elif isinstance(obj, OnDemandFeatureView):  # two statements: its function, then it
            sections[_kind(obj)[2]].append(_on_demand_view(obj, variable, names, types))
            continue
        elif isinstance(obj, FeatureService):
            text = _feature_service(obj, names)
        else:
            raise ValueError(f"cannot write a {type(obj).__name__} ({obj.name!r}) as Python")
        sections[_kind(obj)[2]].append(f"{variable} = {text}")
    imports = ["import os"] if relative else []
    used = (["UTC", "datetime"] if source_times else []) + (
        ["timedelta"] if sections["Feature views"] else []
    )
    if used:
        imports.append(f"from datetime import {', '.join(used)}")
    if imports:
        imports.append("")
    feast_names = {type(o).__name__ for o in objects} | {"Project"}
    feast_names |= {"Field"} if types else set()
    feast_names |= {"ValueType"} if sections["Entities"] else set()
    imports.append(f"from feast import {', '.join(sorted(feast_names))}")
    if types:
        imports.append(f"from feast.types import {', '.join(sorted(types))}")
    if any(isinstance(o, OnDemandFeatureView) for o in objects):
        imports += ["", "from runtime.request_features import feast_udf"]
    project_line = f"project = Project(name={_string(project)})"
    body = [f"# {title}\n\n" + "\n\n".join(items) for title, items in sections.items() if items]
    helper = [f"\n{_HERE}\n"] if relative else []  # two blank lines around a function
    parts = [_header(project, origin), "\n".join(imports), *helper, project_line, *body]
    return "\n\n".join(parts) + "\n"


_HERE = '''
def _here(path: str) -> str:
    """``path``, relative to this file's folder, made absolute: the repo moves with its home."""
    return os.path.normpath(os.path.join(os.path.dirname(os.path.realpath(__file__)), path))
'''.strip()


def _source_path(path: str, folder: Path | None, home: Path | None) -> str:
    """``path`` as a Python expression: ``_here("<relative>")`` when it lies under ``home`` and
    that gives it back exactly (a normalized absolute path), else the string itself."""
    if folder is None or home is None or not os.path.isabs(path) or os.path.normpath(path) != path:
        return _string(path)
    if not Path(path).is_relative_to(home):
        return _string(path)
    return f"_here({_string(os.path.relpath(path, folder))})"


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


def feast_classes() -> tuple[type, ...]:
    """The Feast classes a definitions file holds: entities, sources, views, services."""
    return tuple(kind for kind, _, _ in _KINDS)


def _kind(obj: Any) -> tuple[type, str, str]:
    return next(kind for kind in _KINDS if isinstance(obj, kind[0]))


def object_key(obj: Any) -> tuple[str, str]:
    """``(kind, name)`` of a Feast object, e.g. ``("view", "user_stats")``."""
    return (_kind(obj)[1], obj.name)


def identifier(name: str) -> str:
    """``name`` as a Python identifier: ``\\W`` to ``_``, ``_`` before a digit or keyword."""
    text = re.sub(r"\W", "_", name)
    return f"_{text}" if not text or text[0].isdigit() or keyword.iskeyword(text) else text


class _Names:
    """A module-level variable per object: ``<name>_<kind>`` (no doubled suffix), unique."""

    def __init__(self, objects: Sequence[Any]) -> None:
        self._by_key: dict[tuple[str, str], str] = {}
        taken = {"project"}
        for obj in objects:
            suffix = "_" + _kind(obj)[1]
            base = identifier(obj.name)
            base = base if base.endswith(suffix) else base + suffix
            name, n = base, 2
            while name in taken:
                name, n = f"{base}_{n}", n + 1
            taken.add(name)
            self._by_key[object_key(obj)] = name
            if isinstance(obj, OnDemandFeatureView):  # and its function's
                udf, n = f"{identifier(obj.name)}_udf", 2
                while udf in taken:
                    udf, n = f"{identifier(obj.name)}_udf_{n}", n + 1
                taken.add(udf)
                self._by_key[("udf", obj.name)] = udf

    def of(self, obj: Any) -> str:
        return self._by_key[object_key(obj)]

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


def _file_source(source: FileSource, path: str) -> str:
    args = [("name", _string(source.name)), ("path", path)]
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


def _request_source(source: RequestSource, types: set[str]) -> str:
    schema = [_field(field, types) for field in source.schema]
    args = [("name", _string(source.name)), ("schema", _list(schema, 4, len("schema=")))]
    return _call("RequestSource", [*args, *_common(source)])


def _on_demand_view(
    view: OnDemandFeatureView, variable: str, names: _Names, types: set[str]
) -> str:
    """``<udf> = feast_udf(...)`` then the view, which takes it and its source."""
    owner = f"on-demand view {view.name!r}"
    udf = getattr(view.feature_transformation, "udf", None)
    expressions = getattr(udf, "expressions", None)
    if not isinstance(expressions, dict) or view.mode != "pandas":
        raise ValueError(f"{owner}: only views made by runtime.request_features.feast_udf")
    projections = list(view.source_feature_view_projections.values())
    if any(p.name_alias or p.desired_features for p in projections):
        raise ValueError(f"{owner}: projections of its sources cannot be written")
    sources = names.named("view", [p.name for p in projections], owner)
    sources += names.named("source", list(view.source_request_sources), owner)
    function = names.named("udf", [view.name], owner)[0]
    listed = "".join(f"        {_string(k)}: {_string(v)},\n" for k, v in expressions.items())
    made = f"{function} = feast_udf(\n    {_string(view.name)},\n    {{\n{listed}    }},\n)"
    schema = [_field(field, types) for field in view.features]
    args = [
        ("name", _string(view.name)),
        ("sources", _list(sources, 4, len("sources="))),
        ("schema", _list(schema, 4, len("schema="))),
        ("mode", _string(view.mode)),
        ("udf", function),
        ("udf_string", f"{function}.source"),
        *_common(view),
    ]
    return f"{made}\n{variable} = {_call('OnDemandFeatureView', args)}"


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
