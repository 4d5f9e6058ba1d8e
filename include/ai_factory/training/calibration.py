"""Post-hoc calibration, the decision threshold and class-imbalance loss weights.

Choices (and why):

* **Where it is fitted.** On the *validation* predictions of the model trained on the
  train split only (the selection fit in :func:`ai_factory.training.steps.fit`), then
  applied unchanged to the final model, which also trains on the validation rows. A
  calibrator fitted on rows the final model has seen would learn its in-sample
  over-confidence, and there are no other unseen rows before the gate's holdout (which must
  stay untouched). The final model is trained with the same recipe (parameters, epoch count,
  learning-rate schedule) on ~1/N more rows, so the selection fit's miscalibration is the
  best available estimate of the final model's. The holdout ECE recorded at evaluation (and
  checked by the gate) is what tells whether that held.
* **Binary: Platt scaling** (``sigmoid(a·z + b)`` on the logit ``z``). Temperature alone
  (``z / T``) cannot undo the intercept shift that ``pos_weight`` puts into an imbalanced
  model (log of the weight), a bias term can; two parameters fit well on a few hundred
  validation rows. ``temperature`` is available for balanced data.
* **Multiclass: temperature** (``z / T``, one parameter, keeps the argmax), or
  ``temperature_bias`` (``z / T + b_k``), the default when class weights are on: the same
  intercept argument as above, one bias per class.
* **Decision threshold** (binary): chosen on the calibrated validation probabilities for the
  metric the training config names: ``f1`` (default) or ``cost`` (minimise
  ``FP + cost_ratio · FN``: ``cost_ratio`` = cost of a missed positive / cost of a false
  alarm). Served beside the probability; the predicted label uses it.
* **Loss weights** from the training rows: ``pos_weight = n_negative / n_positive`` for binary,
  balanced class weights ``n / (k · n_class)`` for multiclass (``class_weights: false`` turns
  them off). They move the decision boundary towards the rare class while training; the
  calibrator takes the resulting probability shift back out.

Everything is plain JSON (``calibration.json`` beside ``model.pt``): no pickles, so a model
directory still loads with ``torch.load(..., weights_only=True)`` and ``json``.
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import torch

from ai_factory.spec import TaskType

log = logging.getLogger(__name__)

CALIBRATION_FILE = "calibration.json"
CALIBRATION_FORMAT = 1
METHODS = ("none", "platt", "temperature", "temperature_bias")
RELIABILITY_BINS = 10
# Loss weights are capped so a class with a handful of rows cannot dominate every batch.
MAX_CLASS_WEIGHT = 100.0
_LBFGS_STEPS = 200


class CalibrationError(ValueError):
    """A calibration file is malformed; the message names the file and the key."""


@dataclass(frozen=True)
class Calibration:
    """Logit transform ``scale · z + bias`` plus the decision threshold and the training prior."""

    method: str = "none"
    scale: float = 1.0
    bias: list[float] = field(default_factory=list)
    threshold: float | None = None
    threshold_metric: str | None = None
    cost_ratio: float | None = None
    prior: list[float] = field(default_factory=list)
    validation: dict[str, Any] = field(default_factory=dict)

    def apply(self, logits: torch.Tensor) -> torch.Tensor:
        """Calibrated logits (same shape); the identity for ``method: none``."""
        if self.method == "none":
            return logits
        out = logits * self.scale
        if self.bias:
            out = out + torch.as_tensor(self.bias if logits.ndim == 2 else self.bias[0], dtype=out.dtype)
        return out

    def to_dict(self) -> dict[str, Any]:
        return {"format": CALIBRATION_FORMAT, **asdict(self)}

    @classmethod
    def from_dict(cls, payload: dict[str, Any], source: str = "calibration") -> Calibration:
        if payload.get("format") != CALIBRATION_FORMAT:
            raise CalibrationError(f"{source}: key 'format' is {payload.get('format')!r}, expected "
                                   f"{CALIBRATION_FORMAT}; re-train the model or fix the file")
        body = {k: v for k, v in payload.items() if k != "format"}
        unknown = sorted(set(body) - set(cls.__dataclass_fields__))
        if unknown:
            raise CalibrationError(f"{source}: unknown key(s) {', '.join(unknown)}")
        if body.get("method", "none") not in METHODS:
            raise CalibrationError(f"{source}: key 'method' is {body.get('method')!r}; known: {', '.join(METHODS)}")
        return cls(**body)


# -- loss weights ------------------------------------------------------------------------------
def class_prior(task: TaskType | str, y: np.ndarray, n_classes: int) -> list[float]:
    """Class frequencies of ``y`` (class indices); empty for regression."""
    if TaskType(task) == TaskType.REGRESSION or len(y) == 0:
        return []
    counts = np.bincount(np.asarray(y).astype(int), minlength=n_classes).astype("float64")
    return (counts / counts.sum()).tolist()


def loss_weights(task: TaskType | str, y: torch.Tensor, n_classes: int) -> torch.Tensor | None:
    """``pos_weight`` (binary, shape ``[1]``) or balanced class weights (multiclass) from training targets."""
    task = TaskType(task)
    if task == TaskType.REGRESSION or len(y) == 0:
        return None
    counts = torch.bincount(y.long().cpu(), minlength=max(n_classes, 2)).double()
    if task == TaskType.BINARY:
        neg, pos = float(counts[0]), float(counts[1])
        if pos == 0 or neg == 0:
            return None
        return torch.tensor([min(neg / pos, MAX_CLASS_WEIGHT)], dtype=torch.float32)
    present = counts > 0
    weights = torch.ones_like(counts)
    weights[present] = counts.sum() / (present.sum() * counts[present])
    return weights.clamp(max=MAX_CLASS_WEIGHT).float()


# -- fitting ---------------------------------------------------------------------------------------
def default_method(task: TaskType | str, class_weighted: bool) -> str:
    task = TaskType(task)
    if task == TaskType.BINARY:
        return "platt"
    if task == TaskType.MULTICLASS:
        return "temperature_bias" if class_weighted else "temperature"
    return "none"


def fit_transform(task: TaskType | str, logits: torch.Tensor, y: torch.Tensor, method: str) -> tuple[float, list[float]]:
    """``(scale, bias)`` minimising the log-loss of ``scale · logits + bias`` on ``y`` (L-BFGS)."""
    task = TaskType(task)
    z = logits.detach().double().cpu()
    target = y.detach().cpu()
    log_scale = torch.zeros(1, dtype=torch.float64, requires_grad=True)
    n_bias = 0 if method == "temperature" else (1 if task == TaskType.BINARY else z.shape[1])
    bias = torch.zeros(n_bias, dtype=torch.float64, requires_grad=True)
    # Platt's slope is unconstrained in principle, but a negative slope means the model ranks
    # backwards; keeping it positive (log-parametrised) keeps the calibrator monotone.
    params = [log_scale] + ([bias] if n_bias else [])
    opt = torch.optim.LBFGS(params, lr=0.5, max_iter=_LBFGS_STEPS, line_search_fn="strong_wolfe")
    if task == TaskType.BINARY:
        loss_fn: Any = torch.nn.BCEWithLogitsLoss()
        target = target.double()
    else:
        loss_fn = torch.nn.CrossEntropyLoss()
        target = target.long()

    def closure() -> torch.Tensor:
        opt.zero_grad()
        out = z * log_scale.exp() + (bias if n_bias else 0.0)
        loss = loss_fn(out, target)
        loss.backward()
        return loss

    opt.step(closure)
    scale = float(log_scale.exp().item())
    b = [float(v) for v in bias.detach().tolist()] if n_bias else []
    if not np.isfinite(scale) or not all(np.isfinite(b)):
        log.warning("calibration fit diverged (scale=%s, bias=%s); keeping the model's own probabilities", scale, b)
        return 1.0, []
    return scale, b


def choose_threshold(y: np.ndarray, p: np.ndarray, metric: str = "f1", cost_ratio: float = 1.0) -> tuple[float, float]:
    """``(threshold, value)``: predict positive when ``p >= threshold``; best ``f1`` or lowest cost per row."""
    y = np.asarray(y).astype(int)
    p = np.asarray(p, dtype="float64")
    order = np.argsort(-p, kind="stable")
    ps, ys = p[order], y[order]
    tp = np.cumsum(ys)
    fp = np.cumsum(1 - ys)
    n_pos = int(ys.sum())
    # Only cut between distinct scores: rows with equal p always get the same label.
    last = np.r_[ps[1:] != ps[:-1], True]
    tp, fp, cut_p = tp[last], fp[last], ps[last]
    fn = n_pos - tp
    if metric == "f1":
        denom = 2 * tp + fp + fn
        values = np.where(denom > 0, 2 * tp / np.maximum(denom, 1), 0.0)
        best = int(np.argmax(values))
        value = float(values[best])
    elif metric == "cost":
        cost = (fp + cost_ratio * fn) / max(len(y), 1)
        # Predicting nothing positive is a candidate too (threshold above every score).
        none_cost = cost_ratio * n_pos / max(len(y), 1)
        best = int(np.argmin(cost))
        if none_cost < cost[best]:
            return float(np.nextafter(ps[0], np.inf)) if len(ps) else 0.5, float(none_cost)
        value = float(cost[best])
    else:
        raise ValueError(f"unknown threshold metric {metric!r}; known: f1, cost")
    return float(cut_p[best]), value


def fit_calibration(task: TaskType | str, logits: torch.Tensor, y: torch.Tensor, *, method: str,
                    threshold_metric: str, cost_ratio: float, prior: list[float]) -> Calibration:
    """Fit the calibrator and (binary) the decision threshold on validation logits; log before/after."""
    from ai_factory.training.metrics import compute_metrics
    from ai_factory.training.model import outputs_to_predictions

    task = TaskType(task)
    if task == TaskType.REGRESSION:
        return Calibration(method="none", prior=prior)
    y_np = y.cpu().numpy()
    before = compute_metrics(task, y_np, outputs_to_predictions(task, logits).numpy())
    scale, bias = fit_transform(task, logits, y, method) if method != "none" else (1.0, [])
    cal = Calibration(method=method, scale=scale, bias=bias, prior=prior)
    proba = outputs_to_predictions(task, cal.apply(logits.float())).numpy()
    after = compute_metrics(task, y_np, proba)
    validation: dict[str, Any] = {
        "rows": len(y_np),
        "ece_before": before["ece"], "ece_after": after["ece"],
        "log_loss_before": before["log_loss"], "log_loss_after": after["log_loss"],
    }
    threshold = None
    if task == TaskType.BINARY:
        threshold, value = choose_threshold(y_np, proba[:, 1], threshold_metric, cost_ratio)
        validation[f"{threshold_metric}_at_threshold"] = value
        validation["f1_at_0.5"] = after["f1"]
    log.info("calibration (%s, scale=%.4f, bias=%s) on %d validation rows: ECE %.4f -> %.4f, log-loss %.4f -> %.4f%s",
             method, scale, [round(b, 4) for b in bias], len(y_np), before["ece"], after["ece"], before["log_loss"],
             after["log_loss"], "" if threshold is None else f"; threshold {threshold:.4f} for {threshold_metric}")
    return Calibration(method=method, scale=scale, bias=bias, threshold=threshold,
                       threshold_metric=threshold_metric if threshold is not None else None,
                       cost_ratio=cost_ratio if threshold_metric == "cost" and threshold is not None else None,
                       prior=prior, validation=validation)


# -- reporting ------------------------------------------------------------------------------------
def reliability_diagram(y: np.ndarray, confidence: np.ndarray, correct: np.ndarray | None = None,
                        n_bins: int = RELIABILITY_BINS) -> dict[str, Any]:
    """Equal-width bins of predicted probability: mean predicted, observed rate and row count per bin.

    Binary: ``confidence = P(positive)``, observed = positive rate. Multiclass: the top-class
    probability and whether the top class was right. Empty bins are left out.
    """
    outcome = np.asarray(y if correct is None else correct, dtype="float64")
    conf = np.asarray(confidence, dtype="float64")
    idx = np.minimum((conf * n_bins).astype(int), n_bins - 1)
    bins = []
    for b in range(n_bins):
        mask = idx == b
        if mask.any():
            bins.append({"lower": b / n_bins, "upper": (b + 1) / n_bins, "count": int(mask.sum()),
                         "mean_predicted": float(conf[mask].mean()), "observed": float(outcome[mask].mean())})
    return {"n_bins": n_bins, "bins": bins}
