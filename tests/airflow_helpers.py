"""Reading what Airflow recorded (asset events, runs, task states) in tests."""

from __future__ import annotations

import time
from typing import Any


def asset_events(asset_name: str) -> list[dict[str, Any]]:
    from airflow.models.asset import AssetEvent, AssetModel
    from airflow.utils.session import create_session
    from sqlalchemy import select

    with create_session() as session:
        rows = session.execute(
            select(AssetEvent).join(AssetModel, AssetEvent.asset_id == AssetModel.id)
            .where(AssetModel.name == asset_name).order_by(AssetEvent.id)
        ).scalars().all()
        return [{"extra": dict(r.extra or {}), "source_dag_id": r.source_dag_id, "source_run_id": r.source_run_id}
                for r in rows]


def task_states(dag_run: Any) -> dict[str, str]:
    return run_task_states(dag_run.dag_id, dag_run.run_id)


def run_task_states(dag_id: str, run_id: str) -> dict[str, str]:
    from airflow.models.taskinstance import TaskInstance
    from airflow.utils.session import create_session
    from sqlalchemy import select

    with create_session() as session:
        tis = session.execute(
            select(TaskInstance).where(TaskInstance.dag_id == dag_id, TaskInstance.run_id == run_id)
        ).scalars().all()
        return {ti.task_id: str(ti.state.value if hasattr(ti.state, "value") else ti.state) for ti in tis}


def dag_runs(dag_id: str, run_type: str | None = None) -> list[dict[str, Any]]:
    from airflow.models.dagrun import DagRun
    from airflow.utils.session import create_session
    from sqlalchemy import select

    with create_session() as session:
        q = select(DagRun).where(DagRun.dag_id == dag_id)
        if run_type:
            q = q.where(DagRun.run_type == run_type)
        return [{"run_id": r.run_id, "state": str(r.state.value if hasattr(r.state, "value") else r.state),
                 "logical_date": r.logical_date, "run_type": str(r.run_type), "conf": r.conf,
                 "start_date": r.start_date, "end_date": r.end_date}
                for r in session.execute(q.order_by(DagRun.logical_date)).scalars().all()]


def wait_for_dag(dag_id: str, timeout: float = 120, stack: Any = None) -> None:
    """Wait until the dag-processor has serialized ``dag_id`` into the metadata DB.

    With ``stack``, the DAG is then unpaused through the CLI: the scheduler never starts
    queued runs (backfills included) of a paused DAG, and a DAG first written to the DB by
    an earlier ``dag.test()`` in the session was created paused.
    """
    from airflow.models.dag import DagModel
    from airflow.utils.session import create_session

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with create_session() as session:
            dm = session.get(DagModel, dag_id)
            if dm is not None and not dm.is_stale:
                if stack is not None and dm.is_paused:
                    stack.airflow("dags", "unpause", dag_id)
                return
        time.sleep(1)
    raise TimeoutError(f"DAG {dag_id} was not parsed within {timeout}s")


def wait_for_runs(dag_id: str, count: int, run_type: str | None = None, timeout: float = 300) -> list[dict[str, Any]]:
    """Wait until ``count`` runs of ``dag_id`` exist and all are finished."""
    deadline = time.monotonic() + timeout
    runs: list[dict[str, Any]] = []
    while time.monotonic() < deadline:
        runs = dag_runs(dag_id, run_type)
        if len(runs) >= count and all(r["state"] in ("success", "failed") for r in runs):
            return runs
        time.sleep(2)
    raise TimeoutError(f"{dag_id}: runs not finished after {timeout}s: {[(r['run_id'], r['state']) for r in runs]}")


def create_backfill(stack: Any, dag_id: str, start: Any, end: Any, *extra: str, attempts: int = 15) -> Any:
    """``airflow backfill create`` (retried while the freshly parsed DAG is not yet serialized)."""
    proc = None
    for _ in range(attempts):
        proc = stack.airflow("backfill", "create", "--dag-id", dag_id, "--from-date", str(start),
                             "--to-date", str(end), *extra, check=False)
        if proc.returncode == 0:
            return proc
        time.sleep(2)
    return proc
