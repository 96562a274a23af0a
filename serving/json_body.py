"""ASGI middleware: a POST body that is not a small, plain JSON object is answered before BentoML.

BentoML answers what it cannot parse with 400 and pydantic's raw error list, and some bodies
with a 500 (multipart, an integer of 5,000 digits, 1,000 levels of nesting), after holding the
request. The services promise a 4xx naming what is wrong, quickly, so the body is checked here,
read once and handed on unchanged, in time bounded by :data:`MAX_BODY_BYTES`:

* 415 ``content-type`` when the content type is not ``application/json`` (absent counts as
  JSON, as BentoML reads it); parameters such as ``charset`` are ignored: JSON is UTF-8;
* 413 ``body`` over :data:`MAX_BODY_BYTES` (by ``content-length``, or as it arrives);
* 422 ``body``: not UTF-8 (UTF-16 or UTF-32 included), a byte order mark, malformed JSON,
  ``NaN``/``Infinity``, an integer over Python's 4,300 digits, nesting deeper than
  :data:`MAX_DEPTH`, a lone UTF-16 surrogate escape (``"\\ud800"``), or not an object;
* 422 naming the field, for a top-level field the endpoint does not take (BentoML would
  silently drop it, so the handler's schema could not see it).

The types and ranges of the fields are the endpoint schema's job (:mod:`serving.request_schemas`).
A well-formed request costs a UTF-8 decode, one JSON decode and a few scans of the text.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, Mapping, MutableMapping
from typing import Any

from serving.requests import field_name

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

MAX_BODY_BYTES = 64 * 1024  # a request is a few hundred bytes; this is a hundred times that
MAX_DEPTH = 32  # levels of objects and arrays; the services' bodies have three
JSON_MEDIA_TYPES = ("", "application/json")


class BodyError(ValueError):
    """Why a body is refused: the HTTP status and the field to name."""

    def __init__(self, status: int, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.status = status
        self.field = field


class _NonFinite(ValueError):
    pass


def _reject_constant(name: str) -> Any:
    raise _NonFinite(name)


# one decoder for every request: json.loads with an argument builds a new one per call
_DECODER = json.JSONDecoder(parse_constant=_reject_constant)


def check_content_type(headers: list[tuple[bytes, bytes]]) -> None:
    """415 unless the content type is JSON (or absent)."""
    for name, value in headers:
        if name.lower() == b"content-type":
            media = value.decode("latin-1").split(";")[0].strip().lower()
            if media not in JSON_MEDIA_TYPES:
                raise BodyError(
                    415, "content-type", f"expected application/json, got {media[:80]!r}"
                )


def parse_object(body: bytes, fields: frozenset[str] | None = None) -> dict[str, Any]:
    """``body`` as a JSON object, or :class:`BodyError` saying why not; ``fields``, when
    given, are the top-level fields the endpoint takes."""
    if len(body) > MAX_BODY_BYTES:
        raise BodyError(413, "body", f"larger than {MAX_BODY_BYTES} bytes")
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as error:
        raise BodyError(
            422, "body", f"not UTF-8 (byte {body[error.start]:#04x} at {error.start})"
        ) from None
    try:
        value = _DECODER.decode(text)
    except json.JSONDecodeError as error:
        raise BodyError(422, "body", _malformed(text, error)) from None
    except _NonFinite as error:
        raise BodyError(422, "body", f"{error} is not a JSON number") from None
    except ValueError as error:  # an integer over sys.get_int_max_str_digits() digits
        raise BodyError(422, "body", str(error).split(";")[0]) from None
    except RecursionError:
        raise BodyError(422, "body", f"nested deeper than {MAX_DEPTH} levels") from None
    if not isinstance(value, dict):
        raise BodyError(422, "body", f"expected a JSON object, got {_kind(value)}")
    # only a body with many brackets can be deep, only one with an escape can hide a surrogate
    if text.count("{") + text.count("[") > MAX_DEPTH or "\\u" in text:
        _walk(value)
    if fields is not None and not fields.issuperset(value):
        unknown = min(set(value) - fields)
        listed = ", ".join(sorted(fields))
        raise BodyError(422, field_name(unknown), f"unknown field; expected one of {listed}")
    return value


def _malformed(text: str, error: json.JSONDecodeError) -> str:
    """Why ``text`` is not JSON, in words for the usual suspects (looked for only on failure:
    JSON allows none of them, so a body that parses has none)."""
    if not text.strip():
        return "empty; expected a JSON object"
    if text.startswith("\ufeff"):
        return "starts with a byte order mark; send UTF-8 without one"
    if "\x00" in text:
        return "contains NUL characters: UTF-16 or UTF-32? send UTF-8"
    return f"malformed JSON: {error}"


def _walk(value: Any) -> None:
    """Depth and text of a parsed body, without recursion: an iterative walk."""
    stack: list[tuple[Any, int, str]] = [(value, 1, "")]
    while stack:
        item, depth, path = stack.pop()
        if depth > MAX_DEPTH:
            raise BodyError(422, "body", f"nested deeper than {MAX_DEPTH} levels")
        if isinstance(item, dict):
            for key, child in item.items():
                where = f"{path}.{key}" if path else str(key)
                _text(key, where)
                stack.append((child, depth + 1, where))
        elif isinstance(item, list):
            stack.extend((child, depth + 1, f"{path}[{i}]") for i, child in enumerate(item))
        elif isinstance(item, str):
            _text(item, path)


def _text(value: str, where: str) -> None:
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        shown = where.encode("utf-8", "backslashreplace").decode()[:80]
        raise BodyError(
            422, "body", f"a lone UTF-16 surrogate escape at {shown or 'the top'}; not text"
        ) from None


def _kind(value: Any) -> str:
    if isinstance(value, list):
        return "array"
    if isinstance(value, bool):
        return "boolean"
    return {str: "string", int: "integer", float: "number", type(None): "null"}[type(value)]


class JSONObjectBody:
    """Answer POST bodies of ``paths`` that are not JSON objects with 413/415/422
    ``{"error", "field"}``; ``fields`` maps a path to the top-level fields it takes."""

    def __init__(
        self,
        app: ASGIApp,
        paths: tuple[str, ...] = (),
        fields: Mapping[str, frozenset[str]] | None = None,
    ) -> None:
        self.app = app
        self.paths = paths
        self.fields = dict(fields or {})

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] != "POST" or scope["path"] not in self.paths:
            await self.app(scope, receive, send)
            return
        try:
            check_content_type(scope["headers"])
            body = await _read(scope, receive)
            parse_object(body, self.fields.get(scope["path"]))
        except BodyError as error:
            await _refuse(send, error)
            return
        sent = False

        async def replay() -> Message:
            nonlocal sent
            if not sent:
                sent = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        await self.app(scope, replay, send)


async def _read(scope: Scope, receive: Receive) -> bytes:
    """The whole body, or 413 as soon as it is known to be over the limit."""
    for name, value in scope["headers"]:
        if name.lower() == b"content-length" and value.strip().isdigit():
            if len(value.strip()) > 12 or int(value) > MAX_BODY_BYTES:
                raise BodyError(413, "body", f"larger than {MAX_BODY_BYTES} bytes")
    chunks, size, more = [], 0, True
    while more:
        message = await receive()
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > MAX_BODY_BYTES:
            raise BodyError(413, "body", f"larger than {MAX_BODY_BYTES} bytes")
        chunks.append(chunk)
        more = message.get("more_body", False)
    return b"".join(chunks)


async def _refuse(send: Send, error: BodyError) -> None:
    payload = json.dumps({"error": str(error), "field": error.field}).encode()
    headers = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(payload)).encode()),
    ]
    if error.status in (413, 415):  # the rest of the body may be unread: do not reuse
        headers.append((b"connection", b"close"))
    await send({"type": "http.response.start", "status": error.status, "headers": headers})
    await send({"type": "http.response.body", "body": payload})
