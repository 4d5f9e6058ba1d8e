"""Optuna tuning: N workers on one study in a shared RDB storage.

* **One study per training run**, named ``<spec>.<run_key>`` and opened with
  ``load_if_exists=True``: a retried task (or a second worker) joins the study instead of
  starting another, and trials already finished count towards the budget.
* **Storage**: ``AI_FACTORY_OPTUNA_STORAGE`` (default: a SQLite file under the data root,
  fine for one machine); PostgreSQL when workers are pods on several machines. It is
  Optuna's RDB schema, so ``optuna-dashboard <storage-url>`` shows the studies live.
* **Sampler**: TPE, multivariate, with ``constant_liar`` so concurrent workers do not all
  sample the same point; each worker's sampler is seeded ``seed + worker``.
* **Pruner** (median by default) gets the validation objective after every epoch through
  ``trial.report``; a pruned trial stops at that epoch.
* **Heartbeats**: every running trial heartbeats (``heartbeat.interval_seconds``); when a
  worker dies, the next worker to start a trial marks the silent trial ``FAIL`` after
  ``grace_period_seconds`` and :class:`~optuna.storages.RetryHeartbeatStaleTrialCallback`
  (the successor of ``RetryFailedTrialCallback``, deprecated in Optuna 4.9) re-queues its
  parameters, so the study goes on.
* **Reconnects**: every storage call (the heartbeat thread's included) is retried while the
  database is unreachable, for up to ``AI_FACTORY_OPTUNA_RECONNECT_SECONDS`` (default 60):
  a PostgreSQL restart or failover pauses the workers instead of killing them (an
  unretried heartbeat thread died with its connection, and the trial it kept alive was
  failed under a live worker). Stale pooled connections are replaced (``pool_pre_ping``).
* **Budget**: ``n_trials`` finished (complete or pruned) trials for the whole study, not a
  share per worker (:func:`next_step`): a worker starts a trial while finished + running
  trials are fewer than ``n_trials``, and otherwise waits for the running ones to finish or
  go stale, so a killed worker's trial is failed, re-queued and run by a survivor and the
  study still ends with its budget. Two workers deciding at the same instant can overshoot
  by one trial each.
"""

from __future__ import annotations

import functools
import logging
import math
import random
import time
import warnings
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Any

import optuna
from optuna.storages import RDBStorage, RetryHeartbeatStaleTrialCallback
from optuna.trial import FrozenTrial, Trial, TrialState

from ai_factory.spec import DatasetSpec
from ai_factory.training.config import (
    CategoricalDist,
    FloatDist,
    HeartbeatConfig,
    IntDist,
    PrunerConfig,
    SamplerConfig,
    SearchSpace,
    TrainParams,
)
from ai_factory.training.metrics import objective_for

log = logging.getLogger(__name__)

FINISHED = (TrialState.COMPLETE, TrialState.PRUNED)
SCHEMA_ATTEMPTS = 5


class TuningError(RuntimeError):
    """The study cannot give what was asked (e.g. no trial completed)."""


def study_name(spec_name: str, key: str) -> str:
    return f"{spec_name}.{key}"


def _is_disconnect(exc: BaseException) -> bool:
    """Whether ``exc`` (or what it was raised from) says the database could not be reached."""
    from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError

    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, OperationalError | InterfaceError):
            return True
        if isinstance(seen, DBAPIError) and seen.connection_invalidated:
            return True
        seen = seen.__cause__
    return False


def _reconnecting(method: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(method)
    def call(self: ReconnectingRDBStorage, *args: Any, **kwargs: Any) -> Any:
        deadline = time.monotonic() + self.reconnect_seconds
        delay = 0.2
        while True:
            try:
                return method(self, *args, **kwargs)
            except Exception as exc:
                if not _is_disconnect(exc) or time.monotonic() + delay > deadline:
                    raise
                log.warning("Optuna storage unreachable in %s (%s); retrying in %.1fs", method.__name__,
                            type(exc.__cause__ or exc).__name__, delay)
                time.sleep(delay)
                delay = min(delay * 2, 2.0)

    return call


class ReconnectingRDBStorage(RDBStorage):
    """Optuna's RDB storage whose calls wait out a database restart instead of failing.

    A statement cut by the restart was rolled back by the server, so running it again is
    safe; the one exception is a commit whose acknowledgement was lost, which a retry
    reports as Optuna's own error (e.g. a trial already finished).
    """

    reconnect_seconds: float = 60.0


for _name in ("create_new_study", "delete_study", "set_study_user_attr", "set_study_system_attr",
              "get_study_id_from_name", "get_study_name_from_id", "get_study_directions",
              "get_study_user_attrs", "get_study_system_attrs", "get_trial_user_attrs", "get_trial_system_attrs",
              "get_all_studies", "create_new_trial", "set_trial_param", "get_trial_param",
              "set_trial_state_values", "set_trial_intermediate_value", "set_trial_user_attr",
              "set_trial_system_attr", "get_trial_id_from_study_id_trial_number", "get_trial", "get_all_trials",
              "get_best_trial", "record_heartbeat", "_get_stale_trial_ids"):
    setattr(ReconnectingRDBStorage, _name, _reconnecting(getattr(RDBStorage, _name)))


def make_storage(url: str, heartbeat: HeartbeatConfig | None = None) -> RDBStorage:
    """An RDB storage with heartbeats, the stale-trial retry callback, and reconnects."""
    from ai_factory.settings import get_settings

    heartbeat = heartbeat or HeartbeatConfig()
    engine_kwargs: dict[str, Any] = {}
    if url.startswith("sqlite:///"):
        path = url.removeprefix("sqlite:///")
        if path and path != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        # Several local workers share one file: wait for the write lock instead of failing.
        engine_kwargs["connect_args"] = {"timeout": 60}
    elif url.startswith(("postgresql", "mysql")):
        engine_kwargs["pool_pre_ping"] = True
    from sqlalchemy.exc import IntegrityError, OperationalError, ProgrammingError

    for attempt in range(1, SCHEMA_ATTEMPTS + 1):
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
                storage = ReconnectingRDBStorage(
                    url,
                    engine_kwargs=dict(engine_kwargs),
                    heartbeat_interval=heartbeat.interval_seconds,
                    grace_period=heartbeat.grace_period_seconds,
                    heartbeat_stale_trial_callback=RetryHeartbeatStaleTrialCallback(max_retry=heartbeat.max_retry),
                )
                storage.reconnect_seconds = get_settings().optuna_reconnect_seconds
                return storage
        except (IntegrityError, OperationalError, ProgrammingError) as exc:
            # Workers starting together on an empty database race to create Optuna's tables
            # (PostgreSQL: duplicate type/relation); the loser retries and finds them made.
            if attempt == SCHEMA_ATTEMPTS:
                raise
            delay = random.uniform(0.2, 1.0) * attempt
            log.warning("opening Optuna storage %s failed (attempt %d/%d: %s); retrying in %.1fs",
                        redact_url(url), attempt, SCHEMA_ATTEMPTS, type(exc).__name__, delay)
            time.sleep(delay)
    raise AssertionError("unreachable")  # pragma: no cover


def redact_url(url: str) -> str:
    """A storage URL without its password, for logs."""
    if "@" in url and "://" in url:
        scheme, rest = url.split("://", 1)
        creds, host = rest.rsplit("@", 1)
        return f"{scheme}://{creds.split(':', 1)[0]}:***@{host}"
    return url


def make_sampler(cfg: SamplerConfig, worker: int = 0) -> optuna.samplers.BaseSampler:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        return optuna.samplers.TPESampler(
            n_startup_trials=cfg.n_startup_trials,
            multivariate=cfg.multivariate,
            constant_liar=cfg.constant_liar,
            seed=None if cfg.seed is None else cfg.seed + worker,
        )


def make_pruner(cfg: PrunerConfig) -> optuna.pruners.BasePruner:
    if cfg.name == "median":
        return optuna.pruners.MedianPruner(
            n_startup_trials=cfg.n_startup_trials, n_warmup_steps=cfg.n_warmup_steps,
            interval_steps=cfg.interval_steps,
        )
    if cfg.name == "successive_halving":
        return optuna.pruners.SuccessiveHalvingPruner(min_resource=cfg.min_resource,
                                                      reduction_factor=cfg.reduction_factor)
    if cfg.name == "hyperband":
        return optuna.pruners.HyperbandPruner(min_resource=cfg.min_resource, reduction_factor=cfg.reduction_factor)
    return optuna.pruners.NopPruner()


def open_study(name: str, storage: RDBStorage | str, spec: DatasetSpec, space: SearchSpace,
               worker: int = 0) -> optuna.Study:
    """Create the run's study or join it if it exists."""
    if isinstance(storage, str):
        storage = make_storage(storage, space.heartbeat)
    study = optuna.create_study(
        study_name=name,
        storage=storage,
        direction=objective_for(spec.target.task).direction,
        sampler=make_sampler(space.sampler, worker),
        pruner=make_pruner(space.pruner),
        load_if_exists=True,
    )
    return study


def suggest(trial: Trial, space: SearchSpace) -> dict[str, Any]:
    """Sample every parameter of the search space for ``trial``."""
    out: dict[str, Any] = {}
    for name, dist in space.params.items():
        if isinstance(dist, FloatDist):
            out[name] = trial.suggest_float(name, dist.low, dist.high, log=dist.log, step=dist.step)
        elif isinstance(dist, IntDist):
            out[name] = trial.suggest_int(name, dist.low, dist.high, log=dist.log, step=dist.step)
        elif isinstance(dist, CategoricalDist):
            out[name] = trial.suggest_categorical(name, list(dist.choices))
        else:  # pragma: no cover - the pydantic union admits nothing else
            raise TypeError(f"unsupported distribution for {name}: {dist!r}")
    return out


def finished_trials(study: optuna.Study, worker: int | None = None) -> list[FrozenTrial]:
    trials = study.get_trials(deepcopy=False, states=FINISHED)
    if worker is None:
        return trials
    return [t for t in trials if t.user_attrs.get("worker") == worker]


def state_counts(study: optuna.Study) -> dict[str, int]:
    return dict(Counter(t.state.name.lower() for t in study.get_trials(deepcopy=False)))


@dataclass(frozen=True)
class BestTrial:
    number: int
    value: float
    params: dict[str, Any]
    user_attrs: dict[str, Any]


def best_trial(study: optuna.Study) -> BestTrial:
    complete = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    if not complete:
        raise TuningError(
            f"study '{study.study_name}' has no complete trial ({state_counts(study) or 'no trials'}); "
            "cannot pick parameters"
        )
    best = study.best_trial
    assert best.value is not None  # best_trial is a COMPLETE trial, which always has a value
    return BestTrial(number=best.number, value=float(best.value), params=dict(best.params),
                     user_attrs=dict(best.user_attrs))


def final_params(space: SearchSpace, best: BestTrial | None, overrides: dict[str, Any] | None = None) -> TrainParams:
    """Parameters for the final fit: defaults + the space's fixed values + the best trial + overrides.

    The final fit keeps ``TrainParams``' own epoch budget and patience (larger than a trial's).
    """
    params = TrainParams().with_overrides(**space.fixed)
    if best is not None:
        params = params.with_overrides(**best.params)
    if overrides:
        params = params.with_overrides(**overrides)
    return params


class Step(StrEnum):
    """What a tuning worker does next."""

    RUN = "run"
    WAIT = "wait"
    DONE = "done"


def next_step(study: optuna.Study, n_trials: int) -> Step:
    """Run a trial, wait for the running ones, or stop: the study's budget is ``n_trials`` finished trials.

    Stale trials (a worker that stopped heartbeating) are failed first, which re-queues their
    parameters (the storage's stale-trial callback). A study with ``n_trials`` failed trials
    stops too: every configuration failing is a bug to look at, not a reason to loop.
    """
    if n_trials < 1:
        raise ValueError(f"n_trials must be >= 1 (got {n_trials})")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        optuna.storages.fail_stale_trials(study)
    trials = study.get_trials(deepcopy=False)
    counts = Counter(t.state for t in trials)
    finished = sum(counts[s] for s in FINISHED)
    if finished >= n_trials:
        return Step.DONE
    # A trial failed by heartbeat and re-queued is a lost worker, not a failing configuration.
    requeued = {t.system_attrs["failed_trial"] for t in trials if "failed_trial" in t.system_attrs}
    failed = sum(1 for t in trials if t.state == TrialState.FAIL and t.number not in requeued)
    if failed >= n_trials:
        log.warning("study '%s' has %d failed trials (budget %d) and %d finished; stopping", study.study_name,
                    failed, n_trials, finished)
        return Step.DONE
    if finished + counts[TrialState.RUNNING] < n_trials:
        return Step.RUN
    return Step.WAIT


EDGE_FRACTION = 0.1


def _position(value: Any, dist: FloatDist | IntDist | CategoricalDist) -> float | None:
    """Where ``value`` sits in its range, 0 (low) .. 1 (high); log ranges on the log scale.

    Categorical choices count as ordered only when all are numbers (batch sizes); other
    categoricals have no edge and give None.
    """
    if isinstance(dist, CategoricalDist):
        numeric = [c for c in dist.choices if isinstance(c, int | float) and not isinstance(c, bool)]
        if len(numeric) != len(dist.choices) or len(numeric) < 2 or value not in numeric:
            return None
        ordered = sorted(numeric)
        return ordered.index(value) / (len(ordered) - 1)
    low, high, v = float(dist.low), float(dist.high), float(value)
    if high == low:
        return None
    if dist.log:
        low, high, v = math.log(low), math.log(high), math.log(v)
    return (v - low) / (high - low)


def edge_report(study: optuna.Study, space: SearchSpace, *, edge_fraction: float = EDGE_FRACTION,
                top_fraction: float = 0.25) -> dict[str, Any]:
    """Is the search space too small? Where the best trials sit in it, and whether they ran out of epochs.

    * ``best.edges``: parameters of the best trial within ``edge_fraction`` of their range's
      low or high end (``{name: "low"|"high"}``): the optimum may lie beyond the range.
    * ``best.at_last_epoch``: the best trial's best epoch was its last allowed one
      (``trial_max_epochs``): it was stopped by the budget, not by validation.
    * ``top``: over the best ``top_fraction`` of complete trials (at least one), the share at
      each parameter's low/high edge and at their last epoch — how often, not just once.
    * ``widen``: parameters whose best trial is at an edge, with the side to widen.
    """
    complete = [t for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)) if t.value is not None]
    if not complete:
        return {"complete_trials": 0}
    reverse = objective_for_direction(study) == "maximize"
    ranked = sorted(complete, key=lambda t: float(t.value or 0.0), reverse=reverse)
    top = ranked[:max(1, math.ceil(len(ranked) * top_fraction))]

    def edges(trial: FrozenTrial) -> dict[str, str]:
        out = {}
        for name, dist in space.params.items():
            if name not in trial.params:
                continue
            pos = _position(trial.params[name], dist)
            if pos is None:
                continue
            if pos <= edge_fraction:
                out[name] = "low"
            elif pos >= 1.0 - edge_fraction:
                out[name] = "high"
        return out

    def last_epoch(trial: FrozenTrial) -> bool:
        return trial.user_attrs.get("best_epoch") == space.trial_max_epochs

    best = ranked[0]
    best_edges = edges(best)
    top_edges = [edges(t) for t in top]
    share = {name: {side: round(sum(e.get(name) == side for e in top_edges) / len(top), 3)
                    for side in ("low", "high")}
             for name in space.params}
    at_last = last_epoch(best)
    report: dict[str, Any] = {
        "complete_trials": len(complete),
        "edge_fraction": edge_fraction,
        "best": {"number": best.number, "edges": best_edges, "at_last_epoch": at_last,
                 "best_epoch": best.user_attrs.get("best_epoch"), "trial_max_epochs": space.trial_max_epochs},
        "top": {"trials": len(top), "at_last_epoch": round(sum(map(last_epoch, top)) / len(top), 3),
                "at_edge": {k: v for k, v in share.items() if v["low"] or v["high"]}},
        "widen": best_edges,
    }
    if best_edges or at_last:
        advice = []
        if best_edges:
            advice.append("at the edge of the search space (" + ", ".join(f"{k} {v}" for k, v in best_edges.items())
                          + "): widen those ranges")
        if at_last:
            advice.append(f"at its last epoch ({space.trial_max_epochs}): raise trial_max_epochs")
        log.warning("study '%s': the best trial sits %s", study.study_name, "; and ".join(advice))
    return report


def objective_for_direction(study: optuna.Study) -> str:
    return "maximize" if study.direction == optuna.study.StudyDirection.MAXIMIZE else "minimize"


def route_optuna_logs() -> None:
    """Send Optuna's own log lines through ``logging`` (the Airflow task log) instead of its stderr handler."""
    optuna.logging.disable_default_handler()
    optuna.logging.enable_propagation()
