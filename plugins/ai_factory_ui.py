"""Airflow plugin: the AI Factory pages (data quality, drift, models) in the Airflow UI.

Registers only: the FastAPI app (logic in ``include/ai_factory/ui``) mounted at
``/ai-factory`` on the api-server, and one navigation entry per page under
*Plugins → AI Factory*, each opening the page inside the UI (``/plugin/ai-factory-…``).
Nothing heavy is imported here: every task process imports plugin modules too, so the app
is registered as a :class:`~ai_factory.ui.lazy.LazyApp` that the api-server builds on its
first request; the app reads reports and the registry per request.
"""

from __future__ import annotations

from airflow.plugins_manager import AirflowPlugin

from ai_factory.ui.lazy import URL_PREFIX, LazyApp

CATEGORY = "AI Factory"
PAGES = (("quality", "Data quality"), ("drift", "Drift"), ("models", "Models"))


class AIFactoryUIPlugin(AirflowPlugin):
    name = "ai_factory_ui"
    fastapi_apps = [{"app": LazyApp("ai_factory.ui.app:create_app"), "url_prefix": URL_PREFIX, "name": "AI Factory"}]
    external_views = [
        {
            "name": label,
            # Relative (no leading slash): resolved against the api-server's base URL.
            "href": f"{URL_PREFIX.lstrip('/')}/{page}",
            "url_route": f"ai-factory-{page}",
            "destination": "nav",
            "category": CATEGORY,
        }
        for page, label in PAGES
    ]
