"""Typed serving configuration (``config/serving.yaml``), validated on load."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Literal

from pydantic import Field, ValidationError, model_validator

from ai_factory.configfile import StrictModel, load_model
from ai_factory.serving.middleware import EventTimeWindow
from ai_factory.serving.prediction_log import LogConfig
from ai_factory.settings import PACKAGE_DIR

DEFAULT_SERVING_CONFIG = PACKAGE_DIR / "config" / "serving.yaml"
CONFIG_ENV = "AI_FACTORY_SERVING_CONFIG"
BATCHING_ENV = "AI_FACTORY_SERVE_BATCHING"
LOG_ENV = "AI_FACTORY_PREDICTION_LOG"
SINGLE_ENV = "AI_FACTORY_SERVE_SINGLE"
STALL_ENV = "AI_FACTORY_SERVE_STALL_MS"
WORKERS_ENV = "AI_FACTORY_SERVE_WORKERS"
ACCESS_LOG_ENV = "AI_FACTORY_SERVE_ACCESS_LOG"
EVENT_BACK_ENV = "AI_FACTORY_SERVE_EVENT_DAYS_BACK"
EVENT_AHEAD_ENV = "AI_FACTORY_SERVE_EVENT_DAYS_AHEAD"

SingleRecordScoring = Literal["in_process", "runner"]


class ServingConfigError(ValueError):
    """The serving config is invalid; the message names the file and the key."""


class AdaptiveBatching(StrictModel):
    enabled: bool = True
    max_batch_size: int = Field(default=1024, ge=1, le=100_000)
    max_latency_ms: int = Field(default=250, ge=1, le=60_000)


class Traffic(StrictModel):
    timeout_seconds: float = Field(default=10.0, gt=0)
    max_concurrency: int = Field(default=1024, ge=1)


class RunnerConnection(StrictModel):
    """How the API process's client to the model runner recycles its HTTP session.

    BentoML 1.4.39 closes that session every ``max_requests`` requests (default 100) or
    ``max_age_seconds``, failing the requests still in flight on it with 500s
    (bentoml/BentoML#4971, #5540): at 200 req/s that is a few per second. Recycling is only
    useful for remote runners behind changing addresses; here the runner is a local socket.
    """

    max_requests: int = Field(default=1_000_000_000, ge=1)
    max_age_seconds: float = Field(default=86_400.0, gt=0)


class Resources(StrictModel):
    cpu: str = "1"


class PredictionLogConfig(StrictModel):
    enabled: bool = True
    flush_rows: int = Field(default=5000, ge=1)
    flush_seconds: float = Field(default=10, gt=0)
    max_buffer_rows: int = Field(default=200_000, ge=1)
    health_window_seconds: float = Field(default=300, gt=0)

    def to_log_config(self) -> LogConfig:
        return LogConfig(enabled=self.enabled, flush_rows=self.flush_rows, flush_seconds=self.flush_seconds,
                         max_buffer_rows=self.max_buffer_rows, health_window_seconds=self.health_window_seconds)


class EventTimeConfig(StrictModel):
    """Accepted ``X-Event-Time`` window around now (:mod:`ai_factory.serving.middleware`)."""

    # Backfills and the demo replay past days; ~13 months covers a yearly backfill.
    max_days_back: float = Field(default=400, ge=0, le=36_500)
    # A client's clock a little ahead, or a day boundary in another time zone.
    max_days_ahead: float = Field(default=1, ge=0, le=3_650)

    def window(self) -> EventTimeWindow:
        return EventTimeWindow(max_days_back=self.max_days_back, max_days_ahead=self.max_days_ahead)


class ServingConfig(StrictModel):
    max_batch_records: int = Field(default=1000, ge=1, le=100_000)
    single_record_scoring: SingleRecordScoring = "in_process"
    api_workers: int = Field(default=2, ge=1, le=64)
    access_log: bool = False
    trace_predictions: bool = False
    adaptive_batching: AdaptiveBatching = AdaptiveBatching()
    traffic: Traffic = Traffic()
    runner_connection: RunnerConnection = RunnerConnection()
    resources: Resources = Resources()
    prediction_log: PredictionLogConfig = PredictionLogConfig()
    event_time: EventTimeConfig = EventTimeConfig()
    # Log event-loop stalls of the API process longer than this (ms); 0 = off (ai_factory.serving.watchdog).
    stall_watchdog_ms: float = Field(default=0, ge=0)

    @model_validator(mode="after")
    def _batch_fits(self) -> ServingConfig:
        # BentoML's batcher answers 503 to a single request larger than its max batch size.
        if self.adaptive_batching.max_batch_size < self.max_batch_records:
            raise ValueError(f"adaptive_batching.max_batch_size ({self.adaptive_batching.max_batch_size}) must be "
                             f">= max_batch_records ({self.max_batch_records})")
        return self


def _flag(name: str) -> bool | None:
    raw = os.environ.get(name)
    if raw is None or raw == "":
        return None
    value = raw.strip().lower()
    if value in ("1", "true", "yes", "on"):
        return True
    if value in ("0", "false", "no", "off"):
        return False
    raise ServingConfigError(f"{name}={raw!r} must be true or false")


def load_serving_config(path: str | Path | None = None) -> ServingConfig:
    """The serving config from ``path`` / ``$AI_FACTORY_SERVING_CONFIG`` / the packaged default, with env switches."""
    p = Path(path or os.environ.get(CONFIG_ENV) or DEFAULT_SERVING_CONFIG)
    config = load_model(ServingConfig, p, what="serving config", error=ServingConfigError)
    batching, logging_ = _flag(BATCHING_ENV), _flag(LOG_ENV)
    single = os.environ.get(SINGLE_ENV, "").strip().lower()
    if single:
        if single not in ("in_process", "runner"):
            raise ServingConfigError(f"{SINGLE_ENV}={single!r} must be in_process or runner")
        config = config.model_copy(update={"single_record_scoring": single})
    updates: dict[str, tuple[str, object]] = {}  # key → (env var, value)
    for env, key, parse in ((STALL_ENV, "stall_watchdog_ms", float), (WORKERS_ENV, "api_workers", int)):
        text = os.environ.get(env, "").strip()
        if text:
            try:
                updates[key] = (env, parse(text))
            except ValueError:
                raise ServingConfigError(f"{env}={text!r} must be a number") from None
    if (access := _flag(ACCESS_LOG_ENV)) is not None:
        updates["access_log"] = (ACCESS_LOG_ENV, access)
    for key, (env, value) in updates.items():
        try:
            config = ServingConfig.model_validate({**config.model_dump(), key: value})
        except ValidationError as exc:
            raise ServingConfigError(f"{env}={value!r}: {exc.errors()[0]['msg']}") from None
    for env, key in ((EVENT_BACK_ENV, "max_days_back"), (EVENT_AHEAD_ENV, "max_days_ahead")):
        text = os.environ.get(env, "").strip()
        if text:
            try:
                window = EventTimeConfig.model_validate({**config.event_time.model_dump(), key: float(text)})
            except ValueError as exc:  # not a number, or pydantic's ValidationError (a ValueError) for the range
                why = exc.errors()[0]["msg"] if isinstance(exc, ValidationError) else "must be a number of days"
                raise ServingConfigError(f"{env}={text!r}: {why}") from None
            config = config.model_copy(update={"event_time": window})
    if batching is not None:
        config = config.model_copy(update={
            "adaptive_batching": config.adaptive_batching.model_copy(update={"enabled": batching})})
    if logging_ is not None:
        config = config.model_copy(update={
            "prediction_log": config.prediction_log.model_copy(update={"enabled": logging_})})
    return config
