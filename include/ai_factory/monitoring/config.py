"""Typed drift-monitoring configuration, read from YAML (``config/drift.yaml`` by default).

Every threshold the monitor uses is a named field here; the YAML file documents them.
Unknown keys are an error, and :meth:`MonitoringConfig.check_against` names the key when
a column it refers to is not in the dataset spec.
"""

from __future__ import annotations

from enum import StrEnum
from pathlib import Path
from typing import Any

from pydantic import Field, field_validator

from ai_factory.configfile import StrictModel, read_yaml, validate
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


class Thresholds(StrictModel):
    """Per-column test thresholds; ``None`` keeps the default of the test Evidently picks."""

    numerical: float | None = Field(default=None, gt=0)
    categorical: float | None = Field(default=None, gt=0)
    per_column: dict[str, float] = Field(default_factory=dict)

    def for_column(self, name: str, kind: str) -> float | None:
        if name in self.per_column:
            return self.per_column[name]
        return self.numerical if kind == "numerical" else self.categorical


class DriftRules(StrictModel):
    share_threshold: float = Field(default=0.5, gt=0, le=1)
    key_columns: tuple[str, ...] | None = None
    extra_key_columns: tuple[str, ...] = ()
    thresholds: Thresholds = Thresholds()

    def resolved_key_columns(self, spec: DatasetSpec) -> list[str]:
        base = list(self.key_columns) if self.key_columns is not None else spec.key_features
        return base + [c for c in self.extra_key_columns if c not in base]


class DegradationRule(StrictModel):
    metric: QualityMetric
    max: float = Field(ge=0)
    relative: bool = False


class QualityRules(StrictModel):
    min_labeled_rows: int = Field(default=200, ge=1)
    probability_threshold: float = Field(default=0.5, gt=0, lt=1)
    max_degradation: tuple[DegradationRule, ...] = (
        DegradationRule(metric=QualityMetric.ROC_AUC, max=0.03),
        DegradationRule(metric=QualityMetric.F1, max=0.08),
        DegradationRule(metric=QualityMetric.RMSE, max=0.10, relative=True),
    )

    def rules_for(self, task: TaskType) -> list[DegradationRule]:
        return [r for r in self.max_degradation if r.metric.applies_to(task)]


class ReferenceConfig(StrictModel):
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


class ReportConfig(StrictModel):
    # Above 1000 rows so the sampled report picks the same tests as the full data.
    max_rows: int = Field(default=20_000, ge=2_000)
    seed: int = 0


class ServingColumns(StrictModel):
    prediction: str = "prediction"
    probability: str = "probability"
    model_version: str = "model_version"


class ComputeConfig(StrictModel):
    max_workers: int = Field(default=2, ge=1, le=64)


class MonitoringConfig(StrictModel):
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
    return validate(MonitoringConfig, raw, source=source, what="drift config", error=MonitoringConfigError)


def load_config(path: str | Path | None = None) -> MonitoringConfig:
    """Load the drift config (``AI_FACTORY_DRIFT_CONFIG`` when ``path`` is not given)."""
    if path is None:
        from ai_factory.settings import get_settings

        path = get_settings().drift_config
    return parse_config(read_yaml(path, what="drift config", error=MonitoringConfigError), source=str(path))
