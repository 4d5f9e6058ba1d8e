"""Reference baseline (HistGradientBoosting) with every version, Huber loss, search-space edge report.

Small real data (the demo generator), small nets, CPU.
"""

from __future__ import annotations

import optuna
import pytest
import torch

from ai_factory.registry import ModelRegistry
from ai_factory.settings import get_settings
from ai_factory.spec import default_spec
from ai_factory.training import io, tuning
from ai_factory.training.config import SearchSpace, TrainParams
from ai_factory.training.device import select_device
from ai_factory.training.model import loss_function
from ai_factory.training.reference_baseline import reference_baseline
from ai_factory.training.steps import evaluate, fit, fit_prepared, make_window, prepare, register
from ai_factory.training.window import TrainingWindow, load_frames

from training_helpers import SMALL_PARAMS, toy_frame, toy_spec


def test_registered_version_carries_a_real_reference_baseline(demo_lake, tmp_path):
    window = make_window(str(tmp_path / "window.json"), days=5)["window"]
    model = str(tmp_path / "model")
    fit(window, model, params_override=SMALL_PARAMS)
    evaluation = evaluate(window, model)
    io.write_json(str(tmp_path / "evaluation.json"), evaluation)
    out = register(window, model, str(tmp_path / "evaluation.json"), run_key="run-ref", reference_rows=300)

    version = ModelRegistry(get_settings().model_store, default_spec().name).get(out["version"])
    ref = version.metadata["reference_baseline"]
    assert ref["family"] == "hist_gradient_boosting"
    # Fitted on train + validation (the model was refitted on both), scored on the holdout.
    assert ref["rows"] == evaluation["validation_rows"] + len(load_frames(
        demo_lake, default_spec(), TrainingWindow.load(window), ("train",))["train"])
    assert ref["metrics"]["roc_auc"] > 0.6 and ref["fit_seconds"] > 0
    assert ref["comparison"]["metric"] == "roc_auc"
    assert ref["comparison"]["model"] == pytest.approx(version.metrics["roc_auc"])
    # The Models page shows the MLP against it.
    from ai_factory.ui.data import models_overview
    from ai_factory.ui.pages import models_page

    data = models_overview(ModelRegistry(get_settings().model_store, default_spec().name))
    row = next(v for v in data["versions"] if v["version"] == out["version"])
    assert row["reference"]["reference"] == pytest.approx(ref["metrics"][data["primary_metric"]])
    html = models_page(data)
    assert "MLP vs HistGradientBoosting" in html and f'{row["reference"]["reference"]:.4f}' in html


def test_reference_baseline_uses_native_categories_and_tolerates_unseen_values():
    spec = toy_spec("multiclass")
    train, holdout = toy_frame(spec, 1500, seed=1), toy_frame(spec, 500, seed=2)
    holdout.loc[:10, "color"] = "violet"  # allowed by the spec, never seen in training
    ref = reference_baseline(spec, train, {"holdout": holdout})
    assert ref["metrics"]["accuracy"] > 0.8, ref
    one_class = train.assign(y="a")
    assert "error" in reference_baseline(spec, one_class, {"holdout": holdout})


def test_huber_loss_option_trains_a_regression_model():
    assert isinstance(loss_function("regression", regression_loss="huber", huber_delta=0.5), torch.nn.HuberLoss)
    with pytest.raises(ValueError, match="regression_loss"):
        TrainParams().with_overrides(regression_loss="l1")
    spec = toy_spec("regression")
    frames = {"train": toy_frame(spec, 1200, seed=1), "validation": toy_frame(spec, 400, seed=2)}
    # A few wild targets: Huber should not chase them.
    frames["train"].loc[:20, "y"] = 5000.0
    prepared = prepare(spec, frames, "quantile")
    device = select_device("cpu")
    results = {}
    for loss in ("mse", "huber"):
        params = TrainParams().with_overrides(**{**SMALL_PARAMS, "max_epochs": 6}, regression_loss=loss)
        results[loss] = fit_prepared(prepared, params, device)
    # Objective: validation RMSE on the standardised target; the robust loss is not worse here.
    assert results["huber"].best_metric < results["mse"].best_metric, {k: r.best_metric for k, r in results.items()}


def _space(**params) -> SearchSpace:
    return SearchSpace.model_validate({"trial_max_epochs": 5, "params": params})


def test_edge_report_on_a_tiny_study():
    space = _space(learning_rate={"type": "float", "low": 1e-4, "high": 1e-1, "log": True},
                   hidden_size={"type": "int", "low": 16, "high": 256},
                   batch_size={"type": "categorical", "choices": [128, 256, 512]})
    study = optuna.create_study(direction="maximize")
    # The best trial: lr at the top of its log range, width mid-range, largest batch, last epoch.
    for lr, width, batch, value, epoch in [(0.09, 128, 512, 0.9, 5), (1e-3, 64, 256, 0.7, 2),
                                           (2e-4, 240, 128, 0.6, 3), (0.01, 100, 256, 0.5, 1)]:
        t = optuna.trial.create_trial(
            params={"learning_rate": lr, "hidden_size": width, "batch_size": batch}, value=value,
            distributions={"learning_rate": optuna.distributions.FloatDistribution(1e-4, 1e-1, log=True),
                           "hidden_size": optuna.distributions.IntDistribution(16, 256),
                           "batch_size": optuna.distributions.CategoricalDistribution([128, 256, 512])},
            user_attrs={"best_epoch": epoch})
        study.add_trial(t)
    report = tuning.edge_report(study, space, top_fraction=0.5)
    assert report["complete_trials"] == 4
    assert report["best"]["edges"] == {"learning_rate": "high", "batch_size": "high"}
    assert report["best"]["at_last_epoch"] is True
    assert report["top"]["trials"] == 2 and report["top"]["at_last_epoch"] == 0.5
    assert report["top"]["at_edge"]["learning_rate"] == {"low": 0.0, "high": 0.5}
    # A minimising study ranks the other way round: the lowest value is best.
    low = optuna.create_study(direction="minimize")
    for t in study.get_trials():
        low.add_trial(t)
    assert tuning.edge_report(low, space)["best"]["number"] == 3
    assert tuning.edge_report(optuna.create_study(), space) == {"complete_trials": 0}
