"""The body check in front of the services: every bad body is a 4xx naming ``body``, quickly.

``parse_object`` and ``check_content_type`` are called directly for each class of bad body; the
middleware itself runs in front of a small Starlette app through Starlette's test client, for
what only the ASGI flow shows: the body reaches the app unchanged, 413 comes from
``content-length`` before the body is read, and other paths and methods pass untouched.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from serving.json_body import (
    MAX_BODY_BYTES,
    MAX_DEPTH,
    BodyError,
    JSONObjectBody,
    check_content_type,
    parse_object,
)

GOOD = b'{"user_id": 7, "k": 10}'
FIELDS = frozenset({"user_id", "k", "context", "as_of"})


def _refused(body: bytes, fields: frozenset[str] | None = FIELDS) -> BodyError:
    with pytest.raises(BodyError) as caught:
        parse_object(body, fields)
    return caught.value


def test_a_json_object_with_known_fields_passes() -> None:
    assert parse_object(GOOD, FIELDS) == {"user_id": 7, "k": 10}
    # an escaped surrogate pair is one character (an emoji), not a lone surrogate
    assert parse_object(b'{"as_of": "\\ud83d\\ude00"}', FIELDS) == {"as_of": "\U0001f600"}
    assert parse_object(b' {"user_id": 1}\n', FIELDS) == {"user_id": 1}


@pytest.mark.parametrize(
    ("body", "says"),
    [
        (b"\xef\xbb\xbf" + GOOD, "byte order mark"),
        (GOOD.decode().encode("utf-16"), "not UTF-8"),
        (GOOD.decode().encode("utf-16-le"), "NUL"),
        (GOOD.decode().encode("utf-32-be"), "NUL"),
        (b'{"user_id": "caf\xe9"}', "not UTF-8"),
        (b'{"user_id": "\xed\xa0\x80"}', "not UTF-8"),  # a surrogate encoded as bytes
        (b"", "empty"),
        (b" \n ", "empty"),
        (b'{"user_id": 7', "malformed JSON"),
        (b"{'user_id': 7}", "malformed JSON"),
        (b'{"user_id": NaN}', "NaN is not a JSON number"),
        (b'{"user_id": Infinity}', "Infinity is not a JSON number"),
        (b'{"user_id": -Infinity}', "-Infinity is not a JSON number"),
        (b'{"user_id": ' + b"9" * 5000 + b"}", "4300 digits"),
        (b'{"user_id": "\\ud800"}', "lone UTF-16 surrogate escape at user_id"),
        (b'{"context": {"\\udc00": 1}}', "lone UTF-16 surrogate escape"),
        (b"[1, 2]", "expected a JSON object, got array"),
        (b"null", "expected a JSON object, got null"),
        (b'"x"', "expected a JSON object, got string"),
    ],
)
def test_a_bad_body_is_422_naming_the_body(body: bytes, says: str) -> None:
    error = _refused(body)
    assert (error.status, error.field) == (422, "body")
    assert says in str(error)


def test_nesting_is_limited_however_deep_and_in_bounded_time() -> None:
    within = b'{"context": ' + b"[" * (MAX_DEPTH - 1) + b"]" * (MAX_DEPTH - 1) + b"}"
    assert parse_object(within, FIELDS)["context"]
    for depth in (MAX_DEPTH, 1000, 30_000):  # 30,000 levels: past the C parser's recursion
        for opener, closer in ((b"[", b"]"), (b'{"a":', b"}")):
            body = b'{"context": ' + opener * depth + b"1" + closer * depth + b"}"
            if len(body) > MAX_BODY_BYTES:
                continue
            started = time.perf_counter()
            error = _refused(body)
            assert time.perf_counter() - started < 0.5
            assert error.status == 422 and "nested deeper" in str(error)


def test_size_is_limited() -> None:
    padding = MAX_BODY_BYTES - len(b'{"as_of": ""}')
    assert parse_object(b'{"as_of": "' + b"x" * padding + b'"}', FIELDS)
    error = _refused(b'{"as_of": "' + b"x" * (padding + 1) + b'"}')
    assert (error.status, error.field) == (413, "body")


def test_an_unknown_top_level_field_is_named() -> None:
    error = _refused(b'{"user_id": 1, "user": 2}')
    assert (error.status, error.field) == (422, "user")
    assert "expected one of as_of, context, k, user_id" in str(error)
    assert _refused(b'{"user_id": 1, "": 2}').field == '""'
    assert len(_refused(b'{"' + b"x" * 5000 + b'": 2}').field) < 100
    assert parse_object(b'{"anything": 1}', None) == {"anything": 1}  # no fields: no check


@pytest.mark.parametrize(
    "content_type",
    [None, "application/json", "Application/JSON", "application/json; charset=utf-8"],
)
def test_json_content_types_pass(content_type: str | None) -> None:
    headers = [] if content_type is None else [(b"content-type", content_type.encode())]
    check_content_type(headers)


@pytest.mark.parametrize(
    "content_type",
    [
        "multipart/form-data; boundary=x",
        "application/x-www-form-urlencoded",
        "text/plain",
        "application/vnd.bentoml+pickle",
    ],
)
def test_other_content_types_are_415(content_type: str) -> None:
    with pytest.raises(BodyError) as caught:
        check_content_type([(b"content-type", content_type.encode())])
    assert (caught.value.status, caught.value.field) == (415, "content-type")
    assert content_type.split(";")[0] in str(caught.value)


async def _echo(request: Request) -> Response:
    return Response(await request.body(), media_type="application/json")


def _post_all(requests: list[tuple[str, dict]]) -> list[httpx.Response]:
    """Each ``(method, httpx arguments)`` sent to the middleware in front of an echo app."""
    app = Starlette(routes=[Route("/recommend", _echo, methods=["GET", "POST"])])
    wrapped = JSONObjectBody(app, paths=("/recommend",), fields={"/recommend": FIELDS})

    async def run() -> list[httpx.Response]:
        transport = httpx.ASGITransport(app=wrapped)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            return [await client.request(m, "/recommend", **kw) for m, kw in requests]

    return asyncio.run(run())


async def _chunks(*parts: bytes) -> AsyncIterator[bytes]:
    for part in parts:
        yield part


def test_the_middleware_hands_on_good_bodies_and_answers_bad_ones() -> None:
    good, get, nan, form, big, chunked, unknown = _post_all(
        [
            ("POST", {"content": GOOD, "headers": {"content-type": "application/json"}}),
            ("GET", {}),  # not a POST: not checked
            ("POST", {"content": b'{"user_id": NaN}'}),
            ("POST", {"content": GOOD, "headers": {"content-type": "multipart/form-data"}}),
            ("POST", {"content": b"x" * (MAX_BODY_BYTES + 1)}),
            # in chunks, with no content-length: refused as the limit is passed
            ("POST", {"content": _chunks(b'{"as_of": "', b"x" * MAX_BODY_BYTES, b'"}')}),
            ("POST", {"content": json.dumps({"user": 7})}),
        ]
    )
    assert good.status_code == 200 and good.content == GOOD
    assert get.status_code == 200
    assert nan.status_code == 422
    assert nan.json() == {"error": "body: NaN is not a JSON number", "field": "body"}
    assert form.status_code == 415 and form.json()["field"] == "content-type"
    assert big.status_code == 413 and big.json()["field"] == "body"
    assert big.headers["connection"] == "close"
    assert chunked.status_code == 413
    assert unknown.status_code == 422 and unknown.json()["field"] == "user"
