"""The fast path agrees with Evidently's full DataDriftPreset computation, column by column.

Evidently runs here on exactly the frames the fast path sees, with the column types from the
spec, and nothing sampled: same tests picked, same scores (to rounding), same per-column flags
and the same dataset-level share and decision.
"""

from __future__ import annotations

from datetime import date

import numpy as np
import pandas as pd
import pytest

from ai_factory.data.generate import generate_day
from ai_factory.monitoring.assembly import normalise
from ai_factory.monitoring.config import parse_config
from ai_factory.monitoring.decision import drift_share
from ai_factory.monitoring.monitor import drift_tests
from ai_factory.monitoring.quality import compute_metrics
from ai_factory.monitoring.stattests import (
    ColumnKind,
    ColumnTest,
    DriftInputError,
    column_drift,
    detect_drift,
    select_test,
)
from ai_factory.spec import default_spec, parse_spec

from drift_fixtures import drift, served

SPEC = default_spec()
CONFIG = parse_config({})
DAY = date(2026, 3, 1)


def evidently_columns(spec, tests, reference: pd.DataFrame, current: pd.DataFrame, share_threshold: float):
    """Evidently's own verdicts: {column: (test label, score, drifted)} and the dataset drift share."""
    from evidently import DataDefinition, Dataset, Report
    from evidently.metrics import ValueDrift
    from evidently.presets import DataDriftPreset

    num = [t.name for t in tests if t.kind == ColumnKind.NUMERICAL]
    cat = [t.name for t in tests if t.kind == ColumnKind.CATEGORICAL]
    features = [t.name for t in tests if t.role == "feature"]
    definition = DataDefinition(numerical_columns=num, categorical_columns=cat)
    report = Report([DataDriftPreset(columns=features, drift_share=share_threshold)]
                    + [ValueDrift(column=t.name) for t in tests if t.role != "feature"], include_tests=True)
    snap = report.run(Dataset.from_pandas(current[num + cat], data_definition=definition),
                      Dataset.from_pandas(reference[num + cat], data_definition=definition))
    d = snap.dict()
    failed = {t["metric_config"]["metric_id"]: str(t["status"].value) == "FAIL" for t in d["tests"]
              if t["metric_config"]["params"]["type"].endswith("ValueDrift")}
    out, share = {}, None
    for m in d["metrics"]:
        params = m["config"]
        if params["type"].endswith("ValueDrift"):
            out[params["column"]] = (params["method"], float(m["value"]), failed[m["id"]])
        elif params["type"].endswith("DriftedColumnsCount"):
            share = float(m["value"]["share"])
    return out, share


def assert_agrees(spec, reference: pd.DataFrame, current: pd.DataFrame, tests=None, threshold: float = 0.5):
    tests = tests or drift_tests(spec, CONFIG, current, reference)
    fast = detect_drift(tests, reference, current, max_workers=2)
    ev, ev_share = evidently_columns(spec, tests, reference, current, threshold)
    assert set(ev) == {t.name for t in tests}
    for c in fast:
        label, score, drifted = ev[c.name]
        assert c.method_label == label, c.name
        assert c.score == pytest.approx(score, rel=1e-9, abs=1e-12), c.name
        assert c.drifted == drifted, (c.name, c.score, score)
    share, _, _ = drift_share(fast)
    assert share == pytest.approx(ev_share)
    assert (share >= threshold) == (ev_share >= threshold)
    return fast


def day(ds: date, rows: int, seed: int, kind: str | None = None, strength: float = 1.0) -> pd.DataFrame:
    cfg = drift(kind, ds, strength) if kind else None
    return normalise(served(generate_day(ds, rows, seed=seed, drift=cfg), ds), SPEC, "test")


@pytest.fixture(scope="module")
def reference() -> pd.DataFrame:
    return day(date(2026, 2, 1), 6000, seed=3)


def test_undrifted_day(reference):
    fast = assert_agrees(SPEC, reference, day(DAY, 6000, seed=1))
    assert not [c.name for c in fast if c.drifted]
    assert {c.method for c in fast} == {"wasserstein", "jensenshannon"}
    assert {c.role for c in fast} == {"feature", "target", "prediction"}


@pytest.mark.parametrize("strength", [1.0, 0.3])
def test_covariate_drift(reference, strength):
    fast = assert_agrees(SPEC, reference, day(DAY, 6000, seed=1, kind="covariate", strength=strength))
    drifted = {c.name for c in fast if c.drifted}
    assert {"annual_income", "credit_score"} <= drifted
    # at 0.3 several columns sit close to the 0.1 threshold: the hard case for agreement
    near = [c for c in fast if c.method == "wasserstein" and abs(c.score - 0.1) < 0.03]
    assert strength == 1.0 or near


def test_concept_drift(reference):
    current = day(DAY, 6000, seed=1, kind="concept")
    fast = assert_agrees(SPEC, reference, current)
    assert not [c.name for c in fast if c.drifted and c.role == "feature"]  # inputs did not move
    ref_q, _ = compute_metrics(reference, SPEC, CONFIG)
    cur_q, _ = compute_metrics(current, SPEC, CONFIG)
    assert ref_q["f1"] - cur_q["f1"] > 0.08  # ... but the model got worse


def test_small_reference_uses_evidentlys_p_value_tests(reference):
    small = reference.iloc[:800].reset_index(drop=True)
    fast = assert_agrees(SPEC, small, day(DAY, 3000, seed=1, kind="covariate", strength=0.5))
    assert {c.method for c in fast} >= {"ks", "chisquare", "z"}


def test_discrete_numeric_columns_nulls_and_infinities():
    spec = parse_spec({
        "name": "toy", "target": {"name": "y", "task": "binary", "classes": [0, 1]},
        "features": [
            {"name": "bucket", "dtype": "int"},           # 3-5 distinct values: Jensen-Shannon on a number
            {"name": "flag", "dtype": "int"},             # 2 distinct values
            {"name": "amount", "dtype": "float", "nullable": True},
            {"name": "colour", "dtype": "category", "categories": ["red", "green", "blue", "teal"]},
        ],
    })
    rng = np.random.default_rng(0)

    def frame(n: int, shift: float) -> pd.DataFrame:
        amount = rng.normal(100 + shift * 10, 20, n)
        amount[rng.random(n) < 0.05] = np.nan
        amount[rng.random(n) < 0.01] = np.inf
        return normalise(pd.DataFrame({
            "bucket": rng.choice([1, 2, 3, 4], n, p=[0.4 - shift * 0.2, 0.3, 0.2, 0.1 + shift * 0.2]),
            "flag": (rng.random(n) < 0.3 + shift * 0.2).astype("int64"),
            "amount": amount,
            "colour": rng.choice(["red", "green", "blue", "teal"], n, p=[0.4, 0.3, 0.2, 0.1]),
            "y": rng.integers(0, 2, n),
        }), spec, "toy")

    ref = frame(3000, 0.0)
    for shift in (0.0, 1.0):
        fast = assert_agrees(spec, ref, frame(5000, shift))
        assert fast[0].method == "jensenshannon" and fast[1].method == "jensenshannon"
        assert fast[2].method == "wasserstein" and fast[2].current_missing_share > 0.04


@pytest.mark.parametrize("ref_rows", [1000, 1001])
@pytest.mark.parametrize("distinct", [2, 3, 5, 6, 40])
@pytest.mark.parametrize("kind", [ColumnKind.NUMERICAL, ColumnKind.CATEGORICAL])
def test_test_selection_mirrors_evidently(ref_rows, distinct, kind):
    from evidently.legacy.calculations.stattests.registry import _get_default_stattest
    from evidently.legacy.core import ColumnType

    rng = np.random.default_rng(distinct)
    values = np.arange(distinct, dtype="float64")
    ref = pd.Series(rng.choice(values, ref_rows))
    cur = pd.Series(rng.choice(values, 2000))
    ref.iloc[:distinct] = values  # every value present
    if kind == ColumnKind.CATEGORICAL:
        ref, cur = ref.astype(int).astype(str), cur.astype(int).astype(str)
    column_type = ColumnType.Numerical if kind == ColumnKind.NUMERICAL else ColumnType.Categorical
    expected = _get_default_stattest(ref, cur, column_type).name
    assert select_test(kind, ref_rows, distinct) == expected
    assert column_drift(ColumnTest("x", kind), ref, cur).method == expected


def test_an_all_null_column_is_a_clear_error():
    ref = pd.DataFrame({"x": [1.0, 2.0, 3.0]})
    cur = pd.DataFrame({"x": [np.nan, np.nan]})
    with pytest.raises(DriftInputError, match="current column 'x' has no non-null values"):
        detect_drift([ColumnTest("x", ColumnKind.NUMERICAL)], ref, cur)
    with pytest.raises(DriftInputError, match="reference data has no column 'y'"):
        detect_drift([ColumnTest("y", ColumnKind.NUMERICAL)], ref, cur)
