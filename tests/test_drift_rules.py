"""The drift decision rules and their config (pure functions, no Evidently run)."""

from __future__ import annotations

from pathlib import Path

import pytest

from ai_factory.monitoring.config import MonitoringConfigError, load_config, parse_config
from ai_factory.monitoring.decision import decide
from ai_factory.monitoring.quality import MetricDelta, QualityComparison
from ai_factory.monitoring.stattests import ColumnDrift
from ai_factory.spec import default_spec

NO_QUALITY = QualityComparison(available=False, reason="current data: no labels (target column empty)", task="binary")


def col(name: str, drifted: bool, role: str = "feature", score: float | None = None) -> ColumnDrift:
    return ColumnDrift(name=name, role=role, kind="numerical", method="wasserstein",
                       method_label="Wasserstein distance (normed)", threshold=0.1,
                       score=score if score is not None else (0.3 if drifted else 0.01), drifted=drifted,
                       reference_rows=5000, current_rows=5000, reference_missing_share=0.0, current_missing_share=0.0)


def features(n_drifted: int, n_total: int = 10) -> list[ColumnDrift]:
    return [col(f"f{i}", i < n_drifted) for i in range(n_total)]


def quality(ref: float, cur: float, max_degradation: float = 0.03, name: str = "roc_auc") -> QualityComparison:
    worse = ref - cur
    return QualityComparison(available=True, task="binary", labeled_rows=1000, reference_source="data", metrics=[
        MetricDelta(name=name, reference=ref, current=cur, degradation=worse, max_degradation=max_degradation,
                    breached=worse > max_degradation),
    ])


def test_share_at_threshold_is_drift_and_just_below_is_not():
    at = decide(features(3), NO_QUALITY, key_columns=[], share_threshold=0.3)
    below = decide(features(2), NO_QUALITY, key_columns=[], share_threshold=0.3)
    assert at.drift and [t.rule for t in at.triggers] == ["drift_share"]
    assert "0.30 >= 0.30 (3 of 10)" in at.reason
    assert not below.drift and below.triggers == []
    assert "0.20 < 0.30 (2 of 10)" in below.reason


def test_one_drifted_key_column_is_drift_even_with_a_low_share():
    cols = features(0) + [col("credit_score", True, score=0.18)]
    d = decide(cols, NO_QUALITY, key_columns=["credit_score", "age"], share_threshold=0.5)
    assert d.drift and [t.rule for t in d.triggers] == ["key_column"]
    assert "credit_score (wasserstein 0.18 >= 0.1)" in d.reason


def test_a_drifted_non_key_column_alone_is_not_drift():
    cols = features(0) + [col("region", True), col("credit_score", False)]
    d = decide(cols, NO_QUALITY, key_columns=["credit_score"], share_threshold=0.5)
    assert not d.drift
    assert "no key column drifted (credit_score)" in d.reason and "quality not compared: current data" in d.reason


def test_target_and_prediction_columns_do_not_count_towards_the_share():
    cols = features(1, 4) + [col("default", True, role="target"), col("prediction", True, role="prediction")]
    d = decide(cols, NO_QUALITY, key_columns=[], share_threshold=0.5)
    assert not d.drift and "0.25 < 0.50 (1 of 4)" in d.reason


def test_target_can_be_made_a_key_column():
    cols = features(0, 4) + [col("default", True, role="target")]
    assert decide(cols, NO_QUALITY, key_columns=["default"], share_threshold=0.5).drift


def test_quality_drop_beyond_the_margin_is_drift_within_it_is_not():
    dropped = decide(features(0), quality(0.90, 0.85), key_columns=[], share_threshold=0.5)
    within = decide(features(0), quality(0.90, 0.88), key_columns=[], share_threshold=0.5)
    assert dropped.drift and [t.rule for t in dropped.triggers] == ["quality"]
    assert "roc_auc 0.9000 -> 0.8500 (degradation 0.0500 > max 0.03)" in dropped.reason
    assert not within.drift and "quality within margins (roc_auc 0.900->0.880)" in within.reason


def test_every_rule_that_fires_is_named():
    cols = features(6) + [col("credit_score", True)]
    d = decide(cols, quality(0.9, 0.7), key_columns=["credit_score"], share_threshold=0.5)
    assert [t.rule for t in d.triggers] == ["drift_share", "key_column", "quality"]


def test_shipped_config_loads_and_uses_the_spec_key_features():
    spec = default_spec()
    cfg = load_config().check_against(spec)
    assert cfg.drift.resolved_key_columns(spec) == ["age", "annual_income", "credit_score"]
    assert [r.metric.value for r in cfg.quality.rules_for(spec.target.task)] == ["roc_auc", "f1"]


def test_relative_degradation_for_error_metrics():
    from ai_factory.monitoring.quality import _delta
    from ai_factory.spec import TaskType

    cfg = parse_config({"quality": {"max_degradation": [{"metric": "rmse", "max": 0.1, "relative": True}]}})
    worse = _delta("rmse", 10.0, 11.5, cfg, TaskType.REGRESSION)
    better = _delta("rmse", 10.0, 9.0, cfg, TaskType.REGRESSION)
    assert worse.breached and worse.degradation == pytest.approx(0.15) and worse.relative
    assert not better.breached and better.degradation == pytest.approx(-0.1)


@pytest.mark.parametrize(("raw", "message"), [
    ({"drift": {"share_treshold": 0.3}}, "key 'drift.share_treshold': unknown key"),
    ({"drift": {"share_threshold": 1.5}}, "key 'drift.share_threshold'"),
    ({"quality": {"max_degradation": [{"metric": "auc", "max": 0.1}]}}, "key 'quality.max_degradation.0.metric'"),
    ({"reference": {"provider": "no_colon_here"}}, "is not 'package.module:function'"),
    ({"report": {"max_rows": 500}}, "key 'report.max_rows'"),
])
def test_bad_config_names_the_key(raw, message):
    with pytest.raises(MonitoringConfigError, match="invalid drift config") as err:
        parse_config(raw, source="drift.yaml")
    assert message in str(err.value) and "drift.yaml" in str(err.value)


def test_config_naming_an_unknown_column_fails_against_the_spec():
    cfg = parse_config({"drift": {"extra_key_columns": ["credit_scor"]}})
    with pytest.raises(MonitoringConfigError, match="key 'drift.extra_key_columns': column 'credit_scor'"):
        cfg.check_against(default_spec(), source="drift.yaml")


def test_unreadable_config_file_names_the_path(tmp_path: Path):
    with pytest.raises(MonitoringConfigError, match="cannot read drift config"):
        load_config(tmp_path / "missing.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("drift: [unclosed")
    with pytest.raises(MonitoringConfigError, match=f"{bad}: not valid YAML"):
        load_config(bad)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_binary_metrics_equal_scikit_learns(seed):
    import numpy as np
    from sklearn import metrics as skm

    from ai_factory.monitoring.quality import binary_metrics

    rng = np.random.default_rng(seed)
    y = (rng.random(5000) < 0.15).astype("int64")
    proba = np.round(np.clip(0.15 + 0.3 * y + rng.normal(0, 0.2, 5000), 0, 1), 2)  # rounded: many ties
    yhat = (proba >= 0.5).astype("int64")
    got = binary_metrics(y, yhat, proba)
    assert got["accuracy"] == pytest.approx(skm.accuracy_score(y, yhat), rel=1e-12)
    assert got["precision"] == pytest.approx(skm.precision_score(y, yhat, zero_division=0), rel=1e-12)
    assert got["recall"] == pytest.approx(skm.recall_score(y, yhat, zero_division=0), rel=1e-12)
    assert got["f1"] == pytest.approx(skm.f1_score(y, yhat, zero_division=0), rel=1e-12)
    assert got["roc_auc"] == pytest.approx(skm.roc_auc_score(y, proba), rel=1e-12)


def test_binary_metrics_without_positive_predictions_are_zero_not_nan():
    import numpy as np

    from ai_factory.monitoring.quality import binary_metrics

    got = binary_metrics(np.array([0, 1, 0]), np.array([0, 0, 0]), None)
    assert got == {"accuracy": pytest.approx(2 / 3), "precision": 0.0, "recall": 0.0, "f1": 0.0}
