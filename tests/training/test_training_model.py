"""Model, preprocessing and metrics: shapes per task type, OOV handling, clear errors."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from ai_factory.settings import PACKAGE_DIR
from ai_factory.spec import load_spec
from ai_factory.training.config import ConfigError, TrainParams, load_search_space
from ai_factory.training.metrics import baseline_metrics, compute_metrics, expected_calibration_error
from ai_factory.training.model import ModelConfig, TabularMLP, embedding_dim, outputs_to_predictions
from ai_factory.training.preprocess import InputError, Preprocessor
from ai_factory.training.steps import build_model

from training_helpers import toy_frame, toy_spec


@pytest.mark.parametrize(("task", "out_shape"), [("binary", (64,)), ("multiclass", (64, 3)), ("regression", (64,))])
def test_model_output_shapes_per_task(task, out_shape):
    spec = toy_spec(task)
    df = toy_frame(spec, 64)
    pre = Preprocessor.fit(spec, df)
    model = build_model(pre, TrainParams(hidden_size=16, n_layers=2))
    x_num, x_cat = pre.transform_features(df)
    # 2 numeric features + a missing indicator for the nullable one; 2 categorical (category + bool)
    assert x_num.shape == (64, 3) and x_cat.shape == (64, 2)
    model.eval()
    out = model(torch.as_tensor(x_num), torch.as_tensor(x_cat))
    assert tuple(out.shape) == out_shape
    preds = outputs_to_predictions(task, out.detach())
    if task == "regression":
        assert preds.shape == (64,)
    else:
        k = 2 if task == "binary" else 3
        assert preds.shape == (64, k)
        assert torch.allclose(preds.sum(dim=1), torch.ones(64), atol=1e-5)


def test_embeddings_have_an_oov_slot_and_unseen_categories_use_it():
    spec = toy_spec("binary")
    train = toy_frame(spec, 200)
    pre = Preprocessor.fit(spec, train)
    color = next(c for c in pre.categorical if c.name == "color")
    # "violet" is allowed by the spec but never seen in training: not in the vocabulary.
    assert color.vocab == ["red", "green", "blue"] and color.cardinality == 4
    model = build_model(pre, TrainParams(embedding_dim_max=3))
    assert [e.num_embeddings for e in model.embeddings] == [4, 3]
    odd = train.head(4).copy()
    odd["color"] = ["violet", "mauve", None, "red"]
    _, x_cat = pre.transform_features(odd)
    assert x_cat[:, 0].tolist() == [0, 0, 0, 1]


def test_quantile_transform_is_monotone_and_imputes_with_missing_indicator():
    spec = toy_spec("regression")
    df = toy_frame(spec, 500)
    pre = Preprocessor.fit(spec, df)
    probe = df.head(5).copy()
    probe["x1"] = [-10.0, -1.0, 0.0, 1.0, 10.0]
    probe["x2"] = pd.array([None, 1, 2, 3, None], dtype="Int64")
    x_num, _ = pre.transform_features(probe)
    assert np.all(np.diff(x_num[:, 0]) > 0)
    assert np.isfinite(x_num).all()
    assert x_num[:, 2].tolist() == [1.0, 0.0, 0.0, 0.0, 1.0]  # x2's missing indicator
    roundtrip = Preprocessor.from_dict(spec, pre.to_dict())
    np.testing.assert_array_equal(roundtrip.transform_features(probe)[0], x_num)


def test_binary_positive_class_is_index_one_even_when_listed_first():
    spec = toy_spec("binary").model_copy(update={"target": toy_spec("binary").target.model_copy(
        update={"classes": ("yes", "no"), "positive_class": "yes"})})
    df = toy_frame(toy_spec("binary"), 50)
    pre = Preprocessor.fit(spec, df)
    assert pre.classes == ["no", "yes"]
    assert (pre.transform_target(df) == (df["y"] == "yes").astype(int)).all()


def test_bad_input_names_the_column():
    spec = load_spec(PACKAGE_DIR / "specs" / "credit_default.yaml")
    with pytest.raises(InputError, match="credit_score"):
        Preprocessor.fit(spec, pd.DataFrame({"age": [30]}))
    tspec = toy_spec("multiclass")
    df = toy_frame(tspec, 30)
    pre = Preprocessor.fit(tspec, df)
    df.loc[0, "y"] = "zebra"
    with pytest.raises(InputError, match="zebra"):
        pre.transform_target(df)
    bad = df.copy()
    bad["x1"] = "abc"
    with pytest.raises(InputError, match="'x1' must be numeric"):
        pre.transform_features(bad)


def test_model_config_rejects_inconsistent_heads():
    with pytest.raises(ValueError, match="output_dim"):
        ModelConfig(task="multiclass", n_numeric=2, output_dim=1)
    with pytest.raises(ValueError, match="binary head"):
        ModelConfig(task="binary", n_numeric=2, output_dim=3)
    assert embedding_dim(4, 16) == 3 and embedding_dim(1000, 16) == 16
    assert isinstance(TabularMLP(ModelConfig(task="regression", n_numeric=3)), torch.nn.Module)


def test_metrics_on_known_values():
    y = np.array([0, 0, 1, 1])
    m = compute_metrics("binary", y, np.array([0.1, 0.4, 0.35, 0.8]))
    assert m["roc_auc"] == pytest.approx(0.75)
    assert m["accuracy"] == pytest.approx(0.75) and m["f1"] == pytest.approx(2 / 3)
    # Perfect calibration: predicted 0.25 where a quarter are positive.
    y_cal = np.array([1, 0, 0, 0] * 25)
    assert expected_calibration_error(y_cal, np.full(100, 0.25)) == pytest.approx(0.0)
    assert expected_calibration_error(y_cal, np.full(100, 0.75)) == pytest.approx(0.5)
    r = compute_metrics("regression", np.array([1.0, 2.0, 3.0]), np.array([1.0, 2.0, 5.0]))
    assert r["rmse"] == pytest.approx(np.sqrt(4 / 3)) and r["mae"] == pytest.approx(2 / 3)
    mc = compute_metrics("multiclass", np.array([0, 1, 2]), np.eye(3))
    assert mc["accuracy"] == 1.0 and mc["log_loss"] < 1e-5
    base = baseline_metrics("binary", np.array([0, 0, 0, 1]), y)
    assert base["roc_auc"] == 0.5 and base["accuracy"] == 0.5


def test_search_space_errors_name_the_key(tmp_path):
    bad = tmp_path / "space.yaml"
    bad.write_text("params:\n  learning_rte: {type: float, low: 0.1, high: 0.2}\n")
    with pytest.raises(ConfigError, match="learning_rte"):
        load_search_space(bad)
    bad.write_text("params:\n  dropout: {type: float, low: 0.5, high: 0.1}\n")
    with pytest.raises(ConfigError, match=r"params\.dropout.*low \(0.5\) is greater than high"):
        load_search_space(bad)
    with pytest.raises(ConfigError, match="unknown training parameter"):
        TrainParams().with_overrides(hiden_size=3)
    packaged = load_search_space()
    assert set(packaged.params) <= set(TrainParams.model_fields)
