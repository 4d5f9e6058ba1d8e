"""An ASGI app that builds the real one on its first request.

Airflow imports every plugin module in every process that loads plugins — including each
task's process (for macros and listeners) — but only the api-server serves the plugin's
FastAPI app. Building that app at import would pull FastAPI and Airflow's API security
module into every task (about a second each on this machine). The plugin registers a
:class:`LazyApp` instead: importing it costs nothing, and the api-server builds the real app
when the first request arrives.
"""

from __future__ import annotations

import importlib
import threading
from collections.abc import Awaitable, Callable
from typing import Any

URL_PREFIX = "/ai-factory"

ASGIApp = Callable[[dict[str, Any], Callable[..., Awaitable[Any]], Callable[..., Awaitable[Any]]], Awaitable[None]]


class LazyApp:
    """Delegate to ``factory()`` (a ``"module:function"`` string), called once on first use."""

    def __init__(self, factory: str) -> None:
        module, sep, attr = factory.partition(":")
        if not sep or not module or not attr:
            raise ValueError(f"factory must look like 'package.module:function', got {factory!r}")
        self.factory = factory
        self._app: ASGIApp | None = None
        self._lock = threading.Lock()

    @property
    def app(self) -> ASGIApp:
        if self._app is None:
            with self._lock:
                if self._app is None:
                    module, _, attr = self.factory.partition(":")
                    self._app = getattr(importlib.import_module(module), attr)()
        return self._app

    async def __call__(self, scope: dict[str, Any], receive: Callable[..., Awaitable[Any]],
                       send: Callable[..., Awaitable[Any]]) -> None:
        await self.app(scope, receive, send)

    def __repr__(self) -> str:
        return f"LazyApp({self.factory!r})"
