"""The dataset spec: one YAML file describes a tabular dataset.

The GX suite, the model's input layer, the service's request schema and the drift column
mapping are all derived from it, so a new dataset is a new spec, not new code.

Example (see ``specs/credit_default.yaml``)::

    name: credit_default
    partition: {key: ds, frequency: daily}
    target: {name: default, task: binary, classes: [0, 1]}
    features:
      - {name: age, dtype: int, min: 18, max: 100}
      - {name: home_ownership, dtype: category, categories: [rent, own, mortgage]}
    id_column: application_id        # optional: unique, non-null, never modelled
    time_column: applied_at          # optional: the row's timestamp, never modelled
    ignore: [branch_code, notes]     # optional: kept in the lake, never modelled

Every column a landing file holds is declared: the features, the target, and the
``id_column``, ``time_column`` and ``ignore`` columns, which are kept in the lake but
never reach the model's input layer, the service's request schema or the drift check.
``ai-factory spec infer`` drafts a spec from a CSV or Parquet file.
"""

from __future__ import annotations

import hashlib
import json
from enum import StrEnum
from pathlib import Path
from typing import Any

from pydantic import Field, ValidationError, field_validator, model_validator

from ai_factory.configfile import StrictModel, read_yaml, validation_problems


class SpecError(ValueError):
    """The spec file is missing, unreadable or malformed; the message names the key at fault."""


class TaskType(StrEnum):
    BINARY = "binary"
    MULTICLASS = "multiclass"
    REGRESSION = "regression"


class DType(StrEnum):
    INT = "int"
    FLOAT = "float"
    CATEGORY = "category"
    BOOL = "bool"

    @property
    def is_numeric(self) -> bool:
        return self in (DType.INT, DType.FLOAT)


def _refuse_yaml_booleans(key: str, values: Any) -> Any:
    """YAML 1.1 reads unquoted yes/no/on/off/true/false as booleans; a label list never means that.

    Unrefused, ``classes: [No, Yes]`` silently became ``(0, 1)`` and every day was quarantined
    for values 'No'/'Yes' that were "not in the set".
    """
    if isinstance(values, list | tuple) and any(isinstance(v, bool) for v in values):
        shown = ", ".join(("true" if v else "false") if isinstance(v, bool) else repr(v) for v in values)
        raise ValueError(
            f"[{shown}] holds YAML booleans (unquoted yes/no/on/off/true/false); "
            f'quote the labels as they appear in the data, e.g. {key}: ["No", "Yes"]'
        )
    return values


class Feature(StrictModel):
    name: str = Field(min_length=1, pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")
    dtype: DType
    nullable: bool = False
    min: float | None = None
    max: float | None = None
    categories: tuple[str, ...] | None = None
    description: str = ""
    # Drift on a key feature alone is enough to trigger retraining.
    key: bool = False

    @field_validator("categories", mode="before")
    @classmethod
    def _no_booleans(cls, value: Any) -> Any:
        return _refuse_yaml_booleans("categories", value)

    @model_validator(mode="after")
    def _check(self) -> Feature:
        if self.dtype == DType.CATEGORY:
            if not self.categories:
                raise ValueError("a category feature needs a non-empty 'categories' list")
            if len(set(self.categories)) != len(self.categories):
                raise ValueError("'categories' has duplicates")
            if self.min is not None or self.max is not None:
                raise ValueError("'min'/'max' apply to numeric features only")
        else:
            if self.categories is not None:
                raise ValueError("'categories' applies to category features only")
            if self.dtype == DType.BOOL and (self.min is not None or self.max is not None):
                raise ValueError("'min'/'max' apply to numeric features only")
        if self.min is not None and self.max is not None and self.min > self.max:
            raise ValueError(f"'min' ({self.min}) is greater than 'max' ({self.max})")
        return self


class Target(StrictModel):
    name: str = Field(min_length=1)
    task: TaskType
    classes: tuple[int | str, ...] | None = None
    positive_class: int | str | None = None

    @field_validator("classes", mode="before")
    @classmethod
    def _no_booleans(cls, value: Any) -> Any:
        return _refuse_yaml_booleans("classes", value)

    @field_validator("positive_class", mode="before")
    @classmethod
    def _no_boolean_positive(cls, value: Any) -> Any:
        if isinstance(value, bool):
            raise ValueError(f'{str(value).lower()} is a YAML boolean; quote the label, e.g. positive_class: "Yes"')
        return value

    @model_validator(mode="after")
    def _check(self) -> Target:
        if self.task == TaskType.REGRESSION:
            if self.classes is not None:
                raise ValueError("'classes' is not used for regression")
        else:
            if not self.classes or len(self.classes) < 2:
                raise ValueError(f"a {self.task.value} target needs 'classes' with at least 2 values")
            if self.task == TaskType.BINARY and len(self.classes) != 2:
                raise ValueError("a binary target needs exactly 2 'classes'")
            if self.positive_class is not None and self.positive_class not in self.classes:
                raise ValueError("'positive_class' must be one of 'classes'")
        return self


class Partition(StrictModel):
    key: str = "ds"
    frequency: str = Field(default="daily", pattern="^daily$")


class QualityRules(StrictModel):
    min_rows: int = Field(default=1, ge=0)
    max_rows: int | None = Field(default=None, ge=1)
    # Distribution expectations learned from a reference window get this relative slack.
    mean_tolerance: float = Field(default=0.25, ge=0)
    quantile_tolerance: float = Field(default=0.25, ge=0)
    quantiles: tuple[float, ...] = (0.05, 0.5, 0.95)


class DatasetSpec(StrictModel):
    name: str = Field(min_length=1, pattern=r"^[a-z][a-z0-9_]*$")
    description: str = ""
    version: int = 1
    partition: Partition = Partition()
    target: Target
    features: tuple[Feature, ...] = Field(min_length=1)
    id_column: str | None = Field(default=None, min_length=1)
    time_column: str | None = Field(default=None, min_length=1)
    # Columns the data holds that are never modelled (leakage, free text, raw keys): kept in
    # the lake and allowed by the quality suite, left out of training, serving and drift.
    ignore: tuple[str, ...] = ()
    quality: QualityRules = QualityRules()

    @model_validator(mode="after")
    def _check(self) -> DatasetSpec:
        names = [f.name for f in self.features]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"duplicate feature names: {', '.join(dupes)}")
        if self.target.name in names:
            raise ValueError(f"target '{self.target.name}' is also listed as a feature")
        modelled = {*names, self.target.name}
        for key, cols in (("id_column", [self.id_column]), ("time_column", [self.time_column]),
                          ("ignore", list(self.ignore))):
            clash = sorted({c for c in cols if c in modelled})
            if clash:
                raise ValueError(f"'{key}' names {', '.join(clash)}, which the spec also models "
                                 f"(a feature or the target): a column is either modelled or not")
        extra = [c for c in (self.id_column, self.time_column, *self.ignore) if c]
        dupes = sorted({c for c in extra if extra.count(c) > 1})
        if dupes:
            raise ValueError(f"{', '.join(dupes)} listed more than once among id_column, time_column and ignore")
        return self

    # -- derived views -------------------------------------------------------------
    @property
    def feature_names(self) -> list[str]:
        return [f.name for f in self.features]

    @property
    def numeric_features(self) -> list[Feature]:
        return [f for f in self.features if f.dtype.is_numeric]

    @property
    def categorical_features(self) -> list[Feature]:
        return [f for f in self.features if f.dtype in (DType.CATEGORY, DType.BOOL)]

    @property
    def key_features(self) -> list[str]:
        return [f.name for f in self.features if f.key]

    @property
    def columns(self) -> list[str]:
        """The columns training reads: features then target (then id)."""
        cols = self.feature_names + [self.target.name]
        if self.id_column:
            cols.append(self.id_column)
        return cols

    @property
    def landing_columns(self) -> list[str]:
        """Every column a landing file holds: :attr:`columns`, then the time and ignored columns."""
        return self.columns + ([self.time_column] if self.time_column else []) + list(self.ignore)

    def feature(self, name: str) -> Feature:
        for f in self.features:
            if f.name == name:
                return f
        raise KeyError(f"feature {name!r} is not in spec {self.name!r}")

    def fingerprint(self) -> str:
        """A stable hash of the spec's content (recorded with every model version)."""
        data = self.model_dump(mode="json")
        # Keys added to the spec format later are left out while unused, so a spec that does
        # not use them keeps its fingerprint (training windows and suites recorded it).
        for key, unused in (("time_column", None), ("ignore", [])):
            if data.get(key) == unused:
                data.pop(key)
        blob = json.dumps(data, sort_keys=True).encode()
        return hashlib.sha256(blob).hexdigest()[:16]


def _loc(loc: tuple[Any, ...], raw: dict[str, Any]) -> str:
    """Turn a pydantic error location into a readable key path, e.g. ``features[3] (age).max``."""
    parts: list[str] = []
    node: Any = raw
    for item in loc:
        if isinstance(item, int):
            label = f"[{item}]"
            if isinstance(node, list) and item < len(node):
                node = node[item]
                if isinstance(node, dict) and "name" in node:
                    label += f" ({node['name']})"
            parts.append(label)
        else:
            if parts:
                parts.append(".")
            parts.append(str(item))
            node = node.get(item) if isinstance(node, dict) else None
    return "".join(parts) or "<root>"


def parse_spec(raw: Any, source: str = "<spec>") -> DatasetSpec:
    """Validate a parsed mapping into a :class:`DatasetSpec`, or raise :class:`SpecError`."""
    if not isinstance(raw, dict):
        raise SpecError(f"{source}: the spec must be a YAML mapping, got {type(raw).__name__}")
    try:
        return DatasetSpec.model_validate(raw)
    except ValidationError as exc:
        problems = validation_problems(exc, key=lambda loc: _loc(loc, raw),
                                       unknown="unknown key (check its spelling and indentation)")
        raise SpecError(f"{source}: invalid dataset spec: {problems}") from None


def load_spec(path: str | Path) -> DatasetSpec:
    """Load and validate a spec file."""
    return parse_spec(read_yaml(path, what="spec file", error=SpecError), source=str(path))


def default_spec() -> DatasetSpec:
    """The spec named by settings (``AI_FACTORY_SPEC``)."""
    from ai_factory.settings import get_settings

    return load_spec(get_settings().spec_path)
