"""Turn a spec'd DataFrame into model inputs, with every statistic learned on the training split.

Choices (and why):

* **Numeric features** are mapped through their training quantiles onto a standard normal
  (``numeric_transform: quantile``, the default). Income, loan amounts and balances are
  heavy-tailed; an MLP trains faster and generalises better on Gaussianised inputs, and
  the mapping is monotone so no information is lost. ``standard`` (z-score, clipped at ±5
  standard deviations) is the alternative. Missing values are filled with the training median and,
  for features the spec marks ``nullable``, a 0/1 "was missing" column is added so the
  model can learn that missingness itself carries signal.
* **Categorical and bool features** become integer ids for embeddings. Id 0 is the
  out-of-vocabulary slot: categories never seen in training (even if the spec allows them)
  and nulls map there, so serving never crashes on a new value and an untrained embedding
  row is never used.
* **Targets**: class labels map to indices in the spec's ``classes`` order (for binary
  targets the spec's ``positive_class`` is index 1, so the sigmoid is P(positive)); regression
  targets are standardised with the training mean/std (undone at prediction time).

All statistics serialise to plain JSON (:meth:`Preprocessor.to_dict`), stored with the
model and in the registry metadata, so a model version carries its own preprocessing.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import pandas as pd
from scipy.special import ndtri

from ai_factory.spec import DatasetSpec, DType, TaskType

log = logging.getLogger(__name__)

N_QUANTILES = 128
_P_EPS = 1e-4  # keep the quantile map away from ±inf
_STD_CLIP = 5.0


class InputError(ValueError):
    """A frame handed to the model is missing columns or holds values that cannot be used."""


@dataclass(frozen=True)
class NumericStats:
    name: str
    fill: float
    mean: float
    std: float
    missing_indicator: bool
    # Strictly increasing knots and the cumulative probability at each (ties collapsed).
    knots: list[float]
    probs: list[float]


@dataclass(frozen=True)
class CategoricalStats:
    name: str
    # Index i+1 in the embedding is vocab[i]; index 0 is out-of-vocabulary / missing.
    vocab: list[str]

    @property
    def cardinality(self) -> int:
        return len(self.vocab) + 1


def _as_float(series: pd.Series, name: str) -> np.ndarray:
    try:
        return pd.to_numeric(series, errors="raise").astype("float64").to_numpy(na_value=np.nan)
    except (ValueError, TypeError) as exc:
        bad = series[pd.to_numeric(series, errors="coerce").isna() & series.notna()]
        sample = ", ".join(repr(v) for v in bad.head(3).tolist())
        raise InputError(f"column '{name}' must be numeric; found values like {sample}") from exc


def _category_strings(series: pd.Series, dtype: DType) -> pd.Series:
    """Category values as strings; bools normalised to 'true'/'false' whatever their storage."""
    if dtype == DType.BOOL:
        # True/False also match 1/0 (equal hashes), so integer-coded bools map too.
        return series.map(lambda v: _BOOL_STRINGS.get(v) if not pd.isna(v) else None)
    return series.astype("string")



class _NotFast(Exception):
    """A value the pandas-free path would not coerce exactly like pandas; the DataFrame path takes over."""


# Value types the fast path converts exactly as ``pd.to_numeric(...).astype("float64")`` does
# (bool is excluded: it is an int subclass, and the schema never lets one into a numeric field).
_NUMERIC_TYPES = (int, float, np.integer, np.floating)
_BOOL_STRINGS = {True: "true", False: "false", "true": "true", "false": "false", "True": "true", "False": "false"}


def _record_columns(records: Sequence[Any], names: list[str]) -> dict[str, list[Any]]:
    try:
        if all(isinstance(r, Mapping) for r in records):
            return {n: [r[n] for r in records] for n in names}
        return {n: [getattr(r, n) for r in records] for n in names}
    except (KeyError, AttributeError):
        raise _NotFast from None


def _fast_float(values: list[Any]) -> np.ndarray:
    for t in set(map(type, values)):
        if t is not type(None) and (not issubclass(t, _NUMERIC_TYPES) or issubclass(t, bool | np.bool_)):
            raise _NotFast
    # None becomes NaN under dtype float64, as pandas' missing value does.
    return np.array(values, dtype="float64")


def _fast_category_ids(values: list[Any], dtype: DType, index: dict[str, int]) -> np.ndarray:
    if dtype == DType.BOOL:
        try:
            # Same table as _category_strings; NaN and None miss it and land in the OOV slot.
            keys = [_BOOL_STRINGS.get(v) for v in values]
        except TypeError:  # unhashable
            raise _NotFast from None
    else:
        if not set(map(type, values)) <= {str, type(None)}:
            raise _NotFast
        keys = values
    return np.array([index.get(k, 0) if k is not None else 0 for k in keys], dtype="int64")


def _quantile_knots(values: np.ndarray) -> tuple[list[float], list[float]]:
    levels = np.linspace(0.0, 1.0, N_QUANTILES)
    q = np.quantile(values, levels)
    # Discrete features repeat knots; give each distinct value the mean level of its copies so
    # np.interp sees a strictly increasing table.
    knots, inverse = np.unique(q, return_inverse=True)
    probs = np.bincount(inverse, weights=levels) / np.bincount(inverse)
    return knots.tolist(), probs.tolist()


class Preprocessor:
    """Fitted feature/target transforms for one dataset spec."""

    def __init__(
        self,
        spec: DatasetSpec,
        numeric: list[NumericStats],
        categorical: list[CategoricalStats],
        numeric_transform: str,
        target_mean: float = 0.0,
        target_std: float = 1.0,
    ) -> None:
        if numeric_transform not in ("quantile", "standard"):
            raise ValueError(f"numeric_transform must be 'quantile' or 'standard', got {numeric_transform!r}")
        self.spec = spec
        self.numeric = numeric
        self.categorical = categorical
        self.numeric_transform = numeric_transform
        self.target_mean = target_mean
        self.target_std = target_std
        self.classes = class_order(spec)
        self._class_index = {c: i for i, c in enumerate(self.classes)}
        self._class_index_str = {str(c): i for i, c in enumerate(self.classes)}
        # Lookup tables for the transforms, built once per model instead of once per call.
        self._fill = np.array([s.fill for s in numeric], dtype="float64")
        self._mean = np.array([s.mean for s in numeric], dtype="float64")
        self._std = np.array([s.std for s in numeric], dtype="float64")
        self._indicator = np.array([s.missing_indicator for s in numeric], dtype=bool)
        self._knots = [(np.asarray(s.knots, dtype="float64"), np.asarray(s.probs, dtype="float64")) for s in numeric]
        self._cat_dtypes = [spec.feature(c.name).dtype for c in categorical]
        self._cat_index = [{v: i + 1 for i, v in enumerate(c.vocab)} for c in categorical]

    # -- fitting -------------------------------------------------------------------------
    @classmethod
    def fit(cls, spec: DatasetSpec, df: pd.DataFrame, numeric_transform: str = "quantile") -> Preprocessor:
        """Learn the statistics from the training frame ``df``."""
        if df.empty:
            raise InputError("cannot fit preprocessing on an empty training frame")
        check_columns(spec, df, need_target=True)
        numeric: list[NumericStats] = []
        for f in spec.numeric_features:
            values = _as_float(df[f.name], f.name)
            present = values[~np.isnan(values)]
            if present.size == 0:
                raise InputError(f"numeric feature '{f.name}' is entirely null in the training data")
            std = float(present.std())
            knots, probs = _quantile_knots(present)
            numeric.append(NumericStats(
                name=f.name, fill=float(np.median(present)), mean=float(present.mean()),
                std=std if std > 1e-12 else 1.0, missing_indicator=f.nullable, knots=knots, probs=probs,
            ))
        categorical: list[CategoricalStats] = []
        for f in spec.categorical_features:
            seen = set(_category_strings(df[f.name], f.dtype).dropna().unique().tolist())
            allowed = list(f.categories or ()) if f.dtype == DType.CATEGORY else ["false", "true"]
            vocab = [c for c in allowed if c in seen]
            categorical.append(CategoricalStats(name=f.name, vocab=vocab))
        target_mean, target_std = 0.0, 1.0
        if spec.target.task == TaskType.REGRESSION:
            y = _as_float(df[spec.target.name], spec.target.name)
            target_mean, target_std = float(np.nanmean(y)), float(np.nanstd(y)) or 1.0
        return cls(spec, numeric, categorical, numeric_transform, target_mean, target_std)

    # -- shapes ----------------------------------------------------------------------------
    @property
    def n_numeric_inputs(self) -> int:
        return len(self.numeric) + sum(s.missing_indicator for s in self.numeric)

    @property
    def cardinalities(self) -> list[int]:
        return [c.cardinality for c in self.categorical]

    @property
    def output_dim(self) -> int:
        task = self.spec.target.task
        if task == TaskType.MULTICLASS:
            return len(self.spec.target.classes or ())
        return 1

    # -- transforms ------------------------------------------------------------------------
    def transform_features(self, df: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
        """``(x_num float32 [n, n_numeric_inputs], x_cat int64 [n, n_categorical])``."""
        check_columns(self.spec, df, need_target=False)
        numeric = [_as_float(df[s.name], s.name) for s in self.numeric]
        cats = []
        for c, dtype, index in zip(self.categorical, self._cat_dtypes, self._cat_index, strict=True):
            cats.append(_category_strings(df[c.name], dtype).map(index).fillna(0).astype("int64").to_numpy())
        return self._assemble(len(df), numeric, cats)

    def transform_records(self, records: Sequence[Any]) -> tuple[np.ndarray, np.ndarray]:
        """:meth:`transform_features` for a list of records (dicts or pydantic models), without pandas.

        The serving path: building a DataFrame costs milliseconds per call, the arithmetic
        microseconds. Returns exactly what ``transform_features(DataFrame.from_records(records))``
        returns (the numeric maths is the same code); any value whose pandas coercion the fast path
        does not reproduce (a string in a numeric column, a number in a category column, a missing
        key) sends the whole call through the DataFrame path, so errors and edge cases are the
        pandas path's own.
        """
        names = self.spec.feature_names
        try:
            columns = _record_columns(records, names)
            return self._transform_columns(columns, len(records))
        except _NotFast:
            rows = [r if isinstance(r, Mapping) else r.model_dump() for r in records]
            return self.transform_features(pd.DataFrame.from_records(rows) if rows else pd.DataFrame(columns=names))

    def transform_array(self, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """:meth:`transform_records` for an object array ``[n, features]`` in spec column order."""
        names = self.spec.feature_names
        if rows.ndim != 2 or rows.shape[1] != len(names):
            raise InputError(f"expected an array of shape [n, {len(names)}] in spec column order, got {rows.shape}")
        try:
            return self._transform_columns({n: rows[:, j].tolist() for j, n in enumerate(names)}, len(rows))
        except _NotFast:
            return self.transform_features(pd.DataFrame(rows, columns=names))

    def _transform_columns(self, columns: dict[str, list[Any]], n: int) -> tuple[np.ndarray, np.ndarray]:
        numeric = [_fast_float(columns[s.name]) for s in self.numeric]
        cats = []
        for c, dtype, index in zip(self.categorical, self._cat_dtypes, self._cat_index, strict=True):
            cats.append(_fast_category_ids(columns[c.name], dtype, index))
        return self._assemble(n, numeric, cats)

    def _assemble(self, n: int, numeric: list[np.ndarray], cats: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
        """Shared by both paths: fill, transform and stack (elementwise NumPy, so results match bit for bit)."""
        if numeric:
            values = np.stack(numeric, axis=1)
            missing = np.isnan(values)
            if missing.any():
                for j, s in enumerate(self.numeric):
                    count = int(missing[:, j].sum())
                    if count and not s.missing_indicator:
                        log.warning("feature '%s' is not nullable but has %d null(s); filled with the training "
                                    "median", s.name, count)
                values = np.where(missing, self._fill, values)
            if self.numeric_transform == "quantile":
                p = np.empty_like(values)
                for j, (knots, probs) in enumerate(self._knots):
                    p[:, j] = np.interp(values[:, j], knots, probs) if len(knots) > 1 else 0.5
                z = ndtri(np.clip(p, _P_EPS, 1.0 - _P_EPS))
            else:
                z = np.clip((values - self._mean) / self._std, -_STD_CLIP, _STD_CLIP)
            x_num = np.concatenate([z, missing[:, self._indicator]], axis=1, dtype="float64").astype("float32")
        else:
            x_num = np.zeros((n, 0), "float32")
        if cats:
            x_cat = np.stack(cats, axis=1)
            oov = (x_cat == 0).sum(axis=0)
            for c, count in zip(self.categorical, oov.tolist(), strict=True):
                if count:
                    log.debug("feature '%s': %d value(s) out of vocabulary or null -> OOV slot", c.name, count)
        else:
            x_cat = np.zeros((n, 0), "int64")
        return x_num, x_cat

    def transform_target(self, df: pd.DataFrame) -> np.ndarray:
        """Class indices (int64) for classification, standardised float32 for regression."""
        name = self.spec.target.name
        if name not in df.columns:
            raise InputError(f"target column '{name}' is missing")
        y = df[name]
        if y.isna().any():
            raise InputError(f"target column '{name}' has {int(y.isna().sum())} null value(s)")
        if self.spec.target.task == TaskType.REGRESSION:
            return ((_as_float(y, name) - self.target_mean) / self.target_std).astype("float32")
        idx = y.map(lambda v: self._class_index.get(v, self._class_index_str.get(str(v))))
        if idx.isna().any():
            unknown = sorted({str(v) for v in y[idx.isna()].unique()})[:5]
            raise InputError(
                f"target column '{name}' has value(s) {', '.join(unknown)} not in the spec's classes "
                f"{self.classes}"
            )
        return idx.astype("int64").to_numpy()

    def inverse_target(self, values: np.ndarray) -> np.ndarray:
        return values * self.target_std + self.target_mean

    # -- persistence -----------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        return {
            "numeric_transform": self.numeric_transform,
            "numeric": [asdict(s) for s in self.numeric],
            "categorical": [asdict(c) for c in self.categorical],
            "target_mean": self.target_mean,
            "target_std": self.target_std,
        }

    @classmethod
    def from_dict(cls, spec: DatasetSpec, payload: dict[str, Any]) -> Preprocessor:
        return cls(
            spec,
            numeric=[NumericStats(**s) for s in payload["numeric"]],
            categorical=[CategoricalStats(**c) for c in payload["categorical"]],
            numeric_transform=payload["numeric_transform"],
            target_mean=float(payload["target_mean"]),
            target_std=float(payload["target_std"]),
        )


def class_order(spec: DatasetSpec) -> list[int | str]:
    """Class labels in model-output order; for binary targets the positive class is index 1."""
    classes = list(spec.target.classes or ())
    if spec.target.task == TaskType.BINARY and spec.target.positive_class is not None:
        pos = spec.target.positive_class
        classes = [c for c in classes if c != pos] + [pos]
    return classes


def check_columns(spec: DatasetSpec, df: pd.DataFrame, need_target: bool) -> None:
    """Raise :class:`InputError` naming every spec column ``df`` lacks."""
    needed = spec.feature_names + ([spec.target.name] if need_target else [])
    missing = [c for c in needed if c not in df.columns]
    if missing:
        raise InputError(f"input is missing column(s) required by spec '{spec.name}': {', '.join(missing)}")
