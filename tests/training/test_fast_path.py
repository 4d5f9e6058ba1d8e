"""The pandas-free serving path gives the same model inputs and outputs as the DataFrame path.

``Preprocessor.transform_records`` / ``transform_array`` and ``Predictor.predict_proba(records)``
must agree bit for bit with ``transform_features(DataFrame)`` / ``predict_proba(DataFrame)`` on
the demo spec, including nulls, unknown and unseen categories (the OOV slot) and out-of-range
numbers, for both numeric transforms; values the fast path does not coerce like pandas fall back
to the DataFrame path (same errors).
"""

from __future__ import annotations

import logging
from datetime import date

import numpy as np
import pandas as pd
import pytest
import torch

from ai_factory.data.generate import generate_day
from ai_factory.deployment.smoke import frame_to_records
from ai_factory.serving import schemas
from ai_factory.serving.runtime import records_array
from ai_factory.spec import default_spec
from ai_factory.training.artifacts import LoadedModel
from ai_factory.training.device import select_device
from ai_factory.training.loop import TensorSplit, predict_outputs
from ai_factory.training.model import TabularMLP, build_model_config, outputs_to_predictions
from ai_factory.training.predictor import Predictor
from ai_factory.training.preprocess import InputError, Preprocessor

from training_helpers import toy_frame, toy_spec

SPEC = default_spec()


@pytest.fixture(scope="module")
def train_frame() -> pd.DataFrame:
    return generate_day(date(2026, 3, 1), 600, seed=3)


@pytest.fixture(scope="module", params=["quantile", "standard"])
def pre(request, train_frame) -> Preprocessor:
    return Preprocessor.fit(SPEC, train_frame, numeric_transform=request.param)


@pytest.fixture(scope="module")
def odd_records() -> list[dict]:
    """Valid demo records plus every awkward kind of value the service lets through."""
    records = frame_to_records(SPEC, generate_day(date(2026, 3, 2), 40, seed=4))
    records[0].update(months_employed=None, savings_balance=None)  # nullable nulls
    records[1].update(region="atlantis", employment_type="astronaut")  # unknown categories
    records[2].update(age=500, annual_income=-1e9, credit_utilization=1e300, loan_amount=0.0)  # out of range
    records[3].update(credit_score=None)  # null in a non-nullable number: median fill + warning
    records[4].update(has_cosigner=None, home_ownership=None)  # null categories: OOV slot
    records[5].update(interest_rate=5, debt_to_income=2)  # ints in float features
    return records


def _equal(a: tuple[np.ndarray, np.ndarray], b: tuple[np.ndarray, np.ndarray]) -> None:
    for got, want in zip(a, b, strict=True):
        assert got.dtype == want.dtype and got.shape == want.shape
        assert np.array_equal(got, want), np.argwhere(got != want)[:5]


def _no_pandas_path(monkeypatch: pytest.MonkeyPatch) -> None:
    def boom(*_a, **_k):
        raise AssertionError("the fast path fell back to the DataFrame path")

    monkeypatch.setattr(Preprocessor, "transform_features", boom)


def test_records_give_bit_identical_inputs_to_the_dataframe_path(pre, odd_records, monkeypatch):
    want = pre.transform_features(pd.DataFrame.from_records(odd_records))
    _no_pandas_path(monkeypatch)
    got = pre.transform_records(odd_records)
    _equal(got, want)
    _equal(pre.transform_array(records_array(SPEC, odd_records)), want)
    x_num, x_cat = got
    cats = [c.name for c in pre.categorical]
    assert x_cat[1, cats.index("region")] == 0 and x_cat[1, cats.index("employment_type")] == 0
    assert x_cat[4, cats.index("has_cosigner")] == 0 and x_cat[4, cats.index("home_ownership")] == 0
    assert (x_cat[0] > 0).all()  # a clean row uses no OOV slot
    assert np.isfinite(x_num).all()
    # Missing-value indicators follow the numeric columns, in spec order of the nullable features.
    nullable = [s.name for s in pre.numeric if s.missing_indicator]
    assert nullable == ["months_employed", "savings_balance"]
    assert x_num[0, -2:].tolist() == [1.0, 1.0] and x_num[6, -2:].tolist() == [0.0, 0.0]


def test_records_equal_the_validated_frame_they_came_from(pre):
    """What the smoke test relies on: the stored Parquet frame (pandas dtypes, NaNs) and its JSON records agree."""
    frame = generate_day(date(2026, 3, 3), 300, seed=5)
    assert frame[["months_employed", "savings_balance"]].isna().any().all()  # nulls are really exercised
    _equal(pre.transform_records(frame_to_records(SPEC, frame)), pre.transform_features(frame))


def test_pydantic_records_and_empty_input(pre, odd_records, monkeypatch):
    record = schemas.record_model(SPEC)
    models = [record(**r) for i, r in enumerate(odd_records) if i not in (3, 4)]  # 3 and 4 break the schema
    want = pre.transform_features(pd.DataFrame.from_records([m.model_dump() for m in models]))
    _no_pandas_path(monkeypatch)
    _equal(pre.transform_records(models), want)
    x_num, x_cat = pre.transform_records([])
    assert x_num.shape == (0, pre.n_numeric_inputs) and x_cat.shape == (0, len(pre.categorical))


def test_null_in_a_non_nullable_feature_warns_on_the_fast_path(pre, odd_records, caplog):
    with caplog.at_level(logging.WARNING, logger="ai_factory.training.preprocess"):
        pre.transform_records(odd_records[3:4])
    assert "feature 'credit_score' is not nullable but has 1 null(s)" in caplog.text


def test_values_pandas_would_coerce_differently_take_the_dataframe_path(pre, odd_records):
    as_string = [{**odd_records[6], "age": "35"}]
    _equal(pre.transform_records(as_string), pre.transform_records([{**odd_records[6], "age": 35}]))
    with pytest.raises(InputError, match="column 'age' must be numeric; found values like 'abc'"):
        pre.transform_records([{**odd_records[6], "age": "abc"}])
    numeric_category = [{**odd_records[6], "region": 7}]
    _equal(pre.transform_records(numeric_category),
           pre.transform_features(pd.DataFrame.from_records(numeric_category)))
    missing = {k: v for k, v in odd_records[6].items() if k != "credit_score"}
    with pytest.raises(InputError, match="missing column.*credit_score"):
        pre.transform_records([missing])
    with pytest.raises(InputError, match=r"shape \[n, 21\]"):
        pre.transform_array(np.empty((2, 3), dtype=object))


def _predictor(spec, pre: Preprocessor) -> Predictor:
    torch.manual_seed(0)
    config = build_model_config(spec.target.task, pre.n_numeric_inputs, pre.cardinalities, pre.output_dim,
                                hidden_size=16, n_layers=2, dropout=0.1, embedding_dim_max=4)
    model = TabularMLP(config)
    # Non-trivial BatchNorm statistics, so eval mode matters.
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm1d):
            m.running_mean.uniform_(-1, 1)
            m.running_var.uniform_(0.5, 2)
    return Predictor(LoadedModel(model=model, preprocessor=pre, spec=spec, meta={}))


def test_predictor_outputs_equal_the_dataframe_path_and_the_batched_loop(pre, odd_records):
    predictor = _predictor(SPEC, pre)
    frame = pd.DataFrame.from_records(odd_records)
    want = predictor.predict_proba(frame)
    assert np.array_equal(predictor.predict_proba(odd_records), want)
    assert np.array_equal(predictor.predict_proba(records_array(SPEC, odd_records)), want)
    assert np.array_equal(predictor.predict_proba(odd_records[:1]), predictor.predict_proba(frame.head(1)))
    # The training loop's batched, no_grad inference gives the same numbers.
    split = TensorSplit.from_arrays(SPEC.target.task, *pre.transform_features(frame), np.zeros(len(frame), "float32"))
    loop = outputs_to_predictions(SPEC.target.task, predict_outputs(predictor._loaded.model, split, select_device("cpu")))
    assert np.array_equal(loop.numpy().astype("float64"), want)
    assert predictor.predict(odd_records).tolist() == predictor.predict(frame).tolist()
    with pytest.raises(InputError, match="expected a pandas DataFrame, a list of records or an array"):
        predictor.predict_proba("age=35")


@pytest.mark.parametrize("task", ["multiclass", "regression"])
def test_other_tasks_and_an_allowed_but_unseen_category(task):
    spec = toy_spec(task)
    frame = toy_frame(spec, 200, seed=1)
    pre = Preprocessor.fit(spec, frame)
    assert pre.categorical[0].vocab == ["red", "green", "blue"]  # "violet" is allowed but never seen
    predictor = _predictor(spec, pre)
    records = [{"x1": 0.3, "x2": None, "color": "violet", "flag": True},
               {"x1": -1e6, "x2": 4, "color": "red", "flag": False}]
    x_num, x_cat = pre.transform_records(records)
    assert x_cat[0].tolist() == [0, 2] and x_cat[1].tolist() == [1, 1]
    _equal((x_num, x_cat), pre.transform_features(pd.DataFrame.from_records(records)))
    assert np.array_equal(predictor.predict(records), predictor.predict(pd.DataFrame.from_records(records)))
