"""One settings object, read from ``AI_FACTORY_*`` environment variables with typed defaults.

Every knob the DAGs and the CLI share lives here, so one place documents what can be
changed and how. Values are read when :func:`get_settings` is first called (never at import
time) and cached; tests call :func:`reset_settings` after changing the environment.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from functools import lru_cache
from pathlib import Path

PACKAGE_DIR = Path(__file__).resolve().parent
# In an editable install the package sits at <repo>/include/ai_factory.
_REPO_GUESS = PACKAGE_DIR.parent.parent


class SettingsError(ValueError):
    """An environment variable holds a value that cannot be used."""


def _env(name: str, default: str) -> str:
    value = os.environ.get(name)
    return default if value is None or value == "" else value


def _env_int(name: str, default: int) -> int:
    raw = _env(name, str(default))
    try:
        return int(raw)
    except ValueError as exc:
        raise SettingsError(f"{name}={raw!r} is not an integer") from exc


def _env_float(name: str, default: float) -> float:
    raw = _env(name, str(default))
    try:
        return float(raw)
    except ValueError as exc:
        raise SettingsError(f"{name}={raw!r} is not a number") from exc


def _env_date(name: str, default: str) -> date:
    raw = _env(name, default)
    try:
        return date.fromisoformat(raw)
    except ValueError as exc:
        raise SettingsError(f"{name}={raw!r} is not an ISO date (YYYY-MM-DD)") from exc


def _env_choice(name: str, default: str, choices: tuple[str, ...]) -> str:
    raw = _env(name, default)
    if raw not in choices:
        raise SettingsError(f"{name}={raw!r} must be one of {', '.join(choices)}")
    return raw


def _env_map(name: str, default: str) -> dict[str, str]:
    """Parse ``k=v,k2=v2`` into a dict (node selectors, labels)."""
    raw = _env(name, default)
    out: dict[str, str] = {}
    for item in filter(None, (p.strip() for p in raw.split(","))):
        if "=" not in item:
            raise SettingsError(f"{name}: item {item!r} is not key=value")
        key, value = item.split("=", 1)
        out[key.strip()] = value.strip()
    return out


@dataclass(frozen=True)
class KubernetesSettings:
    """Where and how training pods run when ``compute = kubernetes``."""

    namespace: str = "ai-factory"
    image: str = "ai-factory-train:0.1.0"
    image_pull_policy: str = "IfNotPresent"
    service_account: str = "ai-factory-trainer"
    gpu_resource: str = "nvidia.com/gpu"
    gpu_node_selector: dict[str, str] = field(default_factory=lambda: {"ai-factory/pool": "gpu"})
    gpu_toleration_key: str = "nvidia.com/gpu"
    data_pvc: str = "ai-factory-data"
    data_mount_path: str = "/data"
    cpu_request: str = "2"
    memory_request: str = "8Gi"
    memory_limit: str = "16Gi"
    startup_timeout_seconds: int = 600
    schedule_timeout_seconds: int = 900
    optuna_storage_secret: str = "ai-factory-optuna"
    in_cluster: bool = True
    config_file: str | None = None


@dataclass(frozen=True)
class Settings:
    """Typed view over the ``AI_FACTORY_*`` environment."""

    home: Path
    data_root: str
    spec_path: Path
    gx_root: Path
    start_date: date
    compute: str
    optuna_storage: str
    # How long Optuna storage calls wait out an unreachable database (a restart, a failover).
    optuna_reconnect_seconds: float
    model_store: Path
    serve_host: str
    serve_port: int
    sensor_timeout_seconds: int
    sensor_poke_seconds: int
    demo_rows_per_day: int
    kubernetes: KubernetesSettings
    # Defaults of the training DAG's Params (what a nightly, asset-triggered run uses).
    train_window_days: int = 7
    train_trials: int = 20
    train_workers: int = 2
    # Drift monitoring rules, reference and report options (YAML; see monitoring/config.py).
    drift_config: Path = PACKAGE_DIR / "config" / "drift.yaml"
    # Size cap and rotated copies of every log file the project's processes write.
    log_max_bytes: int = 50 * 1024 * 1024
    log_backups: int = 5
    # A warm second server of the live version (local target), switched to when the live one dies.
    serve_standby: bool = False
    # Where `ai-factory up` records its state folders, for later CLI calls in a plain shell.
    stack_file: Path = _REPO_GUESS / ".local" / "stack.json"
    # Validated days `quality init` needs before it learns distribution expectations (fewer: the
    # contract alone), and how many standard errors of a day's sampling noise their bands allow.
    quality_reference_days: int = 7
    quality_noise_z: float = 5.0

    @property
    def start_datetime(self) -> datetime:
        """``start_date`` as midnight UTC (what DAGs take)."""
        return datetime(self.start_date.year, self.start_date.month, self.start_date.day, tzinfo=UTC)

    @property
    def data_root_is_local(self) -> bool:
        return "://" not in self.data_root or self.data_root.startswith("file://")


def _load() -> Settings:
    home = Path(_env("AI_FACTORY_HOME", str(_REPO_GUESS))).resolve()
    data_root = _env("AI_FACTORY_DATA_ROOT", str(home / ".data"))
    local_data = data_root.removeprefix("file://") if "://" not in data_root or data_root.startswith(
        "file://"
    ) else None
    default_optuna = (
        f"sqlite:///{Path(local_data) / 'optuna' / 'optuna.db'}" if local_data else "sqlite:///optuna.db"
    )
    k8s = KubernetesSettings(
        namespace=_env("AI_FACTORY_K8S_NAMESPACE", "ai-factory"),
        image=_env("AI_FACTORY_K8S_IMAGE", "ai-factory-train:0.1.0"),
        image_pull_policy=_env("AI_FACTORY_K8S_IMAGE_PULL_POLICY", "IfNotPresent"),
        service_account=_env("AI_FACTORY_K8S_SERVICE_ACCOUNT", "ai-factory-trainer"),
        gpu_resource=_env("AI_FACTORY_K8S_GPU_RESOURCE", "nvidia.com/gpu"),
        gpu_node_selector=_env_map("AI_FACTORY_K8S_GPU_NODE_SELECTOR", "ai-factory/pool=gpu"),
        gpu_toleration_key=_env("AI_FACTORY_K8S_GPU_TOLERATION_KEY", "nvidia.com/gpu"),
        data_pvc=_env("AI_FACTORY_K8S_DATA_PVC", "ai-factory-data"),
        data_mount_path=_env("AI_FACTORY_K8S_DATA_MOUNT_PATH", "/data"),
        cpu_request=_env("AI_FACTORY_K8S_CPU_REQUEST", "2"),
        memory_request=_env("AI_FACTORY_K8S_MEMORY_REQUEST", "8Gi"),
        memory_limit=_env("AI_FACTORY_K8S_MEMORY_LIMIT", "16Gi"),
        startup_timeout_seconds=_env_int("AI_FACTORY_K8S_STARTUP_TIMEOUT", 600),
        schedule_timeout_seconds=_env_int("AI_FACTORY_K8S_SCHEDULE_TIMEOUT", 900),
        optuna_storage_secret=_env("AI_FACTORY_K8S_OPTUNA_SECRET", "ai-factory-optuna"),
        in_cluster=_env("AI_FACTORY_K8S_IN_CLUSTER", "true").lower() in ("1", "true", "yes"),
        config_file=os.environ.get("AI_FACTORY_K8S_CONFIG_FILE") or None,
    )
    return Settings(
        home=home,
        data_root=data_root,
        spec_path=Path(_env("AI_FACTORY_SPEC", str(PACKAGE_DIR / "specs" / "credit_default.yaml"))),
        gx_root=Path(_env("AI_FACTORY_GX_ROOT", str(home / "great_expectations"))),
        start_date=_env_date("AI_FACTORY_START_DATE", "2026-11-01"),
        compute=_env_choice("AI_FACTORY_COMPUTE", "local", ("local", "kubernetes")),
        optuna_storage=_env("AI_FACTORY_OPTUNA_STORAGE", default_optuna),
        optuna_reconnect_seconds=_env_float("AI_FACTORY_OPTUNA_RECONNECT_SECONDS", 60.0),
        model_store=Path(_env("BENTOML_HOME", str(home / ".bentoml"))),
        serve_host=_env("AI_FACTORY_SERVE_HOST", "127.0.0.1"),
        serve_port=_env_int("AI_FACTORY_SERVE_PORT", 3000),
        sensor_timeout_seconds=_env_int("AI_FACTORY_SENSOR_TIMEOUT", 6 * 3600),
        sensor_poke_seconds=_env_int("AI_FACTORY_SENSOR_POKE", 300),
        demo_rows_per_day=_env_int("AI_FACTORY_DEMO_ROWS", 5000),
        kubernetes=k8s,
        train_window_days=_env_int("AI_FACTORY_TRAIN_WINDOW_DAYS", 7),
        train_trials=_env_int("AI_FACTORY_TRAIN_TRIALS", 20),
        train_workers=_env_int("AI_FACTORY_TRAIN_WORKERS", 2),
        drift_config=Path(_env("AI_FACTORY_DRIFT_CONFIG", str(PACKAGE_DIR / "config" / "drift.yaml"))),
        log_max_bytes=_env_int("AI_FACTORY_LOG_MAX_BYTES", 50 * 1024 * 1024),
        log_backups=_env_int("AI_FACTORY_LOG_BACKUPS", 5),
        serve_standby=_env("AI_FACTORY_SERVE_STANDBY", "false").lower() in ("1", "true", "yes"),
        stack_file=Path(_env("AI_FACTORY_STACK_FILE", str(home / ".local" / "stack.json"))),
        quality_reference_days=_env_int("AI_FACTORY_QUALITY_REFERENCE_DAYS", 7),
        quality_noise_z=_env_float("AI_FACTORY_QUALITY_NOISE_Z", 5.0),
    )


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process-wide settings (read once from the environment)."""
    return _load()


def reset_settings() -> None:
    """Forget cached settings so the next :func:`get_settings` re-reads the environment."""
    get_settings.cache_clear()
