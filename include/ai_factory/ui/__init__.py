"""The factory inside the Airflow UI: data-quality, drift and model pages (an Airflow 3 plugin).

* :mod:`ai_factory.ui.data` — assembles what the pages show from the data lake's reports and
  the model registry (plain dicts, also served as JSON);
* :mod:`ai_factory.ui.reports` — serves report files (Data Docs, Evidently HTML) without ever
  leaving the reports folder;
* :mod:`ai_factory.ui.svg` — the plots, as inline SVG (no JavaScript, nothing from a CDN);
* :mod:`ai_factory.ui.pages` — the HTML;
* :mod:`ai_factory.ui.app` — the FastAPI app the plugin (``plugins/ai_factory_ui.py``) mounts
  under ``/ai-factory`` on the Airflow api-server, behind Airflow's own sign-in.
"""
