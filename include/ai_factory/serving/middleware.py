"""ASGI middleware of the model service, outermost first (``bentos/service.py`` adds them in this order).

:class:`Rejections` — every 4xx answer of the service (BentoML's validation errors, the
middleware below, Starlette's 404/405) is logged as **one line** (method, path, status, short
reason) on ``ai_factory.serving.requests`` and leaves with one body shape, the one the
OpenAPI document declares (``{"error": str, "detail": [{"loc", "msg", "type"}]}``). BentoML
itself logs each rejected request with its full traceback (``Exception on /predict [POST]``,
~5 KB per bad request); :func:`quiet_client_errors` drops those records at their logger, so
a traceback in the log means a server bug again. It also answers a 500 at once when code
below it raises before answering: BentoML's ``TimeoutMiddleware`` only notices a request
that failed that way when its timer fires (10 s later, then a bodiless 500 from uvicorn;
fix proposed upstream in bentoml/BentoML#5670, open for 1.4.39).

:class:`JSONOnly` — a POST whose body is not JSON gets a 415 that names the header. BentoML
picks a deserializer from ``Content-Type``; a ``multipart/form-data`` without a boundary
(found by fuzzing the OpenAPI schema with schemathesis) crashed its multipart parser with a
500. A POST *without a body* to a scoring route gets a 400 naming ``body``, whatever
``Content-Type`` it declares: a body-less request has no media type to refuse (proxies such
as the local front add ``application/octet-stream`` to it), so it gets the same answer
direct and through a proxy. Other methods are left to the router (405 with ``Allow``).

:class:`EventTime` — replayed traffic (a backfill, the demo's simulated days) says when its
records happened with an ``X-Event-Time`` header (ISO 8601 date or datetime; naive means
UTC). The prediction log files such records under that day's ``predictions/ds=…``, so the
drift monitor of that logical date sees them. The header must parse and fall inside a
window around now (``serving.yaml`` ``event_time``: ``max_days_back``/``max_days_ahead``);
otherwise a 400 names the header, the value and the window. Without the header, records are
logged at the time they were served.

:class:`Readiness` — ``/readyz`` says ``degraded: <reason>`` (still 200) or ``failed:
<reason>`` (503) from a health callback (the prediction log's writer): see
:meth:`ai_factory.serving.prediction_log.PredictionLogger.health`.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Awaitable, Callable
from contextvars import ContextVar
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any

Scope = dict[str, Any]
Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]
App = Callable[[Scope, Receive, Send], Awaitable[None]]

JSON_TYPES = frozenset({"application/json", ""})
EVENT_TIME_HEADER = b"x-event-time"
# Longest reason written into the one log line of a rejected request.
REASON_CHARS = 200
# 4xx bodies are buffered to log and normalise them; a larger one passes through untouched.
MAX_ERROR_BODY = 64 * 1024

log = logging.getLogger(__name__)
requests_log = logging.getLogger("ai_factory.serving.requests")

_event_time: ContextVar[datetime | None] = ContextVar("ai_factory_event_time", default=None)


@dataclass(frozen=True)
class EventTimeWindow:
    """Accepted ``X-Event-Time`` values: from ``max_days_back`` days before now to ``max_days_ahead`` after."""

    max_days_back: float = 400
    max_days_ahead: float = 1

    def bounds(self, now: datetime) -> tuple[datetime, datetime]:
        return now - timedelta(days=self.max_days_back), now + timedelta(days=self.max_days_ahead)


def parse_event_time(raw: str) -> datetime:
    """``2026-04-07`` or ``2026-04-07T13:45:00[+02:00]`` → an aware UTC datetime (naive = UTC).

    ``ValueError`` naming the header for anything else, and for an instant outside the years
    a datetime holds once moved to UTC (``9999-12-31T23:59:59-05:00``: an ``OverflowError``,
    which used to escape as a 500 after BentoML's 10 s request timeout).
    """
    text = raw.strip()
    try:
        value = datetime.fromisoformat(text) if "T" in text or " " in text else datetime.combine(
            date.fromisoformat(text), datetime.min.time())
    except ValueError:
        raise ValueError(f"X-Event-Time {raw!r} is not an ISO 8601 date or datetime (e.g. 2026-04-07)") from None
    try:
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
    except OverflowError:
        raise _BeyondDatetime(f"X-Event-Time {raw!r} is beyond the years 1-9999 in UTC") from None


class _BeyondDatetime(ValueError):
    """An ISO 8601 value whose UTC instant a datetime cannot hold: outside any window."""


def check_event_time(raw: str, window: EventTimeWindow, now: datetime | None = None) -> datetime:
    """The parsed header, or ``ValueError`` naming the header, the value and the window."""
    lo, hi = window.bounds(now or datetime.now(UTC))
    try:
        when: datetime | None = parse_event_time(raw)
    except _BeyondDatetime:
        when = None
    if when is None or not lo <= when <= hi:
        raise ValueError(
            f"X-Event-Time {raw!r} is outside the accepted window {lo:%Y-%m-%dT%H:%M:%SZ} .. "
            f"{hi:%Y-%m-%dT%H:%M:%SZ} (serving.yaml event_time: {window.max_days_back:g} days back, "
            f"{window.max_days_ahead:g} ahead)")
    return when


def event_time() -> datetime:
    """When the records of the current request happened: its ``X-Event-Time``, else now."""
    return _event_time.get() or datetime.now(UTC)


def error_body(error: str, detail: list[dict[str, Any]] | None = None) -> bytes:
    return json.dumps({"error": error, "detail": detail or []}).encode()


async def _answer(send: Send, status: int, body: bytes, content_type: bytes = b"application/json",
                  headers: list[tuple[bytes, bytes]] | None = None) -> None:
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", content_type), (b"content-length", str(len(body)).encode()),
                            *(headers or [])]})
    await send({"type": "http.response.body", "body": body})


async def _reject(send: Send, status: int, error: str, loc: list[str], msg: str, kind: str) -> None:
    await _answer(send, status, error_body(error, [{"loc": loc, "msg": msg, "type": kind}]))


def _header(scope: Scope, name: bytes) -> bytes | None:
    return dict(scope.get("headers") or []).get(name)


def short_reason(body: bytes) -> str:
    """One line out of a 4xx body: its ``error`` and the first problem's location and message."""
    try:
        payload = json.loads(body)
    except ValueError:
        return body.decode("utf-8", "replace").strip()[:REASON_CHARS]
    if isinstance(payload, list) and len(payload) == 1:
        payload = payload[0]  # BentoML answers some 4xx with a one-element list
    if not isinstance(payload, dict):
        return str(payload)[:REASON_CHARS]
    reason = str(payload.get("error", ""))
    detail = payload.get("detail")
    if isinstance(detail, list) and detail and isinstance(detail[0], dict):
        first = detail[0]
        loc = ".".join(map(str, first.get("loc") or ())) or "body"
        reason += f" ({loc}: {first.get('msg', '')}{'; ...' if len(detail) > 1 else ''})"
    elif isinstance(detail, str) and detail:
        reason += f" ({detail})"
    return " ".join(reason.split())[:REASON_CHARS]


def _normalised(body: bytes) -> bytes | None:
    """``body`` rewritten to the declared error shape, or ``None`` when it already has it."""
    try:
        payload = json.loads(body)
    except ValueError:
        return error_body(body.decode("utf-8", "replace").strip() or "request rejected")
    if isinstance(payload, list) and len(payload) == 1 and isinstance(payload[0], dict):
        payload = payload[0]
    if isinstance(payload, dict) and isinstance(payload.get("error"), str):
        detail = payload.get("detail")
        if isinstance(detail, list):
            return None
        items = [] if detail is None else [{"loc": [], "msg": str(detail), "type": "error"}]
        return error_body(payload["error"], items)
    return error_body(json.dumps(payload))


class Rejections:
    """One log line and one body shape for every 4xx; an immediate 500 when the app below raises early."""

    def __init__(self, app: App) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = False
        held: dict[str, Any] | None = None  # the response start of a 4xx, until its body is complete
        chunks: list[bytes] = []

        async def relay(message: dict[str, Any]) -> None:
            nonlocal started, held
            if message["type"] == "http.response.start":
                started = True
                if 400 <= message["status"] < 500:
                    held = message
                    return
            elif message["type"] == "http.response.body" and held is not None:
                chunks.append(message.get("body", b""))
                if message.get("more_body", False) and sum(map(len, chunks)) <= MAX_ERROR_BODY:
                    return
                start, held = held, None
                await self._finish(scope, start, b"".join(chunks), message.get("more_body", False), send)
                return
            await send(message)

        try:
            await self.app(scope, receive, relay)
        except Exception:
            if started:
                raise
            log.exception("%s %s failed before answering", scope.get("method"), scope.get("path"))
            await _answer(send, 500, error_body("An unexpected error has occurred, please check the server log."))

    @staticmethod
    async def _finish(scope: Scope, start: dict[str, Any], body: bytes, more: bool, send: Send) -> None:
        status = start["status"]
        requests_log.warning("%s %s %d %s", scope.get("method"), scope.get("path"), status,
                             short_reason(body) if not more else "(large body)")
        fixed = None if more else _normalised(body)
        if fixed is not None:
            headers = [(k, v) for k, v in start.get("headers", [])
                       if k.lower() not in (b"content-length", b"content-type")]
            start = {**start, "headers": [*headers, (b"content-type", b"application/json"),
                                          (b"content-length", str(len(fixed)).encode())]}
            body = fixed
        await send(start)
        await send({"type": "http.response.body", "body": body, "more_body": more})


def quiet_client_errors() -> None:
    """Drop BentoML's traceback records for requests it answers with a 4xx (:class:`Rejections` logs one line)."""
    target = logging.getLogger("bentoml._internal.server.http_app")
    if not any(isinstance(f, _ClientErrorTracebacks) for f in target.filters):
        target.addFilter(_ClientErrorTracebacks())


class _ClientErrorTracebacks(logging.Filter):
    """BentoML logs ``Exception on <path> [<method>]`` with ``exc_info`` for every failed request.

    For a pydantic ``ValidationError`` (its 400) or a ``BentoMLException`` below 500 that is a
    client's mistake, already answered and logged as one line; any other exception is a server
    error and keeps its traceback.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        if record.msg != "Exception on %s [%s]" or not record.exc_info:
            return True
        exc = record.exc_info[1]
        from pydantic import ValidationError

        if isinstance(exc, ValidationError):
            return False
        code = getattr(getattr(exc, "error_code", None), "value", None)
        return not (isinstance(code, int) and 400 <= code < 500)


class EventTime:
    """Read ``X-Event-Time`` into a context variable for the prediction log (400 when malformed or outside the window)."""

    def __init__(self, app: App, paths: tuple[str, ...], window: EventTimeWindow = EventTimeWindow(),
                 clock: Callable[[], datetime] | None = None) -> None:
        self.app = app
        self.paths = paths
        self.window = window
        self.clock = clock or (lambda: datetime.now(UTC))

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] not in self.paths:
            await self.app(scope, receive, send)
            return
        raw = _header(scope, EVENT_TIME_HEADER)
        if raw is None:
            await self.app(scope, receive, send)
            return
        try:
            when = check_event_time(raw.decode("latin-1"), self.window, self.clock())
        except ValueError as exc:
            lo, hi = self.window.bounds(self.clock())
            await _reject(send, 400, str(exc), ["header", "X-Event-Time"],
                          f"must be an ISO 8601 date or datetime between {lo:%Y-%m-%d} and {hi:%Y-%m-%d}",
                          "value_error")
            return
        token = _event_time.set(when)
        try:
            await self.app(scope, receive, send)
        finally:
            _event_time.reset(token)


def _empty_body(scope: Scope) -> bool:
    length = _header(scope, b"content-length")
    if length is not None:
        return length.strip() == b"0"
    return _header(scope, b"transfer-encoding") is None


class JSONOnly:
    """415 for POSTs whose ``Content-Type`` is not JSON; 400 for a POST without a body to ``body_required``."""

    def __init__(self, app: App, paths: tuple[str, ...], body_required: tuple[str, ...] = ()) -> None:
        self.app = app
        self.paths = paths
        self.body_required = body_required

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] == "POST" and scope["path"] in self.paths:
            if _empty_body(scope):
                if scope["path"] in self.body_required:
                    await _reject(send, 400, f"POST {scope['path']} needs a JSON body", ["body"],
                                  "a JSON object is required", "missing")
                    return
            else:
                raw = (_header(scope, b"content-type") or b"").decode("latin-1")
                media = raw.split(";", 1)[0].strip().lower()
                if media not in JSON_TYPES:
                    await _reject(send, 415, f"Content-Type '{raw}' is not supported; send application/json",
                                  ["header", "Content-Type"], "must be application/json", "unsupported_media_type")
                    return
        await self.app(scope, receive, send)


Health = Callable[[], tuple[str, str] | None]  # ("ok" | "degraded" | "failed", reason), None = not known yet


class Readiness:
    """``/readyz``: 503 ``failed: …`` or 200 ``degraded: …`` from ``health``; otherwise BentoML's own answer."""

    def __init__(self, app: App, path: str, health: Health) -> None:
        self.app = app
        self.path = path
        self.health = health

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] != self.path:
            await self.app(scope, receive, send)
            return
        state = self.health()
        if state is None or state[0] == "ok":
            await self.app(scope, receive, send)
            return
        kind, reason = state
        if kind == "failed":
            await _answer(send, 503, f"failed: {reason}\n".encode(), b"text/plain; charset=utf-8")
            return

        async def degraded(message: dict[str, Any]) -> None:
            # BentoML's 200 is an empty line; a 503 (runner not ready) stays as it is.
            if message["type"] == "http.response.start" and message["status"] == 200:
                degraded.ok = True  # type: ignore[attr-defined]
                return
            if message["type"] == "http.response.body" and getattr(degraded, "ok", False):
                if not message.get("more_body", False):
                    await _answer(send, 200, f"degraded: {reason}\n".encode(), b"text/plain; charset=utf-8",
                                  [(b"x-ai-factory-readiness", b"degraded")])
                return
            await send(message)

        await self.app(scope, receive, degraded)


class RewriteJSON:
    """Answer ``GET path`` with ``rewrite(<the app's JSON answer>)``; computed once, then served from memory.

    The service uses it for its OpenAPI document (``/docs.json``), which BentoML generates and
    :func:`ai_factory.serving.schemas.openapi_document` corrects.
    """

    def __init__(self, app: App, path: str, rewrite: Callable[[Any], Any]) -> None:
        self.app = app
        self.path = path
        self.rewrite = rewrite
        self._body: bytes | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] != self.path or scope["method"] != "GET":
            await self.app(scope, receive, send)
            return
        if self._body is not None:
            await _answer(send, 200, self._body)
            return
        status = 0
        chunks: list[bytes] = []

        async def collect(message: dict[str, Any]) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            elif message["type"] == "http.response.body":
                chunks.append(message.get("body", b""))

        await self.app(scope, receive, collect)
        body = b"".join(chunks)
        if status != 200:
            await _answer(send, status, body)
            return
        self._body = json.dumps(self.rewrite(json.loads(body))).encode()
        await _answer(send, 200, self._body)
