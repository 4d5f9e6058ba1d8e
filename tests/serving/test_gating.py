"""The model gate: each rule on its own (ties and boundaries included), then whole decisions on real models."""

from __future__ import annotations

import math

import pytest

from ai_factory.gating import (
    BaselineRule,
    GateConfig,
    GateError,
    LatencyBudget,
    LimitRule,
    PrimaryRule,
    RuleResult,
    SecondaryRule,
    check_baseline,
    check_floor,
    check_latency,
    check_limits,
    check_primary,
    check_secondary,
    decide,
    evaluate_gate,
    improvement,
    load_gate_config,
    run_gate,
)
from ai_factory.registry import ModelRegistry

AUC = PrimaryRule(metric="roc_auc", min_delta=0.01, tolerance=0.005, floor=0.7)
LOSS = PrimaryRule(metric="log_loss", min_delta=0.01, tolerance=0.005, floor=0.5)


# -- rules -------------------------------------------------------------------------------------------
def test_improvement_is_oriented_by_metric_direction():
    assert improvement("roc_auc", 0.82, 0.80) == pytest.approx(0.02)
    assert improvement("log_loss", 0.30, 0.35) == pytest.approx(0.05)  # lower loss is better
    assert improvement("log_loss", 0.35, 0.30) == pytest.approx(-0.05)
    assert improvement("roc_auc", 0.8, 0.8 + 1e-15) == 0.0  # float noise is a tie


@pytest.mark.parametrize(("value", "ok"), [(0.71, True), (0.7, True), (0.6999, False), (math.nan, False)])
def test_floor_for_a_maximised_metric(value, ok):
    r = check_floor(AUC, {"roc_auc": value})
    assert r.passed is ok and r.rule == "floor" and r.threshold == 0.7
    if not ok and math.isfinite(value):
        assert "0.6999" in r.message and "misses the floor (>= 0.7000)" in r.message


def test_floor_for_a_minimised_metric_is_a_ceiling():
    assert check_floor(LOSS, {"log_loss": 0.49}).passed
    r = check_floor(LOSS, {"log_loss": 0.51})
    assert not r.passed and "<= 0.5000" in r.message


def test_no_floor_configured_only_needs_a_finite_metric():
    rule = PrimaryRule(metric="rmse", min_delta=0.1, floor=None)
    assert check_floor(rule, {"rmse": 3.0}).passed
    assert not check_floor(rule, {"rmse": math.inf}).passed


@pytest.mark.parametrize(
    ("challenger", "fresher", "ok", "phrase"),
    [
        (0.83, False, True, "improved"),                      # +0.03 >= min_delta
        (0.81, False, True, "improved"),                      # exactly +min_delta: boundary inclusive
        (0.805, False, False, "not trained on newer data"),   # better, but by less than min_delta
        (0.80, False, False, "not trained on newer data"),    # exact tie on the same data: no reason to switch
        (0.80, True, True, "non-inferior and fresher"),       # tie, but trained on newer data
        (0.795, True, True, "non-inferior and fresher"),      # exactly -tolerance, fresher: inclusive
        (0.7949, True, False, "worse than the tolerance"),    # just beyond tolerance
        (0.70, False, False, "worse than the tolerance"),
    ],
)
def test_primary_rule(challenger, fresher, ok, phrase):
    r = check_primary(AUC, {"roc_auc": challenger}, {"roc_auc": 0.80}, challenger_fresher=fresher)
    assert r.passed is ok, r.message
    assert phrase in r.message
    assert r.challenger == challenger and r.champion == 0.80
    assert f"{challenger:.4f}" in r.message and "0.8000" in r.message


def test_primary_rule_on_a_minimised_metric():
    assert check_primary(LOSS, {"log_loss": 0.28}, {"log_loss": 0.30}, False).passed
    r = check_primary(LOSS, {"log_loss": 0.32}, {"log_loss": 0.30}, True)
    assert not r.passed and r.improvement == pytest.approx(-0.02)


def test_primary_rule_with_an_undefined_metric_rejects():
    r = check_primary(AUC, {"roc_auc": math.nan}, {"roc_auc": 0.8}, True)
    assert not r.passed and "not comparable" in r.message


def test_secondary_rules_allow_regression_up_to_tolerance_only():
    rules = (SecondaryRule(metric="log_loss", tolerance=0.01), SecondaryRule(metric="ece", tolerance=0.02))
    results = check_secondary(rules, {"log_loss": 0.31, "ece": 0.05}, {"log_loss": 0.30, "ece": 0.02})
    assert [r.passed for r in results] == [True, False]   # +0.01 loss = at tolerance; +0.03 ece > 0.02
    assert results[1].rule == "secondary:ece" and "regresses beyond tolerance 0.0200" in results[1].message
    skipped = check_secondary(rules[:1], {"log_loss": math.nan}, {"log_loss": 0.3})
    assert skipped[0].passed and "skipped" in skipped[0].message


def test_latency_budget():
    budget = LatencyBudget(single_ms_p99=5, batch_size=64, batch_ms_p99=20)
    ok = check_latency(budget, {"single": {"p99": 4.9}, "batch": {"p99": 19.0}})
    slow = check_latency(budget, {"single": {"p99": 5.1}, "batch": {"p99": 19.0}})
    assert ok.passed and not slow.passed and "5.10 ms per record (budget 5.0)" in slow.message


def test_decide_names_the_first_failing_rule():
    rules = [RuleResult("floor", True, "roc_auc", 0.8, None, 0.7, None, "fine"),
             RuleResult("primary", False, "roc_auc", 0.8, 0.85, 0.01, -0.05, "worse"),
             RuleResult("latency", False, None, 90, None, 25, None, "slow")]
    approved, rule, reason = decide(rules, first_model=False)
    assert not approved and rule == "primary" and reason.startswith("rejected by primary: worse")
    assert "+1 more failing rule" in reason
    assert decide(rules[:1], first_model=True)[:2] == (True, "floor")


def test_packaged_config_is_valid_and_bad_config_names_the_key(tmp_path):
    cfg = load_gate_config()
    assert cfg.rules_for("binary").primary.metric == "roc_auc"
    bad = tmp_path / "gate.yaml"
    bad.write_text("latency: {single_ms_p99: 1, batch_ms_p99: 1}\ntasks:\n  binary:\n"
                   "    primary: {metric: roc_auc, min_delta: 0}\n")
    with pytest.raises(GateError, match=r"tasks\.binary\.primary\.min_delta"):
        load_gate_config(bad)
    bad.write_text("latency: {single_ms_p99: 1, batch_ms_p99: 1}\ntasks:\n  binary:\n"
                   "    primary: {metric: auroc, min_delta: 0.1}\n")
    with pytest.raises(GateError, match="unknown metric 'auroc'"):
        load_gate_config(bad)


@pytest.mark.parametrize(
    ("model", "margin", "ok"),
    [(0.30, 0.0, True), (0.42, 0.0, True), (0.43, 0.0, False),  # 0.43 ties the base rate: not a win
     (0.50, 0.0, False), (0.41, 0.02, True), (0.42, 0.02, False), (math.nan, 0.0, False)],
)
def test_baseline_rule_needs_a_strictly_better_proper_score(model, margin, ok):
    [r] = check_baseline((BaselineRule(metric="log_loss", min_improvement=margin),), {"log_loss": model},
                         {"log_loss": 0.43}, "training base rate")
    assert r.passed is ok and r.rule == "baseline:log_loss", r.message
    if math.isfinite(model):
        assert r.threshold == pytest.approx(0.43 - margin) and "training base rate 0.4300" in r.message
        assert ("no better than predicting the base rate" in r.message) is (not ok)


def test_limits_bound_a_metric_for_every_model():
    rules = (LimitRule(metric="ece", max=0.05), LimitRule(metric="f1_at_threshold", min=0.2))
    ok = check_limits(rules, {"ece": 0.05, "f1_at_threshold": 0.3})
    assert [r.passed for r in ok] == [True, True]
    bad = check_limits(rules, {"ece": 0.0501, "f1_at_threshold": math.nan})
    assert [r.passed for r in bad] == [False, False]
    assert "ece=0.0501 above the maximum 0.0500" in bad[0].message and "not a finite number" in bad[1].message


def test_baseline_and_limit_config_is_checked(tmp_path):
    cfg = load_gate_config()
    assert [b.metric for b in cfg.rules_for("binary").baseline] == ["log_loss", "brier"]
    assert [b.metric for b in cfg.rules_for("regression").baseline] == ["rmse"]
    bad = tmp_path / "gate.yaml"
    head = "latency: {single_ms_p99: 1, batch_ms_p99: 1}\ntasks:\n  binary:\n    primary: {metric: roc_auc, min_delta: 0.1}\n"
    bad.write_text(head + "    baseline: [{metric: roc_auc}]\n")
    with pytest.raises(GateError, match=r"tasks\.binary\.baseline\.0.*not a proper score"):
        load_gate_config(bad)
    bad.write_text(head + "    limits: [{metric: ece}]\n")
    with pytest.raises(GateError, match=r"tasks\.binary\.limits\.0.*needs 'max' or 'min'"):
        load_gate_config(bad)


# -- whole decisions on real models --------------------------------------------------------------------
def _config(**primary) -> GateConfig:
    base = load_gate_config()
    rules = base.tasks["binary"]
    new_primary = rules.primary.model_copy(update=primary)
    return base.model_copy(update={"tasks": {"binary": rules.model_copy(update={"primary": new_primary})}})


def test_first_model_must_meet_the_floor(store):
    reg = ModelRegistry.from_settings()
    good = run_gate(store.versions["a"])
    assert good.approved and good.champion is None and good.deciding_rule == "floor"
    assert good.holdout["partitions"] == ["2026-03-06"] and good.holdout["rows"] == 700
    [recorded] = reg.decisions(store.versions["a"])
    assert recorded["decision"] == "approved" and recorded["gate"] == "model_gate"
    assert recorded["details"]["deciding_rule"] == "floor"
    assert recorded["metrics"]["challenger"]["roc_auc"] == pytest.approx(good.metrics["challenger"]["roc_auc"])
    assert recorded["details"]["latency_ms"]["challenger"]["single"]["p99"] > 0

    too_high = run_gate(store.versions["b"], config=_config(floor=0.999))
    assert not too_high.approved and too_high.deciding_rule == "floor"
    assert "misses the floor (>= 0.9990)" in too_high.reason and "roc_auc=0." in too_high.reason
    assert reg.latest_decision(store.versions["b"])["decision"] == "rejected"


def test_champion_is_rescored_on_the_same_holdout_not_judged_by_stale_metrics(store):
    reg = ModelRegistry.from_settings()
    reg.set_champion(store.versions["stale"], reason="test")
    assert reg.champion().metrics["roc_auc"] == 0.999  # what it claims
    decision = evaluate_gate(store.versions["fresh"], config=_config(min_delta=0.0001, tolerance=0.05))
    rescored = decision.metrics["champion"]["roc_auc"]
    assert rescored < 0.99  # re-scored on day 6, not the stored 0.999
    assert decision.stored_champion_metrics["roc_auc"] == 0.999
    primary = next(r for r in decision.rules if r.rule == "primary")
    assert primary.champion == pytest.approx(rescored)
    assert decision.approved, decision.reason  # would be rejected if judged against 0.999


def test_a_tie_on_the_same_window_is_rejected_and_the_same_model_fresher_passes(store):
    reg = ModelRegistry.from_settings()
    reg.set_champion(store.versions["a"], reason="test")
    # `stale` is a's exact model: identical predictions, so every metric ties.
    tie = run_gate(store.versions["stale"])
    assert not tie.approved and tie.deciding_rule == "primary"
    primary = next(r for r in tie.rules if r.rule == "primary")
    assert primary.improvement == 0.0 and "not trained on newer data" in primary.message
    assert reg.latest_decision(store.versions["stale"])["reason"] == tie.reason


def test_worse_challenger_is_rejected_with_numbers(store):
    reg = ModelRegistry.from_settings()
    reg.set_champion(store.versions["a"], reason="test")
    decision = run_gate(store.versions["b"], config=_config(floor=0.5))
    ch, cp = decision.metrics["challenger"]["roc_auc"], decision.metrics["champion"]["roc_auc"]
    assert ch < cp - 0.003  # a 1-epoch, 8-unit net is clearly worse
    assert not decision.approved and decision.deciding_rule == "primary"
    assert f"{ch:.4f} vs champion {cp:.4f}" in decision.reason


def test_latency_over_budget_rejects(store):
    base = load_gate_config()
    tight = base.model_copy(update={"latency": base.latency.model_copy(update={"single_ms_p99": 0.001})})
    decision = evaluate_gate(store.versions["a"], config=tight)
    assert not decision.approved and decision.deciding_rule == "latency" and "over budget" in decision.reason


def test_gate_refuses_unfair_or_pointless_comparisons(store):
    reg = ModelRegistry.from_settings()
    reg.set_champion(store.versions["a"], reason="test")
    with pytest.raises(GateError, match="already the champion"):
        evaluate_gate(store.versions["a"])
    # Day 6 vanishes: the newest day is then day 5, which `fresh` trained on (validation).
    import shutil

    from ai_factory.storage import DataLake, Zone

    lake = DataLake.from_settings()
    shutil.rmtree(lake.partition_path(Zone.VALIDATED, "2026-03-06"))
    with pytest.raises(GateError, match="trained or early-stopped on the holdout day"):
        evaluate_gate(store.versions["fresh"])


def _register_overconfident(store, factor: float) -> str:
    """Version ``a``'s weights with its calibrator scaled by ``factor``: same ranking (AUC), worse probabilities."""
    import json
    import shutil

    reg = ModelRegistry.from_settings()
    source = reg.get(store.versions["a"]).path
    model_dir = store.root / "overconfident"
    shutil.copytree(source, model_dir)
    cal = json.loads((model_dir / "calibration.json").read_text())
    cal["scale"] *= factor
    (model_dir / "calibration.json").write_text(json.dumps(cal))
    evaluation = json.loads((model_dir / "evaluation.json").read_text())
    window = json.loads((model_dir / "window.json").read_text())
    return reg.register(str(model_dir), run_key="run-overconfident", evaluation=evaluation, window=window).version


def test_first_model_worse_than_the_base_rate_on_log_loss_is_rejected(store):
    reg = ModelRegistry.from_settings()
    assert reg.champion() is None
    version = _register_overconfident(store, factor=30.0)
    decision = run_gate(version)
    rules = {r.rule: r for r in decision.rules}
    assert rules["floor"].passed, rules["floor"].message  # AUC is as good as a's: the floor alone would ship it
    ll = rules["baseline:log_loss"]
    assert not ll.passed and ll.challenger > decision.metrics["baseline"]["log_loss"]
    assert not decision.approved and decision.deciding_rule == "baseline:log_loss"
    assert "no better than predicting the base rate" in decision.reason
    assert decision.holdout["baseline"] == "training base rate"
    recorded = reg.latest_decision(version)
    assert recorded["decision"] == "rejected"
    assert recorded["metrics"]["baseline"]["log_loss"] == pytest.approx(decision.metrics["baseline"]["log_loss"])
    # The same weights with their fitted calibrator beat the base rate and pass as a first model.
    good = evaluate_gate(store.versions["a"])
    assert good.approved, good.reason
    assert next(r for r in good.rules if r.rule == "baseline:log_loss").passed
