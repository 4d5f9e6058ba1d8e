"""ASGI middleware of the model service.

:class:`EventTime` — replayed traffic (a backfill, the demo's simulated days) says when its
records happened with an ``X-Event-Time`` header (ISO 8601 date or datetime; naive means
UTC). The prediction log files such records under that day's ``predictions/ds=…``, so the
drift monitor of that logical date sees them. A header that does not parse is a 400 naming
it. Without the header, records are logged at the time they were served.

:class:`JSONOnly` — reject request bodies that are not JSON with a 415. BentoML picks a deserializer from the ``Content-Type`` header; a ``multipart/form-data``
without a boundary (found by fuzzing the OpenAPI schema with schemathesis) crashes its
multipart parser with a 500. The API only speaks JSON, so any other declared body type is
refused up front with a 415 that names the header.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from contextvars import ContextVar
from datetime import UTC, date, datetime
from typing import Any

Scope = dict[str, Any]
Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]

JSON_TYPES = frozenset({"application/json", ""})
EVENT_TIME_HEADER = b"x-event-time"

_event_time: ContextVar[datetime | None] = ContextVar("ai_factory_event_time", default=None)


def parse_event_time(raw: str) -> datetime:
    """``2026-04-07`` or ``2026-04-07T13:45:00[+02:00]`` → an aware datetime (naive = UTC)."""
    text = raw.strip()
    try:
        value = datetime.fromisoformat(text) if "T" in text or " " in text else datetime.combine(
            date.fromisoformat(text), datetime.min.time())
    except ValueError:
        raise ValueError(f"X-Event-Time {raw!r} is not an ISO 8601 date or datetime (e.g. 2026-04-07)") from None
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def event_time() -> datetime:
    """When the records of the current request happened: its ``X-Event-Time``, else now."""
    return _event_time.get() or datetime.now(UTC)


async def _reject(send: Send, status: int, error: str, loc: list[str], msg: str, kind: str) -> None:
    body = json.dumps({"error": error, "detail": [{"loc": loc, "msg": msg, "type": kind}]}).encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})


class EventTime:
    """Read ``X-Event-Time`` into a context variable for the prediction log (400 when malformed)."""

    def __init__(self, app: Callable[[Scope, Receive, Send], Awaitable[None]], paths: tuple[str, ...]) -> None:
        self.app = app
        self.paths = paths

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] not in self.paths:
            await self.app(scope, receive, send)
            return
        raw = dict(scope.get("headers") or []).get(EVENT_TIME_HEADER)
        if raw is None:
            await self.app(scope, receive, send)
            return
        try:
            when = parse_event_time(raw.decode("latin-1"))
        except ValueError as exc:
            await _reject(send, 400, str(exc), ["header", "X-Event-Time"], "must be an ISO 8601 date or datetime",
                          "value_error")
            return
        token = _event_time.set(when)
        try:
            await self.app(scope, receive, send)
        finally:
            _event_time.reset(token)


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
                await _reject(send, 415, f"Content-Type '{raw}' is not supported; send application/json",
                              ["header", "Content-Type"], "must be application/json", "unsupported_media_type")
                return
        await self.app(scope, receive, send)
