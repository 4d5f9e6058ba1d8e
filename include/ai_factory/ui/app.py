"""The FastAPI app the Airflow plugin mounts at ``/ai-factory`` on the api-server (lazily: ui/lazy.py).

Every route depends on Airflow's own ``get_user`` (``airflow.api_fastapi.core_api.security``):
the JWT from the UI's session cookie or an ``Authorization: Bearer`` header, checked by the
configured auth manager (SimpleAuthManager in this project), exactly like the UI's own API.
Signed out, the JSON endpoints answer 401 and the HTML pages redirect to Airflow's login page.

Routes (relative to the prefix)::

    quality | drift | models                  HTML pages (shown in the Airflow UI as iframes)
    api/quality | api/drift | api/models      the same data as JSON (``?start=&end=`` for days)
    reports/<path>                            a file below <data root>/reports/ (Data Docs, Evidently)

Handlers are plain ``def``: FastAPI runs them in its thread pool, so file and registry reads
never block the api-server's event loop. Heavy libraries (BentoML for the registry) are
imported on first use, not when the plugin loads.
"""

from __future__ import annotations

import logging
from typing import Any

from airflow.api_fastapi.core_api.security import get_user
from fastapi import Depends, FastAPI, HTTPException, Request
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse, RedirectResponse, Response

from ai_factory.storage import DataLake
from ai_factory.ui import data, pages
from ai_factory.ui.reports import ReportNotFound, ReportPathError, ReportStore

log = logging.getLogger(__name__)

# Reports are HTML built from data (Data Docs, Evidently). Served in Airflow's origin, they run
# sandboxed: their scripts work but cannot act as the signed-in user against the Airflow API.
REPORT_HEADERS = {
    "Content-Security-Policy": "sandbox allow-scripts allow-popups allow-popups-to-escape-sandbox allow-downloads",
    "X-Content-Type-Options": "nosniff",
    "Cache-Control": "private, max-age=60",
}
PAGE_HEADERS = {"Cache-Control": "no-store", "X-Content-Type-Options": "nosniff"}


def _lake() -> DataLake:
    return DataLake.from_settings()


def _registry() -> Any:
    from ai_factory.registry import ModelRegistry

    return ModelRegistry.from_settings()


def _json(payload: Any, status: int = 200) -> Response:
    return Response(data.dumps(payload), status_code=status, media_type="application/json", headers=PAGE_HEADERS)


def _html(text: str, status: int = 200) -> HTMLResponse:
    return HTMLResponse(text, status_code=status, headers=PAGE_HEADERS)


def _wants_html(request: Request) -> bool:
    path = request.url.path
    return "/api/" not in path and "text/html" in request.headers.get("accept", "")


def create_app() -> FastAPI:
    """The plugin's app: pages, JSON endpoints and report files, all behind Airflow sign-in."""
    app = FastAPI(title="AI Factory", description="Data quality, drift and models of the AI Factory.",
                  dependencies=[Depends(get_user)], docs_url=None, redoc_url=None, openapi_url=None)

    @app.exception_handler(HTTPException)
    async def _auth_or_error(request: Request, exc: HTTPException) -> Response:
        if exc.status_code in (401, 403) and _wants_html(request):
            from airflow.api_fastapi.app import get_auth_manager

            login = get_auth_manager().get_url_login(next_url=str(request.url))
            return RedirectResponse(login, status_code=303)
        return JSONResponse({"detail": exc.detail}, status_code=exc.status_code, headers=exc.headers)

    @app.exception_handler(data.RangeError)
    async def _bad_range(request: Request, exc: data.RangeError) -> Response:
        if _wants_html(request):
            active = request.url.path.rstrip("/").rsplit("/", 1)[-1]
            return _html(pages.error_page(active, 400, str(exc)), 400)
        return JSONResponse({"detail": str(exc)}, status_code=400)

    @app.get("/", include_in_schema=False)
    def index(request: Request) -> RedirectResponse:
        return RedirectResponse(f'{request.scope.get("root_path", "")}/quality', status_code=307)

    # -- JSON ------------------------------------------------------------------------------
    @app.get("/api/quality")
    def api_quality(start: str | None = None, end: str | None = None) -> Response:
        lake = _lake()
        return _json(data.quality_overview(lake, *data.resolve_range(lake, start, end)))

    @app.get("/api/drift")
    def api_drift(start: str | None = None, end: str | None = None) -> Response:
        lake = _lake()
        return _json(data.drift_overview(lake, *data.resolve_range(lake, start, end)))

    @app.get("/api/models")
    def api_models() -> Response:
        payload, error = _models()
        return _json({"detail": error}, 500) if error else _json(payload)

    # -- pages -----------------------------------------------------------------------------
    @app.get("/quality", response_class=HTMLResponse)
    def quality(start: str | None = None, end: str | None = None) -> HTMLResponse:
        lake = _lake()
        return _html(pages.quality_page(data.quality_overview(lake, *data.resolve_range(lake, start, end))))

    @app.get("/drift", response_class=HTMLResponse)
    def drift(start: str | None = None, end: str | None = None) -> HTMLResponse:
        lake = _lake()
        return _html(pages.drift_page(data.drift_overview(lake, *data.resolve_range(lake, start, end))))

    @app.get("/models", response_class=HTMLResponse)
    def models() -> HTMLResponse:
        payload, error = _models()
        return _html(pages.models_page(payload or {}, error), 500 if error else 200)

    # -- report files ------------------------------------------------------------------------
    @app.get("/reports/{path:path}")
    def report(path: str) -> Response:
        store = ReportStore(_lake())
        try:
            found = store.resolve(path)
        except ReportPathError as exc:
            log.warning("refused report path %r: %s", path, exc)
            return JSONResponse({"detail": str(exc)}, status_code=400)
        except ReportNotFound as exc:
            return JSONResponse({"detail": str(exc)}, status_code=404)
        if found.local_path is not None:
            return FileResponse(found.local_path, media_type=found.media_type, headers=REPORT_HEADERS)
        return Response(store.read_bytes(found), media_type=found.media_type, headers=REPORT_HEADERS)

    return app


def _models() -> tuple[dict[str, Any] | None, str | None]:
    """The models overview, or a message saying why the registry cannot be read."""
    from ai_factory.registry import RegistryError

    try:
        return data.models_overview(_registry()), None
    except (RegistryError, OSError, ValueError) as exc:
        log.exception("cannot read the model registry")
        return None, f"cannot read the model registry: {exc}"
