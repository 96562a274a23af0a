"""ASGI middleware: a POST body that is not a JSON object is answered 422 before BentoML sees it.

BentoML answers a body it cannot parse with 400 and pydantic's raw error list; the services
promise 422 with a message naming what is wrong, for malformed JSON as for a missing field. The
body is read once here and handed on unchanged, so a well-formed request costs one ``json.loads``.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


def _problem(body: bytes) -> str | None:
    """Why ``body`` is not a JSON object, or None when it is one."""
    try:
        value = json.loads(body or b"null")
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        return f"body: malformed JSON: {error}"
    if not isinstance(value, dict):
        return f"body: expected a JSON object, got {type(value).__name__}"
    return None


class JSONObjectBody:
    """Reject non-object JSON bodies of POST requests with 422 ``{"error", "field"}``."""

    def __init__(self, app: ASGIApp, paths: tuple[str, ...] = ()) -> None:
        self.app = app
        self.paths = paths

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] != "POST" or scope["path"] not in self.paths:
            await self.app(scope, receive, send)
            return
        chunks, more = [], True
        while more:
            message = await receive()
            chunks.append(message.get("body", b""))
            more = message.get("more_body", False)
        body = b"".join(chunks)
        problem = _problem(body)
        if problem is not None:
            payload = json.dumps({"error": problem, "field": "body"}).encode()
            await send(
                {
                    "type": "http.response.start",
                    "status": 422,
                    "headers": [
                        (b"content-type", b"application/json"),
                        (b"content-length", str(len(payload)).encode()),
                    ],
                }
            )
            await send({"type": "http.response.body", "body": payload})
            return
        sent = False

        async def replay() -> Message:
            nonlocal sent
            if not sent:
                sent = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        await self.app(scope, replay, send)
