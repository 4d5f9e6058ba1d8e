"""The training loop: early stopping, seeded determinism, a checkpoint every epoch, resume.

* **Determinism.** :func:`seed_everything` seeds torch (CPU and CUDA) and asks for
  deterministic kernels; shuffling uses its own ``torch.Generator``. Same seed, data,
  parameters and thread count → the same weights and metrics, bit for bit on CPU.
* **Checkpoints.** After every epoch the full state (weights, optimiser, LR scheduler, grad
  scaler, best weights so far, early-stopping counters, history and every RNG state) is
  written atomically to ``<checkpoint_dir>/last.pt``. Everything in it is a tensor or a
  primitive, so it loads with ``torch.load(weights_only=True)``.
* **Resume.** A run that finds a checkpoint with the same fingerprint (parameters, model
  shape, data sizes) continues with the next epoch; because the RNG states are restored it
  ends with the same model an uninterrupted run would have produced. A checkpoint with a
  different fingerprint is left unused (logged) and training starts over.
* **Refit with a fixed schedule.** With ``schedule`` (one learning rate per epoch, e.g. the
  selection fit's :meth:`TrainResult.lr_schedule`) the loop runs exactly that many epochs at
  those rates, with no validation split, no early stopping and the last epoch's weights: the
  final fit on train + validation (see :func:`ai_factory.training.steps.fit`).
* **Loss weights** (``class_weights``) come from the training split's class counts
  (:func:`ai_factory.training.calibration.loss_weights`).
* **Early stopping** watches the task's objective on the validation split
  (:func:`ai_factory.training.metrics.objective_for`); the best epoch's weights are restored
  at the end. The learning rate halves when the objective plateaus.
* **Progress** is logged once per epoch (losses, objective, learning rate, rows/s), which is
  what the Airflow task log shows.
"""

from __future__ import annotations

import hashlib
import io as _io
import json
import logging
import os
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn

from ai_factory.spec import TaskType
from ai_factory.training import io
from ai_factory.training.calibration import loss_weights
from ai_factory.training.config import TrainParams
from ai_factory.training.device import DeviceConfig
from ai_factory.training.metrics import Objective, compute_metrics, objective_for
from ai_factory.training.model import TabularMLP, loss_function, outputs_to_predictions

log = logging.getLogger(__name__)

CHECKPOINT_FILE = "last.pt"
CHECKPOINT_FORMAT = 1
PREDICT_BATCH = 8192


@dataclass
class TensorSplit:
    """One split as tensors: numeric inputs, category ids, and targets."""

    x_num: torch.Tensor
    x_cat: torch.Tensor
    y: torch.Tensor

    def __len__(self) -> int:
        return int(self.y.shape[0])

    @classmethod
    def from_arrays(cls, task: TaskType | str, x_num: np.ndarray, x_cat: np.ndarray, y: np.ndarray) -> TensorSplit:
        task = TaskType(task)
        target = torch.as_tensor(y)
        target = target.long() if task == TaskType.MULTICLASS else target.float()
        return cls(torch.as_tensor(x_num, dtype=torch.float32), torch.as_tensor(x_cat, dtype=torch.long), target)

    def to(self, device: torch.device, non_blocking: bool = False) -> TensorSplit:
        return TensorSplit(*(t.to(device, non_blocking=non_blocking) for t in (self.x_num, self.x_cat, self.y)))

    def nbytes(self) -> int:
        return sum(t.element_size() * t.nelement() for t in (self.x_num, self.x_cat, self.y))


@dataclass(frozen=True)
class EpochStats:
    epoch: int
    train_loss: float
    val_loss: float
    val_metric: float
    lr: float
    seconds: float
    rows_per_second: float
    improved: bool
    lr_start: float | None = None


@dataclass
class TrainResult:
    model: TabularMLP
    objective: Objective
    history: list[EpochStats] = field(default_factory=list)
    best_epoch: int = 0
    best_metric: float = float("nan")
    resumed_from_epoch: int = 0
    stopped_early: bool = False

    def lr_schedule(self) -> list[float]:
        """Learning rate used in each epoch up to the best one (``EpochStats.lr`` is the rate after the epoch)."""
        if not self.history or self.best_epoch == 0:
            return []
        first = self.history[0].lr_start if self.history[0].lr_start is not None else self.history[0].lr
        return [first] + [h.lr for h in self.history[: self.best_epoch - 1]]

    def summary(self) -> dict[str, Any]:
        return {
            "objective": asdict(self.objective),
            "best_epoch": self.best_epoch,
            "best_metric": self.best_metric,
            "epochs_run": len(self.history),
            "resumed_from_epoch": self.resumed_from_epoch,
            "stopped_early": self.stopped_early,
            "history": [asdict(h) for h in self.history],
        }


class CheckpointStore:
    """The latest training state at ``<directory>/last.pt`` (any fsspec URI)."""

    def __init__(self, directory: str) -> None:
        self.directory = directory
        self.uri = io.join(directory, CHECKPOINT_FILE)

    def save(self, state: dict[str, Any]) -> None:
        buf = _io.BytesIO()
        torch.save(state, buf)
        io.write_bytes(self.uri, buf.getvalue())

    def load(self) -> dict[str, Any] | None:
        if not io.exists(self.uri):
            return None
        state = torch.load(_io.BytesIO(io.read_bytes(self.uri)), map_location="cpu", weights_only=True)
        if not isinstance(state, dict) or state.get("format") != CHECKPOINT_FORMAT:
            raise ValueError(f"{self.uri}: not a training checkpoint of format {CHECKPOINT_FORMAT}")
        return state

    def clear(self) -> None:
        io.remove(self.uri)


def seed_everything(seed: int) -> None:
    torch.manual_seed(seed)
    if torch.cuda.is_available():
        torch.cuda.manual_seed_all(seed)
        # cuBLAS needs this for deterministic GEMMs; harmless when already set.
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.backends.cudnn.benchmark = False
    torch.use_deterministic_algorithms(True, warn_only=True)


def run_fingerprint(params: TrainParams, model: TabularMLP, n_train: int, n_val: int,
                    schedule: list[float] | None = None) -> str:
    payload: dict[str, Any] = {"params": params.model_dump(), "model": model.config.to_dict(), "n_train": n_train,
                               "n_val": n_val}
    if schedule is not None:
        payload["schedule"] = schedule
    blob = json.dumps(payload, sort_keys=True).encode()
    return hashlib.sha256(blob).hexdigest()[:16]


def _batches(n: int, batch_size: int) -> list[tuple[int, int]]:
    bounds = [(i, min(i + batch_size, n)) for i in range(0, n, batch_size)]
    # BatchNorm cannot train on a batch of one row; drop such a trailing batch.
    if len(bounds) > 1 and bounds[-1][1] - bounds[-1][0] == 1:
        bounds.pop()
    return bounds


@torch.no_grad()
def predict_outputs(model: nn.Module, split: TensorSplit, device: DeviceConfig) -> torch.Tensor:
    """Raw head outputs for ``split`` (eval mode, batched), on the CPU as float32."""
    model.eval()
    outs = []
    for start, stop in _batches(len(split), PREDICT_BATCH) or [(0, 0)]:
        x_num = split.x_num[start:stop].to(device.device, non_blocking=device.non_blocking)
        x_cat = split.x_cat[start:stop].to(device.device, non_blocking=device.non_blocking)
        with torch.autocast(device.device.type, dtype=device.amp_dtype or torch.float32,
                            enabled=device.amp_dtype is not None):
            outs.append(model(x_num, x_cat).float().cpu())
    return torch.cat(outs) if outs else torch.empty(0)


def _validate(model: TabularMLP, val: TensorSplit | None, task: TaskType, loss_fn: nn.Module, objective: Objective,
              device: DeviceConfig) -> tuple[float, float]:
    if val is None:
        return float("nan"), float("nan")
    outputs = predict_outputs(model, val, device)
    val_loss = float(loss_fn(outputs, val.y.cpu()).item())
    preds = outputs_to_predictions(task, outputs).numpy()
    y = val.y.cpu().numpy()
    metric = compute_metrics(task, y, preds)[objective.metric]
    return val_loss, metric


def _rng_state(shuffle: torch.Generator) -> dict[str, Any]:
    state: dict[str, Any] = {"cpu": torch.get_rng_state(), "shuffle": shuffle.get_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _restore_rng(state: dict[str, Any], shuffle: torch.Generator) -> None:
    torch.set_rng_state(state["cpu"])
    shuffle.set_state(state["shuffle"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def _cpu_state(model: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().to("cpu", copy=True) for k, v in model.state_dict().items()}


def train(
    model: TabularMLP,
    train_split: TensorSplit,
    val_split: TensorSplit | None,
    params: TrainParams,
    device: DeviceConfig,
    *,
    checkpoint: CheckpointStore | None = None,
    on_epoch: Callable[[EpochStats], None] | None = None,
    label: str = "train",
    schedule: list[float] | None = None,
) -> TrainResult:
    """Train ``model`` in place and return it with its history; see the module docstring.

    ``on_epoch`` runs after each epoch's checkpoint; it may raise (e.g. ``optuna.TrialPruned``)
    to stop training. With ``schedule`` the run is a refit: ``len(schedule)`` epochs at those
    learning rates, ``val_split`` optional (logged only), the last epoch's weights kept.
    """
    if len(train_split) < 2:
        raise ValueError(f"the training split has {len(train_split)} row(s); at least 2 are needed")
    if schedule is None and (val_split is None or len(val_split) == 0):
        raise ValueError("the validation split is empty")
    if schedule is not None and not schedule:
        raise ValueError("a refit schedule needs at least one epoch")
    task = TaskType(model.config.task)
    objective = objective_for(task)
    weights = loss_weights(task, train_split.y, model.config.output_dim) if params.class_weights else None
    if weights is not None:
        log.info("[%s] loss weights from %s training rows: %s", label, f"{len(train_split):,}",
                 ", ".join(f"{w:.3f}" for w in weights.tolist()))
    loss_fn = loss_function(task, None if weights is None else weights.to(device.device),
                            regression_loss=params.regression_loss, huber_delta=params.huber_delta)
    val_loss_fn = loss_function(task, weights, regression_loss=params.regression_loss,
                                huber_delta=params.huber_delta)
    model.to(device.device)
    optimizer = torch.optim.AdamW(model.parameters(), lr=params.learning_rate, weight_decay=params.weight_decay)
    scheduler = torch.optim.lr_scheduler.ReduceLROnPlateau(
        optimizer, mode="max" if objective.direction == "maximize" else "min",
        factor=params.lr_decay_factor, patience=params.lr_decay_patience,
    )
    scaler = torch.amp.GradScaler(device.device.type, enabled=device.use_grad_scaler)
    shuffle = torch.Generator().manual_seed(params.seed)
    max_epochs = len(schedule) if schedule is not None else params.max_epochs
    fingerprint = run_fingerprint(params, model, len(train_split), 0 if val_split is None else len(val_split),
                                  schedule)

    result = TrainResult(model=model, objective=objective)
    best_state = _cpu_state(model)
    bad_epochs = 0
    start_epoch = 0
    finished = False
    saved = checkpoint.load() if checkpoint is not None else None
    if saved is not None and saved["fingerprint"] != fingerprint:
        log.warning("[%s] checkpoint %s belongs to a different run (fingerprint %s, expected %s); starting over",
                    label, checkpoint.uri if checkpoint else "", saved["fingerprint"], fingerprint)
        saved = None
    if saved is not None:
        model.load_state_dict(saved["model"])
        optimizer.load_state_dict(saved["optimizer"])
        scheduler.load_state_dict(saved["scheduler"])
        if saved["scaler"]:  # empty when written without a grad scaler (CPU or bfloat16)
            scaler.load_state_dict(saved["scaler"])
        best_state = saved["best_state"]
        bad_epochs = int(saved["bad_epochs"])
        start_epoch = int(saved["epoch"])
        finished = bool(saved["finished"])
        result.history = [EpochStats(**h) for h in saved["history"]]
        result.best_epoch = int(saved["best_epoch"])
        result.best_metric = float(saved["best_metric"])
        result.stopped_early = bool(saved["stopped_early"])
        result.resumed_from_epoch = start_epoch
        _restore_rng(saved["rng"], shuffle)
        log.info("[%s] resuming from checkpoint %s after epoch %d (best %s=%.5f at epoch %d)%s",
                 label, checkpoint.uri if checkpoint else "", start_epoch, objective.metric,
                 result.best_metric, result.best_epoch, "; already finished" if finished else "")

    # Resident on the GPU when small enough; otherwise batches stream from pinned host memory.
    val_bytes = 0 if val_split is None else val_split.nbytes()
    resident = device.is_cuda and train_split.nbytes() + val_bytes <= device.gpu_resident_max_bytes
    train_data = train_split.to(device.device) if resident else train_split
    n = len(train_split)
    if schedule is None:
        log.info("[%s] training %s rows, validating on %s rows, up to %d epochs on %s",
                 label, f"{n:,}", f"{0 if val_split is None else len(val_split):,}", max_epochs, device.describe())
    else:
        log.info("[%s] refitting on %s rows for %d epochs (schedule chosen on validation) on %s",
                 label, f"{n:,}", max_epochs, device.describe())

    epoch = start_epoch
    while not finished and epoch < max_epochs:
        epoch += 1
        model.train()
        if schedule is not None:
            for group in optimizer.param_groups:
                group["lr"] = schedule[epoch - 1]
        lr_start = float(optimizer.param_groups[0]["lr"])
        t0 = time.perf_counter()
        perm = torch.randperm(n, generator=shuffle)
        if resident:
            perm = perm.to(device.device)
        x_num, x_cat, y = train_data.x_num[perm], train_data.x_cat[perm], train_data.y[perm]
        if device.pin_memory and not resident:
            # One shuffled, pinned copy per epoch: its batch slices stay pinned, so the
            # host-to-device copies below can overlap with compute (non_blocking).
            x_num, x_cat, y = x_num.pin_memory(), x_cat.pin_memory(), y.pin_memory()
        total_loss = 0.0
        seen = 0
        for start, stop in _batches(n, params.batch_size):
            b_num = x_num[start:stop].to(device.device, non_blocking=device.non_blocking)
            b_cat = x_cat[start:stop].to(device.device, non_blocking=device.non_blocking)
            b_y = y[start:stop].to(device.device, non_blocking=device.non_blocking)
            optimizer.zero_grad(set_to_none=True)
            with torch.autocast(device.device.type, dtype=device.amp_dtype or torch.float32,
                                enabled=device.amp_dtype is not None):
                out = model(b_num, b_cat)
            loss = loss_fn(out.float(), b_y)
            scaler.scale(loss).backward()
            scaler.step(optimizer)
            scaler.update()
            total_loss += float(loss.detach()) * (stop - start)
            seen += stop - start
        train_seconds = time.perf_counter() - t0
        if not np.isfinite(total_loss):
            raise FloatingPointError(
                f"[{label}] training loss became {total_loss} at epoch {epoch} "
                f"(learning_rate={params.learning_rate}); lower the learning rate"
            )
        val_loss, metric = _validate(model, val_split, task, val_loss_fn, objective, device)
        if schedule is None:
            scheduler.step(metric)
            improved = objective.better(metric, result.best_metric if result.best_epoch else None)
        else:
            # A refit has no unseen rows to judge by: its model is the last epoch's.
            improved = True
        if improved:
            result.best_metric, result.best_epoch = metric, epoch
            best_state = _cpu_state(model)
            bad_epochs = 0
        else:
            bad_epochs += 1
        stats = EpochStats(
            epoch=epoch, train_loss=total_loss / max(seen, 1), val_loss=val_loss, val_metric=metric,
            lr=float(optimizer.param_groups[0]["lr"]), seconds=time.perf_counter() - t0,
            rows_per_second=seen / train_seconds if train_seconds > 0 else float("nan"), improved=improved,
            lr_start=lr_start,
        )
        result.history.append(stats)
        if schedule is None and bad_epochs >= params.patience:
            result.stopped_early = True
            finished = True
        if schedule is None:
            log.info("[%s] epoch %d/%d train_loss=%.5f val_loss=%.5f val_%s=%.5f lr=%.2e %s rows/s%s",
                     label, epoch, max_epochs, stats.train_loss, val_loss, objective.metric, metric,
                     stats.lr, f"{stats.rows_per_second:,.0f}",
                     " *" if improved else (" (early stop)" if result.stopped_early else ""))
        else:
            log.info("[%s] refit epoch %d of %d train_loss=%.5f lr=%.2e %s rows/s", label, epoch, max_epochs,
                     stats.train_loss, lr_start, f"{stats.rows_per_second:,.0f}")
        if checkpoint is not None:
            checkpoint.save({
                "format": CHECKPOINT_FORMAT,
                "fingerprint": fingerprint,
                "epoch": epoch,
                "finished": finished or epoch >= max_epochs,
                "model": _cpu_state(model),
                "optimizer": optimizer.state_dict(),
                "scheduler": scheduler.state_dict(),
                "scaler": scaler.state_dict(),
                "best_state": best_state,
                "best_metric": result.best_metric,
                "best_epoch": result.best_epoch,
                "bad_epochs": bad_epochs,
                "stopped_early": result.stopped_early,
                "history": [asdict(h) for h in result.history],
                "rng": _rng_state(shuffle),
            })
        if on_epoch is not None:
            on_epoch(stats)

    model.load_state_dict(best_state)
    model.to(device.device)
    log.info("[%s] done: best %s=%.5f at epoch %d of %d%s", label, objective.metric, result.best_metric,
             result.best_epoch, len(result.history), " (stopped early)" if result.stopped_early else "")
    return result

