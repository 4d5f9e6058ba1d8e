"""Other task types and quality baselines: regression and multiclass days end to end, provider metrics."""

from __future__ import annotations

from datetime import date

import numpy as np
import pandas as pd
import pytest
from sklearn import metrics as skm

from ai_factory.data.generate import to_parquet_bytes
from ai_factory.monitoring.assembly import Reference
from ai_factory.monitoring.config import parse_config
from ai_factory.monitoring.monitor import run_drift_check
from ai_factory.monitoring.quality import compare_quality
from ai_factory.spec import default_spec, parse_spec
from ai_factory.storage import Zone

DS = date(2026, 7, 1)
FEATURES = [{"name": "x", "dtype": "float"}, {"name": "n", "dtype": "int"},
            {"name": "c", "dtype": "category", "categories": ["a", "b", "c"]}]


def _frame(rng: np.random.Generator, rows: int, shift: float, task: str) -> pd.DataFrame:
    x = rng.normal(shift, 1.0, rows)
    df = pd.DataFrame({"x": x, "n": rng.poisson(3 + shift, rows), "c": rng.choice(["a", "b", "c"], rows)})
    if task == "regression":
        df["y"] = 2.0 * x + rng.normal(0, 0.5 + shift, rows)
        df["prediction"] = 2.0 * x
    else:
        df["y"] = np.digitize(x + rng.normal(0, 0.6 + shift, rows), [-0.5, 0.5]).astype("int64")
        df["prediction"] = np.digitize(x, [-0.5, 0.5]).astype("int64")
    return df


@pytest.mark.parametrize("task", ["regression", "multiclass"])
def test_quality_of_other_tasks_matches_evidently_and_degrades_under_drift(lake, task):
    target = {"name": "y", "task": task} | ({"classes": [0, 1, 2]} if task == "multiclass" else {})
    spec = parse_spec({"name": "toy", "target": target, "features": FEATURES})
    rng = np.random.default_rng(1)
    reference = _frame(rng, 3000, 0.0, task)
    for offset, shift in ((0, 0.0), (1, 1.0)):
        ds = date(2026, 7, 1 + offset)
        lake.replace_partition(Zone.PREDICTIONS, ds, {"p.parquet": to_parquet_bytes(_frame(rng, 3000, shift, task))})
        check = run_drift_check(ds, lake=lake, spec=spec, config=parse_config({}),
                                provider=lambda d, s, mv: Reference(data=reference, source="toy champion"))
        s = check.summary
        assert s.quality.available and s.report.includes_quality
        roles = {c.name: (c.role, c.kind) for c in s.drift.columns}
        kind = "numerical" if task == "regression" else "categorical"
        assert roles["y"] == ("target", kind) and roles["prediction"] == ("prediction", kind)
        report = lake.read_json(check.partition + "/report.json")
        ev = {m["config"]["type"].rsplit(":", 1)[-1]: m["value"] for m in report["metrics"]}
        ours = {m.name: m.current for m in s.quality.metrics}
        if task == "regression":
            assert ours["rmse"] == pytest.approx(ev["RMSE"]) and ours["r2"] == pytest.approx(ev["R2Score"])
            assert ours["mae"] == pytest.approx(ev["MAE"]["mean"])
        else:
            assert ours["accuracy"] == pytest.approx(ev["Accuracy"]) and ours["f1"] == pytest.approx(ev["F1Score"])
        assert s.decision.drift == (shift > 0)
        if shift:
            assert {t.rule for t in s.decision.triggers} >= {"drift_share"}
            if task == "regression":
                assert "rmse" in [m.name for m in s.quality.breached]


def _binary_frame(rows: int, with_predictions: bool) -> pd.DataFrame:
    rng = np.random.default_rng(3)
    y = (rng.random(rows) < 0.2).astype("int64")
    df = pd.DataFrame({"default": y})
    if with_predictions:
        df["probability"] = np.clip(0.2 + 0.2 * y + rng.normal(0, 0.15, rows), 0, 1)
        df["prediction"] = (df["probability"] >= 0.5).astype("int64")
    return df


def test_provider_metrics_are_the_baseline_when_the_reference_has_no_predictions():
    spec, cfg = default_spec(), parse_config({})
    current = _binary_frame(2000, True)
    q = compare_quality(current, _binary_frame(500, False), {"roc_auc": 0.99, "f1": 0.30}, spec, cfg)
    assert q.available and q.reference_source == "provider_metrics"
    auc = skm.roc_auc_score(current["default"], current["probability"])
    by_name = {m.name: m for m in q.metrics}
    assert set(by_name) == {"roc_auc", "f1"}  # only metrics known on both sides
    assert by_name["roc_auc"].current == pytest.approx(auc) and by_name["roc_auc"].breached
    assert by_name["f1"].degradation == pytest.approx(0.30 - by_name["f1"].current)


def test_quality_is_not_compared_without_a_baseline_or_enough_labels():
    spec, cfg = default_spec(), parse_config({})
    no_baseline = compare_quality(_binary_frame(2000, True), _binary_frame(500, False), {}, spec, cfg)
    assert not no_baseline.available and "the provider gave no reference metrics" in no_baseline.reason
    few = compare_quality(_binary_frame(150, True), _binary_frame(500, True), {}, spec, cfg)
    assert not few.available and "150 labelled rows, fewer than quality.min_labeled_rows=200" in few.reason
    unlabeled = _binary_frame(2000, True).assign(default=np.nan)
    none = compare_quality(unlabeled, _binary_frame(500, True), {}, spec, cfg)
    assert not none.available and "no labels" in none.reason
