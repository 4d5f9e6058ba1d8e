"""Typed training configuration: model/optimiser hyper-parameters and the Optuna search space.

``TrainParams`` holds every knob of one training run with the defaults a final fit uses
when no study is given. The search space (``config/search_space.yaml``) names a subset
of those fields and the distribution Optuna samples each from; everything else keeps its
default. The YAML is validated on load, so a typo in a parameter name or a ``low > high``
range fails with the file and the key in the message rather than deep inside a trial.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import Field, ValidationError, model_validator

from ai_factory.configfile import StrictModel, load_model, validation_problems
from ai_factory.settings import PACKAGE_DIR

DEFAULT_SEARCH_SPACE = PACKAGE_DIR / "config" / "search_space.yaml"
SEARCH_SPACE_ENV = "AI_FACTORY_SEARCH_SPACE"


class ConfigError(ValueError):
    """A training config or search-space file is invalid; the message names the file and the key."""


class TrainParams(StrictModel):
    """Hyper-parameters of one training run (model, optimiser, loop)."""

    # model
    # Defaults measured on the demo data (bench/model_quality.py): two 256-wide layers with
    # strong dropout and weight decay; wider/deeper nets overfit a 25k-row window in 2 epochs.
    hidden_size: int = Field(default=256, ge=8, le=4096)
    n_layers: int = Field(default=2, ge=1, le=12)
    dropout: float = Field(default=0.3, ge=0.0, lt=1.0)
    embedding_dim_max: int = Field(default=16, ge=1, le=256)
    numeric_transform: Literal["quantile", "standard"] = "quantile"
    # optimiser
    learning_rate: float = Field(default=1e-3, gt=0.0, le=1.0)
    weight_decay: float = Field(default=1e-4, ge=0.0, le=1.0)
    batch_size: int = Field(default=512, ge=8, le=1_048_576)
    # loop
    max_epochs: int = Field(default=40, ge=1, le=10_000)
    patience: int = Field(default=6, ge=1, le=1000)
    lr_decay_patience: int = Field(default=2, ge=1, le=1000)
    lr_decay_factor: float = Field(default=0.5, gt=0.0, lt=1.0)
    seed: int = 42
    # model quality (see ai_factory.training.calibration for the why of each)
    # Final model: retrain on train + validation for the epoch count (and learning-rate
    # schedule) the train-only fit chose on validation; false keeps the train-only model.
    refit_on_validation: bool = True
    # Loss weights from the training rows: pos_weight (binary), balanced weights (multiclass).
    class_weights: bool = True
    # Post-hoc calibration fitted on validation; "auto": platt (binary), temperature_bias
    # (multiclass with class weights) or temperature (multiclass without).
    calibration: Literal["auto", "none", "platt", "temperature", "temperature_bias"] = "auto"
    # Binary decision threshold chosen on validation: best F1, or lowest FP + cost_ratio x FN.
    threshold_metric: Literal["f1", "cost"] = "f1"
    cost_ratio: float = Field(default=1.0, gt=0.0)
    # Regression loss on the standardised target: mse, or huber (robust to outlying targets;
    # huber_delta in target standard deviations). Searchable like any other field.
    regression_loss: Literal["mse", "huber"] = "mse"
    huber_delta: float = Field(default=1.0, gt=0.0)

    def with_overrides(self, **overrides: Any) -> TrainParams:
        """A copy with ``overrides`` applied and validated (unknown names raise :class:`ConfigError`)."""
        unknown = sorted(set(overrides) - set(type(self).model_fields))
        if unknown:
            raise ConfigError(f"unknown training parameter(s): {', '.join(unknown)}")
        try:
            return type(self).model_validate({**self.model_dump(), **overrides})
        except ValidationError as exc:
            raise ConfigError(f"invalid training parameters: {validation_problems(exc)}") from None


# -- search space ----------------------------------------------------------------------
class FloatDist(StrictModel):
    type: Literal["float"]
    low: float
    high: float
    log: bool = False
    step: float | None = None

    @model_validator(mode="after")
    def _check(self) -> FloatDist:
        if self.low > self.high:
            raise ValueError(f"low ({self.low}) is greater than high ({self.high})")
        if self.log and self.low <= 0:
            raise ValueError("a log-scaled range needs low > 0")
        if self.log and self.step is not None:
            raise ValueError("'step' cannot be combined with 'log'")
        return self


class IntDist(StrictModel):
    type: Literal["int"]
    low: int
    high: int
    log: bool = False
    step: int = 1

    @model_validator(mode="after")
    def _check(self) -> IntDist:
        if self.low > self.high:
            raise ValueError(f"low ({self.low}) is greater than high ({self.high})")
        if self.log and (self.low <= 0 or self.step != 1):
            raise ValueError("a log-scaled int range needs low > 0 and step 1")
        return self


class CategoricalDist(StrictModel):
    type: Literal["categorical"]
    choices: tuple[str | int | float | bool, ...] = Field(min_length=1)


Distribution = Annotated[FloatDist | IntDist | CategoricalDist, Field(discriminator="type")]


class SamplerConfig(StrictModel):
    # TPE is the only sampler offered: it is Optuna's default for this kind of mixed space, and
    # with ``constant_liar`` parallel workers do not all sample the same point.
    name: Literal["tpe"] = "tpe"
    n_startup_trials: int = Field(default=8, ge=0)
    multivariate: bool = True
    constant_liar: bool = True
    seed: int | None = 42


class PrunerConfig(StrictModel):
    name: Literal["median", "successive_halving", "hyperband", "none"] = "median"
    n_startup_trials: int = Field(default=4, ge=0)
    n_warmup_steps: int = Field(default=4, ge=0)
    interval_steps: int = Field(default=1, ge=1)
    min_resource: int = Field(default=3, ge=1)
    reduction_factor: int = Field(default=3, ge=2)


class HeartbeatConfig(StrictModel):
    """Workers heartbeat while a trial runs; a trial silent for ``grace_period_seconds`` is failed."""

    interval_seconds: int = Field(default=30, ge=1)
    grace_period_seconds: int = Field(default=120, ge=1)
    # A stale (killed) trial is re-queued with the same parameters this many times.
    max_retry: int = Field(default=2, ge=0)

    @model_validator(mode="after")
    def _check(self) -> HeartbeatConfig:
        if self.grace_period_seconds <= self.interval_seconds:
            raise ValueError(
                f"grace_period_seconds ({self.grace_period_seconds}) must exceed "
                f"interval_seconds ({self.interval_seconds})"
            )
        return self


class SearchSpace(StrictModel):
    """What Optuna searches over and how (sampler, pruner, heartbeat, per-trial epoch budget)."""

    trial_max_epochs: int = Field(default=20, ge=1)
    trial_patience: int = Field(default=4, ge=1)
    sampler: SamplerConfig = SamplerConfig()
    pruner: PrunerConfig = PrunerConfig()
    heartbeat: HeartbeatConfig = HeartbeatConfig()
    fixed: dict[str, Any] = Field(default_factory=dict)
    params: dict[str, Distribution] = Field(min_length=1)

    @model_validator(mode="after")
    def _check(self) -> SearchSpace:
        known = set(TrainParams.model_fields)
        for section in ("params", "fixed"):
            unknown = sorted(set(getattr(self, section)) - known)
            if unknown:
                raise ValueError(
                    f"'{section}' names unknown training parameter(s) {', '.join(unknown)}; "
                    f"known: {', '.join(sorted(known))}"
                )
        both = sorted(set(self.params) & set(self.fixed))
        if both:
            raise ValueError(f"parameter(s) {', '.join(both)} are both searched and fixed")
        # Fail now, not in trial 0, if a fixed value is out of range.
        TrainParams().with_overrides(**self.fixed)
        return self

    def base_params(self) -> TrainParams:
        """Defaults plus the ``fixed`` section plus the per-trial epoch budget."""
        return TrainParams().with_overrides(
            **{"max_epochs": self.trial_max_epochs, "patience": self.trial_patience, **self.fixed}
        )


def search_space_path(path: str | Path | None = None) -> Path:
    """The search-space file to use: an explicit path, ``$AI_FACTORY_SEARCH_SPACE`` or the packaged default."""
    if path:
        return Path(path)
    env = os.environ.get(SEARCH_SPACE_ENV)
    return Path(env) if env else DEFAULT_SEARCH_SPACE


def load_search_space(path: str | Path | None = None) -> SearchSpace:
    """Load and validate a search-space YAML file (see ``config/search_space.yaml``)."""
    return load_model(SearchSpace, search_space_path(path), what="search space", error=ConfigError)
