"""The model registry: immutable model versions in BentoML's model store, a movable champion alias.

* **Versions.** ``register`` creates a BentoML model (``bentoml.models.create``) named after
  the dataset spec, holding ``model.pt`` + ``model.json`` + ``calibration.json`` (see
  :mod:`ai_factory.training.artifacts`), ``evaluation.json``, ``window.json`` and
  ``reference.parquet`` (a sample of the training window, the drift monitor's reference).
  Its metadata records holdout/validation/baseline metrics, the calibration (method,
  decision threshold, ECE before/after) and the holdout reliability diagram, the hyper-parameters, the study
  and best trial, the spec fingerprint, the window's partitions, the preprocessing
  statistics and the code version. BentoML never rewrites a saved version, so a version is
  immutable; registering the same training run twice returns the existing version (a
  retried task does not mint a second one).
* **Champion alias.** ``<BENTOML_HOME>/ai_factory/<name>/champion.json`` names the version in
  production together with its full history. It is replaced by an atomic rename under an
  exclusive file lock, so readers see the old or the new champion, never a torn file, and
  two promoters cannot interleave; ``set_champion(..., expected=...)`` is a
  compare-and-set for callers that must not overwrite someone else's promotion.
* **Gate decisions** (``record_decision``) are appended per version under
  ``<BENTOML_HOME>/ai_factory/<name>/decisions/<version>.json`` — outside the immutable
  model directory, because a decision is made after the version exists.

The store location is ``settings.model_store`` (``BENTOML_HOME``); it is passed to BentoML
explicitly rather than read from BentoML's process-wide container, so the registry always
follows the settings it was built from.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import subprocess
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import pandas as pd

log = logging.getLogger(__name__)

CHAMPION = "champion"
LATEST = "latest"
DECISIONS = ("approved", "rejected")
REFERENCE_FILE = "reference.parquet"
EVALUATION_FILE = "evaluation.json"
WINDOW_FILE = "window.json"
DEFAULT_REFERENCE_ROWS = 5000


class RegistryError(LookupError):
    """A version, alias or decision the caller named does not exist or cannot be used."""


class ChampionConflict(RegistryError):
    """``set_champion(expected=…)`` found a different champion than the caller expected."""


@dataclass(frozen=True)
class ModelVersion:
    name: str
    version: str
    path: Path
    created_at: datetime
    labels: dict[str, str]
    metadata: dict[str, Any]

    @property
    def tag(self) -> str:
        return f"{self.name}:{self.version}"

    @property
    def metrics(self) -> dict[str, float]:
        return dict(self.metadata.get("metrics", {}))

    def summary(self) -> dict[str, Any]:
        return {
            "tag": self.tag,
            "version": self.version,
            "created_at": self.created_at.isoformat(),
            "run_key": self.metadata.get("run_key"),
            "objective": self.metadata.get("objective"),
            "metrics": self.metrics,
            "baseline_metrics": self.metadata.get("baseline_metrics"),
            "reference_baseline": self.metadata.get("reference_baseline"),
            "window": self.metadata.get("window"),
            "code_version": self.metadata.get("code_version"),
        }


def code_version(home: Path | None = None) -> str:
    """``$AI_FACTORY_CODE_VERSION`` (set in images at build time), else the git commit, else the package version."""
    env = os.environ.get("AI_FACTORY_CODE_VERSION")
    if env:
        return env
    from ai_factory import __version__

    if home is not None:
        try:
            sha = subprocess.run(["git", "-C", str(home), "rev-parse", "--short=12", "HEAD"], check=True,
                                 capture_output=True, text=True, timeout=10).stdout.strip()
            dirty = subprocess.run(["git", "-C", str(home), "status", "--porcelain", "--untracked-files=no"],
                                   check=True, capture_output=True, text=True, timeout=10).stdout.strip()
            return f"{sha}{'-dirty' if dirty else ''}"
        except (OSError, subprocess.SubprocessError) as exc:
            log.debug("no git commit for %s (%s); using the package version", home, exc)
    return f"ai-factory-{__version__}"


def _now() -> str:
    return datetime.now(UTC).isoformat()


def _metadata_safe(value: Any) -> Any:
    """BentoML metadata accepts no ``None``: drop null entries (absent = unknown) recursively."""
    if isinstance(value, dict):
        return {str(k): _metadata_safe(v) for k, v in value.items() if v is not None}
    if isinstance(value, list | tuple):
        return [_metadata_safe(v) for v in value if v is not None]
    return value


def _atomic_write_json(path: Path, payload: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
    with open(tmp, "w") as fh:
        json.dump(payload, fh, indent=2, sort_keys=True, default=str)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)


class ModelRegistry:
    """Versions of one model (named after the dataset spec) in a BentoML model store."""

    def __init__(self, home: Path | str, model_name: str) -> None:
        from bentoml._internal.models.model import ModelStore

        self.home = Path(home)
        self.name = model_name
        self.store = ModelStore(str(self.home / "models"))
        self.meta_dir = self.home / "ai_factory" / model_name

    @classmethod
    def from_settings(cls, model_name: str | None = None) -> ModelRegistry:
        from ai_factory.settings import get_settings

        settings = get_settings()
        if model_name is None:
            from ai_factory.spec import default_spec

            model_name = default_spec().name
        return cls(settings.model_store, model_name)

    # -- reading ------------------------------------------------------------------------
    def _wrap(self, model: Any) -> ModelVersion:
        return ModelVersion(
            name=model.tag.name, version=model.tag.version, path=Path(model.path),
            created_at=model.creation_time, labels=dict(model.info.labels),
            metadata=dict(model.info.metadata),
        )

    def list_versions(self) -> list[ModelVersion]:
        """All versions, newest first."""
        from bentoml.exceptions import NotFound

        try:
            models = self.store.list(self.name)
        except NotFound:
            return []
        return sorted((self._wrap(m) for m in models), key=lambda v: v.created_at, reverse=True)

    def get(self, ref: str = LATEST) -> ModelVersion:
        """A version by id, ``name:version``, ``latest`` or ``champion``."""
        from bentoml.exceptions import NotFound

        if ref == CHAMPION:
            current = self.champion()
            if current is None:
                raise RegistryError(f"model '{self.name}' has no champion yet")
            return current
        if ":" in ref:
            name, _, version = ref.partition(":")
            if name != self.name:
                raise RegistryError(f"{ref!r} names model '{name}', but this registry holds '{self.name}'")
            ref = version
        if ref == LATEST:
            versions = self.list_versions()
            if not versions:
                raise RegistryError(f"model '{self.name}' has no registered versions in {self.home}")
            return versions[0]
        try:
            return self._wrap(self.store.get(f"{self.name}:{ref}"))
        except NotFound:
            raise RegistryError(f"model version '{self.name}:{ref}' is not registered") from None

    def find_by_run(self, run_key: str) -> ModelVersion | None:
        for v in self.list_versions():
            if v.metadata.get("run_key") == run_key:
                return v
        return None

    def reference_sample(self, ref: str = CHAMPION) -> pd.DataFrame:
        """The training-window sample stored with a version (the drift monitor's reference)."""
        import pandas as pd

        path = self.get(ref).path / REFERENCE_FILE
        if not path.exists():
            raise RegistryError(f"{path}: this version has no reference sample")
        return pd.read_parquet(path)

    def compare(self, a: str, b: str) -> dict[str, Any]:
        """Metrics of two versions side by side, with ``b - a`` per shared metric."""
        va, vb = self.get(a), self.get(b)
        ma, mb = va.metrics, vb.metrics
        return {
            "a": va.tag,
            "b": vb.tag,
            "objective": vb.metadata.get("objective"),
            "metrics": {k: {"a": ma[k], "b": mb[k], "delta": mb[k] - ma[k]} for k in sorted(set(ma) & set(mb))},
            "same_holdout": va.metadata.get("window", {}).get("holdout") == vb.metadata.get("window", {}).get("holdout"),
        }

    # -- registering ----------------------------------------------------------------------
    def register(
        self,
        model_dir: str,
        *,
        run_key: str,
        evaluation: dict[str, Any],
        window: dict[str, Any],
        reference: pd.DataFrame | None = None,
        study: str | None = None,
        extra_metadata: dict[str, Any] | None = None,
    ) -> ModelVersion:
        """Store the model at ``model_dir`` as a new immutable version (or return this run's existing one)."""
        import bentoml

        from ai_factory import __version__
        from ai_factory.training import io
        from ai_factory.training.artifacts import META_FILE, WEIGHTS_FILE
        from ai_factory.training.calibration import CALIBRATION_FILE

        existing = self.find_by_run(run_key)
        if existing is not None:
            log.info("run %s is already registered as %s; not creating another version", run_key, existing.tag)
            return existing
        meta = io.read_json(io.join(model_dir, META_FILE))
        if meta["spec"]["name"] != self.name:
            raise RegistryError(f"{model_dir} holds a model for spec '{meta['spec']['name']}', not '{self.name}'")
        task = meta["spec"]["target"]["task"]
        metadata = {
            "run_key": run_key,
            "study_name": study or meta.get("tuning", {}).get("study"),
            "best_trial": meta.get("tuning", {}).get("best_trial"),
            "n_trials": meta.get("tuning", {}).get("n_trials"),
            "spec_name": self.name,
            "spec_fingerprint": meta["spec_fingerprint"],
            "task": task,
            "objective": evaluation.get("objective"),
            "metrics": evaluation["holdout"],
            "baseline_metrics": evaluation.get("holdout_baseline"),
            "validation_metrics": evaluation.get("validation"),
            "beats_baseline": evaluation.get("beats_baseline"),
            "params": meta["params"],
            "window": {k: window[k] for k in ("train", "validation", "holdout")},
            "rows": meta.get("rows"),
            "training": {
                **{k: meta["training"][k] for k in ("best_epoch", "best_metric", "epochs_run", "stopped_early")},
                "refit": {k: v for k, v in (meta["training"].get("refit") or {}).items() if k != "schedule"},
            },
            # Calibrator, decision threshold and the holdout reliability diagram (bins of mean
            # predicted vs observed, with counts); the calibrator itself is calibration.json.
            "calibration": evaluation.get("calibration"),
            "reliability": evaluation.get("holdout_reliability"),
            "uncalibrated_metrics": evaluation.get("holdout_uncalibrated"),
            "proper_score": evaluation.get("proper_score"),
            # HistGradientBoosting fitted on the same rows, scored on the same holdout:
            # {family, metrics, fit_seconds, comparison} (ai_factory.training.reference_baseline).
            "reference_baseline": evaluation.get("reference_baseline"),
            "preprocessing": meta["preprocessing"],
            "code_version": code_version(self._repo_home()),
            "package_version": __version__,
            "torch_version": meta.get("torch_version"),
            "registered_at": _now(),
            "reference_rows": 0 if reference is None else len(reference),
            **(extra_metadata or {}),
        }
        labels = {"task": task, "spec": meta["spec_fingerprint"], "stage": "candidate"}
        with bentoml.models.create(self.name, labels=labels, metadata=_metadata_safe(metadata),
                                   _model_store=self.store) as bm:
            for name in (WEIGHTS_FILE, META_FILE, CALIBRATION_FILE):
                if name == CALIBRATION_FILE and not io.exists(io.join(model_dir, name)):
                    continue  # a model trained before calibration existed
                io.copy_to_local(io.join(model_dir, name), Path(bm.path_of(name)))
            Path(bm.path_of(EVALUATION_FILE)).write_text(json.dumps(evaluation, indent=2, default=str))
            Path(bm.path_of(WINDOW_FILE)).write_text(json.dumps(window, indent=2, default=str))
            if reference is not None:
                reference.to_parquet(bm.path_of(REFERENCE_FILE), index=False)
            tag = bm.tag
        version = self.get(str(tag.version))
        log.info("registered %s (holdout %s)", version.tag,
                 ", ".join(f"{k}={v:.4f}" for k, v in version.metrics.items()))
        return version

    @staticmethod
    def _repo_home() -> Path | None:
        from ai_factory.settings import get_settings

        return get_settings().home

    # -- champion alias ------------------------------------------------------------------------
    @property
    def champion_file(self) -> Path:
        return self.meta_dir / f"{CHAMPION}.json"

    @contextlib.contextmanager
    def _lock(self) -> Iterator[None]:
        self.meta_dir.mkdir(parents=True, exist_ok=True)
        with open(self.meta_dir / ".lock", "w") as fh:
            fcntl.flock(fh, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(fh, fcntl.LOCK_UN)

    def _read_alias(self) -> dict[str, Any] | None:
        try:
            return json.loads(self.champion_file.read_text())
        except FileNotFoundError:
            return None

    def champion(self) -> ModelVersion | None:
        record = self._read_alias()
        if record is None:
            return None
        return self.get(record["version"])

    def champion_history(self) -> list[dict[str, Any]]:
        """Every promotion, oldest first (each with version, previous, since, reason, actor)."""
        record = self._read_alias()
        return [] if record is None else list(record.get("history", []))

    def set_champion(self, ref: str, *, reason: str, actor: str = "ai-factory",
                     expected: str | None = None, check_expected: bool = False) -> dict[str, Any]:
        """Point the champion alias at ``ref`` atomically; returns the new alias record.

        With ``check_expected=True`` the move only happens if the current champion's version
        is ``expected`` (``None`` = no champion yet); otherwise :class:`ChampionConflict`.
        """
        target = self.get(ref)
        with self._lock():
            record = self._read_alias()
            current = record["version"] if record else None
            if check_expected and current != expected:
                raise ChampionConflict(
                    f"champion of '{self.name}' is {current!r}, expected {expected!r}; not moving it to {target.version}"
                )
            entry = {"version": target.version, "previous": current, "since": _now(), "reason": reason,
                     "actor": actor}
            history = (record or {}).get("history", []) + [entry]
            new = {"name": self.name, **entry, "history": history}
            _atomic_write_json(self.champion_file, new)
        log.info("champion of '%s' is now %s (was %s): %s", self.name, target.version, current, reason)
        return new

    # -- gate decisions ---------------------------------------------------------------------------
    def _decisions_file(self, version: str) -> Path:
        return self.meta_dir / "decisions" / f"{version}.json"

    def record_decision(self, ref: str, *, decision: str, reason: str, gate: str = "model_gate",
                        metrics: dict[str, Any] | None = None, details: dict[str, Any] | None = None) -> dict[str, Any]:
        """Append a gate decision (``approved`` or ``rejected``) to a version's record."""
        if decision not in DECISIONS:
            raise ValueError(f"decision must be one of {', '.join(DECISIONS)}, got {decision!r}")
        version = self.get(ref).version
        entry = {"version": version, "decision": decision, "reason": reason, "gate": gate, "at": _now(),
                 "metrics": metrics or {}, "details": details or {}}
        with self._lock():
            path = self._decisions_file(version)
            existing = json.loads(path.read_text()) if path.exists() else []
            _atomic_write_json(path, existing + [entry])
        log.info("%s %s:%s by %s: %s", decision, self.name, version, gate, reason)
        return entry

    def decisions(self, ref: str) -> list[dict[str, Any]]:
        path = self._decisions_file(self.get(ref).version)
        return json.loads(path.read_text()) if path.exists() else []

    def latest_decision(self, ref: str) -> dict[str, Any] | None:
        found = self.decisions(ref)
        return found[-1] if found else None
