"""Restart PostgreSQL (``pg_ctl restart -m fast``) under running work: it reconnects, nothing is lost.

The server is a throwaway cluster of the test's own (never the machine's shared one).

* Optuna: every connection of two tuning workers is dropped mid-trial; the study must still
  end with its whole budget, every trial finished, none failed or left RUNNING.
* Airflow (metadata DB): api-server, dag-processor and triggerer reconnect; the scheduler
  exits (Airflow 3.3) and is started again as its supervisor would; the backfill completes
  and the lake holds exactly the landed bytes.
"""

from __future__ import annotations

import json
import time
from datetime import date
from pathlib import Path

import optuna
import pytest
import yaml
from optuna.trial import TrialState

from ai_factory.spec import default_spec
from ai_factory.training import tuning
from ai_factory.training.config import load_search_space
from ai_factory.training.steps import make_window

from fault_helpers import start_component, tail, tune_workers, wait_until

pytestmark = pytest.mark.faults

N_TRIALS = 4
WORKERS = 2


def test_optuna_workers_survive_a_postgres_restart(train_env, slow_trials_space, own_postgres, tmp_path):
    raw = yaml.safe_load(slow_trials_space.read_text())
    # Trials that outlast the grace period after the restart (a worker whose heartbeat thread
    # died with its connection has its live trial failed by the other), and a grace period
    # above a restart's length (a pause in heartbeats is not a dead worker).
    raw.update(trial_max_epochs=8, trial_patience=8)
    raw["heartbeat"] = {"interval_seconds": 1, "grace_period_seconds": 5, "max_retry": 1}
    slow_trials_space.write_text(yaml.safe_dump(raw))
    url = own_postgres.create_database("faults_optuna_restart")
    window = make_window(str(tmp_path / "window.json"), days=5)["window"]
    name = "credit_default.pg_restart"
    tuning.open_study(name, url, default_spec(), load_search_space(slow_trials_space))
    procs, logs = tune_workers(window, name, url, slow_trials_space, tmp_path, trials=N_TRIALS, workers=WORKERS)

    def mid_study() -> bool:
        study = optuna.load_study(study_name=name, storage=url)
        trials = study.get_trials(deepcopy=False)
        return any(t.state == TrialState.RUNNING and 1 <= len(t.intermediate_values) <= 3 for t in trials)

    wait_until("a trial in its first epochs", mid_study, timeout=240, every=0.2, alive=procs[0])
    restart_s = own_postgres.restart()
    restarted_at = time.time()

    for i, p in enumerate(procs):
        assert p.wait(timeout=300) == 0, tail(logs[i])

    study = optuna.load_study(study_name=name, storage=url)
    trials = study.get_trials()
    states = [(t.number, t.state.name) for t in trials]
    assert len([t for t in trials if t.state in tuning.FINISHED]) >= N_TRIALS, states
    assert not [t for t in trials if t.state in (TrialState.RUNNING, TrialState.FAIL)], states
    for i in range(WORKERS):
        assert json.loads((tmp_path / f"worker-{i}.json").read_text())["states"].get("fail", 0) == 0
    after = sorted(t.datetime_complete.timestamp() for t in trials if t.datetime_complete.timestamp() > restarted_at)
    print(f"\nfault postgres-restart (optuna): restart took {restart_s:.1f}s; first trial finished "
          f"{after[0] - restarted_at:.1f}s after it; {len(trials)} trials, states {tuning.state_counts(study)}")


def _pg_rows(url: str, sql: str) -> list[tuple]:
    import psycopg2
    from sqlalchemy.engine import make_url

    u = make_url(url)
    conn = psycopg2.connect(host=u.host, port=u.port, user=u.username, dbname=u.database, connect_timeout=5)
    try:
        with conn.cursor() as cur:
            cur.execute(sql)
            return cur.fetchall()
    finally:
        conn.close()


@pytest.mark.e2e
def test_airflow_survives_a_postgres_restart_mid_backfill(own_postgres, lake, tmp_path):
    from ai_factory.data.generate import write_day
    from ai_factory.orchestration.stack import AirflowStack, free_port
    from ai_factory.storage import Zone

    from airflow_helpers import create_backfill

    repo = Path(__file__).resolve().parents[2]
    days = [date(2026, 6, d) for d in range(1, 4)]
    for day in days:
        write_day(lake, day, 800)
    landed = {day: lake.read_partition_files(Zone.LANDING, day) for day in days}
    url = own_postgres.create_database("faults_airflow")
    stack = AirflowStack(home=tmp_path / "airflow-home", dags_folder=repo / "dags", plugins_folder=repo / "plugins",
                         db_url=url, port=free_port(), paused_at_creation=False,
                         extra_env={"AIRFLOW__SCHEDULER__USE_JOB_SCHEDULE": "False"})
    stack.migrate()
    stack.start()
    try:
        stack.wait_ready(timeout=240)
        wait_until("data_quality parsed and unpaused",
                   lambda: stack.airflow("dags", "unpause", "data_quality", check=False).returncode == 0,
                   timeout=180, every=2)
        proc = create_backfill(stack, "data_quality", days[0], days[-1])
        assert proc.returncode == 0, proc.stderr[-2000:]
        wait_until("a validate task running", lambda: _pg_rows(
            url, "select 1 from task_instance where dag_id='data_quality' and task_id='validate' and state='running'"),
            timeout=300, every=0.3)
        restart_s = own_postgres.restart()
        restarted_at = time.monotonic()
        # Airflow 3.3's scheduler exits on a query cut by the restart (uncaught OperationalError in
        # its loop); its supervisor (``ai-factory up``, Compose ``restart: always``, Kubernetes)
        # starts it again, as this loop does. Everything else reconnects (pool_pre_ping).
        died: list[str] = []

        def runs_done() -> list[tuple] | None:
            for comp, p in list(stack.procs.items()):
                if p.poll() is not None:
                    died.append(comp)
                    start_component(stack, comp)
            rows = _pg_rows(url, "select logical_date, state from dag_run where dag_id='data_quality' "
                                 "and run_type='backfill'")
            return rows if len(rows) == len(days) and all(s in ("success", "failed") for _, s in rows) else None

        rows = wait_until("the backfill's runs finished", runs_done, timeout=480, every=2)
        recovered_s = time.monotonic() - restarted_at
        assert set(died) <= {"scheduler"}, f"died across the restart: {died} (logs in {stack.home / 'logs'})"
        assert sorted((d.date(), s) for d, s in rows) == [(d, "success") for d in days], rows
        for day in days:
            assert lake.read_partition_files(Zone.VALIDATED, day) == landed[day]
        tries = _pg_rows(url, "select try_number from task_instance where dag_id='data_quality' and task_id='validate'")
        print(f"\nfault postgres-restart (airflow): restart took {restart_s:.1f}s; runs done {recovered_s:.1f}s "
              f"after it; validate tries {sorted(t for (t,) in tries)}; died and restarted: {died or 'none'}")
    finally:
        stack.stop()
