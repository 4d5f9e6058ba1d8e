"""Evaluation metrics per task type, the tuning objective, and a trivial baseline to beat.

* binary: ``roc_auc`` (objective, maximise), ``log_loss``, ``accuracy`` and ``f1`` at a 0.5
  threshold, ``ece`` (expected calibration error, 15 equal-width bins), ``brier``,
  ``average_precision``, ``positive_rate``; ``f1_at_threshold``, ``precision_at_threshold``
  and ``recall_at_threshold`` at the model's decision threshold (0.5 when it has none).
* multiclass: ``log_loss`` (objective, minimise), ``accuracy``, ``macro_f1``,
  ``roc_auc_ovr`` (macro one-vs-rest), ``ece`` on the top-class confidence.
* regression: ``rmse`` (objective, minimise), ``mae``, ``r2``.

The baseline predicts the training prior (class frequencies) or the training mean; a model
that does not beat it has learned nothing.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
from sklearn import metrics as skm

from ai_factory.spec import TaskType

ECE_BINS = 15
_EPS = 1e-7


@dataclass(frozen=True)
class Objective:
    metric: str
    direction: Literal["maximize", "minimize"]

    def better(self, candidate: float, incumbent: float | None) -> bool:
        if incumbent is None or np.isnan(incumbent):
            return not np.isnan(candidate)
        return candidate > incumbent if self.direction == "maximize" else candidate < incumbent


def objective_for(task: TaskType | str) -> Objective:
    task = TaskType(task)
    if task == TaskType.BINARY:
        return Objective("roc_auc", "maximize")
    if task == TaskType.MULTICLASS:
        return Objective("log_loss", "minimize")
    return Objective("rmse", "minimize")


def expected_calibration_error(y_true: np.ndarray, confidence: np.ndarray, correct: np.ndarray | None = None,
                               n_bins: int = ECE_BINS) -> float:
    """Weighted mean |accuracy − confidence| over equal-width confidence bins.

    For binary models pass ``confidence = P(positive)`` and leave ``correct`` unset (the
    "accuracy" of a bin is then its positive rate); for multiclass pass the top-class
    probability and whether the top class was right.
    """
    outcome = (y_true if correct is None else correct).astype("float64")
    bins = np.minimum((confidence * n_bins).astype(int), n_bins - 1)
    total = len(confidence)
    if total == 0:
        return float("nan")
    ece = 0.0
    for b in range(n_bins):
        mask = bins == b
        if mask.any():
            ece += mask.sum() / total * abs(outcome[mask].mean() - confidence[mask].mean())
    return float(ece)


def binary_metrics(y_true: np.ndarray, p_pos: np.ndarray, threshold: float = 0.5) -> dict[str, float]:
    y_true = np.asarray(y_true).astype(int)
    raw = np.asarray(p_pos, dtype="float64")
    p = np.clip(raw, _EPS, 1 - _EPS)
    pred = (p >= 0.5).astype(int)
    at = (raw >= threshold).astype(int)
    both = len(np.unique(y_true)) == 2
    return {
        "roc_auc": float(skm.roc_auc_score(y_true, p)) if both else float("nan"),
        "average_precision": float(skm.average_precision_score(y_true, p)) if both else float("nan"),
        "log_loss": float(skm.log_loss(y_true, p, labels=[0, 1])),
        "accuracy": float(skm.accuracy_score(y_true, pred)),
        "f1": float(skm.f1_score(y_true, pred, zero_division=0.0)),
        "brier": float(np.mean((p - y_true) ** 2)),
        "ece": expected_calibration_error(y_true, p),
        "positive_rate": float(y_true.mean()),
        "f1_at_threshold": float(skm.f1_score(y_true, at, zero_division=0.0)),
        "precision_at_threshold": float(skm.precision_score(y_true, at, zero_division=0.0)),
        "recall_at_threshold": float(skm.recall_score(y_true, at, zero_division=0.0)),
    }


def multiclass_metrics(y_true: np.ndarray, proba: np.ndarray) -> dict[str, float]:
    y_true = np.asarray(y_true).astype(int)
    k = proba.shape[1]
    proba = np.clip(proba.astype("float64"), _EPS, 1.0)
    proba = proba / proba.sum(axis=1, keepdims=True)
    pred = proba.argmax(axis=1)
    present = np.unique(y_true)
    try:
        auc = float(skm.roc_auc_score(y_true, proba, multi_class="ovr", average="macro", labels=list(range(k))))
    except ValueError:
        # Undefined when the evaluation set lacks some class; report NaN rather than guess.
        auc = float("nan")
    return {
        "log_loss": float(skm.log_loss(y_true, proba, labels=list(range(k)))),
        "accuracy": float(skm.accuracy_score(y_true, pred)),
        "macro_f1": float(skm.f1_score(y_true, pred, average="macro", labels=present, zero_division=0.0)),
        "roc_auc_ovr": auc,
        "ece": expected_calibration_error(y_true, proba.max(axis=1), correct=(pred == y_true)),
    }


def regression_metrics(y_true: np.ndarray, y_pred: np.ndarray) -> dict[str, float]:
    y_true = np.asarray(y_true, dtype="float64")
    y_pred = np.asarray(y_pred, dtype="float64")
    return {
        "rmse": float(np.sqrt(np.mean((y_true - y_pred) ** 2))),
        "mae": float(np.mean(np.abs(y_true - y_pred))),
        "r2": float(skm.r2_score(y_true, y_pred)) if len(y_true) > 1 else float("nan"),
    }


def compute_metrics(task: TaskType | str, y_true: np.ndarray, predictions: np.ndarray,
                    threshold: float | None = None) -> dict[str, float]:
    """Metrics for ``task``. ``predictions``: class probabilities ``[n, k]`` or regression values ``[n]``.

    ``threshold``: the binary decision threshold for the ``*_at_threshold`` metrics (default 0.5).
    """
    task = TaskType(task)
    if len(y_true) == 0:
        raise ValueError("cannot compute metrics on an empty evaluation set")
    if task == TaskType.BINARY:
        return binary_metrics(y_true, predictions[:, 1] if predictions.ndim == 2 else predictions,
                              0.5 if threshold is None else threshold)
    if task == TaskType.MULTICLASS:
        return multiclass_metrics(y_true, predictions)
    return regression_metrics(y_true, predictions)


def baseline_metrics(task: TaskType | str, y_train: np.ndarray, y_eval: np.ndarray, n_classes: int = 2) -> dict[str, float]:
    """Metrics of a model that ignores the features and predicts the training prior / mean."""
    task = TaskType(task)
    if task == TaskType.REGRESSION:
        return prior_metrics(task, [float(np.mean(y_train))], y_eval)
    prior = np.bincount(np.asarray(y_train).astype(int), minlength=n_classes) / max(len(y_train), 1)
    return prior_metrics(task, prior.tolist(), y_eval)


def prior_metrics(task: TaskType | str, prior: list[float], y_eval: np.ndarray) -> dict[str, float]:
    """Metrics of the trivial model: class ``prior`` for every row, or ``[mean]`` for regression."""
    task = TaskType(task)
    n = len(y_eval)
    if task == TaskType.REGRESSION:
        return regression_metrics(y_eval, np.full(n, float(prior[0])))
    return compute_metrics(task, y_eval, np.tile(np.asarray(prior, dtype="float64"), (n, 1)))
