"""Kill one of three Optuna workers mid-trial: the others still finish the study's whole trial budget.

The study lives in PostgreSQL (a database of this test's own). The killed worker's RUNNING
trial goes silent; after the heartbeat grace period a surviving worker marks it FAIL, re-queues
its parameters, runs them, and the study ends with its ``n_trials`` finished trials.
"""

from __future__ import annotations

import json
import signal
import time

import optuna
import pytest
from optuna.trial import TrialState

from ai_factory.training import tuning
from ai_factory.training.config import load_search_space
from ai_factory.training.steps import make_window

from fault_helpers import tail, tune_workers, wait_until
from pg import recreate_pg_database

pytestmark = [pytest.mark.faults, pytest.mark.postgres]

N_TRIALS = 6
WORKERS = 3
VICTIM = 1


def test_killed_worker_trial_is_failed_by_heartbeat_and_the_study_completes(train_env, slow_trials_space, tmp_path):
    url = recreate_pg_database("faults_optuna")
    window = make_window(str(tmp_path / "window.json"), days=5)["window"]
    name = "credit_default.faults"
    space = load_search_space(slow_trials_space)
    tuning.open_study(name, url, _spec(), space)  # created once, before the workers (as the DAG does)
    procs, logs = tune_workers(window, name, url, slow_trials_space, tmp_path, trials=N_TRIALS, workers=WORKERS)
    study = optuna.load_study(study_name=name, storage=url)

    def victim_mid_trial() -> optuna.trial.FrozenTrial | None:
        for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
            if t.user_attrs.get("worker") == VICTIM and t.intermediate_values:  # at least one epoch reported
                return t
        return None

    killed = wait_until("worker 1 mid-trial", victim_mid_trial, timeout=180, alive=procs[VICTIM])
    procs[VICTIM].send_signal(signal.SIGKILL)
    killed_at = time.time()
    assert procs[VICTIM].wait(timeout=30) == -signal.SIGKILL

    for i, p in enumerate(procs):
        if i != VICTIM:
            assert p.wait(timeout=300) == 0, tail(logs[i])

    trials = study.get_trials()
    assert not [t.number for t in trials if t.state == TrialState.RUNNING], [(t.number, t.state) for t in trials]
    victim_trial = next(t for t in trials if t.number == killed.number)
    assert victim_trial.state == TrialState.FAIL  # failed by heartbeat, not left RUNNING
    retried = [t for t in trials if t.system_attrs.get("failed_trial") == killed.number]
    assert len(retried) == 1 and retried[0].params == killed.params
    assert retried[0].state in tuning.FINISHED and retried[0].user_attrs["worker"] != VICTIM
    finished = [t for t in trials if t.state in tuning.FINISHED]
    # The whole budget, by the survivors; two workers deciding at the same instant may add one more.
    assert N_TRIALS <= len(finished) <= N_TRIALS + WORKERS - 2, [(t.number, t.state) for t in trials]
    for i in range(WORKERS):
        if i != VICTIM:
            out = json.loads((tmp_path / f"worker-{i}.json").read_text())
            assert out["states"].get("complete", 0) + out["states"].get("pruned", 0) == len(finished)
    recovered = retried[0].datetime_start.timestamp() - killed_at
    print(f"\nfault optuna-worker-kill: killed trial {killed.number} retried as {retried[0].number} "
          f"{recovered:.1f}s after the kill (grace {space.heartbeat.grace_period_seconds}s); "
          f"{len(finished)}/{N_TRIALS} finished")


def _spec():
    from ai_factory.spec import default_spec

    return default_spec()
