from __future__ import annotations

import io

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from ai_factory.data.generate import (
    Corruption,
    DriftConfig,
    DriftKind,
    corrupt,
    generate_day,
    to_parquet_bytes,
    write_day,
)
from ai_factory.spec import DType, default_spec
from ai_factory.storage import Zone


def test_same_date_same_frame_and_different_dates_differ():
    a = generate_day("2026-03-01", 500)
    b = generate_day("2026-03-01", 500)
    c = generate_day("2026-03-02", 500)
    pd.testing.assert_frame_equal(a, b)
    assert not a[["age", "annual_income"]].equals(c[["age", "annual_income"]])
    assert to_parquet_bytes(a) == to_parquet_bytes(b)


def test_frame_matches_the_spec():
    spec = default_spec()
    df = generate_day("2026-03-01", 20_000)
    assert list(df.columns) == spec.columns
    for f in spec.features:
        col = df[f.name]
        if f.dtype.is_numeric:
            assert col.min() >= f.min and col.max() <= f.max, f.name
        elif f.dtype == DType.CATEGORY:
            assert set(col.unique()) <= set(f.categories), f.name
        if not f.nullable:
            assert col.notna().all(), f.name
    assert df["application_id"].is_unique
    rate = df["default"].mean()
    assert 0.10 <= rate <= 0.20, rate


def test_signal_is_learnable_and_nonlinear():
    from sklearn.ensemble import HistGradientBoostingClassifier
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import roc_auc_score

    spec = default_spec()
    num = [f.name for f in spec.numeric_features]
    train = pd.concat([generate_day(f"2026-03-0{d}", 8000) for d in range(1, 5)])
    test = generate_day("2026-03-06", 8000)
    X, Xt = train[num].fillna(0), test[num].fillna(0)
    gbm = HistGradientBoostingClassifier(random_state=0).fit(X, train["default"])
    auc_gbm = roc_auc_score(test["default"], gbm.predict_proba(Xt)[:, 1])
    lin = LogisticRegression(max_iter=2000).fit((X - X.mean()) / X.std(), train["default"])
    auc_lin = roc_auc_score(test["default"], lin.predict_proba((Xt - X.mean()) / X.std())[:, 1])
    assert auc_gbm > 0.75
    assert auc_gbm > auc_lin + 0.005  # thresholds and U-shapes reward a non-linear model


def test_covariate_drift_moves_inputs_concept_drift_moves_the_rule():
    base = generate_day("2026-03-10", 20_000)
    cov = generate_day("2026-03-10", 20_000, drift=DriftConfig(start=pd.Timestamp("2026-03-05").date(), kind=DriftKind.COVARIATE))
    con = generate_day("2026-03-10", 20_000, drift=DriftConfig(start=pd.Timestamp("2026-03-05").date(), kind=DriftKind.CONCEPT))
    assert cov["annual_income"].median() < 0.8 * base["annual_income"].median()
    assert cov["credit_score"].mean() < base["credit_score"].mean() - 25
    # concept drift keeps the inputs but changes who defaults
    assert abs(con["credit_score"].mean() - base["credit_score"].mean()) < 3
    hi_dti = base["debt_to_income"] > base["debt_to_income"].quantile(0.8)
    assert con.loc[hi_dti, "default"].mean() > base.loc[hi_dti, "default"].mean() + 0.05
    before = generate_day("2026-03-04", 1000, drift=DriftConfig(start=pd.Timestamp("2026-03-05").date(), kind=DriftKind.COVARIATE))
    pd.testing.assert_frame_equal(before, generate_day("2026-03-04", 1000))


@pytest.mark.parametrize("kind", list(Corruption))
def test_each_corruption_breaks_the_file_in_its_own_way(kind):
    df = generate_day("2026-03-01", 400)
    data = corrupt(df, kind, seed=1)
    assert data == corrupt(df, kind, seed=1)  # deterministic
    if kind == Corruption.EMPTY_FILE:
        assert data == b""
        return
    if kind == Corruption.UNREADABLE_FILE:
        with pytest.raises(pa.ArrowInvalid):
            pq.read_table(io.BytesIO(data))
        return
    bad = pd.read_parquet(io.BytesIO(data))
    if kind == Corruption.NULLS:
        assert bad["credit_score"].isna().sum() == 20
    elif kind == Corruption.OUT_OF_RANGE:
        assert (bad["age"] > 100).sum() == 20
    elif kind == Corruption.UNKNOWN_CATEGORY:
        assert (bad["region"] == "atlantis").sum() == 20
    elif kind == Corruption.MISSING_COLUMN:
        assert "credit_score" not in bad.columns and len(bad.columns) == len(df.columns) - 1
    elif kind == Corruption.WRONG_DTYPE:
        assert bad["annual_income"].dtype == object and bad["annual_income"].str.endswith("USD").all()


def test_write_day_replaces_only_its_partition(lake):
    write_day(lake, "2026-03-01", 100)
    write_day(lake, "2026-03-02", 100)
    first = lake.read_partition_files(Zone.LANDING, "2026-03-01")
    write_day(lake, "2026-03-02", 50, corruption="nulls")
    assert lake.partitions(Zone.LANDING) == [pd.Timestamp("2026-03-01").date(), pd.Timestamp("2026-03-02").date()]
    assert lake.read_partition_files(Zone.LANDING, "2026-03-01") == first
    assert list(lake.read_partition_files(Zone.LANDING, "2026-03-02")) == ["part-0.parquet"]
