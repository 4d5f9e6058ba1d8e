"""Test environment: a throwaway Airflow home, data root and model store per session.

The environment is set here, before anything imports Airflow, because Airflow reads its
configuration once at import. ``AI_FACTORY_TEST_DB=postgres`` runs the suite against a
PostgreSQL metadata DB (its own database on 127.0.0.1:5432) instead of SQLite.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from pg import PG_DSN, recreate_pg_database

if TYPE_CHECKING:  # the package is imported only after the environment below is set
    from ai_factory.storage import DataLake

REPO = Path(__file__).resolve().parents[1]
TMP = Path(tempfile.mkdtemp(prefix="aif-test-"))
TEST_DB = os.environ.get("AI_FACTORY_TEST_DB", "sqlite")
# Its own database name lets several checkouts run the PostgreSQL pass side by side.
PG_DB = os.environ.get("AI_FACTORY_TEST_PG_DB", "ai_factory_airflow_test")


def _airflow_conn() -> str:
    if TEST_DB == "postgres":
        return f"{PG_DSN}/{PG_DB}"
    return f"sqlite:///{TMP / 'airflow.db'}"


_ENV = {
    "AIRFLOW_HOME": str(TMP / "airflow"),
    "AIRFLOW__CORE__DAGS_FOLDER": str(REPO / "dags"),
    "AIRFLOW__CORE__PLUGINS_FOLDER": str(REPO / "plugins"),
    "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
    "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": _airflow_conn(),
    "AIRFLOW__LOGGING__LOGGING_LEVEL": "INFO",
    "AI_FACTORY_HOME": str(REPO),
    "AI_FACTORY_DATA_ROOT": str(TMP / "lake"),
    "BENTOML_HOME": str(TMP / "bentoml"),
    "AI_FACTORY_SENSOR_POKE": "1",
    "AI_FACTORY_SENSOR_TIMEOUT": "6",
    "AI_FACTORY_START_DATE": "2026-01-01",
    "GX_ANALYTICS_ENABLED": "false",
}
os.environ.update(_ENV)


@pytest.fixture(scope="session")
def airflow_db() -> Iterator[str]:
    """A migrated Airflow metadata DB (SQLite by default, PostgreSQL with AI_FACTORY_TEST_DB=postgres)."""
    if TEST_DB == "postgres":
        recreate_pg_database(PG_DB)
    subprocess.run([sys.executable, "-m", "airflow", "db", "migrate"], check=True, env=os.environ.copy(),
                   stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    yield os.environ["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"]


@pytest.fixture
def lake(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """A fresh, empty data root for one test (settings re-read from the environment)."""
    from ai_factory.settings import reset_settings
    from ai_factory.storage import DataLake

    root = tmp_path / "lake"
    monkeypatch.setenv("AI_FACTORY_DATA_ROOT", str(root))
    reset_settings()
    yield DataLake(str(root))
    reset_settings()


@pytest.fixture(scope="session")
def dagbag():
    from airflow.dag_processing.dagbag import DagBag

    return DagBag(dag_folder=str(REPO / "dags"))


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    shutil.rmtree(TMP, ignore_errors=True)


@pytest.fixture
def airflow_stack(airflow_db, tmp_path: Path):
    """Start the real Airflow processes (api-server, scheduler, dag-processor, triggerer) on the session DB.

    DAGs are unpaused at creation, but the scheduler creates no runs of its own
    (``use_job_schedule=False``: neither cron nor Asset-triggered runs): only the backfills a
    test asks for run, so tests drive logical dates and nothing else competes for the two
    cores. The whole loop (tests/test_loop.py) runs with Asset triggers on. Call the returned factory
    once the test's data root is set; the stack is stopped after the test.
    """
    from ai_factory.orchestration.stack import AirflowStack, free_port

    started: list[AirflowStack] = []

    def start(**extra_env: str) -> AirflowStack:
        stack = AirflowStack(
            home=tmp_path / "airflow-home", dags_folder=REPO / "dags", plugins_folder=REPO / "plugins",
            db_url=airflow_db, port=free_port(), paused_at_creation=False,
            extra_env={"AIRFLOW__SCHEDULER__USE_JOB_SCHEDULE": "False", **extra_env},
        )
        stack.start()
        started.append(stack)
        stack.wait_ready(timeout=240)
        return stack

    yield start
    for stack in started:
        stack.stop()


@pytest.fixture
def train_env(lake: DataLake, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[DataLake]:
    """An isolated data root, model store and Optuna SQLite file; no XCom sidecar directory."""
    from ai_factory.settings import reset_settings

    monkeypatch.setenv("BENTOML_HOME", str(tmp_path / "bentoml"))
    monkeypatch.setenv("AI_FACTORY_OPTUNA_STORAGE", f"sqlite:///{tmp_path / 'optuna.db'}")
    monkeypatch.setenv("AI_FACTORY_XCOM_DIR", str(tmp_path / "no-xcom-here"))
    monkeypatch.setenv("AI_FACTORY_TORCH_THREADS", "1")
    monkeypatch.setenv("BENTOML_DO_NOT_TRACK", "true")
    reset_settings()
    yield lake
    reset_settings()


# -- a Slack-style webhook (the notifier's tests and the DAGs' failure notifications) ----------------------------
class _Webhook(BaseHTTPRequestHandler):
    def do_POST(self) -> None:  # noqa: N802 (http.server API)
        body = self.rfile.read(int(self.headers["Content-Length"]))
        self.server.received.append((self.path, json.loads(body)))  # type: ignore[attr-defined]
        self.send_response(self.server.status)  # type: ignore[attr-defined]
        self.end_headers()
        self.wfile.write(b"ok")

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def webhook() -> Iterator[HTTPServer]:
    server = HTTPServer(("127.0.0.1", 0), _Webhook)
    server.received, server.status = [], 200  # type: ignore[attr-defined]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


# -- time per marker (make test prints it; docs/testing.md records it) ---------------------------------------------
_MARKERS = ("scenario", "e2e", "ui", "serving", "faults", "postgres")
_TIME_BY_MARKER: dict[str, list[float]] = {}


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    # Setup and teardown count too: a shared fixture's cost lands on the first test that needs it.
    marks = [m for m in _MARKERS if m in report.keywords] or ["unit"]
    entry = _TIME_BY_MARKER.setdefault(marks[0], [0.0, 0])
    entry[0] += report.duration
    if report.when == "call":
        entry[1] += 1


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if not _TIME_BY_MARKER:
        return
    terminalreporter.section("time per marker (a test counts under its first of: " + ", ".join(_MARKERS) + ")")
    for mark, (seconds, count) in sorted(_TIME_BY_MARKER.items(), key=lambda kv: -kv[1][0]):
        terminalreporter.write_line(f"{mark:<10} {count:4d} tests  {seconds / 60:6.1f} min")
