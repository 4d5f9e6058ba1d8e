"""DAG integrity: every file imports, follows the reliability policy, and parses cheaply."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from unittest import mock

import pytest

REPO = Path(__file__).resolve().parents[1]
DAG_FILES = sorted(p for p in (REPO / "dags").glob("*.py") if not p.name.startswith("_"))
HEAVY = ("pandas", "numpy", "torch", "great_expectations", "evidently", "bentoml", "optuna", "sklearn", "pyarrow")


def test_dags_import_without_errors(dagbag):
    assert dagbag.import_errors == {}
    # One DAG per file, named after it: a file that silently defines no DAG fails here.
    assert sorted(dagbag.dags) == sorted(p.stem for p in DAG_FILES)


def test_every_dag_follows_the_policy(dagbag):
    from ai_factory.orchestration.notify import FactoryNotifier

    for dag_id, dag in dagbag.dags.items():
        assert dag.tags and "ai-factory" in dag.tags, dag_id
        assert dag.doc_md and len(dag.doc_md) > 200, dag_id
        assert dag.dagrun_timeout is not None, dag_id
        for task in dag.tasks:
            assert task.owner == "ai-factory", (dag_id, task.task_id)
            callbacks = task.on_failure_callback
            callbacks = callbacks if isinstance(callbacks, list) else [callbacks]
            # The notifier, not only a log line: a quarantined day must reach a person.
            assert any(isinstance(cb, FactoryNotifier) for cb in callbacks), (dag_id, task.task_id)
            if not task.task_id.startswith("wait_for"):  # sensors fail by timeout, not retries
                assert task.retries >= 1, (dag_id, task.task_id)
                assert task.retry_exponential_backoff, (dag_id, task.task_id)


def test_parsing_makes_no_connection_or_variable_lookups():
    from airflow.dag_processing.dagbag import DagBag
    from airflow.sdk import BaseHook, Variable

    with mock.patch.object(BaseHook, "get_connection") as conn, mock.patch.object(Variable, "get") as var:
        bag = DagBag(dag_folder=str(REPO / "dags"))
    assert bag.import_errors == {}
    conn.assert_not_called()
    var.assert_not_called()


def test_parsing_makes_no_metadata_db_queries(airflow_db):
    """Loading the DagBag sends no query to the metadata DB (Airflow's own example-DAG test counts them)."""
    from airflow.dag_processing.dagbag import DagBag
    from sqlalchemy import event
    from sqlalchemy.engine import Engine

    statements: list[str] = []

    def count(conn, cursor, statement, *args) -> None:  # noqa: ANN001 (SQLAlchemy's listener signature)
        statements.append(statement)

    event.listen(Engine, "before_cursor_execute", count)
    try:
        bag = DagBag(dag_folder=str(REPO / "dags"))
    finally:
        event.remove(Engine, "before_cursor_execute", count)
    assert bag.import_errors == {}
    assert len(bag.dags) == len(DAG_FILES)
    assert statements == [], f"{len(statements)} metadata-DB queries while parsing, first: {statements[:3]}"


_PROBE = r"""
import json, runpy, sys
import airflow.sdk  # the baseline every DAG file pays
runpy.run_path(sys.argv[1])
print(json.dumps([m for m in sys.argv[2].split(",") if m in sys.modules]))
"""


@pytest.mark.parametrize("path", DAG_FILES, ids=[p.name for p in DAG_FILES])
def test_dag_files_do_not_import_heavy_libraries(path):
    out = subprocess.run([sys.executable, "-c", _PROBE, str(path), ",".join(HEAVY)],
                         capture_output=True, text=True, check=True)
    assert json.loads(out.stdout.strip().splitlines()[-1]) == []
