"""Read a use-case YAML file into a validated ``UseCaseSpec``, or explain exactly what is wrong.

Every problem becomes one line ``FILE:LINE: field.path: what was expected``. pydantic errors are
mapped back to YAML lines through the composed node tree, unknown keys get a did-you-mean from the
model's real field names, and all problems in all files are reported together so a user fixes
them in one pass. Nothing is returned unless everything is valid: the loader never half-loads.
"""

from __future__ import annotations

import types
import typing
from collections.abc import Callable, Iterable, Sequence
from dataclasses import replace
from difflib import get_close_matches
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ValidationError

from configs.schema.consistency import Loc, Problem, cross_check
from configs.schema.issues import SpecError, SpecIssue, dotted, line_of, short_list
from configs.schema.safe_yaml import YamlLoadError, read_yaml
from configs.schema.usecase import UseCaseSpec

ExtraCheck = Callable[[UseCaseSpec], Iterable[Problem]]
_MAX_ISSUES = 50  # per file; the rest are counted
_MAX_SHOWN = 80  # characters of a rejected value quoted in a message
_MAX_MESSAGE = 600  # characters of one message (validators may quote a value whole)


def _line_map(node: yaml.Node, loc: Loc = (), out: dict[Loc, int] | None = None) -> dict[Loc, int]:
    """Map every key path of a composed YAML document to its 1-based line."""
    out = {} if out is None else out
    if isinstance(node, yaml.MappingNode):
        for key_node, value_node in node.value:
            child = (*loc, key_node.value)
            out[child] = key_node.start_mark.line + 1
            _line_map(value_node, child, out)
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            out[(*loc, i)] = item.start_mark.line + 1
            _line_map(item, (*loc, i), out)
    return out


def _data_path(data: Any, loc: Sequence[Any]) -> Loc:
    """Drop the discriminator tags pydantic inserts into locations (``source.synthetic.seed``)."""
    path: list[str | int] = []
    for segment in loc:
        if isinstance(data, dict) and segment in data:
            data = data[segment]
            path.append(segment)
        elif isinstance(data, list) and isinstance(segment, int) and segment < len(data):
            data = data[segment]
            path.append(segment)
        elif (
            isinstance(data, (dict, list))
            and not isinstance(segment, int)
            and segment.endswith("]")
        ):
            continue  # pydantic's "function-after[...]" wrappers
        elif isinstance(data, dict) and segment not in data and path and _is_tag(data, segment):
            continue
        else:
            path.append(segment)
            data = None
    return tuple(path)


def _is_tag(data: dict[str, Any], segment: str) -> bool:
    return segment in (data.get("kind"), data.get("generator"))


def _members(annotation: Any) -> list[Any]:
    """Flatten Optional/Union/Annotated into the concrete types they allow."""
    origin = typing.get_origin(annotation)
    if origin is typing.Annotated:
        return _members(typing.get_args(annotation)[0])
    if origin in (typing.Union, types.UnionType):
        return [m for arg in typing.get_args(annotation) for m in _members(arg)]
    return [annotation]


def _matches_tag(member: type[BaseModel], data: Any) -> bool:
    """Whether ``data``'s ``kind``/``generator`` tag selects this union member."""
    if not isinstance(data, dict):
        return True
    for tag in ("kind", "generator"):
        field = member.model_fields.get(tag)
        if field is not None and tag in data:
            return data[tag] in typing.get_args(field.annotation)
    return True


def _models(candidates: list[Any], data: Any) -> list[type[BaseModel]]:
    return [
        m
        for c in candidates
        for m in _members(c)
        if isinstance(m, type) and issubclass(m, BaseModel) and _matches_tag(m, data)
    ]


def _fields_at(model: type[BaseModel], loc: Loc, data: Any) -> list[str]:
    """Field names a model accepts at ``loc`` (for did-you-mean on unknown keys).

    ``data`` is the parsed YAML, walked alongside so a tagged union offers only the fields of the
    member its ``kind``/``generator`` selects.
    """
    current: list[Any] = [model]
    for segment in loc:
        following: list[Any] = []
        for candidate in current:
            for member in _members(candidate):
                if typing.get_origin(member) in (dict, list):
                    following.append(typing.get_args(member)[-1])
        for member in _models(current, data):
            field = member.model_fields.get(str(segment))
            if field is not None:
                following.append(field.annotation)
        data = data.get(segment) if isinstance(data, dict) else None
        current = following
    names: list[str] = []
    for member in _models(current, data):
        names.extend(n for n in member.model_fields if n not in names)
    return names


def _explain(error: dict[str, Any], path: Loc, data: Any) -> str:
    kind = error["type"]
    if kind == "extra_forbidden":
        allowed = _fields_at(UseCaseSpec, path[:-1], data)
        guess = get_close_matches(str(path[-1]), allowed, n=1)
        hint = f"; did you mean {guess[0]!r}?" if guess else ""
        return f"unknown key{hint} (allowed here: {', '.join(allowed)})"
    if kind == "missing":
        return "required field is missing"
    message = error["msg"].removeprefix("Value error, ")
    if kind in ("union_tag_invalid", "literal_error", "enum"):
        return f"{message} (got {_shown(error.get('input'))})"
    if "input" in error and not isinstance(error["input"], (dict, list)) and kind != "value_error":
        return f"{message} (got {_shown(error['input'])})"
    return message


def _shown(value: Any) -> str:
    """A value as the user wrote it, cut short: a hostile 1 MiB string is not echoed whole."""
    text = repr(value)
    return text if len(text) <= _MAX_SHOWN else f"{text[:_MAX_SHOWN]}... ({len(text):,} chars)"


def _clip(text: str) -> str:
    return text if len(text) <= _MAX_MESSAGE else f"{text[:_MAX_MESSAGE]}... (cut)"


def _capped(shown: str, issues: list[SpecIssue]) -> list[SpecIssue]:
    """At most ``_MAX_ISSUES`` issues a file, each one line of bounded length.

    A generated file can break a rule 100,000 times, and a validator's message may quote a
    megabyte-long value back; the report stays readable either way.
    """
    clipped = [
        replace(issue, field=_clip(issue.field), message=_clip(issue.message))
        for issue in issues[:_MAX_ISSUES]
    ]
    if len(issues) > _MAX_ISSUES:
        clipped.append(
            SpecIssue(shown, None, "", f"... and {len(issues) - _MAX_ISSUES} more problems")
        )
    return clipped


def _unmatched_patterns(spec: UseCaseSpec) -> list[Problem]:
    """Wildcard ``passthrough`` names that matched no column, at their written positions."""
    candidates = spec.pattern_candidates()
    problems: list[Problem] = []
    for name, view in spec.features.items():
        for index, pattern in view.unmatched_patterns():
            problems.append(
                (
                    ("features", name, "passthrough", index),
                    f"pattern {pattern!r} matches no events column that can be a feature"
                    f" (keys, time, group and labels excepted; candidates: {short_list(candidates)})",
                )
            )
    return problems


def load_spec(path: str | Path, extra_checks: Sequence[ExtraCheck] = ()) -> UseCaseSpec:
    """Read and fully validate one YAML file; raise ``SpecError`` listing every problem.

    ``extra_checks`` run after schema and cross-section validation, in order, each only when the
    ones before found nothing; the Dagster side passes checks that need the file system (does the
    source file exist, does a mapped column exist, do its values parse).
    """
    path = Path(path)
    shown = str(path)
    if not path.is_file():
        reason = "not a regular file" if path.exists() else "file not found"
        raise SpecError([SpecIssue(shown, None, "", reason)])
    try:
        document = read_yaml(path)
    except YamlLoadError as exc:
        issues = [SpecIssue(shown, p.line, p.field, p.message) for p in exc.problems]
        raise SpecError(_capped(shown, issues)) from None
    except OSError as exc:
        raise SpecError([SpecIssue(shown, None, "", f"cannot read: {exc.strerror}")]) from None
    data, node = document.data, document.node
    if not isinstance(data, dict):
        raise SpecError(
            [SpecIssue(shown, 1, "", "expected a mapping of sections (name, source, ...)")]
        )
    lines = _line_map(node) if node is not None else {}
    try:
        spec = UseCaseSpec.model_validate(data).with_path(path)
    except ValidationError as exc:
        issues = []
        for error in exc.errors():
            field_path = _data_path(data, error["loc"])
            issues.append(
                SpecIssue(
                    shown,
                    line_of(lines, field_path),
                    dotted(field_path),
                    _explain(error, field_path, data),
                )
            )
        raise SpecError(_capped(shown, issues)) from None
    spec.with_lines(lines)
    issues = [
        SpecIssue(shown, line_of(lines, loc), dotted(loc), message)
        for loc, message in _unmatched_patterns(spec)
    ]
    # the checks see passthrough patterns expanded; spec.issue maps positions back to the YAML
    problems = list(cross_check(spec))
    for check in extra_checks:  # each assumes the ones before passed (files exist, columns too)
        if problems or issues:
            break
        problems.extend(check(spec))
    issues += [spec.issue(loc, message) for loc, message in problems]
    if issues:
        raise SpecError(_capped(shown, issues))
    return spec


def load_specs(
    paths: Iterable[str | Path], extra_checks: Sequence[ExtraCheck] = ()
) -> list[UseCaseSpec]:
    """Load several files; all or nothing, with the problems of every file in one error."""
    specs: list[UseCaseSpec] = []
    issues: list[SpecIssue] = []
    for path in paths:
        try:
            specs.append(load_spec(path, extra_checks))
        except SpecError as exc:
            issues.extend(exc.issues)
    names: dict[str, Path | None] = {}
    for spec in specs:
        if spec.name in names:
            issues.append(
                SpecIssue(
                    str(spec.path),
                    1,
                    "name",
                    f"use case {spec.name!r} is also defined in {names[spec.name]}",
                )
            )
        names[spec.name] = spec.path
    if issues:
        raise SpecError(issues)
    return specs
