"""The training pipeline's steps as plain functions: window → tune → fit → evaluate.

Each takes URIs and returns a small JSON-able dict (also written as the step's result
file). The ``ai-factory train …`` commands (the training container's command) and the
``training`` DAG's local tasks call exactly these functions, so Kubernetes pods and local
processes run one code path.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import time
from dataclasses import dataclass
from datetime import date
from typing import Any

import pandas as pd

from ai_factory.spec import DatasetSpec, TaskType, load_spec
from ai_factory.storage import DataLake
from ai_factory.training import io
from ai_factory.training.artifacts import save_model
from ai_factory.training.config import ConfigError, SearchSpace, TrainParams, load_search_space
from ai_factory.training.device import DeviceConfig, configure_threads, select_device
from ai_factory.training.loop import CheckpointStore, TensorSplit, TrainResult, seed_everything, train
from ai_factory.training.metrics import compute_metrics, objective_for
from ai_factory.training.model import TabularMLP, build_model_config
from ai_factory.training.preprocess import Preprocessor
from ai_factory.training.window import TrainingWindow, build_window, load_frames

log = logging.getLogger(__name__)


def _spec(spec_path: str | None) -> DatasetSpec:
    from ai_factory.settings import get_settings

    return load_spec(spec_path or get_settings().spec_path)


def _lake(data_root: str | None) -> DataLake:
    from ai_factory.settings import get_settings

    return DataLake(data_root or get_settings().data_root)


# -- data → tensors ------------------------------------------------------------------------
@dataclass
class Prepared:
    preprocessor: Preprocessor
    splits: dict[str, TensorSplit]


def prepare(spec: DatasetSpec, frames: dict[str, pd.DataFrame], numeric_transform: str) -> Prepared:
    """Fit preprocessing on ``frames['train']`` and turn every frame into tensors."""
    pre = Preprocessor.fit(spec, frames["train"], numeric_transform=numeric_transform)
    splits = {}
    for name, df in frames.items():
        x_num, x_cat = pre.transform_features(df)
        splits[name] = TensorSplit.from_arrays(spec.target.task, x_num, x_cat, pre.transform_target(df))
    return Prepared(pre, splits)


def build_model(pre: Preprocessor, params: TrainParams) -> TabularMLP:
    seed_everything(params.seed)
    return TabularMLP(build_model_config(
        task=pre.spec.target.task, n_numeric=pre.n_numeric_inputs, cardinalities=pre.cardinalities,
        output_dim=pre.output_dim, hidden_size=params.hidden_size, n_layers=params.n_layers,
        dropout=params.dropout, embedding_dim_max=params.embedding_dim_max,
    ))


def fit_prepared(prepared: Prepared, params: TrainParams, device: DeviceConfig, *,
                 checkpoint: CheckpointStore | None = None, on_epoch: Any = None, label: str = "fit") -> TrainResult:
    model = build_model(prepared.preprocessor, params)
    return train(model, prepared.splits["train"], prepared.splits["validation"], params, device,
                 checkpoint=checkpoint, on_epoch=on_epoch, label=label)


# -- window ----------------------------------------------------------------------------------
def make_window(output: str, days: int, end: date | str | None = None, validation_days: int = 1,
                data_root: str | None = None, spec_path: str | None = None, reuse: bool = True) -> dict[str, Any]:
    """Build the training window and write it to ``output``; an existing window is reused (retries)."""
    if reuse and io.exists(output):
        window = TrainingWindow.load(output)
        log.info("reusing the training window already written at %s", output)
    else:
        window = build_window(_lake(data_root), _spec(spec_path), days, end=end, validation_days=validation_days)
        window.save(output)
    return {"window": output, **window.to_dict()}


# -- tune ----------------------------------------------------------------------------------------
def open_run_study(study: str, window_uri: str, storage: str | None = None, search_space: str | None = None,
                   spec_path: str | None = None) -> dict[str, Any]:
    """Create the run's study (or find it on a retry) before the workers start, so they all join one."""
    from ai_factory.settings import get_settings
    from ai_factory.training import tuning

    spec = _spec(spec_path)
    space = load_search_space(search_space)
    url = storage or get_settings().optuna_storage
    st = tuning.open_study(study, tuning.make_storage(url, space.heartbeat), spec, space)
    st.set_user_attr("window", TrainingWindow.load(window_uri).to_dict())
    st.set_user_attr("spec_fingerprint", spec.fingerprint())
    counts = tuning.state_counts(st)
    log.info("study '%s' on %s is ready (%s)", study, _redact(url), counts or "no trials yet")
    return {"study": study, "states": counts}


def tune_worker(
    window_uri: str,
    study: str,
    storage: str | None = None,
    *,
    n_trials: int,
    workers: int = 1,
    worker: int = 0,
    search_space: str | None = None,
    data_root: str | None = None,
    spec_path: str | None = None,
    timeout_seconds: float | None = None,
    threads: int | None = None,
) -> dict[str, Any]:
    """Run one tuning worker on the shared study until the study has ``n_trials`` finished trials."""
    import optuna
    from optuna.trial import TrialState

    from ai_factory.settings import get_settings
    from ai_factory.training import tuning

    if not 0 <= worker < workers:
        raise ConfigError(f"worker index {worker} is outside 0..{workers - 1} (workers={workers})")
    tuning.route_optuna_logs()
    storage_url = storage or get_settings().optuna_storage
    spec = _spec(spec_path)
    space: SearchSpace = load_search_space(search_space)
    window = TrainingWindow.load(window_uri)
    # Threads: explicit (local workers split one machine's cores, see plan.py), else
    # AI_FACTORY_TORCH_THREADS (pods: their CPU request), else every core this process may use.
    device = select_device()
    if threads:
        device = dataclasses.replace(device, threads=threads)
    configure_threads(device)

    st = tuning.open_study(study, tuning.make_storage(storage_url, space.heartbeat), spec, space, worker)
    if "window" not in st.user_attrs:
        st.set_user_attr("window", window.to_dict())
        st.set_user_attr("spec_fingerprint", spec.fingerprint())
    total = len(tuning.finished_trials(st))
    log.info("tuning worker %d/%d on study '%s' (%s): budget %d trials, %d finished", worker, workers, study,
             _redact(storage_url), n_trials, total)

    ran = 0
    if total < n_trials:
        frames = load_frames(_lake(data_root), spec, window, ("train", "validation"))
        cache: dict[str, Prepared] = {}
        base = space.base_params()

        def objective(trial: optuna.Trial) -> float:
            params = base.with_overrides(**tuning.suggest(trial, space))
            trial.set_user_attr("worker", worker)
            if params.numeric_transform not in cache:
                cache[params.numeric_transform] = prepare(spec, frames, params.numeric_transform)

            def report(stats: Any) -> None:
                trial.report(stats.val_metric, stats.epoch)
                if trial.should_prune():
                    log.info("trial %d pruned after epoch %d (val %s=%.5f)", trial.number, stats.epoch,
                             objective_for(spec.target.task).metric, stats.val_metric)
                    raise optuna.TrialPruned()

            result = fit_prepared(cache[params.numeric_transform], params, device, on_epoch=report,
                                  label=f"trial {trial.number}")
            trial.set_user_attr("best_epoch", result.best_epoch)
            trial.set_user_attr("epochs_run", len(result.history))
            return result.best_metric

        def progress(study_: optuna.Study, trial: optuna.trial.FrozenTrial) -> None:
            nonlocal ran
            ran += 1
            done = len(tuning.finished_trials(study_))
            complete = study_.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
            best = study_.best_value if complete else float("nan")
            log.info("worker %d: trial %d %s value=%s; study %d/%d finished, best=%.5f", worker, trial.number,
                     trial.state.name.lower(), trial.value, done, n_trials, best)

        deadline = None if timeout_seconds is None else time.monotonic() + timeout_seconds
        # The budget belongs to the study, not to a worker: a worker takes trials while the study
        # is short of n_trials, and waits while the rest are running elsewhere, so that a worker
        # killed mid-trial (its trial failed by heartbeat and re-queued) is made up for by the others.
        while deadline is None or time.monotonic() < deadline:
            step = tuning.next_step(st, n_trials)
            if step == tuning.Step.DONE:
                break
            if step == tuning.Step.WAIT:
                time.sleep(space.heartbeat.interval_seconds)
                continue
            st.optimize(
                objective,
                n_trials=1,
                callbacks=[progress],
                # A diverging configuration fails its own trial, not the worker.
                catch=(FloatingPointError,),
                gc_after_trial=True,
            )
        else:
            log.warning("worker %d: tuning timeout (%ss) reached with %d/%d trials finished", worker,
                        timeout_seconds, len(tuning.finished_trials(st)), n_trials)

    summary = {
        "study": study,
        "worker": worker,
        "workers": workers,
        "trials_run": ran,
        "n_trials": n_trials,
        "states": tuning.state_counts(st),
        "objective": objective_for(spec.target.task).__dict__,
    }
    try:
        best = tuning.best_trial(st)
        summary.update(best_trial=best.number, best_value=best.value, best_params=best.params,
                       search_space_edges=tuning.edge_report(st, space))
    except tuning.TuningError as exc:
        log.warning("%s", exc)
    return summary


def _redact(url: str) -> str:
    from ai_factory.training.tuning import redact_url

    return redact_url(url)


# -- fit ----------------------------------------------------------------------------------------------
def resolve_params(study: str | None, storage: str | None, search_space: str | None,
                   overrides: dict[str, Any] | None, spec: DatasetSpec) -> tuple[TrainParams, dict[str, Any]]:
    """Final-fit parameters and where they came from (the best trial of ``study`` if given)."""
    from ai_factory.settings import get_settings
    from ai_factory.training import tuning

    space = load_search_space(search_space)
    provenance: dict[str, Any] = {"study": study}
    best = None
    if study:
        st = tuning.open_study(study, tuning.make_storage(storage or get_settings().optuna_storage, space.heartbeat),
                               spec, space)
        best = tuning.best_trial(st)
        provenance.update(best_trial=best.number, best_value=best.value, n_trials=len(st.trials),
                          states=tuning.state_counts(st))
        log.info("final fit uses trial %d of study '%s' (value %.5f): %s", best.number, study, best.value,
                 best.params)
    params = tuning.final_params(space, best, overrides)
    return params, provenance


def fit(
    window_uri: str,
    model_uri: str,
    *,
    study: str | None = None,
    storage: str | None = None,
    params_override: dict[str, Any] | None = None,
    checkpoint_uri: str | None = None,
    search_space: str | None = None,
    data_root: str | None = None,
    spec_path: str | None = None,
    threads: int | None = None,
) -> dict[str, Any]:
    """Train the final model (resuming from ``checkpoint_uri`` if a checkpoint is there) and save it.

    Two stages, the holdout untouched by both:

    1. **Selection**: train on the train split with early stopping on validation; it picks the
       epoch count (and the learning-rate schedule up to it), and its validation predictions
       fit the calibrator and the decision threshold (:mod:`ai_factory.training.calibration`).
    2. **Refit** (``refit_on_validation``, the default): preprocessing and a fresh model fitted
       on train + validation for exactly that schedule; this is the model saved. The newest
       labelled days are the most like tomorrow's, so the final model must learn from them.

    Checkpoints: the selection fit at ``checkpoint_uri``, the refit at ``checkpoint_uri/refit``.
    """
    from ai_factory.training.calibration import class_prior, default_method, fit_calibration
    from ai_factory.training.loop import predict_outputs

    spec = _spec(spec_path)
    window = TrainingWindow.load(window_uri)
    params, provenance = resolve_params(study, storage, search_space, params_override, spec)
    device = select_device()
    if threads:
        device = dataclasses.replace(device, threads=threads)
    configure_threads(device)
    frames = load_frames(_lake(data_root), spec, window, ("train", "validation"))
    prepared = prepare(spec, frames, params.numeric_transform)
    checkpoint = CheckpointStore(checkpoint_uri) if checkpoint_uri else None
    t0 = time.perf_counter()
    result = fit_prepared(prepared, params, device, checkpoint=checkpoint, label="fit")
    summary = result.summary()
    task = spec.target.task
    # The best epoch being the last allowed one means the budget, not validation, stopped it.
    undertrained = result.best_epoch == params.max_epochs
    if undertrained:
        log.warning("the selection fit was still improving at its last epoch (%d): raise max_epochs "
                    "(search space 'fixed: {max_epochs: ...}')", params.max_epochs)

    val = prepared.splits["validation"]
    method = params.calibration if params.calibration != "auto" else default_method(task, params.class_weights)
    combined = pd.concat([frames["train"], frames["validation"]], ignore_index=True)
    pre_all = prepared.preprocessor
    if params.refit_on_validation:
        final_prepared = prepare(spec, {"train": combined}, params.numeric_transform)
        pre_all = final_prepared.preprocessor
    prior = class_prior(task, pre_all.transform_target(combined), pre_all.output_dim if task == TaskType.MULTICLASS
                        else 2)
    calibration = fit_calibration(task, predict_outputs(result.model, val, device), val.y.cpu(), method=method,
                                  threshold_metric=params.threshold_metric, cost_ratio=params.cost_ratio,
                                  prior=prior)

    model, preprocessor = result.model, prepared.preprocessor
    rows = {s: len(t) for s, t in prepared.splits.items()}
    refit: dict[str, Any] = {"enabled": params.refit_on_validation}
    if params.refit_on_validation:
        schedule = result.lr_schedule()
        refit_checkpoint = CheckpointStore(io.join(checkpoint_uri, "refit")) if checkpoint_uri else None
        final = train(build_model(pre_all, params), final_prepared.splits["train"], None, params, device,
                      checkpoint=refit_checkpoint, label="refit", schedule=schedule)
        model, preprocessor = final.model, pre_all
        rows["final_fit"] = len(final_prepared.splits["train"])
        refit.update(epochs=len(schedule), rows=rows["final_fit"], schedule=schedule,
                     resumed_from_epoch=final.resumed_from_epoch,
                     train_loss=final.history[-1].train_loss if final.history else None)
    else:
        rows["final_fit"] = rows["train"]
    save_model(model_uri, model, preprocessor, {
        "params": params.model_dump(),
        "training": {**summary, "refit": refit},
        "tuning": provenance,
        "window": window.to_dict(),
        "rows": rows,
    }, calibration=calibration)
    return {
        "model": model_uri,
        "params": params.model_dump(),
        "tuning": provenance,
        "objective": summary["objective"],
        "best_epoch": result.best_epoch,
        "best_metric": result.best_metric,
        "epochs_run": len(result.history),
        "resumed_from_epoch": result.resumed_from_epoch,
        "stopped_early": result.stopped_early,
        "best_at_last_epoch": undertrained,
        "refit": {k: v for k, v in refit.items() if k != "schedule"},
        "calibration": {"method": calibration.method, "threshold": calibration.threshold,
                        **calibration.validation},
        "rows": rows,
        "seconds": round(time.perf_counter() - t0, 3),
        "device": device.describe(),
    }


# -- evaluate -----------------------------------------------------------------------------------------
def evaluate(window_uri: str, model_uri: str, *, data_root: str | None = None,
             output: str | None = None) -> dict[str, Any]:
    """Holdout (and validation) metrics of the model at ``model_uri``, next to the trivial baseline's.

    Classification metrics are of the calibrated probabilities (what serving returns), with
    the ``*_at_threshold`` metrics at the stored decision threshold; ``<split>_uncalibrated``
    holds the raw model's for comparison and ``<split>_reliability`` the reliability diagram.
    The baseline predicts the prior (or mean) of the rows the model was trained on;
    ``reference_baseline`` is a HistGradientBoosting model fitted on those same rows. A model
    refitted on train + validation has seen the validation rows: its validation metrics are
    in-sample (``validation_in_training``), only the holdout judges it.
    With ``output`` the result is also written there (the registry reads it from that file).
    """
    from ai_factory.training.calibration import class_prior, reliability_diagram
    from ai_factory.training.metrics import prior_metrics
    from ai_factory.training.predictor import Predictor
    from ai_factory.training.reference_baseline import reference_baseline

    predictor = Predictor.from_dir(model_uri)
    spec = predictor.spec
    window = TrainingWindow.load(window_uri)
    frames = load_frames(_lake(data_root), spec, window)
    pre = predictor.preprocessor
    task = spec.target.task
    refit = bool(((predictor.metadata.get("training") or {}).get("refit") or {}).get("enabled"))
    trained_on = [frames["train"], frames["validation"]] if refit else [frames["train"]]
    y_train = pre.transform_target(pd.concat(trained_on, ignore_index=True))
    n_classes = pre.output_dim if task == TaskType.MULTICLASS else 2
    # The stored prior (calibration.json) is of exactly the rows the model trained on; older
    # models without one get it recomputed from the window.
    prior = ([pre.target_mean] if task == TaskType.REGRESSION
             else predictor.class_prior or class_prior(task, y_train, n_classes))
    cal = predictor.calibration
    out: dict[str, Any] = {"model": model_uri, "objective": objective_for(task).__dict__,
                           "validation_in_training": refit,
                           "calibration": None if cal is None else {
                               "method": cal.method, "scale": cal.scale, "bias": cal.bias,
                               "threshold": cal.threshold, "threshold_metric": cal.threshold_metric,
                               "cost_ratio": cal.cost_ratio, "validation": cal.validation}}
    for split in ("validation", "holdout"):
        df = frames[split]
        y = pre.transform_target(df)
        if task == TaskType.REGRESSION:
            preds = predictor.predict(df)
            y_eval = pre.inverse_target(y)
        else:
            preds = predictor.predict_proba(df)
            y_eval = y
            out[f"{split}_uncalibrated"] = compute_metrics(task, y_eval, predictor.predict_proba(df, calibrated=False))
            top = preds.argmax(axis=1)
            out[f"{split}_reliability"] = (reliability_diagram(y_eval, preds[:, 1]) if task == TaskType.BINARY
                                           else reliability_diagram(y_eval, preds.max(axis=1), top == y_eval))
        out[split] = compute_metrics(task, y_eval, preds, predictor.threshold)
        out[f"{split}_baseline"] = prior_metrics(task, prior, y_eval)
        out[f"{split}_rows"] = len(df)
    # The reference model (HistGradientBoosting) on exactly the rows the MLP was trained on.
    out["reference_baseline"] = reference_baseline(spec, pd.concat(trained_on, ignore_index=True),
                                                   {"holdout": frames["holdout"]},
                                                   model_metrics=out["holdout"])
    proper = "rmse" if task == TaskType.REGRESSION else "log_loss"
    out["proper_score"] = {"metric": proper, "model": out["holdout"][proper],
                           "baseline": out["holdout_baseline"][proper],
                           "beats_baseline": bool(out["holdout"][proper] < out["holdout_baseline"][proper])}
    if task != TaskType.REGRESSION:
        log.info("holdout calibration: ECE %.4f (uncalibrated %.4f), log-loss %.4f (uncalibrated %.4f, "
                 "base rate %.4f)", out["holdout"]["ece"], out["holdout_uncalibrated"]["ece"],
                 out["holdout"]["log_loss"], out["holdout_uncalibrated"]["log_loss"],
                 out["holdout_baseline"]["log_loss"])
    objective = objective_for(task)
    model_value = out["holdout"][objective.metric]
    base_value = out["holdout_baseline"][objective.metric]
    out["beats_baseline"] = bool(objective.better(model_value, base_value))
    out["holdout_partitions"] = [d.isoformat() for d in window.holdout]
    log.info("holdout %s: model %.5f vs baseline %.5f (%s rows); %s", objective.metric, model_value, base_value,
             f"{out['holdout_rows']:,}", ", ".join(f"{k}={v:.4f}" for k, v in out["holdout"].items()))
    if output:
        io.write_json(output, out)
    return out


# -- register -----------------------------------------------------------------------------------------
def register(
    window_uri: str,
    model_uri: str,
    evaluation_uri: str,
    *,
    run_key: str,
    data_root: str | None = None,
    reference_rows: int | None = None,
    model_home: str | None = None,
) -> dict[str, Any]:
    """Register the evaluated model as a new immutable version (idempotent per ``run_key``)."""
    from ai_factory.registry import DEFAULT_REFERENCE_ROWS, ModelRegistry
    from ai_factory.settings import get_settings

    meta = io.read_json(io.join(model_uri, "model.json"))
    spec = DatasetSpec.model_validate(meta["spec"])
    window = TrainingWindow.load(window_uri)
    evaluation = io.read_json(evaluation_uri)
    registry = ModelRegistry(model_home or get_settings().model_store, spec.name)
    existing = registry.find_by_run(run_key)
    if existing is not None:
        log.info("run %s already registered as %s", run_key, existing.tag)
        version = existing
    else:
        frames = load_frames(_lake(data_root), spec, window, ("train", "validation"))
        pool = pd.concat([frames["train"], frames["validation"]], ignore_index=True)
        n = min(len(pool), reference_rows or DEFAULT_REFERENCE_ROWS)
        # A fixed random_state: re-registering the same run would store the same sample.
        reference = pool.sample(n=n, random_state=0).reset_index(drop=True)
        reference = reference[[c for c in spec.columns if c in reference.columns]]
        version = registry.register(model_uri, run_key=run_key, evaluation=evaluation, window=window.to_dict(),
                                    reference=reference)
    return {
        "version": version.version,
        "tag": version.tag,
        "path": str(version.path),
        # NaN (e.g. AUC on a single-class day) is not JSON; asset extras and XCom get null.
        "metrics": {k: (v if isinstance(v, float) and math.isfinite(v) else None) for k, v in version.metrics.items()},
        "objective": version.metadata.get("objective"),
        "beats_baseline": version.metadata.get("beats_baseline"),
    }
