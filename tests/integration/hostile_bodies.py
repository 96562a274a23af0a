"""A seeded corpus of hostile request bodies for one endpoint, made from one good body.

Every body is wrong by construction, so a served endpoint must refuse each with a 4xx and never
answer 200 or 5xx: a catalog (the cases of issue 18, each bad value of each field, wrong
encodings and content types, malformed JSON, deep nesting, oversized strings and bodies,
unknown and missing fields, arrays for objects) and seeded random combinations of the same
mutations, up to the size asked. ``Raw`` marks JSON text written as is (``NaN``, ``Infinity``,
a 5,000-digit integer), which ``json.dumps`` cannot or would not write.
"""

from __future__ import annotations

import copy
import gzip
import json
import random
from dataclasses import dataclass, field
from typing import Any

JSON = {"content-type": "application/json"}
Path = tuple[str, ...]


@dataclass(frozen=True)
class Raw:
    """JSON text emitted verbatim."""

    text: str


@dataclass(frozen=True)
class Hostile:
    """One request: what it is, its bytes and its headers."""

    name: str
    content: bytes
    headers: dict[str, str] = field(default_factory=lambda: dict(JSON))


NON_FINITE = [Raw("NaN"), Raw("Infinity"), Raw("-Infinity"), Raw("1e999"), Raw("-1e999")]
NOT_JSON_NUMBERS = [Raw("0x10"), Raw("01"), Raw("+1"), Raw("1."), Raw(".5"), Raw("--1")]
CONTAINERS = [[], {}, [1], {"id": 1}]
# the bad values of each kind of field; null is added for a required field
BAD: dict[str, list[Any]] = {
    "id": [
        2**63,
        -(2**63) - 1,
        2**64,
        10**400,
        -(10**399),
        Raw("9" * 5000),
        1.5,
        Raw("1e3"),
        Raw("7.0"),
        "1",
        "",
        "x" * 300,
        True,
        False,
        *CONTAINERS,
        *NON_FINITE,
        *NOT_JSON_NUMBERS,
    ],
    "time": [
        "0001-01-01",
        "3000-01-01",
        "9999-12-31T23:59:59Z",
        "1969-12-31T23:59:59Z",
        "2200-01-01T00:00:00Z",
        "1970-01-01T03:00:00+05:00",
        "now",
        "yesterday",
        "",
        "2025-13-45",
        "2025-02-30",
        "2025-01-01T25:00",
        "2025-01-01T00:00:00+25:00",
        "2025-01-01" + "0" * 100,
        1700000000,
        1.7e9,
        True,
        *CONTAINERS,
        Raw("NaN"),
    ],
    "k": [0, -1, 1001, 2**63, 10**400, 1.0, 2.5, "10", True, *CONTAINERS, Raw("Infinity")],
    "amount": ["abc", "12.5", -1, 0, 0.001, True, 10**400, *CONTAINERS, *NON_FINITE],
    "hour": [-1, 24, 2**63, 1.5, "3", True, *CONTAINERS],
    "enum": ["atm", "", "ONLINE", "x" * 300, 1, True, *CONTAINERS],
    "text": ["x" * 257, "x" * 10_000, 1, 1.5, True, *CONTAINERS, Raw("NaN")],
    "object": [5, "x", "", True, 1.5, [], [{"a": 1}], Raw("Infinity")],
    "context": [[1], "x", 5, True, {"x": 1}, {"__proto__": {}}, {"": 1}],
}


def dump(value: Any) -> str:
    """JSON text of ``value``, with ``Raw`` verbatim."""
    if isinstance(value, Raw):
        return value.text
    if isinstance(value, dict):
        return "{" + ",".join(f"{json.dumps(k)}:{dump(v)}" for k, v in value.items()) + "}"
    if isinstance(value, list):
        return "[" + ",".join(dump(v) for v in value) + "]"
    return json.dumps(value)


def _put(body: Any, path: Path, value: Any) -> Any:
    out = copy.deepcopy(body)
    target = out
    for part in path[:-1]:
        target = target[part]
    target[path[-1]] = value
    return out


def _drop(body: Any, path: Path) -> Any:
    out = copy.deepcopy(body)
    target = out
    for part in path[:-1]:
        target = target[part]
    del target[path[-1]]
    return out


def _case(name: str, body: Any, headers: dict[str, str] | None = None) -> Hostile:
    return Hostile(name, dump(body).encode(), dict(JSON if headers is None else headers))


def corpus(
    good: dict[str, Any], fields: dict[Path, tuple[str, bool]], seed: int, size: int = 520
) -> list[Hostile]:
    """At least ``size`` hostile requests for the endpoint whose valid body is ``good``;
    ``fields`` gives each field path of ``good`` its kind (a key of :data:`BAD`) and whether
    it is required."""
    rng = random.Random(seed)
    cases = [
        *_issue_cases(),
        *_field_cases(good, fields),
        *_structure_cases(good, fields),
        *_encoding_cases(good),
        *_content_type_cases(good),
        *_malformed_cases(good, rng),
        *_size_cases(good, fields),
    ]
    while len(cases) < size:
        cases.append(_random_case(good, fields, rng, len(cases)))
    return cases


def _issue_cases() -> list[Hostile]:
    """The bodies issue 18 reported as 5xx, whichever endpoint they reach."""
    return [
        Hostile(
            "issue card_id 2^63", b'{"transaction":{"card_id":9223372036854775808,"merchant_id":2}}'
        ),
        Hostile("issue user_id 2^64", b'{"user_id":18446744073709551616,"k":10}'),
        Hostile("issue query -2^63-1", b'{"query":-9223372036854775809}'),
        Hostile("issue 400 digits", b'{"user_id":' + b"9" * 400 + b"}"),
        Hostile("issue lone surrogate", b'{"query":"\\ud800"}'),
    ]


def _field_cases(good: dict, fields: dict[Path, tuple[str, bool]]) -> list[Hostile]:
    """Every bad value of its kind in every field, and null in every required one."""
    cases = []
    for path, (kind, required) in fields.items():
        dotted = ".".join(path)
        for i, value in enumerate([*BAD[kind], *([None] if required else [])]):
            cases.append(_case(f"{dotted} bad #{i}", _put(good, path, value)))
        if required:
            cases.append(_case(f"{dotted} missing", _drop(good, path)))
    return cases


def _structure_cases(good: dict, fields: dict[Path, tuple[str, bool]]) -> list[Hostile]:
    cases = [
        _case(f"body {name}", value)
        for name, value in [
            ("null", None),
            ("true", True),
            ("number", 1),
            ("string", "x"),
            ("empty array", []),
            ("array of the good body", [good]),
            ("array of fields", list(good)),
            ("no fields", {}),
        ]
    ]
    cases.append(_case("unknown top-level field", {**good, "extra": 1}))
    cases.append(_case("unknown field, long name", {**good, "x" * 1000: 1}))
    cases.append(_case("unknown field, empty name", {**good, "": 1}))
    cases.append(_case("unknown field, null", {**good, "extra": None}))
    cases.append(_case("unknown field, surrogate name", {**good, "\ud800": 1}))
    for path in {p[:-1] for p in fields if len(p) > 1}:
        nested = _put(good, (*path, "unknown_field"), 1)
        cases.append(_case(f"unknown field in {'.'.join(path)}", nested))
    first = next(iter(fields))
    text = dump(good)[:-1] + f',{json.dumps(first[0])}:"not this"}}'
    cases.append(Hostile("duplicate key, the last bad", text.encode()))
    for depth in (33, 64, 1000, 30_000):
        for opener, closer in (("[", "]"), ('{"a":', "}")):
            deep = Raw(opener * depth + "1" + closer * depth)
            cases.append(_case(f"nested {depth} {opener}", _put(good, first, deep)))
            cases.append(_case(f"extra nested {depth} {opener}", {**good, "deep": deep}))
    return cases


def _encoding_cases(good: dict) -> list[Hostile]:
    text = dump(good)
    accented = dump({**good, "extra": "caf\u00e9"})
    cut = text.index(":") + 1
    cases = [
        ("BOM", b"\xef\xbb\xbf" + text.encode()),
        ("UTF-16", text.encode("utf-16")),
        ("UTF-16-LE", text.encode("utf-16-le")),
        ("UTF-16-BE", text.encode("utf-16-be")),
        ("UTF-32", text.encode("utf-32")),
        ("latin-1", accented.encode("latin-1")),
        ("0xff 0xfe", b"\xff\xfe" + text.encode()),
        ("bad sequence", text[:cut].encode() + b'"\xc3\x28"' + text[cut:].encode()),
        ("overlong", text[:cut].encode() + b'"\xc0\xaf"' + text[cut:].encode()),
        ("surrogate bytes", text[:cut].encode() + b'"\xed\xa0\x80"' + text[cut:].encode()),
        ("NUL", text.encode() + b"\x00"),
        ("gzip", gzip.compress(text.encode())),
    ]
    hostile = [Hostile(f"encoding {name}", content) for name, content in cases]
    for escape in ("\\ud800", "\\udfff", "\\ud800\\u0041", "\\udc00\\ud800"):
        value = f'{text[:-1]},"extra":"{escape}"}}'
        hostile.append(Hostile(f"lone surrogate {escape} in a value", value.encode()))
        key = f'{text[:-1]},"{escape}":1}}'
        hostile.append(Hostile(f"lone surrogate {escape} in a key", key.encode()))
    hostile.append(
        Hostile(
            "gzip declared",
            gzip.compress(text.encode()),
            {**JSON, "content-encoding": "gzip"},
        )
    )
    return hostile


def _content_type_cases(good: dict) -> list[Hostile]:
    text = dump(good).encode()
    boundary = "hostileboundary"
    multipart = (
        f'--{boundary}\r\nContent-Disposition: form-data; name="body"\r\n'
        f"Content-Type: application/json\r\n\r\n{text.decode()}\r\n--{boundary}--\r\n"
    ).encode()
    fields = "&".join(f"{k}=1" for k in good).encode()
    return [
        Hostile("multipart header, JSON body", text, {"content-type": "multipart/form-data"}),
        Hostile(
            "multipart body",
            multipart,
            {"content-type": f"multipart/form-data; boundary={boundary}"},
        ),
        Hostile(
            "form header, JSON body", text, {"content-type": "application/x-www-form-urlencoded"}
        ),
        Hostile("form body", fields, {"content-type": "application/x-www-form-urlencoded"}),
        Hostile("text/plain", text, {"content-type": "text/plain"}),
        Hostile("xml", b"<transaction/>", {"content-type": "application/xml"}),
        Hostile("pickle", b"\x80\x04N.", {"content-type": "application/vnd.bentoml+pickle"}),
        Hostile("octet-stream", text, {"content-type": "application/octet-stream"}),
        Hostile("html", text, {"content-type": "text/html; charset=utf-8"}),
        Hostile(
            "charset utf-16",
            text.decode().encode("utf-16"),
            {"content-type": "application/json; charset=utf-16"},
        ),
        Hostile("no content type, malformed", text[:-1], {}),
        Hostile("no content type, empty", b"", {}),
    ]


def _malformed_cases(good: dict, rng: random.Random) -> list[Hostile]:
    text = dump(good)
    cases = [
        ("empty", ""),
        ("blank", " \n\t "),
        ("trailing garbage", text + "x"),
        ("two objects", text + text),
        ("trailing comma", text[:-1] + ",}"),
        ("single quotes", text.replace('"', "'")),
        ("comment", "// hello\n" + text),
        ("unquoted key", "{" + text[1:].replace('"', "", 2)),
        ("missing colon", text.replace(":", " ", 1)),
        ("unclosed string", '{"a": "b}'),
        ("control character", text[:-1] + ',"extra":"a\x01b"}'),
        ("raw newline in string", text[:-1] + ',"extra":"a\nb"}'),
        ("bad escape", text[:-1] + ',"extra":"a\\xb"}'),
        ("short unicode escape", text[:-1] + ',"extra":"\\u12"}'),
        ("just a brace", "{"),
        ("close first", "}{"),
    ]
    for i in range(12):
        cut = rng.randrange(1, len(text) - 1)
        cases.append((f"truncated at {cut} #{i}", text[:cut]))
    return [Hostile(f"malformed {name}", value.encode()) for name, value in cases]


def _size_cases(good: dict, fields: dict[Path, tuple[str, bool]]) -> list[Hostile]:
    first = next(iter(fields))
    cases = []
    for n in (60_000, 70_000, 1_000_000):
        cases.append(_case(f"string of {n}", _put(good, first, "x" * n)))
        cases.append(_case(f"extra string of {n}", {**good, "extra": "x" * n}))
    many = {**good, **{f"f{i}": i for i in range(6000)}}
    cases.append(_case("6000 extra fields", many))
    cases.append(_case("long array", {**good, "extra": list(range(20_000))}))
    return cases


def _random_case(
    good: dict, fields: dict[Path, tuple[str, bool]], rng: random.Random, number: int
) -> Hostile:
    """One to three seeded mutations of ``good``, at least one of which makes it wrong."""
    body: Any = copy.deepcopy(good)
    paths = list(fields)
    done = []
    for _ in range(rng.randint(1, 3)):
        path = rng.choice(paths)
        kind, required = fields[path]
        move = rng.choice(["bad", "bad", "bad", "unknown", "missing" if required else "bad"])
        if not isinstance(body, dict):
            break
        try:
            if move == "bad":
                body = _put(body, path, rng.choice([*BAD[kind], *([None] if required else [])]))
            elif move == "unknown":
                where = path[:-1]
                body = _put(body, (*where, f"extra_{rng.randrange(10**6)}"), rng.random())
            else:
                body = _drop(body, path)
        except (KeyError, TypeError):  # an earlier mutation replaced the object on the way
            continue
        done.append(f"{move} {'.'.join(path)}")
    if not done:
        body = {**body, "extra": 1} if isinstance(body, dict) else body
        done.append("unknown")
    if rng.random() < 0.1:
        body, done = [body], [*done, "in an array"]
    return _case(f"random #{number}: {', '.join(done)}", body)
