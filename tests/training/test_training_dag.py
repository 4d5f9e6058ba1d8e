"""``dag.test()`` of ``training`` on demo data: a registered version that beats the trivial baseline."""

from __future__ import annotations

import optuna
import pytest

from ai_factory.registry import ModelRegistry
from ai_factory.settings import get_settings
from ai_factory.training import tuning

from airflow_helpers import asset_events
from training_helpers import write_validated

pytestmark = pytest.mark.e2e


def _states(dag_run) -> dict[tuple[str, int], str]:
    from airflow.models.taskinstance import TaskInstance
    from airflow.utils.session import create_session
    from sqlalchemy import select

    with create_session() as session:
        tis = session.execute(select(TaskInstance).where(TaskInstance.dag_id == dag_run.dag_id,
                                                         TaskInstance.run_id == dag_run.run_id)).scalars().all()
        return {(ti.task_id, ti.map_index): str(getattr(ti.state, "value", ti.state)) for ti in tis}


def test_training_dag_registers_a_version_that_beats_the_baseline(airflow_db, dagbag, train_env, tiny_space):
    write_validated(train_env, days=6, rows=1500)
    before = len(asset_events("model_candidate"))
    dag = dagbag.dags["training"]

    dr = dag.test(run_conf={"window_days": 5, "trials": 3, "workers": 2, "compute": "local"})

    assert str(dr.state) == "success"
    states = _states(dr)
    assert {k: v for k, v in states.items() if k[0].startswith("local.")} == {
        ("local.open_study", -1): "success", ("local.tune", 0): "success", ("local.tune", 1): "success",
        ("local.fit", -1): "success"}
    assert {v for k, v in states.items() if k[0].startswith("kubernetes.")} == {"skipped"}
    assert states[("evaluate", -1)] == states[("register", -1)] == "success"

    registry = ModelRegistry.from_settings()
    [version] = registry.list_versions()
    md = version.metadata
    assert md["window"]["holdout"] == ["2026-03-06"] and md["window"]["train"][0] == "2026-03-02"
    metrics, baseline = md["metrics"], md["baseline_metrics"]
    assert metrics["roc_auc"] > 0.8 > baseline["roc_auc"] + 0.25
    assert metrics["log_loss"] < baseline["log_loss"] and metrics["brier"] < baseline["brier"]
    assert md["beats_baseline"] is True and md["n_trials"] >= 3

    study = optuna.load_study(study_name=md["study_name"], storage=get_settings().optuna_storage)
    finished = study.get_trials(states=tuning.FINISHED)
    # The budget is the study's: dag.test() runs the mapped workers one after the other, so the
    # first may finish all of it and the second find nothing left (concurrent workers share it).
    assert len(finished) >= 3 and {t.user_attrs["worker"] for t in finished} <= {0, 1}
    assert md["best_trial"] == study.best_trial.number

    [event] = asset_events("model_candidate")[before:]
    assert event["source_dag_id"] == "training"
    assert event["extra"]["version"] == version.version
    assert event["extra"]["metrics"]["roc_auc"] == pytest.approx(metrics["roc_auc"])
    assert event["extra"]["ds"] == "2026-03-06"
