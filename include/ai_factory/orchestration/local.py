"""The embedded default installation: SQLite metadata DB, local data root, local model store.

``ai-factory up`` (``make up``) and ``ai-factory demo`` (``make demo``) both build their
Airflow stack here, so the UI and the headless demo run the same configuration.
"""

from __future__ import annotations

import json
import logging
import os
import secrets
from dataclasses import dataclass
from pathlib import Path

from ai_factory.orchestration.stack import AirflowStack

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class LocalLayout:
    """Where one embedded installation keeps its state (all under one folder)."""

    root: Path

    @property
    def airflow_home(self) -> Path:
        return self.root / "airflow"

    @property
    def data_root(self) -> Path:
        return self.root / "data"

    @property
    def model_store(self) -> Path:
        return self.root / "bentoml"

    def export(self, start_date: str, db_url: str | None = None, **extra: str) -> None:
        """Point this process (and every child it starts) at this layout.

        The metadata DB is a SQLite file in the layout unless ``db_url`` names another
        (e.g. PostgreSQL, which the scenario test uses).
        """
        os.environ.update({
            "AI_FACTORY_DATA_ROOT": str(self.data_root),
            "BENTOML_HOME": str(self.model_store),
            "AI_FACTORY_START_DATE": start_date,
            "AIRFLOW_HOME": str(self.airflow_home),
            "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": db_url or f"sqlite:///{self.airflow_home / 'airflow.db'}",
            "GX_ANALYTICS_ENABLED": "false",
            **extra,
        })
        from ai_factory.settings import reset_settings

        reset_settings()


def admin_password(home: Path) -> str:
    """A login for the UI, generated once per installation and kept in its home."""
    f = home / "ui-login.json"
    if f.exists():
        return str(json.loads(f.read_text())["password"])
    home.mkdir(parents=True, exist_ok=True)
    password = secrets.token_urlsafe(9)
    f.write_text(json.dumps({"username": "admin", "password": password}))
    f.chmod(0o600)
    return password


def local_stack(layout: LocalLayout, repo: Path, port: int, paused: bool) -> AirflowStack:
    return AirflowStack(
        home=layout.airflow_home,
        dags_folder=repo / "dags",
        plugins_folder=repo / "plugins",
        db_url=os.environ["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"],
        port=port,
        admin_password=admin_password(layout.airflow_home),
        paused_at_creation=paused,
    )
