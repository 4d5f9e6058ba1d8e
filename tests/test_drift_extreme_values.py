"""Any finite value (and NaN, ±inf) in served records: the night's drift check still runs and decides.

Finding: two served records with ``annual_income = ±1.7e308`` made ``ai-factory drift check``
fail with ``ValueError: Too many bins`` (Evidently's histograms over an overflowing range),
and the fast path's Wasserstein score became ``nan`` (read as "no drift").
"""

from __future__ import annotations

import json
import math
from datetime import date

import numpy as np
import pandas as pd

from ai_factory.data.generate import generate_day, to_parquet_bytes
from ai_factory.monitoring.stattests import (
    ColumnKind,
    ColumnTest,
    bound_frames,
    column_drift,
    numeric_bounds,
)
from ai_factory.storage import Zone

from drift_fixtures import reference_frame, served, write_config

DS = date(2026, 4, 10)
HUGE = 1.7e308


def _served_day_with(values: list[float], rows: int = 1500) -> pd.DataFrame:
    df = served(generate_day(DS, rows, seed=7), DS)
    df.loc[: len(values) - 1, "annual_income"] = values
    return df


def test_drift_check_cli_survives_extreme_finite_values_nan_and_inf(lake, tmp_path, capsys):
    from ai_factory.cli import main

    day = _served_day_with([HUGE, -HUGE, np.nan, np.inf, -np.inf])
    lake.replace_partition(Zone.PREDICTIONS, DS, {"part-0.parquet": to_parquet_bytes(day)})
    config = write_config(tmp_path / "drift.yaml")

    assert main(["drift", "check", "--ds", DS.isoformat(), "--config", str(config)]) == 0

    out = json.loads(capsys.readouterr().out)
    assert out["drift"] is False  # five odd rows of 1,500 are not a drifted population
    summary = lake.read_json(lake.partition_path(Zone.REPORTS_DRIFT, DS) + "/summary.json")
    income = next(c for c in summary["drift"]["columns"] if c["name"] == "annual_income")
    assert income["current_clipped"] == 2 and income["reference_clipped"] == 0
    assert income["current_rows"] == 1497  # NaN and ±inf dropped, as Evidently does
    assert math.isfinite(income["score"]) and math.isfinite(income["report_score"])
    assert not income["drifted"] and income["report_drifted"] is False
    html = lake.read_bytes(lake.partition_path(Zone.REPORTS_DRIFT, DS) + "/report.html").decode()
    assert "ai-factory-drift-banner" in html


def test_a_population_of_extreme_values_is_still_drift():
    """Clipping bounds the influence of one absurd value; it does not hide a real shift to absurd values."""
    reference = reference_frame()["annual_income"]
    current = reference.copy()
    current.iloc[: len(current) // 3] = HUGE
    result = column_drift(ColumnTest("annual_income", ColumnKind.NUMERICAL), reference, current)
    assert result.drifted and math.isfinite(result.score) and result.current_clipped == len(current) // 3


def test_a_reference_full_of_extreme_values_keeps_every_score_finite():
    rng = np.random.default_rng(0)
    reference = pd.Series(np.concatenate([rng.normal(50_000, 10_000, 1900), np.full(100, HUGE)]))
    current = pd.Series(np.concatenate([rng.normal(50_000, 10_000, 1500), [-HUGE, HUGE, np.finfo(float).tiny]]))
    lo, hi = numeric_bounds(reference.to_numpy())
    assert math.isfinite(hi - lo)  # any range over the bounds is finite: no histogram can overflow
    for n in (2000, 500):  # Wasserstein (fast path) and K-S (Evidently's own small-reference test)
        result = column_drift(ColumnTest("x", ColumnKind.NUMERICAL), reference.iloc[-n:], current)
        assert math.isfinite(result.score), result
        assert np.histogram(np.clip(current, lo, hi), bins=10)[0].sum() == len(current)


def test_ordinary_data_is_left_as_it_is():
    ref = reference_frame()
    cur = served(generate_day(DS, 1000, seed=7), DS)
    tests = [ColumnTest(c, ColumnKind.NUMERICAL) for c in ("annual_income", "age", "probability")]
    out_cur, out_ref = bound_frames(tests, cur, ref)
    assert out_cur is cur and out_ref is ref  # nothing outside the bounds: no copy, same bytes to Evidently
