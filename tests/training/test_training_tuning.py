"""Optuna tuning: pruning, resuming a study, a killed worker's trial retried, 2 concurrent workers on PostgreSQL."""

from __future__ import annotations

import signal
import time
from pathlib import Path

import optuna
import pytest
import yaml
from optuna.trial import TrialState

from ai_factory.spec import default_spec
from ai_factory.training import tuning
from ai_factory.training.config import load_search_space
from ai_factory.training.steps import fit, make_window, tune_worker

from training_helpers import cli_popen, recreate_pg_database

GOOD = {"learning_rate": 1e-2, "hidden_size": 32}
BAD = {"learning_rate": 1e-6, "hidden_size": 32}  # learns nothing in 3 epochs


def _space(tmp_path: Path, **overrides) -> Path:
    raw = {
        "trial_max_epochs": 3,
        "trial_patience": 3,
        "sampler": {"n_startup_trials": 2, "seed": 7},
        "pruner": {"name": "median", "n_startup_trials": 2, "n_warmup_steps": 0},
        "heartbeat": {"interval_seconds": 1, "grace_period_seconds": 3, "max_retry": 1},
        "fixed": {"n_layers": 1, "embedding_dim_max": 4, "batch_size": 256},
        "params": {
            "learning_rate": {"type": "float", "low": 1e-6, "high": 1e-2, "log": True},
            "hidden_size": {"type": "int", "low": 16, "high": 48, "step": 16},
        },
    }
    for key, value in overrides.items():
        raw[key] = {**raw[key], **value} if isinstance(value, dict) else value
    path = tmp_path / "space.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


def _study(name: str, url: str, space: Path) -> optuna.Study:
    return tuning.open_study(name, tuning.make_storage(url, load_search_space(space).heartbeat), default_spec(),
                             load_search_space(space))


def test_pruner_stops_bad_trials_and_a_rerun_resumes_the_study(demo_lake, tmp_path):
    space = _space(tmp_path)
    window = make_window(str(tmp_path / "window.json"), days=5)["window"]
    url = f"sqlite:///{tmp_path / 'optuna.db'}"
    study = _study("credit_default.prune", url, space)
    for params in (GOOD, GOOD, BAD, BAD):
        study.enqueue_trial(params)

    result = tune_worker(window, "credit_default.prune", url, n_trials=4, search_space=str(space))
    assert result["trials_run"] == 4
    trials = study.get_trials()
    bad = [t for t in trials if t.params["learning_rate"] == BAD["learning_rate"]]
    assert [t.state for t in bad] == [TrialState.PRUNED, TrialState.PRUNED]
    assert all(len(t.intermediate_values) < 3 for t in bad)  # stopped before the last epoch
    good = [t for t in trials if t.state == TrialState.COMPLETE]
    assert len(good) == 2 and all(sorted(t.intermediate_values) == [1, 2, 3] for t in good)
    assert result["best_params"] == GOOD and result["states"] == {"complete": 2, "pruned": 2}

    # The task is retried: the study is joined, its finished trials count, nothing is re-run.
    again = tune_worker(window, "credit_default.prune", url, n_trials=4, search_space=str(space))
    assert again["trials_run"] == 0 and len(study.get_trials()) == 4

    # The final fit takes the best trial's parameters.
    out = fit(window, str(tmp_path / "model"), study="credit_default.prune", storage=url, search_space=str(space),
              params_override={"max_epochs": 2})
    assert out["params"]["learning_rate"] == GOOD["learning_rate"] and out["params"]["hidden_size"] == 32
    assert out["tuning"]["best_trial"] == result["best_trial"]


def test_killed_workers_trial_is_failed_and_retried_by_the_next_worker(demo_lake, tmp_path):
    # Slow trials (small batches, more epochs) so the first worker is surely mid-trial when killed.
    space = _space(tmp_path, trial_max_epochs=6, trial_patience=6, fixed={"batch_size": 16},
                   pruner={"name": "none"})
    window = make_window(str(tmp_path / "window.json"), days=5)["window"]
    url = f"sqlite:///{tmp_path / 'optuna.db'}"
    name = "credit_default.heartbeat"
    args = ["train", "tune", "--window", window, "--study", name, "--storage", url, "--trials", "1",
            "--search-space", str(space)]
    study = _study(name, url, space)
    study.enqueue_trial(GOOD)

    first = cli_popen(*args, log_path=tmp_path / "first.log")
    deadline = time.monotonic() + 120
    while first.poll() is None and time.monotonic() < deadline:
        running = study.get_trials(states=(TrialState.RUNNING,))
        if running and running[0].intermediate_values:  # mid-trial: at least one epoch reported
            break
        time.sleep(0.05)
    first.send_signal(signal.SIGKILL)
    first.wait(timeout=30)
    assert first.returncode == -signal.SIGKILL, (tmp_path / "first.log").read_text()[-2000:]
    assert [t.state for t in study.get_trials()] == [TrialState.RUNNING]  # nobody has noticed yet

    time.sleep(load_search_space(space).heartbeat.grace_period_seconds + 1)  # let the heartbeat go stale
    second = cli_popen(*args, log_path=tmp_path / "second.log")
    assert second.wait(timeout=300) == 0, (tmp_path / "second.log").read_text()[-3000:]

    trials = study.get_trials()
    assert trials[0].state == TrialState.FAIL
    retried = [t for t in trials if t.system_attrs.get("failed_trial") == 0]
    assert len(retried) == 1
    assert retried[0].params == GOOD and retried[0].state == TrialState.COMPLETE
    assert len(study.get_trials(states=tuning.FINISHED)) == 1


@pytest.mark.postgres
def test_two_workers_tune_one_study_concurrently_on_postgresql(demo_lake, tmp_path):
    url = recreate_pg_database("ai_factory_optuna_test")
    space = _space(tmp_path, fixed={"batch_size": 32}, pruner={"name": "none"})
    window = make_window(str(tmp_path / "window.json"), days=5)["window"]
    name = "credit_default.parallel"
    procs = [cli_popen("train", "tune", "--window", window, "--study", name, "--storage", url, "--trials", "6",
                       "--workers", "2", "--worker", str(i), "--search-space", str(space),
                       "--output", str(tmp_path / f"worker-{i}.json"), log_path=tmp_path / f"worker-{i}.log")
             for i in range(2)]
    for i, p in enumerate(procs):
        assert p.wait(timeout=300) == 0, (tmp_path / f"worker-{i}.log").read_text()[-3000:]

    study = optuna.load_study(study_name=name, storage=url)
    finished = study.get_trials(states=tuning.FINISHED)
    assert len(finished) == 6
    by_worker = {w: [t for t in finished if t.user_attrs["worker"] == w] for w in (0, 1)}
    # One budget for the study: both workers took part, however the six trials fell between them.
    assert len(by_worker[0]) >= 1 and len(by_worker[1]) >= 1 and len(by_worker[0]) + len(by_worker[1]) == 6
    spans = {w: (min(t.datetime_start for t in ts), max(t.datetime_complete for t in ts))
             for w, ts in by_worker.items()}
    # Really concurrent: each worker was mid-study while the other was running trials.
    assert max(spans[0][0], spans[1][0]) < min(spans[0][1], spans[1][1]), spans
    assert study.best_trial.state == TrialState.COMPLETE and 0.5 < study.best_value <= 1.0


def test_the_budget_is_the_studys_and_failing_configurations_do_not_loop(tmp_path):
    study = optuna.create_study(storage=f"sqlite:///{tmp_path / 'budget.db'}")
    assert tuning.next_step(study, 2) == tuning.Step.RUN
    first = study.ask()
    assert tuning.next_step(study, 2) == tuning.Step.RUN  # 0 finished + 1 running < 2
    second = study.ask()
    assert tuning.next_step(study, 2) == tuning.Step.WAIT  # the rest is running elsewhere
    study.tell(first, 0.5)
    study.tell(second, state=TrialState.FAIL)
    assert tuning.next_step(study, 2) == tuning.Step.RUN  # a failed trial is made up for
    study.tell(study.ask(), state=TrialState.FAIL)
    assert tuning.next_step(study, 2) == tuning.Step.DONE  # as many failures as the budget: stop
