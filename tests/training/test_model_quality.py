"""Model quality: final fit on train + validation, calibration, loss weights, decision threshold.

Small real data (the demo generator, scikit-learn's bundled digits), small nets, CPU.
"""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest
import torch

from ai_factory.spec import parse_spec
from ai_factory.training.calibration import (
    CALIBRATION_FILE,
    Calibration,
    CalibrationError,
    choose_threshold,
    fit_calibration,
    loss_weights,
    reliability_diagram,
)
from ai_factory.training.config import TrainParams
from ai_factory.training.device import select_device
from ai_factory.training.loop import TensorSplit, predict_outputs, train
from ai_factory.training.metrics import compute_metrics, expected_calibration_error
from ai_factory.training.model import TabularMLP, build_model_config, outputs_to_predictions

from training_helpers import SMALL_PARAMS


# -- calibration on a deliberately miscalibrated case ---------------------------------------------
def _miscalibrated(n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """True P(y=1) = sigmoid(z); the "model" reports 3z + 1.5 (over-confident and shifted)."""
    rng = np.random.default_rng(seed)
    z = rng.normal(scale=1.5, size=n)
    y = (rng.random(n) < 1 / (1 + np.exp(-z))).astype("float32")
    return torch.tensor(3 * z + 1.5, dtype=torch.float32), torch.tensor(y)


def test_platt_scaling_lowers_ece_on_held_out_rows():
    val_logits, val_y = _miscalibrated(3000, seed=1)
    test_logits, test_y = _miscalibrated(3000, seed=2)
    cal = fit_calibration("binary", val_logits, val_y, method="platt", threshold_metric="f1", cost_ratio=1.0,
                          prior=[0.5, 0.5])
    assert cal.scale == pytest.approx(1 / 3, abs=0.05) and cal.bias[0] == pytest.approx(-0.5, abs=0.1)
    raw = torch.sigmoid(test_logits).numpy()
    fixed = torch.sigmoid(cal.apply(test_logits)).numpy()
    ece_raw = expected_calibration_error(test_y.numpy(), raw)
    ece_cal = expected_calibration_error(test_y.numpy(), fixed)
    assert ece_raw > 0.1 and ece_cal < 0.03, (ece_raw, ece_cal)
    assert cal.validation["ece_after"] < cal.validation["ece_before"]
    # Temperature alone cannot remove the shift: it helps, but less than Platt.
    temp = fit_calibration("binary", val_logits, val_y, method="temperature", threshold_metric="f1",
                           cost_ratio=1.0, prior=[0.5, 0.5])
    assert not temp.bias
    ece_temp = expected_calibration_error(test_y.numpy(), torch.sigmoid(temp.apply(test_logits)).numpy())
    assert ece_cal < ece_temp < ece_raw


def test_multiclass_temperature_keeps_the_argmax_and_lowers_the_loss():
    rng = np.random.default_rng(3)
    true = rng.normal(size=(4000, 3))
    y = torch.tensor([rng.choice(3, p=np.exp(r) / np.exp(r).sum()) for r in true])
    logits = torch.tensor(4 * true, dtype=torch.float32)  # over-confident
    cal = fit_calibration("multiclass", logits[:2000], y[:2000], method="temperature", threshold_metric="f1",
                          cost_ratio=1.0, prior=[1 / 3] * 3)
    assert cal.threshold is None and cal.scale == pytest.approx(0.25, abs=0.05)
    before = compute_metrics("multiclass", y[2000:].numpy(), torch.softmax(logits[2000:], 1).numpy())
    after = compute_metrics("multiclass", y[2000:].numpy(), torch.softmax(cal.apply(logits[2000:]), 1).numpy())
    assert after["ece"] < before["ece"] and after["log_loss"] < before["log_loss"]
    assert after["accuracy"] == before["accuracy"]


def test_threshold_choice_for_f1_and_for_a_cost_ratio():
    y = np.array([0, 0, 0, 0, 1, 0, 1, 1])
    p = np.array([0.05, 0.1, 0.2, 0.3, 0.35, 0.4, 0.6, 0.9])
    t, f1 = choose_threshold(y, p, "f1")
    assert t == pytest.approx(0.35) and f1 == pytest.approx(2 * 3 / (2 * 3 + 1))
    # A missed positive costing 10 false alarms moves the threshold down to catch every positive.
    t_cost, _ = choose_threshold(y, p, "cost", cost_ratio=10.0)
    assert t_cost <= 0.35
    # False alarms dear (a missed positive costs 0.1 of one): stop before the first false alarm.
    t_cheap, cost = choose_threshold(y, p, "cost", cost_ratio=0.1)
    assert t_cheap == pytest.approx(0.6) and cost == pytest.approx(0.1 / 8)
    # ... and dearer still than any positive is worth: flag nothing (threshold above every score).
    t_none, _ = choose_threshold(np.array([0, 1, 0]), np.array([0.9, 0.8, 0.1]), "cost", cost_ratio=0.5)
    assert t_none > 0.9
    with pytest.raises(ValueError, match="unknown threshold metric"):
        choose_threshold(y, p, "accuracy")


def test_calibration_file_round_trips_and_bad_files_name_the_key():
    cal = Calibration(method="platt", scale=0.5, bias=[-0.2], threshold=0.3, threshold_metric="f1", prior=[0.9, 0.1])
    assert Calibration.from_dict(json.loads(json.dumps(cal.to_dict()))) == cal
    with pytest.raises(CalibrationError, match="x.json: key 'format'"):
        Calibration.from_dict({**cal.to_dict(), "format": 99}, source="x.json")
    with pytest.raises(CalibrationError, match="unknown key"):
        Calibration.from_dict({**cal.to_dict(), "scael": 1.0}, source="x.json")
    with pytest.raises(CalibrationError, match="key 'method'"):
        Calibration.from_dict({**cal.to_dict(), "method": "isotonic"}, source="x.json")


def test_reliability_diagram_counts_every_row():
    y = np.array([0, 1, 1, 0, 1])
    p = np.array([0.05, 0.15, 0.95, 0.97, 1.0])
    diagram = reliability_diagram(y, p, n_bins=10)
    assert sum(b["count"] for b in diagram["bins"]) == 5
    top = diagram["bins"][-1]
    assert top["count"] == 3 and top["observed"] == pytest.approx(2 / 3)
    assert top["mean_predicted"] == pytest.approx((0.95 + 0.97 + 1.0) / 3)


# -- loss weights on an imbalanced real data set -----------------------------------------------------
def _imbalanced_digits() -> dict[str, TensorSplit]:
    """scikit-learn's bundled digits: "is it an 8?", positives subsampled to ~5 %, split 60/20/20."""
    from sklearn.datasets import load_digits

    x, digit = load_digits(return_X_y=True)
    rng = np.random.default_rng(0)
    pos = np.flatnonzero(digit == 8)
    neg = np.flatnonzero(digit != 8)
    keep = np.concatenate([neg, rng.choice(pos, size=round(len(neg) * 0.05 / 0.95), replace=False)])
    keep = rng.permutation(keep)
    x = (x[keep] / 16.0 - 0.3).astype("float32")
    y = (digit[keep] == 8).astype("int64")
    n = len(y)
    cuts = {"train": slice(0, int(n * 0.6)), "validation": slice(int(n * 0.6), int(n * 0.8)),
            "test": slice(int(n * 0.8), n)}
    return {k: TensorSplit.from_arrays("binary", x[s], np.zeros((len(y[s]), 0), "int64"), y[s])
            for k, s in cuts.items()}


def _train_digits(splits: dict[str, TensorSplit], class_weights: bool) -> TabularMLP:
    params = TrainParams(hidden_size=32, n_layers=1, dropout=0.1, batch_size=128, max_epochs=12, patience=12,
                         learning_rate=3e-3, class_weights=class_weights, seed=0)
    torch.manual_seed(0)
    model = TabularMLP(build_model_config("binary", n_numeric=64, cardinalities=[], output_dim=1, hidden_size=32,
                                          n_layers=1, dropout=0.1, embedding_dim_max=4))
    train(model, splits["train"], splits["validation"], params, select_device("cpu"), label="digits")
    return model


@pytest.fixture(scope="module")
def digits() -> tuple[dict[str, TensorSplit], dict[bool, TabularMLP]]:
    """The imbalanced digits splits and a net trained on them without and with loss weights."""
    splits = _imbalanced_digits()
    return splits, {weighted: _train_digits(splits, weighted) for weighted in (False, True)}


def test_loss_weights_move_the_threshold_metric_on_an_imbalanced_case(digits):
    splits, models = digits
    y_train = splits["train"].y
    assert 0.03 < float(y_train.mean()) < 0.07
    [pos_weight] = loss_weights("binary", y_train, 1).tolist()
    assert pos_weight == pytest.approx(float((y_train == 0).sum() / (y_train == 1).sum()))

    device = select_device("cpu")
    y_test = splits["test"].y.numpy()
    results = {}
    for weighted, model in models.items():
        proba = outputs_to_predictions("binary", predict_outputs(model, splits["test"], device)).numpy()
        results[weighted] = compute_metrics("binary", y_test, proba)
    # The unweighted net scores few rows >= 0.5 on a 5 % class; pos_weight moves its boundary.
    assert results[True]["recall_at_threshold"] > results[False]["recall_at_threshold"] + 0.1, results
    assert results[True]["f1_at_threshold"] != pytest.approx(results[False]["f1_at_threshold"])
    assert results[True]["positive_rate"] == results[False]["positive_rate"]


def test_calibration_takes_the_weighting_shift_back_out_on_held_out_rows(digits):
    splits, models = digits
    device = select_device("cpu")
    model = models[True]
    val_logits = predict_outputs(model, splits["validation"], device)
    cal = fit_calibration("binary", val_logits, splits["validation"].y, method="platt", threshold_metric="f1",
                          cost_ratio=1.0, prior=[0.95, 0.05])
    test_logits = predict_outputs(model, splits["test"], device)
    y = splits["test"].y.numpy()
    raw = compute_metrics("binary", y, outputs_to_predictions("binary", test_logits).numpy())
    fixed = compute_metrics("binary", y, outputs_to_predictions("binary", cal.apply(test_logits)).numpy(),
                            cal.threshold)
    assert fixed["ece"] < raw["ece"] and fixed["log_loss"] < raw["log_loss"], (raw, fixed)
    assert fixed["roc_auc"] == pytest.approx(raw["roc_auc"])  # monotone: ranking untouched
    assert fixed["f1_at_threshold"] > 0.0 and 0.0 < cal.threshold < 1.0


# -- the final fit: train + validation ---------------------------------------------------------------
def _fit(demo_lake, tmp_path, name: str, **overrides):
    from ai_factory.training.artifacts import load_model
    from ai_factory.training.steps import fit, make_window

    window = make_window(str(tmp_path / "window.json"), days=5, data_root=demo_lake.root)["window"]
    model_dir = str(tmp_path / name)
    result = fit(window, model_dir, params_override={**SMALL_PARAMS, **overrides}, data_root=demo_lake.root,
                 threads=1)
    return window, result, load_model(model_dir)


def test_final_fit_trains_on_train_plus_validation_for_the_epochs_chosen_on_validation(demo_lake, tmp_path):
    from ai_factory.settings import get_settings
    from ai_factory.spec import load_spec
    from ai_factory.training.preprocess import Preprocessor
    from ai_factory.training.window import TrainingWindow, load_frames

    window, result, loaded = _fit(demo_lake, tmp_path, "refit", max_epochs=6, patience=2)
    frames = load_frames(demo_lake, load_spec(get_settings().spec_path), TrainingWindow.load(window),
                         ("train", "validation"))
    n_train, n_val = len(frames["train"]), len(frames["validation"])
    assert result["rows"] == {"train": n_train, "validation": n_val, "final_fit": n_train + n_val}
    assert result["refit"]["rows"] == n_train + n_val
    assert result["refit"]["epochs"] == result["best_epoch"] >= 1
    assert result["best_at_last_epoch"] is (result["best_epoch"] == 6)
    # The saved preprocessing is fitted on train + validation rows, not on train alone.
    both = Preprocessor.fit(loaded.spec, pd.concat([frames["train"], frames["validation"]], ignore_index=True))
    alone = Preprocessor.fit(loaded.spec, frames["train"])
    assert loaded.preprocessor.to_dict() == both.to_dict() != alone.to_dict()
    assert loaded.meta["training"]["refit"]["rows"] == n_train + n_val
    # The calibrator is stored beside the weights and read back with the model.
    assert loaded.calibration is not None and loaded.calibration.method == "platt"
    assert loaded.calibration.validation["rows"] == n_val
    assert sum(loaded.calibration.prior) == pytest.approx(1.0)

    _, kept, train_only = _fit(demo_lake, tmp_path, "no-refit", max_epochs=6, patience=2, refit_on_validation=False)
    assert kept["rows"]["final_fit"] == n_train
    assert train_only.preprocessor.to_dict() == alone.to_dict()


def test_evaluation_records_calibration_and_the_predictor_labels_at_the_threshold(demo_lake, tmp_path):
    from ai_factory.training.predictor import Predictor
    from ai_factory.training.steps import evaluate

    window, _, _ = _fit(demo_lake, tmp_path, "model")
    out = evaluate(window, str(tmp_path / "model"), data_root=demo_lake.root)
    assert out["validation_in_training"] is True
    assert out["holdout"]["ece"] < out["holdout_uncalibrated"]["ece"]
    assert out["proper_score"]["beats_baseline"] and out["proper_score"]["metric"] == "log_loss"
    assert sum(b["count"] for b in out["holdout_reliability"]["bins"]) == out["holdout_rows"]
    assert out["calibration"]["threshold"] == pytest.approx(out["calibration"]["threshold"])

    predictor = Predictor.from_dir(str(tmp_path / "model"))
    from ai_factory.training.window import TrainingWindow, load_frames

    df = load_frames(demo_lake, predictor.spec, TrainingWindow.load(window), ("holdout",))["holdout"].head(300)
    proba = predictor.predict_proba(df)
    assert 0.0 < predictor.threshold < 1.0 and not math.isclose(predictor.threshold, 0.5)
    expected = np.where(proba[:, 1] >= predictor.threshold, predictor.classes[1], predictor.classes[0])
    assert list(predictor.predict(df)) == list(expected)
    assert list(predictor.predict_frame(df)["prediction"]) == list(expected)
    records = df.to_dict(orient="records")
    assert np.allclose(predictor.predict_proba(records), proba)

    # A model directory from before calibration existed still loads: raw probabilities, 0.5.
    (tmp_path / "model" / CALIBRATION_FILE).unlink()
    old = Predictor.from_dir(str(tmp_path / "model"))
    assert old.calibration is None and old.threshold == 0.5
    assert np.allclose(old.predict_proba(df), predictor.predict_proba(df, calibrated=False))


def test_a_refit_runs_exactly_its_schedule_without_validation():
    spec = parse_spec({"name": "t", "target": {"name": "y", "task": "regression"},
                       "features": [{"name": "x", "dtype": "float"}]})
    x = np.linspace(-1, 1, 64, dtype="float32")[:, None]
    split = TensorSplit.from_arrays(spec.target.task, x, np.zeros((64, 0), "int64"), 2 * x[:, 0])
    model = TabularMLP(build_model_config("regression", 1, [], 1, 8, 1, 0.0, 4))
    params = TrainParams(hidden_size=8, n_layers=1, batch_size=16, max_epochs=50, patience=1, dropout=0.0)
    result = train(model, split, None, params, select_device("cpu"), schedule=[1e-2, 5e-3, 1e-3], label="refit")
    assert len(result.history) == 3 and result.best_epoch == 3 and not result.stopped_early
    assert [h.lr_start for h in result.history] == [1e-2, 5e-3, 1e-3]
    assert all(math.isnan(h.val_metric) for h in result.history)
    with pytest.raises(ValueError, match="validation split is empty"):
        train(model, split, None, params, select_device("cpu"))
