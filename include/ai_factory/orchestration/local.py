"""The embedded default installation: SQLite metadata DB, local data root, local model store.

``ai-factory up`` (``make up``) and ``ai-factory demo`` (``make demo``) both build their
Airflow stack here, so the UI and the headless demo run the same configuration.

``ai-factory up`` records where its state lives in ``<repo>/.local/stack.json`` (0600;
``AI_FACTORY_STACK_FILE`` moves it): a
later ``ai-factory serve status|ensure|stop`` in a plain shell (no ``BENTOML_HOME`` or
``AI_FACTORY_DATA_ROOT`` set) reads it and looks at that stack, not at ``<repo>/.bentoml``.
"""

from __future__ import annotations

import json
import logging
import os
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from ai_factory.orchestration.private import write_private
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
    password = secrets.token_urlsafe(9)
    write_private(f, json.dumps({"username": "admin", "password": password}))
    return password


# Set in the environment, these say which stack a command means: the record is then not used.
STACK_ENV = ("BENTOML_HOME", "AI_FACTORY_DATA_ROOT")


def record_stack(layout: LocalLayout, ui_url: str, serve_port: int) -> Path:
    """Write the stack file (``<repo>/.local/stack.json``): where the stack ``ai-factory up`` runs keeps its state."""
    from ai_factory.settings import get_settings

    return write_private(get_settings().stack_file, json.dumps({
        "state_dir": str(layout.root), "airflow_home": str(layout.airflow_home),
        "data_root": str(layout.data_root), "model_store": str(layout.model_store),
        "serve_port": serve_port, "ui_url": ui_url, "pid": os.getpid(),
        "started_at": datetime.now(UTC).isoformat()}, indent=2))


def adopt_running_stack() -> dict[str, Any] | None:
    """Point this process at the stack recorded by ``ai-factory up`` unless the environment names one.

    Returns the record (with its ``file``) when it was used.
    """
    from ai_factory.settings import get_settings, reset_settings

    if any(os.environ.get(k) for k in STACK_ENV):
        return None
    f = get_settings().stack_file
    try:
        record = json.loads(f.read_text())
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        log.warning("ignoring %s (%s); delete it or run `ai-factory up` again", f, exc)
        return None
    os.environ["BENTOML_HOME"] = record["model_store"]
    os.environ["AI_FACTORY_DATA_ROOT"] = record["data_root"]
    os.environ.setdefault("AI_FACTORY_SERVE_PORT", str(record["serve_port"]))
    reset_settings()
    return {**record, "file": str(f)}


def local_stack(layout: LocalLayout, repo: Path, port: int, paused: bool) -> AirflowStack:
    from ai_factory.settings import get_settings

    settings = get_settings()
    return AirflowStack(
        home=layout.airflow_home,
        dags_folder=repo / "dags",
        plugins_folder=repo / "plugins",
        db_url=os.environ["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"],
        port=port,
        admin_password=admin_password(layout.airflow_home),
        paused_at_creation=paused,
        log_max_bytes=settings.log_max_bytes,
        log_backups=settings.log_backups,
    )
