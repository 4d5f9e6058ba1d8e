"""Plan one training run: its key, study, paths, window and the commands its pods run.

The ``training`` DAG's first task calls :func:`plan_run`; everything after it reads the
:class:`TrainingPlan` (XCom carries its JSON: ``plan.model_dump(mode="json")`` out,
``TrainingPlan.model_validate(xcom)`` in). The run key comes from the Airflow ``run_id``, so a retry
or a cleared task finds the same window, study and checkpoints instead of starting over.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import date
from typing import TYPE_CHECKING, Any, Literal

from ai_factory.configfile import StrictModel
from ai_factory.settings import Settings, get_settings

if TYPE_CHECKING:  # the plan's readers (every training task) need not import torch, optuna or pandas
    from ai_factory.training.window import RunPaths

log = logging.getLogger(__name__)

COMPUTE = ("local", "kubernetes")


@dataclass(frozen=True)
class RunOptions:
    """The DAG's Params, validated."""

    window_days: int = 7
    validation_days: int = 1
    trials: int = 20
    workers: int = 2
    compute: str = "local"
    gpus: int = 1
    end_date: date | None = None

    def __post_init__(self) -> None:
        if self.compute not in COMPUTE:
            raise ValueError(f"compute must be one of {', '.join(COMPUTE)}, got {self.compute!r}")
        for name in ("window_days", "validation_days", "trials", "workers"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.gpus < 0:
            raise ValueError(f"gpus must be >= 0, got {self.gpus}")

    @classmethod
    def from_params(cls, params: dict[str, Any]) -> RunOptions:
        end = params.get("end_date")
        return cls(
            window_days=int(params.get("window_days", cls.window_days)),
            validation_days=int(params.get("validation_days", cls.validation_days)),
            trials=int(params.get("trials", cls.trials)),
            workers=int(params.get("workers", cls.workers)),
            compute=str(params.get("compute", cls.compute)),
            gpus=int(params.get("gpus", cls.gpus)),
            end_date=date.fromisoformat(str(end)) if end else None,
        )


class Partitions(StrictModel):
    """The window's days (ISO dates), oldest first; the newest holdout day is the model's ``ds``."""

    train: tuple[str, ...]
    validation: tuple[str, ...]
    holdout: tuple[str, ...]


class TrainingPlan(StrictModel):
    """What the ``training`` DAG's plan task hands every later task: one run's key, study, paths and commands."""

    run_key: str
    study: str
    compute: Literal["local", "kubernetes"]
    gpus: int
    trials: int
    workers: tuple[int, ...]  # the mapped tune tasks' worker indices
    n_workers: int
    threads: int  # torch threads per local worker: local workers share this machine's cores
    data_root: str
    window: str
    model: str
    checkpoints: str
    evaluation: str
    partitions: Partitions
    tune_commands: tuple[tuple[str, ...], ...] = ()  # kubernetes: one pod command per worker
    fit_command: tuple[str, ...] = ()


def _local_root(data_root: str) -> str:
    return data_root.removeprefix("file://")


def pod_paths(paths: RunPaths, settings: Settings) -> RunPaths:
    """The run's paths as a pod sees them (local data roots are mounted at ``data_mount_path``)."""
    if not settings.data_root_is_local:
        return paths
    return paths.rebase(_local_root(settings.data_root), settings.kubernetes.data_mount_path)


def tune_command(paths: RunPaths, study: str, trials: int, workers: int, worker: int, data_root: str) -> list[str]:
    return ["train", "tune", "--window", paths.window, "--study", study, "--trials", str(trials),
            "--workers", str(workers), "--worker", str(worker), "--data-root", data_root,
            "--output", paths.tune_result(worker)]


def fit_command(paths: RunPaths, study: str, data_root: str) -> list[str]:
    return ["train", "fit", "--window", paths.window, "--study", study, "--model", paths.model,
            "--checkpoint", paths.checkpoints, "--data-root", data_root, "--output", paths.fit_result]


def plan_run(run_id: str, options: RunOptions, settings: Settings | None = None) -> TrainingPlan:
    """Build (or re-read) the run's window and return the plan every later task works from."""
    from ai_factory.spec import default_spec
    from ai_factory.training.device import available_cores
    from ai_factory.training.steps import make_window
    from ai_factory.training.tuning import study_name
    from ai_factory.training.window import RunPaths, run_key

    settings = settings or get_settings()
    spec = default_spec()
    key = run_key(run_id)
    data_root = _local_root(settings.data_root) if settings.data_root_is_local else settings.data_root
    paths = RunPaths.for_run(data_root, key)
    window = make_window(paths.window, days=options.window_days, end=options.end_date,
                         validation_days=options.validation_days, data_root=data_root)
    study = study_name(spec.name, key)
    tune_commands: list[list[str]] = []
    fit: list[str] = []
    if options.compute == "kubernetes":
        pod = pod_paths(paths, settings)
        pod_root = settings.kubernetes.data_mount_path if settings.data_root_is_local else data_root
        tune_commands = [tune_command(pod, study, options.trials, options.workers, i, pod_root)
                         for i in range(options.workers)]
        fit = fit_command(pod, study, pod_root)
    plan = TrainingPlan.model_validate({
        "run_key": key,
        "study": study,
        "compute": options.compute,
        "gpus": options.gpus,
        "trials": options.trials,
        "workers": list(range(options.workers)),
        "n_workers": options.workers,
        # Local workers share this machine's cores; a pod has its own.
        "threads": max(1, available_cores() // options.workers),
        "data_root": data_root,
        "window": paths.window,
        "model": paths.model,
        "checkpoints": paths.checkpoints,
        "evaluation": paths.evaluation,
        "partitions": {s: window[s] for s in ("train", "validation", "holdout")},
        "tune_commands": tune_commands,
        "fit_command": fit,
    })
    log.info("training run %s: study %s, %d trial(s) on %d %s worker(s), holdout %s", key, study, options.trials,
             options.workers, options.compute, ", ".join(plan.partitions.holdout))
    return plan
