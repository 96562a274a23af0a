"""Parse a use-case YAML file defensively: bounded size, strict UTF-8, unique keys, no alias bombs.

PyYAML's safe loader runs no code, but it is not safe against hostile input: a duplicate key
silently wins, a byte that is not UTF-8 escapes as a bare ``UnicodeDecodeError``, and a 900-byte
"billion laughs" document of nested aliases is a tiny node graph that expands to 10^9 values as
soon as anything walks it (the line map, pydantic): 31 s and 3.7 GB, then a MemoryError. Here the
size is checked before reading, the node graph is composed once (by libyaml when installed) and
measured with memoised subtree sizes, which is linear in the distinct nodes, so a bomb is refused
in microseconds before a single Python object is built. Every refusal is a ``YamlProblem`` with a
line, a field path and what was expected, which ``configs.schema.loading`` reports like any other
config error.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

MAX_BYTES = 1 << 20
"""Largest use-case file read (1 MiB); the shipped ones are under 20 KiB."""
MAX_VALUES = 100_000
"""Most values (mappings, lists, scalars) a document may expand to, each alias use counted."""
MAX_DEPTH = 64
"""Deepest nesting of mappings and lists; the schema itself nests fewer than ten levels."""

_Base: type[yaml.SafeLoader] = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # type: ignore[assignment]


@dataclass(frozen=True)
class YamlProblem:
    """Why a file was refused: 1-based ``line`` (None for the whole file) and dotted ``field``."""

    line: int | None
    field: str
    message: str


class YamlLoadError(ValueError):
    """The file is not one safe, well-formed YAML document; ``problems`` say where and why."""

    def __init__(self, problems: list[YamlProblem]) -> None:
        super().__init__("; ".join(p.message for p in problems))
        self.problems = problems


@dataclass(frozen=True)
class YamlDocument:
    """The constructed data and the node graph it came from (for mapping fields to lines)."""

    data: Any
    node: yaml.Node | None


class _Refused(Exception):
    def __init__(self, problem: YamlProblem) -> None:
        self.problem = problem


class _Loader(_Base):  # type: ignore[misc, valid-type]
    """The safe loader, except that a scalar Python cannot build names its line.

    ``2024-13-45`` (a date with month 13) or a 5,000-digit integer otherwise raise a bare
    ValueError from ``datetime`` or ``int`` with no hint of where it is.
    """

    def construct_object(self, node: yaml.Node, deep: bool = False) -> Any:
        try:
            return super().construct_object(node, deep)
        except (ValueError, OverflowError) as err:
            value = node.value if isinstance(node, yaml.ScalarNode) else ""
            shown = f"{value[:40]!r}{'...' if len(value) > 40 else ''}"
            raise yaml.constructor.ConstructorError(
                None, None, f"cannot read the value {shown}: {err}", node.start_mark
            ) from None


def _line(node: yaml.Node) -> int:
    return node.start_mark.line + 1


def _short(path: str) -> str:
    """The first few segments of a very deep path, so the message stays one line."""
    parts = path.split(".")
    return path if len(parts) <= 6 else ".".join(parts[:6]) + f"... ({len(parts)} levels)"


def _key_name(node: yaml.Node) -> str:
    return str(node.value) if isinstance(node, yaml.ScalarNode) else "?"


def _children(node: yaml.Node, path: str) -> Iterator[tuple[str, yaml.Node]]:
    prefix = f"{path}." if path else ""
    if isinstance(node, yaml.MappingNode):
        for key, value in node.value:
            yield f"{prefix}{_key_name(key)}", key
            yield f"{prefix}{_key_name(key)}", value
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            yield f"{prefix}{i}", item


class _Graph:
    """One pass over the composed nodes: expanded size, depth, recursion and duplicate keys.

    An alias is the very node object its anchor made, so sizes memoised by identity count each
    distinct node once while still charging every use of an alias its full expansion.
    """

    def __init__(self) -> None:
        self.sizes: dict[int, int] = {}
        self.open: set[int] = set()
        self.duplicates: list[YamlProblem] = []

    def size(self, node: yaml.Node, path: str, depth: int) -> int:
        key = id(node)
        if key in self.sizes:
            return self.sizes[key]
        if key in self.open:
            raise _Refused(
                YamlProblem(
                    _line(node),
                    path,
                    "an alias refers to the mapping or list that contains it; "
                    "expected no recursive aliases",
                )
            )
        if depth > MAX_DEPTH:
            raise _Refused(
                YamlProblem(
                    _line(node),
                    _short(path),
                    f"nested more than {MAX_DEPTH} levels deep; a use-case file needs far fewer",
                )
            )
        self.open.add(key)
        if isinstance(node, yaml.MappingNode):
            self._check_keys(node, path)
        total = 1
        for child_path, child in _children(node, path):
            total += self.size(child, child_path, depth + 1)
            if total > MAX_VALUES:
                raise _Refused(
                    YamlProblem(
                        _line(node),
                        path,
                        f"holds more than {MAX_VALUES:,} values once aliases are expanded (each "
                        "use of an alias counts its whole anchor); expected far fewer in a "
                        "use-case file (refused as a possible alias bomb)",
                    )
                )
        self.open.discard(key)
        self.sizes[key] = total
        return total

    def _check_keys(self, node: yaml.MappingNode, path: str) -> None:
        first: dict[tuple[str, str], int] = {}
        for key, _ in node.value:
            if not isinstance(key, yaml.ScalarNode):
                continue
            ident = (key.tag, key.value)
            if ident in first:
                field = f"{path}.{key.value}" if path else str(key.value)
                self.duplicates.append(
                    YamlProblem(
                        _line(key),
                        field,
                        f"duplicate key {key.value!r} (first at line {first[ident]}, again at "
                        f"line {_line(key)}); expected each key once in a mapping",
                    )
                )
            else:
                first[ident] = _line(key)


def _syntax_problem(exc: yaml.YAMLError, text: str) -> YamlProblem:
    if isinstance(exc, yaml.MarkedYAMLError):
        mark = exc.problem_mark or exc.context_mark
        context = f"{exc.context}: " if exc.context else ""
        line = mark.line + 1 if mark else None
        return YamlProblem(line, "", f"invalid YAML: {context}{exc.problem}")
    if isinstance(exc, yaml.reader.ReaderError):
        line = text.count("\n", 0, exc.position) + 1
        char = exc.character if isinstance(exc.character, int) else ord(exc.character)
        reason = f"invalid YAML: character #x{char:04x} is not allowed ({exc.reason})"
        return YamlProblem(line, "", reason)
    return YamlProblem(None, "", f"invalid YAML: {exc}")


def parse_yaml(text: str) -> YamlDocument:
    """One YAML document, refused (``YamlLoadError``) if it is unsafe or malformed."""
    loader = _Loader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            return YamlDocument(None, None)
        graph = _Graph()
        graph.size(node, "", 0)
        if graph.duplicates:
            raise YamlLoadError(sorted(graph.duplicates, key=lambda p: p.line or 0))
        return YamlDocument(loader.construct_document(node), node)
    except _Refused as refused:
        raise YamlLoadError([refused.problem]) from None
    except yaml.YAMLError as exc:
        raise YamlLoadError([_syntax_problem(exc, text)]) from None
    except RecursionError:  # only without libyaml, which caps nesting itself
        raise YamlLoadError(
            [YamlProblem(None, "", f"nested too deeply; expected at most {MAX_DEPTH} levels")]
        ) from None
    finally:
        loader.dispose()


def _decode(raw: bytes) -> str:
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as err:
        line = raw.count(b"\n", 0, err.start) + 1
        column = err.start - raw.rfind(b"\n", 0, err.start)
        raise YamlLoadError(
            [
                YamlProblem(
                    line,
                    "",
                    f"not valid UTF-8: byte 0x{raw[err.start]:02x} at offset {err.start} "
                    f"(line {line}, column {column}); expected a UTF-8 text file (re-save it "
                    "as UTF-8)",
                )
            ]
        ) from None


def read_yaml(path: Path) -> YamlDocument:
    """Read and parse one YAML file of at most ``MAX_BYTES``, checked before reading."""
    limit = f"at most {MAX_BYTES:,} bytes (1 MiB)"
    size = path.stat().st_size
    if size > MAX_BYTES:
        raise YamlLoadError(
            [YamlProblem(None, "", f"file is {size:,} bytes; a use-case file may be {limit}")]
        )
    with path.open("rb") as handle:
        raw = handle.read(MAX_BYTES + 1)  # the file may have grown since stat
    if len(raw) > MAX_BYTES:
        grown = f"file is over {MAX_BYTES:,} bytes; a use-case file may be {limit}"
        raise YamlLoadError([YamlProblem(None, "", grown)])
    return parse_yaml(_decode(raw))
