"""Airflow cluster policy for docker-compose.yaml: the deployment DAG runs on the model server.

The ``local`` deployment target starts ``bentoml serve`` processes and the serving front
where its tasks run, and records their pids in ``$BENTOML_HOME/serving/state.json``. With
Celery, tasks land on any worker, so every task of the ``deployment`` DAG is routed to the
``serving`` queue, which only the ``model-server`` service consumes. Everything else keeps
its queue. Installed as ``$AIRFLOW_HOME/config/airflow_local_settings.py`` by the image.

A cluster policy instead of a ``queue=`` in ``dags/deployment.py``: the single-machine stack
(LocalExecutor) and Kubernetes have no such queue, and the DAG must run unchanged on them.
"""

from __future__ import annotations

from typing import Any

SERVING_QUEUE = "serving"
SERVING_DAGS = frozenset({"deployment"})


def task_policy(task: Any) -> None:
    """Route the tasks of the serving DAGs to the model server's queue."""
    if task.dag_id in SERVING_DAGS:
        task.queue = SERVING_QUEUE
