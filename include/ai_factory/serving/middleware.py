"""ASGI middleware of the model service: reject request bodies that are not JSON with a 415.

BentoML picks a deserializer from the ``Content-Type`` header; a ``multipart/form-data``
without a boundary (found by fuzzing the OpenAPI schema with schemathesis) crashes its
multipart parser with a 500. The API only speaks JSON, so any other declared body type is
refused up front with a 415 that names the header.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from typing import Any

Scope = dict[str, Any]
Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]

JSON_TYPES = frozenset({"application/json", ""})


class JSONOnly:
    """415 for POST/PUT/PATCH requests whose ``Content-Type`` is not ``application/json``."""

    def __init__(self, app: Callable[[Scope, Receive, Send], Awaitable[None]], paths: tuple[str, ...]) -> None:
        self.app = app
        self.paths = paths

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] in ("POST", "PUT", "PATCH") and scope["path"] in self.paths:
            raw = dict(scope.get("headers") or []).get(b"content-type", b"").decode("latin-1")
            media = raw.split(";", 1)[0].strip().lower()
            if media not in JSON_TYPES:
                body = json.dumps({"error": f"Content-Type '{raw}' is not supported; send application/json",
                                   "detail": [{"loc": ["header", "Content-Type"], "msg": "must be application/json",
                                               "type": "unsupported_media_type"}]}).encode()
                await send({"type": "http.response.start", "status": 415,
                            "headers": [(b"content-type", b"application/json"),
                                        (b"content-length", str(len(body)).encode())]})
                await send({"type": "http.response.body", "body": body})
                return
        await self.app(scope, receive, send)
