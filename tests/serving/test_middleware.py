"""The service's ASGI middleware on a small Starlette app: event-time window, rejections, readiness, OpenAPI.

The full service under ``bentoml serve`` is in ``test_service.py``; these pin each behaviour on
its own, including inside BentoML's own ``TimeoutMiddleware`` (where a middleware that raised
before answering used to hang the request for the whole timeout).
"""

from __future__ import annotations

import logging
import time
from datetime import UTC, datetime

import pytest
from bentoml._internal.server.http.traffic import TimeoutMiddleware
from pydantic import BaseModel, ValidationError
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route
from starlette.testclient import TestClient

from ai_factory.serving import schemas
from ai_factory.serving.middleware import (
    EventTime,
    EventTimeWindow,
    JSONOnly,
    Readiness,
    Rejections,
    check_event_time,
    event_time,
    quiet_client_errors,
)

NOW = datetime(2026, 12, 3, 12, tzinfo=UTC)
WINDOW = EventTimeWindow(max_days_back=400, max_days_ahead=1)


async def _predict(request: Request) -> JSONResponse:
    return JSONResponse({"event_time": event_time().isoformat()})


async def _explode(request: Request) -> JSONResponse:
    raise RuntimeError("a bug")


def _client(*middleware: Middleware, timeout: float | None = None) -> TestClient:
    stack = list(middleware)
    if timeout is not None:  # BentoML puts its TimeoutMiddleware outside the service's own middleware
        stack.insert(0, Middleware(TimeoutMiddleware, timeout=timeout))
    app = Starlette(routes=[Route("/predict", _predict, methods=["POST"]),
                            Route("/explode", _explode, methods=["POST"]),
                            Route("/readyz", lambda r: JSONResponse(None), methods=["GET"])],
                    middleware=stack)
    return TestClient(app, raise_server_exceptions=False)


def _event_time_client(timeout: float | None = None) -> TestClient:
    return _client(Middleware(EventTime, paths=("/predict",), window=WINDOW, clock=lambda: NOW), timeout=timeout)


@pytest.mark.parametrize("raw", ["0001-01-01", "9999-12-31T23:59:59-05:00", "2024-01-01", "2026-12-05T00:00:01Z",
                                 "9999-12-31"])
def test_event_times_outside_the_window_get_a_400_naming_header_value_and_window(raw):
    with _event_time_client(timeout=3) as client:
        started = time.monotonic()
        resp = client.post("/predict", json={}, headers={"X-Event-Time": raw})
        waited = time.monotonic() - started
    assert resp.status_code == 400, resp.text
    body = resp.json()
    assert f"X-Event-Time {raw!r}" in body["error"] and "2025-10-29T12:00:00Z .. 2026-12-04T12:00:00Z" in body["error"]
    assert body["detail"][0]["loc"] == ["header", "X-Event-Time"]
    assert "between 2025-10-29 and 2026-12-04" in body["detail"][0]["msg"]
    # The 9999-…-05:00 probe raised OverflowError and waited for BentoML's timeout (3 s here, 10 s served).
    assert waited < 3, waited


@pytest.mark.parametrize(("raw", "expected"), [
    ("2026-04-07", "2026-04-07T00:00:00+00:00"),
    ("2026-04-07T22:30:00+02:00", "2026-04-07T20:30:00+00:00"),
    ("2026-12-04T11:00:00", "2026-12-04T11:00:00+00:00"),  # a client clock a little ahead
])
def test_event_times_inside_the_window_are_used(raw, expected):
    with _event_time_client() as client:
        resp = client.post("/predict", json={}, headers={"X-Event-Time": raw})
    assert resp.status_code == 200 and resp.json()["event_time"] == expected


def test_a_malformed_event_time_is_a_400():
    with pytest.raises(ValueError, match="X-Event-Time 'yesterday' is not an ISO 8601"):
        check_event_time("yesterday", WINDOW, NOW)


def test_a_middleware_error_before_answering_is_an_immediate_500_not_a_timeout(caplog):
    async def broken(scope, receive, send):
        raise RuntimeError("bug in a middleware")

    class Broken:
        def __init__(self, app):
            self.app = app

        async def __call__(self, scope, receive, send):
            if scope.get("path") == "/predict":
                await broken(scope, receive, send)
            await self.app(scope, receive, send)

    with _client(Middleware(Rejections), Middleware(Broken), timeout=3) as client:
        started = time.monotonic()
        resp = client.post("/predict", json={})
        waited = time.monotonic() - started
    assert resp.status_code == 500 and resp.json()["error"].startswith("An unexpected error")
    assert waited < 3 and "bug in a middleware" in caplog.text  # a server bug keeps its traceback


def test_every_rejection_is_one_log_line_and_one_body_shape(caplog):
    caplog.set_level(logging.INFO, logger="ai_factory.serving.requests")
    with _client(Middleware(Rejections), Middleware(JSONOnly, paths=("/predict",), body_required=("/predict",)),
                 Middleware(EventTime, paths=("/predict",), window=WINDOW, clock=lambda: NOW)) as client:
        answers = [
            client.post("/predict", content=b"age=3", headers={"Content-Type": "text/plain"}),
            client.post("/predict", json={}, headers={"X-Event-Time": "0001-01-01"}),
            client.put("/predict", json={}),
            client.get("/nowhere"),
        ]
    assert [r.status_code for r in answers] == [415, 400, 405, 404]
    for resp in answers:
        body = resp.json()
        assert isinstance(body["error"], str) and isinstance(body["detail"], list), body
    assert answers[2].headers["allow"] == "POST"
    lines = [r.getMessage() for r in caplog.records if r.name == "ai_factory.serving.requests"]
    assert len(lines) == 4 and all("\n" not in line and len(line) < 400 for line in lines)
    assert lines[0].startswith("POST /predict 415 Content-Type 'text/plain' is not supported")
    assert lines[1].startswith("POST /predict 400 X-Event-Time '0001-01-01' is outside")
    assert lines[2] == "PUT /predict 405 Method Not Allowed" and lines[3] == "GET /nowhere 404 Not Found"


@pytest.mark.parametrize("content_type", [None, "application/octet-stream", "application/json"])
def test_a_post_without_a_body_gets_the_same_400_whatever_its_content_type(content_type):
    """Direct it was a 400, through the front (which adds application/octet-stream) a 415."""
    headers = {"Content-Length": "0", **({"Content-Type": content_type} if content_type else {})}
    with _client(Middleware(JSONOnly, paths=("/predict",), body_required=("/predict",))) as client:
        resp = client.post("/predict", content=b"", headers=headers)
    assert resp.status_code == 400 and resp.json()["detail"][0]["loc"] == ["body"], resp.text


def test_bentoml_tracebacks_of_client_errors_are_dropped_and_server_errors_kept(caplog):
    quiet_client_errors()
    quiet_client_errors()  # idempotent: one filter
    target = logging.getLogger("bentoml._internal.server.http_app")
    assert sum(type(f).__name__ == "_ClientErrorTracebacks" for f in target.filters) == 1

    class M(BaseModel):
        age: int

    def logged(exc: BaseException) -> bool:
        caplog.clear()
        try:
            raise exc
        except BaseException:
            target.error("Exception on %s [%s]", "/predict", "POST", exc_info=True)
        return bool(caplog.records)

    from bentoml.exceptions import BadInput, InternalServerError

    with pytest.raises(ValidationError) as validation:
        M.model_validate({"age": "x"})
    target.propagate, old = True, target.propagate
    try:
        assert not logged(validation.value) and not logged(BadInput("bad"))
        assert logged(InternalServerError("boom")) and logged(RuntimeError("bug"))
    finally:
        target.propagate = old


@pytest.mark.parametrize(("state", "status", "body"), [
    (None, 200, "null"),
    (("ok", ""), 200, "null"),
    (("degraded", "3 row(s) dropped"), 200, "degraded: 3 row(s) dropped\n"),
    (("failed", "no writer"), 503, "failed: no writer\n"),
])
def test_readiness_says_degraded_or_failed(state, status, body):
    with _client(Middleware(Readiness, path="/readyz", health=lambda: state)) as client:
        resp = client.get("/readyz")
    assert resp.status_code == status and resp.text == body


def test_the_openapi_document_is_openapi_30_and_declares_what_the_service_answers():
    doc = {"openapi": "3.0.2", "components": {"schemas": {
        "Rec": {"type": "object", "properties": {
            "savings": {"anyOf": [{"type": "number", "description": "d"}, {"type": "null"}], "title": "Savings"},
            "nested": {"anyOf": [{"$ref": "#/components/schemas/X"}, {"type": "null"}]}}},
        "InvalidArgument": {"type": "object", "properties": {"detail": {"type": "string"}}}}},
        "paths": {"/predict": {"post": {"description": "Score.", "responses": {"200": {}}}},
                  "/readyz": {"get": {"responses": {"200": {"description": "ok"}}}}}}
    out = schemas.openapi_document(doc, json_routes=("/predict",), event_time_routes=("/predict",),
                                   event_time_note="X-Event-Time: ...")
    rec = out["components"]["schemas"]["Rec"]["properties"]
    assert rec["savings"] == {"type": "number", "description": "d", "title": "Savings", "nullable": True}
    assert rec["nested"] == {"allOf": [{"$ref": "#/components/schemas/X"}], "nullable": True}
    assert "type: null" not in str(out) and "'null'" not in str(out)
    error = out["components"]["schemas"]["InvalidArgument"]
    assert error["properties"]["detail"]["type"] == "array"
    post = out["paths"]["/predict"]["post"]
    assert post["responses"]["415"]["content"]["application/json"]["schema"]["$ref"].endswith("UnsupportedMediaType")
    assert post["description"] == "Score.\n\nX-Event-Time: ..."
    assert "503" in out["paths"]["/readyz"]["get"]["responses"]
