"""Typed drift-monitoring configuration, read from YAML (``config/drift.yaml`` by default).

Every threshold the monitor uses is a named field here; the YAML file documents them.
Unknown keys are an error, and :meth:`MonitoringConfig.check_against` names the key when
a column it refers to is not in the dataset spec.
"""

from __future__ import annotations

from enum import StrEnum
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from ai_factory.spec import DatasetSpec, TaskType


class MonitoringConfigError(ValueError):
    """The drift config file is missing, unreadable or invalid; the message names the key."""


class QualityMetric(StrEnum):
    ACCURACY = "accuracy"
    PRECISION = "precision"
    RECALL = "recall"
    F1 = "f1"
    ROC_AUC = "roc_auc"
    RMSE = "rmse"
    MAE = "mae"
    R2 = "r2"

    @property
    def higher_is_better(self) -> bool:
        return self not in (QualityMetric.RMSE, QualityMetric.MAE)

    def applies_to(self, task: TaskType) -> bool:
        if task == TaskType.REGRESSION:
            return self in (QualityMetric.RMSE, QualityMetric.MAE, QualityMetric.R2)
        if task == TaskType.MULTICLASS:
            return self in (QualityMetric.ACCURACY, QualityMetric.PRECISION, QualityMetric.RECALL, QualityMetric.F1)
        return self not in (QualityMetric.RMSE, QualityMetric.MAE, QualityMetric.R2)


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Thresholds(_Strict):
    """Per-column test thresholds; ``None`` keeps the default of the test Evidently picks."""

    numerical: float | None = Field(default=None, gt=0)
    categorical: float | None = Field(default=None, gt=0)
    per_column: dict[str, float] = Field(default_factory=dict)

    def for_column(self, name: str, kind: str) -> float | None:
        if name in self.per_column:
            return self.per_column[name]
        return self.numerical if kind == "numerical" else self.categorical


class DriftRules(_Strict):
    share_threshold: float = Field(default=0.5, gt=0, le=1)
    key_columns: tuple[str, ...] | None = None
    extra_key_columns: tuple[str, ...] = ()
    thresholds: Thresholds = Thresholds()

    def resolved_key_columns(self, spec: DatasetSpec) -> list[str]:
        base = list(self.key_columns) if self.key_columns is not None else spec.key_features
        return base + [c for c in self.extra_key_columns if c not in base]


class DegradationRule(_Strict):
    metric: QualityMetric
    max: float = Field(ge=0)
    relative: bool = False


class QualityRules(_Strict):
    min_labeled_rows: int = Field(default=200, ge=1)
    probability_threshold: float = Field(default=0.5, gt=0, lt=1)
    max_degradation: tuple[DegradationRule, ...] = (
        DegradationRule(metric=QualityMetric.ROC_AUC, max=0.03),
        DegradationRule(metric=QualityMetric.F1, max=0.08),
        DegradationRule(metric=QualityMetric.RMSE, max=0.10, relative=True),
    )

    def rules_for(self, task: TaskType) -> list[DegradationRule]:
        return [r for r in self.max_degradation if r.metric.applies_to(task)]


class ReferenceConfig(_Strict):
    provider: str | None = None
    window_days: int = Field(default=7, ge=1)
    max_rows: int = Field(default=100_000, ge=1_000)
    min_rows: int = Field(default=100, ge=1)
    seed: int = 0

    @field_validator("provider")
    @classmethod
    def _dotted(cls, value: str | None) -> str | None:
        if value is not None and (":" not in value or value.startswith(":") or value.endswith(":")):
            raise ValueError(f"{value!r} is not 'package.module:function'")
        return value


class ReportConfig(_Strict):
    # Above 1000 rows so the sampled report picks the same tests as the full data.
    max_rows: int = Field(default=20_000, ge=2_000)
    seed: int = 0


class ServingColumns(_Strict):
    prediction: str = "prediction"
    probability: str = "probability"
    model_version: str = "model_version"


class ComputeConfig(_Strict):
    max_workers: int = Field(default=2, ge=1, le=64)


class MonitoringConfig(_Strict):
    drift: DriftRules = DriftRules()
    quality: QualityRules = QualityRules()
    reference: ReferenceConfig = ReferenceConfig()
    report: ReportConfig = ReportConfig()
    serving: ServingColumns = ServingColumns()
    compute: ComputeConfig = ComputeConfig()

    def check_against(self, spec: DatasetSpec, source: str = "<drift config>") -> MonitoringConfig:
        """Raise :class:`MonitoringConfigError` when a column named here is not in the spec."""
        known = set(spec.feature_names) | {spec.target.name, self.serving.prediction, self.serving.probability}
        named: list[tuple[str, str]] = []
        named += [("drift.key_columns", c) for c in (self.drift.key_columns or ())]
        named += [("drift.extra_key_columns", c) for c in self.drift.extra_key_columns]
        named += [("drift.thresholds.per_column", c) for c in self.drift.thresholds.per_column]
        bad = [f"key '{key}': column {col!r} is not a feature, the target or a prediction column of spec "
               f"{spec.name!r}" for key, col in named if col not in known]
        if bad:
            raise MonitoringConfigError(f"{source}: " + "; ".join(bad))
        return self


def parse_config(raw: Any, source: str = "<drift config>") -> MonitoringConfig:
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise MonitoringConfigError(f"{source}: the drift config must be a YAML mapping, got {type(raw).__name__}")
    try:
        return MonitoringConfig.model_validate(raw)
    except ValidationError as exc:
        problems = []
        for err in exc.errors():
            key = ".".join(str(p) for p in err["loc"]) or "<root>"
            msg = "unknown key" if err["type"] == "extra_forbidden" else err["msg"].removeprefix("Value error, ")
            problems.append(f"key '{key}': {msg}")
        raise MonitoringConfigError(f"{source}: invalid drift config: " + "; ".join(problems)) from None


def load_config(path: str | Path | None = None) -> MonitoringConfig:
    """Load the drift config (``AI_FACTORY_DRIFT_CONFIG`` when ``path`` is not given)."""
    if path is None:
        from ai_factory.settings import get_settings

        path = get_settings().drift_config
    p = Path(path)
    try:
        text = p.read_text()
    except OSError as exc:
        raise MonitoringConfigError(f"{p}: cannot read drift config: {exc.strerror or exc}") from None
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise MonitoringConfigError(f"{p}: not valid YAML: {exc}") from None
    return parse_config(raw, source=str(p))
