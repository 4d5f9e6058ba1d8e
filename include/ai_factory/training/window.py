"""The training window: the last K validated partitions, split by time.

``holdout`` is the newest day (the model is judged on data newer than anything it saw),
``validation`` the ``validation_days`` before it (early stopping and the tuning objective),
``train`` the rest. Splitting by day rather than at random keeps tomorrow out of today's
training set, which is how the model will be used.

A window is written once per training run as ``window.json`` under the run directory and
re-read on retries, so a retried task sees the same partitions even if new days landed
in between. Partitions are recorded by date only; each process resolves them against its
own data root (an Airflow worker and a training pod mount the same storage at different
paths).
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from datetime import date
from typing import Any

import pandas as pd

from ai_factory.spec import DatasetSpec
from ai_factory.storage import DataLake, Zone, as_date
from ai_factory.training import io

log = logging.getLogger(__name__)

MIN_TRAIN_DAYS = 1
SPLITS = ("train", "validation", "holdout")
RUNS_DIR = "training/runs"


class WindowError(ValueError):
    """Not enough (or unreadable) validated data for a training window."""


class NotEnoughData(WindowError):
    """Fewer validated partitions than a window needs yet (a new dataset's first days)."""


@dataclass(frozen=True)
class TrainingWindow:
    spec_name: str
    spec_fingerprint: str
    train: tuple[date, ...]
    validation: tuple[date, ...]
    holdout: tuple[date, ...]

    @property
    def partitions(self) -> list[date]:
        return sorted((*self.train, *self.validation, *self.holdout))

    def days(self, split: str) -> tuple[date, ...]:
        if split not in SPLITS:
            raise KeyError(f"unknown split {split!r}; choose from {', '.join(SPLITS)}")
        return tuple(getattr(self, split))

    def to_dict(self) -> dict[str, Any]:
        return {
            "spec_name": self.spec_name,
            "spec_fingerprint": self.spec_fingerprint,
            **{s: [d.isoformat() for d in self.days(s)] for s in SPLITS},
        }

    @classmethod
    def from_dict(cls, payload: dict[str, Any]) -> TrainingWindow:
        try:
            return cls(
                spec_name=payload["spec_name"],
                spec_fingerprint=payload["spec_fingerprint"],
                **{s: tuple(as_date(d) for d in payload[s]) for s in SPLITS},
            )
        except KeyError as exc:
            raise WindowError(f"window manifest is missing key {exc.args[0]!r}") from None

    @classmethod
    def load(cls, uri: str) -> TrainingWindow:
        return cls.from_dict(io.read_json(uri))

    def save(self, uri: str) -> str:
        return io.write_json(uri, self.to_dict())


def build_window(
    lake: DataLake,
    spec: DatasetSpec,
    days: int,
    end: date | str | None = None,
    validation_days: int = 1,
) -> TrainingWindow:
    """The last ``days`` validated partitions up to ``end`` (inclusive; default: the newest)."""
    if validation_days < 1:
        raise WindowError(f"validation_days must be >= 1, got {validation_days}")
    need = MIN_TRAIN_DAYS + validation_days + 1
    if days < need:
        raise WindowError(f"a window needs at least {need} days (train, {validation_days} validation, 1 holdout); "
                          f"got days={days}")
    available = lake.partitions(Zone.VALIDATED)
    if end is not None:
        end_day = as_date(end)
        available = [d for d in available if d <= end_day]
    chosen = available[-days:]
    if len(chosen) < need:
        where = lake.zone_path(Zone.VALIDATED)
        have = ", ".join(d.isoformat() for d in chosen) or "none"
        raise NotEnoughData(
            f"{where}: need at least {need} validated partitions{f' up to {end}' if end else ''} "
            f"to train, found {len(chosen)} ({have})"
        )
    if len(chosen) < days:
        log.warning("asked for %d days but only %d validated partitions exist; training on those", days, len(chosen))
    window = TrainingWindow(
        spec_name=spec.name,
        spec_fingerprint=spec.fingerprint(),
        train=tuple(chosen[: -(validation_days + 1)]),
        validation=tuple(chosen[-(validation_days + 1):-1]),
        holdout=(chosen[-1],),
    )
    log.info("training window: train %s..%s (%d days), validation %s, holdout %s",
             window.train[0], window.train[-1], len(window.train),
             ", ".join(map(str, window.validation)), window.holdout[0])
    return window


def load_split(lake: DataLake, spec: DatasetSpec, window: TrainingWindow, split: str) -> pd.DataFrame:
    """The rows of one split (all its partitions, oldest first), checked against the spec."""
    columns = spec.columns
    frames = []
    for day in window.days(split):
        if not lake.partition_exists(Zone.VALIDATED, day):
            raise WindowError(f"{lake.partition_path(Zone.VALIDATED, day)}: partition of the {split} split is gone")
        df = lake.read_partition(Zone.VALIDATED, day)
        missing = [c for c in columns if c not in df.columns and c != spec.id_column]
        if missing:
            raise WindowError(f"{lake.partition_path(Zone.VALIDATED, day)}: missing column(s) {', '.join(missing)}")
        frames.append(df)
    out = pd.concat(frames, ignore_index=True) if len(frames) > 1 else frames[0]
    if out.empty:
        raise WindowError(f"the {split} split ({', '.join(map(str, window.days(split)))}) has no rows")
    return out


def load_frames(lake: DataLake, spec: DatasetSpec, window: TrainingWindow,
                splits: tuple[str, ...] = SPLITS) -> dict[str, pd.DataFrame]:
    if window.spec_name != spec.name:
        raise WindowError(f"the window was built for spec '{window.spec_name}', not '{spec.name}'")
    if window.spec_fingerprint != spec.fingerprint():
        log.warning("spec '%s' changed since the window was built (fingerprint %s, now %s)",
                    spec.name, window.spec_fingerprint, spec.fingerprint())
    frames = {s: load_split(lake, spec, window, s) for s in splits}
    log.info("loaded %s", ", ".join(f"{s}={len(f):,} rows" for s, f in frames.items()))
    return frames


_RUN_KEY_RE = re.compile(r"[^A-Za-z0-9_.-]+")


def run_key(run_id: str) -> str:
    """A filesystem- and study-name-safe key for a training run (stable across task retries)."""
    key = _RUN_KEY_RE.sub("-", run_id).strip("-.")
    if not key:
        raise ValueError(f"run id {run_id!r} has no usable characters")
    return key[:120]


@dataclass(frozen=True)
class RunPaths:
    """Where one training run keeps its artifacts, under ``<data_root>/training/runs/<run_key>``."""

    root: str

    @classmethod
    def for_run(cls, data_root: str, key: str) -> RunPaths:
        return cls(io.join(data_root, RUNS_DIR, run_key(key)))

    @property
    def window(self) -> str:
        return io.join(self.root, "window.json")

    def tune_result(self, worker: int) -> str:
        return io.join(self.root, "tune", f"worker-{worker}.json")

    @property
    def checkpoints(self) -> str:
        return io.join(self.root, "fit", "checkpoints")

    @property
    def model(self) -> str:
        return io.join(self.root, "fit", "model")

    @property
    def fit_result(self) -> str:
        return io.join(self.root, "fit", "result.json")

    @property
    def evaluation(self) -> str:
        return io.join(self.root, "evaluation.json")

    def rebase(self, old_root: str, new_root: str) -> RunPaths:
        """The same run seen from a process that mounts the data root at ``new_root``."""
        old = old_root.rstrip("/")
        if not self.root.startswith(old + "/"):
            raise ValueError(f"{self.root} is not under {old_root}")
        return RunPaths(new_root.rstrip("/") + self.root[len(old):])
