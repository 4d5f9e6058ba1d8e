"""A reference model fitted in every training run: scikit-learn's HistGradientBoosting.

The trivial baseline (base rate / mean) says whether the MLP learned anything; this one says
whether it learned as much as a strong, untuned tabular model would have from the same rows.
It is fitted on exactly the rows the final MLP was trained on (train + validation after a
refit) and scored on the same holdout, and the result is recorded with the version
(``reference_baseline`` in ``evaluation.json`` and the registry metadata) and shown on the
Models page. It is a yardstick, never a served model.

Why HistGradientBoosting and not LightGBM: it ships with scikit-learn (already a
dependency), handles missing values and categories natively (``categorical_features``), and
is within noise of LightGBM on tables of this size; a second compiled dependency buys nothing.

Categories: each category/bool feature becomes its training-vocabulary index (unseen values
and nulls → missing, which HGB routes natively); a feature with more distinct training
values than HGB's 255-bin limit falls back to the ordinal index treated as numeric.
"""

from __future__ import annotations

import logging
import time
from typing import Any

import numpy as np
import pandas as pd

from ai_factory.spec import DatasetSpec, DType, TaskType
from ai_factory.training.metrics import compute_metrics, objective_for
from ai_factory.training.preprocess import _as_float, _category_strings, class_order

log = logging.getLogger(__name__)

FAMILY = "hist_gradient_boosting"
_MAX_CATEGORIES = 254  # HGB's native categorical support needs codes < max_bins (255)


class ReferenceMatrix:
    """Feature matrix for HGB with category vocabularies learned on the training rows."""

    def __init__(self, spec: DatasetSpec, train: pd.DataFrame) -> None:
        self.spec = spec
        self.vocab: dict[str, dict[str, int]] = {}
        for f in spec.features:
            if f.dtype in (DType.CATEGORY, DType.BOOL):
                values = _category_strings(train[f.name], f.dtype).dropna().unique().tolist()
                self.vocab[f.name] = {v: i for i, v in enumerate(sorted(map(str, values)))}
        self.categorical_mask = [f.name in self.vocab and len(self.vocab[f.name]) <= _MAX_CATEGORIES
                                 for f in spec.features]

    def transform(self, df: pd.DataFrame) -> np.ndarray:
        cols = []
        for f in self.spec.features:
            if f.name in self.vocab:
                ids = _category_strings(df[f.name], f.dtype).map(self.vocab[f.name])
                cols.append(pd.to_numeric(ids, errors="coerce").astype("float64").to_numpy(na_value=np.nan))
            else:
                cols.append(_as_float(df[f.name], f.name))
        return np.column_stack(cols) if cols else np.empty((len(df), 0))


def target_values(spec: DatasetSpec, df: pd.DataFrame) -> np.ndarray:
    """Regression: the raw target; classification: the class index in model-output order."""
    y = df[spec.target.name]
    if spec.target.task == TaskType.REGRESSION:
        return _as_float(y, spec.target.name)
    index = {str(c): i for i, c in enumerate(class_order(spec))}
    return y.astype(str).map(index).to_numpy(dtype="int64")


def fit_reference(spec: DatasetSpec, train: pd.DataFrame, seed: int = 0) -> tuple[Any, ReferenceMatrix, float]:
    """Fit HistGradientBoosting (library defaults, native categories) on ``train``; returns (model, matrix, s)."""
    from sklearn.ensemble import HistGradientBoostingClassifier, HistGradientBoostingRegressor

    matrix = ReferenceMatrix(spec, train)
    x = matrix.transform(train)
    y = target_values(spec, train)
    cls = HistGradientBoostingRegressor if spec.target.task == TaskType.REGRESSION else HistGradientBoostingClassifier
    model = cls(categorical_features=np.asarray(matrix.categorical_mask, dtype=bool), random_state=seed)
    t0 = time.perf_counter()
    model.fit(x, y)
    return model, matrix, time.perf_counter() - t0


def predict_reference(spec: DatasetSpec, model: Any, matrix: ReferenceMatrix, df: pd.DataFrame) -> np.ndarray:
    """Regression values, or probabilities ``[n, k]`` in model-output order (absent classes get 0)."""
    x = matrix.transform(df)
    if spec.target.task == TaskType.REGRESSION:
        return np.asarray(model.predict(x), dtype="float64")
    k = len(class_order(spec))
    proba = np.zeros((len(df), k))
    proba[:, np.asarray(model.classes_, dtype=int)] = model.predict_proba(x)
    return proba


def reference_baseline(spec: DatasetSpec, train: pd.DataFrame, evaluate_on: dict[str, pd.DataFrame], *,
                       model_metrics: dict[str, float] | None = None, seed: int = 0) -> dict[str, Any]:
    """Fit the reference on ``train``, score it on each frame of ``evaluate_on`` (``holdout`` → ``metrics``).

    With ``model_metrics`` (the MLP's holdout metrics) the result also holds a ``comparison``
    on the task's objective metric. A training set the reference cannot fit (e.g. one class
    only) gives ``{"family", "error"}`` instead of failing the run: it is a yardstick.
    """
    import sklearn

    task = spec.target.task
    try:
        if task != TaskType.REGRESSION and len(np.unique(target_values(spec, train))) < 2:
            # scikit-learn fits a one-class set without complaint but predicts nonsense shapes.
            raise ValueError("the training rows hold a single class")
        model, matrix, seconds = fit_reference(spec, train, seed)
    except ValueError as exc:
        log.warning("reference %s could not be fitted on %d rows: %s", FAMILY, len(train), exc)
        return {"family": FAMILY, "error": str(exc)}
    out: dict[str, Any] = {"family": FAMILY, "library": f"scikit-learn {sklearn.__version__}",
                           "fit_seconds": round(seconds, 3), "rows": len(train),
                           "iterations": int(getattr(model, "n_iter_", 0))}
    for name, df in evaluate_on.items():
        metrics = compute_metrics(task, target_values(spec, df), predict_reference(spec, model, matrix, df))
        out["metrics" if name == "holdout" else f"{name}_metrics"] = metrics
    if model_metrics is not None and "metrics" in out:
        objective = objective_for(task)
        m, r = model_metrics.get(objective.metric), out["metrics"].get(objective.metric)
        if m is not None and r is not None:
            out["comparison"] = {"metric": objective.metric, "model": m, "reference": r, "delta": m - r,
                                 "model_better_or_equal": not objective.better(r, m)}
            log.info("holdout %s: MLP %.5f vs %s %.5f (fitted in %.1fs on %s rows)", objective.metric, m, FAMILY,
                     r, seconds, f"{len(train):,}")
    return out
