"""The model gate: does a challenger replace the champion? Rules in ``config/gate.yaml``.

Both models are scored on the **same holdout**: the newest ``holdout_days`` validated
partitions. The champion is re-scored there; its stored metrics (from its own, older holdout)
are kept in the record for reference but never judge it, because data moves and yesterday's
AUC on yesterday's data says little about today.

Improvement is oriented so that positive always means "the challenger is better":
``challenger − champion`` for a maximised metric, ``champion − challenger`` for a minimised one.

Rules, in the order they are checked (all are evaluated and recorded; the first failing one
decides a rejection):

1. **floor** — the challenger's primary metric meets the absolute floor (``>=`` for a maximised
   metric, ``<=`` for a minimised one). Applies to every model, the first one included.
2. **baseline** — on each listed proper score (log-loss, Brier; RMSE for regression) the
   challenger beats the trivial model, which predicts the class prior (or mean) of the rows the
   challenger was trained on, by at least ``min_improvement``. Also for every model: AUC can
   be fine while the probabilities are worse than the base rate's (a miscalibrated model).
3. **limits** — absolute bounds on a metric (``max`` / ``min``), e.g. ``ece <= 0.05``: a model
   must be calibrated to ship, the first one included.
4. **primary** — ``improvement >= min_delta`` passes as *improved*; otherwise
   ``improvement >= -tolerance`` passes as *non-inferior* only if the challenger was trained on
   newer data than the champion (same quality, fresher model); anything else is rejected. An
   exact tie on the same data window is therefore a rejection (no reason to switch).
   Boundaries are inclusive, with a 1e-12 slack for float rounding.
5. **secondary** — each listed metric may not get worse by more than its tolerance
   (``improvement >= -tolerance``): e.g. ``ece`` and ``f1_at_threshold`` (F1 at each model's
   own decision threshold, the label serving returns).
6. **latency** — p99 of in-process inference (preprocessing + model) on one record and on a
   batch, measured here on holdout rows, within the budget. Rows go in as JSON-style records,
   the path the BentoML service takes (no DataFrame).

A rejection is a normal outcome (:class:`GateDecision` with ``approved=False`` and a reason
naming the rule and the numbers); problems that make judging impossible (no holdout, a
challenger that trained on the holdout, a model that does not load) raise :class:`GateError`.
"""

from __future__ import annotations

import logging
import math
import os
import statistics
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import Field

from ai_factory.configfile import StrictModel, load_model
from ai_factory.settings import PACKAGE_DIR

if TYPE_CHECKING:  # imported where used: the gate's config and rules load without pandas, torch or BentoML
    import pandas as pd

    from ai_factory.registry import ModelRegistry, ModelVersion
    from ai_factory.spec import DatasetSpec
    from ai_factory.storage import DataLake
    from ai_factory.training.predictor import Predictor

log = logging.getLogger(__name__)

DEFAULT_GATE_CONFIG = PACKAGE_DIR / "config" / "gate.yaml"
GATE_CONFIG_ENV = "AI_FACTORY_GATE_CONFIG"
GATE_NAME = "model_gate"
EPS = 1e-12

MAXIMIZE = frozenset({"roc_auc", "average_precision", "accuracy", "f1", "macro_f1", "roc_auc_ovr", "r2",
                      "f1_at_threshold", "precision_at_threshold", "recall_at_threshold"})
# Proper scoring rules (and RMSE/MAE for regression): what a trivial baseline is beaten on.
PROPER = frozenset({"log_loss", "brier", "rmse", "mae"})
MINIMIZE = frozenset({"log_loss", "brier", "ece", "rmse", "mae"})


class GateError(RuntimeError):
    """The gate cannot judge (no holdout, unfair holdout, unloadable model, bad config)."""


# -- config ------------------------------------------------------------------------------------

def _known(metric: str) -> str:
    if metric not in MAXIMIZE | MINIMIZE:
        raise ValueError(f"unknown metric {metric!r}; known: {', '.join(sorted(MAXIMIZE | MINIMIZE))}")
    return metric


class PrimaryRule(StrictModel):
    metric: str
    min_delta: float = Field(gt=0)
    tolerance: float = Field(default=0.0, ge=0)
    floor: float | None = None

    def model_post_init(self, _: Any) -> None:
        _known(self.metric)


class SecondaryRule(StrictModel):
    metric: str
    tolerance: float = Field(ge=0)

    def model_post_init(self, _: Any) -> None:
        _known(self.metric)


class BaselineRule(StrictModel):
    """Beat the trivial model (training prior / mean) on a proper score by at least ``min_improvement``."""

    metric: str
    min_improvement: float = Field(default=0.0, ge=0)

    def model_post_init(self, _: Any) -> None:
        _known(self.metric)
        if self.metric not in PROPER:
            raise ValueError(f"baseline metric {self.metric!r} is not a proper score; use one of "
                             f"{', '.join(sorted(PROPER))}")


class LimitRule(StrictModel):
    """An absolute bound on a metric for every model (``max`` and/or ``min``)."""

    metric: str
    max: float | None = None
    min: float | None = None

    def model_post_init(self, _: Any) -> None:
        _known(self.metric)
        if self.max is None and self.min is None:
            raise ValueError(f"limit on {self.metric!r} needs 'max' or 'min'")


class TaskRules(StrictModel):
    primary: PrimaryRule
    baseline: tuple[BaselineRule, ...] = ()
    limits: tuple[LimitRule, ...] = ()
    secondary: tuple[SecondaryRule, ...] = ()


class LatencyBudget(StrictModel):
    single_ms_p99: float = Field(gt=0)
    batch_size: int = Field(default=256, ge=1)
    batch_ms_p99: float = Field(gt=0)
    repeats: int = Field(default=60, ge=5)
    warmup: int = Field(default=5, ge=0)


class GateConfig(StrictModel):
    holdout_days: int = Field(default=1, ge=1, le=60)
    latency: LatencyBudget
    tasks: dict[str, TaskRules]

    def rules_for(self, task: str) -> TaskRules:
        if task not in self.tasks:
            raise GateError(f"gate config has no rules for task type {task!r} (has: {', '.join(self.tasks)})")
        return self.tasks[task]


def load_gate_config(path: str | Path | None = None) -> GateConfig:
    p = Path(path or os.environ.get(GATE_CONFIG_ENV) or DEFAULT_GATE_CONFIG)
    return load_model(GateConfig, p, what="gate config", error=GateError)


# -- results -------------------------------------------------------------------------------------
@dataclass(frozen=True)
class RuleResult:
    rule: str
    passed: bool
    metric: str | None
    challenger: float | None
    champion: float | None
    threshold: float | None
    improvement: float | None
    message: str


@dataclass
class GateDecision:
    version: str
    champion: str | None
    approved: bool
    deciding_rule: str
    reason: str
    rules: list[RuleResult]
    holdout: dict[str, Any]
    metrics: dict[str, dict[str, float]]
    stored_champion_metrics: dict[str, float] | None
    latency_ms: dict[str, dict[str, dict[str, float]]] = field(default_factory=dict)

    @property
    def decision(self) -> str:
        return "approved" if self.approved else "rejected"

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["decision"] = self.decision
        return out


def improvement(metric: str, challenger: float, champion: float) -> float:
    """Positive when the challenger is better, whatever the metric's direction."""
    delta = challenger - champion if metric in MAXIMIZE else champion - challenger
    return 0.0 if abs(delta) < EPS else delta


def _fmt(x: float | None) -> str:
    return "n/a" if x is None else f"{x:.4f}"


# -- rules (pure functions: unit-tested one by one) -------------------------------------------------
def check_floor(rule: PrimaryRule, challenger: dict[str, float]) -> RuleResult:
    m = rule.metric
    value = challenger.get(m, math.nan)
    if rule.floor is None:
        ok = math.isfinite(value)
        msg = f"{m}={_fmt(value)}; no floor configured" if ok else f"{m} is not a finite number ({value})"
        return RuleResult("floor", ok, m, value, None, None, None, msg)
    if not math.isfinite(value):
        return RuleResult("floor", False, m, value, None, rule.floor, None,
                          f"{m} is not a finite number on the holdout ({value}); e.g. a single-class holdout")
    ok = value >= rule.floor - EPS if m in MAXIMIZE else value <= rule.floor + EPS
    word = ">=" if m in MAXIMIZE else "<="
    msg = f"{m}={value:.4f} {'meets' if ok else 'misses'} the floor ({word} {rule.floor:.4f})"
    return RuleResult("floor", ok, m, value, None, rule.floor, None, msg)


def check_primary(rule: PrimaryRule, challenger: dict[str, float], champion: dict[str, float],
                  challenger_fresher: bool) -> RuleResult:
    m = rule.metric
    c, p = challenger.get(m, math.nan), champion.get(m, math.nan)
    if not (math.isfinite(c) and math.isfinite(p)):
        return RuleResult("primary", False, m, c, p, rule.min_delta, None,
                          f"{m} is not comparable (challenger {c}, champion {p})")
    imp = improvement(m, c, p)
    head = f"{m} {c:.4f} vs champion {p:.4f} (improvement {imp:+.4f})"
    if imp >= rule.min_delta - EPS:
        return RuleResult("primary", True, m, c, p, rule.min_delta, imp,
                          f"{head} >= min_delta {rule.min_delta:.4f}: improved")
    if imp >= -rule.tolerance - EPS and challenger_fresher:
        return RuleResult("primary", True, m, c, p, -rule.tolerance, imp,
                          f"{head} is within tolerance {rule.tolerance:.4f} and the challenger is trained on "
                          f"newer data: non-inferior and fresher")
    if imp >= -rule.tolerance - EPS:
        why = f"is below min_delta {rule.min_delta:.4f} and the challenger is not trained on newer data"
    else:
        why = f"is worse than the tolerance {rule.tolerance:.4f}"
    return RuleResult("primary", False, m, c, p, rule.min_delta, imp, f"{head} {why}")


def check_secondary(rules: tuple[SecondaryRule, ...], challenger: dict[str, float],
                    champion: dict[str, float]) -> list[RuleResult]:
    out = []
    for r in rules:
        c, p = challenger.get(r.metric, math.nan), champion.get(r.metric, math.nan)
        if not (math.isfinite(c) and math.isfinite(p)):
            # A metric undefined on this holdout (e.g. AP on one class) cannot regress; say so.
            out.append(RuleResult(f"secondary:{r.metric}", True, r.metric, c, p, -r.tolerance, None,
                                  f"{r.metric} not comparable on this holdout (challenger {c}, champion {p}); skipped"))
            continue
        imp = improvement(r.metric, c, p)
        ok = imp >= -r.tolerance - EPS
        out.append(RuleResult(
            f"secondary:{r.metric}", ok, r.metric, c, p, -r.tolerance, imp,
            f"{r.metric} {c:.4f} vs champion {p:.4f} (improvement {imp:+.4f}) "
            f"{'within' if ok else 'regresses beyond'} tolerance {r.tolerance:.4f}"))
    return out


def check_baseline(rules: tuple[BaselineRule, ...], challenger: dict[str, float],
                   baseline: dict[str, float], source: str) -> list[RuleResult]:
    """Each proper score must beat the trivial model's by ``min_improvement`` (``threshold`` = the bar)."""
    out = []
    for r in rules:
        c, b = challenger.get(r.metric, math.nan), baseline.get(r.metric, math.nan)
        name = f"baseline:{r.metric}"
        if not (math.isfinite(c) and math.isfinite(b)):
            out.append(RuleResult(name, False, r.metric, c, None, b, None,
                                  f"{r.metric} is not comparable with the baseline (model {c}, {source} {b})"))
            continue
        bar = b - r.min_improvement
        imp = b - c
        ok = c <= bar + EPS and imp > 0
        out.append(RuleResult(
            name, ok, r.metric, c, None, bar, imp,
            f"{r.metric} {c:.4f} vs {source} {b:.4f} (improvement {imp:+.4f}) "
            + (f"beats the baseline by >= {r.min_improvement:.4f}" if ok
               else f"does not beat the baseline by more than {r.min_improvement:.4f}: "
                    "the model's probabilities are no better than predicting the base rate")))
    return out


def check_limits(rules: tuple[LimitRule, ...], challenger: dict[str, float]) -> list[RuleResult]:
    out = []
    for r in rules:
        v = challenger.get(r.metric, math.nan)
        bound = r.max if r.max is not None else r.min
        name = f"limit:{r.metric}"
        if not math.isfinite(v):
            out.append(RuleResult(name, False, r.metric, v, None, bound, None,
                                  f"{r.metric} is not a finite number on the holdout ({v})"))
            continue
        problems = []
        if r.max is not None and v > r.max + EPS:
            problems.append(f"above the maximum {r.max:.4f}")
        if r.min is not None and v < r.min - EPS:
            problems.append(f"below the minimum {r.min:.4f}")
        bounds = " and ".join(x for x in (f"<= {r.max:.4f}" if r.max is not None else "",
                                          f">= {r.min:.4f}" if r.min is not None else "") if x)
        msg = f"{r.metric}={v:.4f} " + ("; ".join(problems) if problems else f"within the limit ({bounds})")
        out.append(RuleResult(name, not problems, r.metric, v, None, bound, None, msg))
    return out


def check_latency(budget: LatencyBudget, measured: dict[str, dict[str, float]]) -> RuleResult:
    single, batch = measured["single"]["p99"], measured["batch"]["p99"]
    ok = single <= budget.single_ms_p99 and batch <= budget.batch_ms_p99
    msg = (f"p99 {single:.2f} ms per record (budget {budget.single_ms_p99:.1f}), "
           f"{batch:.2f} ms per {budget.batch_size}-row batch (budget {budget.batch_ms_p99:.1f})")
    return RuleResult("latency", ok, None, single, None, budget.single_ms_p99, None,
                      msg + ("" if ok else ": over budget"))


def decide(rules: list[RuleResult], first_model: bool) -> tuple[bool, str, str]:
    """(approved, deciding rule, reason) from evaluated rules."""
    failed = [r for r in rules if not r.passed]
    if failed:
        first = failed[0]
        more = f" (+{len(failed) - 1} more failing rule(s))" if len(failed) > 1 else ""
        return False, first.rule, f"rejected by {first.rule}: {first.message}{more}"
    if first_model:
        floor = next(r for r in rules if r.rule == "floor")
        more = "; ".join(r.message for r in rules if r.rule.startswith(("baseline:", "limit:")))
        return True, "floor", f"approved as the first model: {floor.message}" + (f"; {more}" if more else "")
    primary = next(r for r in rules if r.rule == "primary")
    return True, "primary", f"approved: {primary.message}"


# -- measurement ---------------------------------------------------------------------------------
def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    k = max(0, min(len(ordered) - 1, math.ceil(q / 100 * len(ordered)) - 1))
    return ordered[k]


def measure_latency(predictor: Predictor, rows: pd.DataFrame, budget: LatencyBudget) -> dict[str, dict[str, float]]:
    """p50/p99 wall time (ms) of in-process inference on one record and on a batch of holdout rows.

    Rows are scored as request records, as the service scores them (pandas-free preprocessing).
    """
    from ai_factory.deployment.smoke import frame_to_records

    def run(frame: Any) -> dict[str, float]:
        for _ in range(budget.warmup):
            predictor.predict_proba(frame) if predictor.task != "regression" else predictor.predict(frame)
        times = []
        for _ in range(budget.repeats):
            t0 = time.perf_counter()
            predictor.predict_proba(frame) if predictor.task != "regression" else predictor.predict(frame)
            times.append((time.perf_counter() - t0) * 1000)
        return {"p50": statistics.median(times), "p99": percentile(times, 99), "n": float(len(times))}

    batch = rows.head(budget.batch_size)
    if len(batch) < budget.batch_size:  # a small holdout: repeat rows up to the batch size
        reps = math.ceil(budget.batch_size / max(len(batch), 1))
        import pandas as pd

        batch = pd.concat([batch] * reps, ignore_index=True).head(budget.batch_size)
    spec = predictor.spec
    return {"single": run(frame_to_records(spec, rows.head(1))), "batch": run(frame_to_records(spec, batch))}


def score(predictor: Predictor, frame: pd.DataFrame) -> dict[str, float]:
    """The predictor's metrics on a labelled frame (same metric set as training's evaluation)."""
    from ai_factory.spec import TaskType
    from ai_factory.training.metrics import compute_metrics

    pre = predictor.preprocessor
    y = pre.transform_target(frame)
    if predictor.task == TaskType.REGRESSION:
        return compute_metrics(predictor.task, pre.inverse_target(y), predictor.predict(frame))
    # Calibrated probabilities, and the *_at_threshold metrics at the model's own threshold:
    # exactly what serving returns.
    return compute_metrics(predictor.task, y, predictor.predict_proba(frame), predictor.threshold)


def baseline_score(predictor: Predictor, frame: pd.DataFrame) -> tuple[dict[str, float], str]:
    """The trivial model's metrics on ``frame``: the prior (or mean) of the challenger's training rows.

    A model without a stored prior (trained before calibration existed) is compared with the
    holdout's own base rate instead, a stricter bar; the second value says which was used.
    """
    from ai_factory.spec import TaskType
    from ai_factory.training.metrics import prior_metrics

    pre = predictor.preprocessor
    y = pre.transform_target(frame)
    if predictor.task == TaskType.REGRESSION:
        return prior_metrics(predictor.task, [pre.target_mean], pre.inverse_target(y)), "training mean"
    prior = predictor.class_prior
    source = "training base rate"
    if prior is None:
        import numpy as np

        k = len(predictor.classes)
        prior = (np.bincount(y.astype(int), minlength=k) / max(len(y), 1)).tolist()
        source = "holdout base rate"
    return prior_metrics(predictor.task, prior, y), source


# -- the gate --------------------------------------------------------------------------------------
def _window_days(version: ModelVersion, *splits: str) -> set[str]:
    window = version.metadata.get("window") or {}
    return {d for s in splits for d in window.get(s, [])}


def _last_seen_day(version: ModelVersion) -> str:
    return max(_window_days(version, "train", "validation"), default="")


def holdout_frame(lake: DataLake, spec: DatasetSpec, days: int) -> tuple[pd.DataFrame, list[str]]:
    """The newest ``days`` validated partitions as one frame (and their dates)."""
    import pandas as pd

    from ai_factory.storage import Zone

    parts = lake.partitions(Zone.VALIDATED)[-days:]
    if not parts:
        raise GateError(f"no validated partitions under {lake.zone_path(Zone.VALIDATED)}: nothing to judge on")
    frame = pd.concat([lake.read_partition(Zone.VALIDATED, d) for d in parts], ignore_index=True)
    if frame.empty:
        raise GateError(f"the holdout partitions {', '.join(map(str, parts))} have no rows")
    return frame, [d.isoformat() for d in parts]


def evaluate_gate(version: str, *, registry: ModelRegistry | None = None, lake: DataLake | None = None,
                  config: GateConfig | None = None) -> GateDecision:
    """Judge ``version`` against the current champion (does not record anything)."""
    from ai_factory.registry import ModelRegistry
    from ai_factory.storage import DataLake
    from ai_factory.training.predictor import Predictor

    registry = registry or ModelRegistry.from_settings()
    lake = lake or DataLake.from_settings()
    config = config or load_gate_config()
    challenger_v = registry.get(version)
    champion_v = registry.champion()
    if champion_v is not None and champion_v.version == challenger_v.version:
        raise GateError(f"{challenger_v.tag} is already the champion; nothing to judge")
    try:
        challenger = Predictor.from_dir(str(challenger_v.path), version=challenger_v.version)
        champion = (Predictor.from_dir(str(champion_v.path), version=champion_v.version)
                    if champion_v is not None else None)
    except (OSError, ValueError, RuntimeError) as exc:
        raise GateError(f"cannot load a model to judge: {exc}") from exc
    spec = challenger.spec
    rules_cfg = config.rules_for(spec.target.task.value)
    frame, days = holdout_frame(lake, spec, config.holdout_days)
    seen = _window_days(challenger_v, "train", "validation") & set(days)
    if seen:
        raise GateError(f"challenger {challenger_v.tag} trained or early-stopped on the holdout day(s) "
                        f"{', '.join(sorted(seen))}; it cannot be judged on them")
    holdout = {"partitions": days, "rows": int(len(frame)),
               "champion_saw_holdout": bool(champion_v and _window_days(champion_v, "train", "validation")
                                            & set(days))}
    log.info("gate: %s vs %s on holdout %s (%d rows)", challenger_v.tag,
             champion_v.tag if champion_v else "no champion", ", ".join(days), len(frame))

    metrics = {"challenger": score(challenger, frame)}
    metrics["baseline"], baseline_source = baseline_score(challenger, frame)
    holdout["baseline"] = baseline_source
    if champion is not None:
        metrics["champion"] = score(champion, frame)
    latency = {"challenger": measure_latency(challenger, frame, config.latency)}

    results = [check_floor(rules_cfg.primary, metrics["challenger"])]
    results.extend(check_baseline(rules_cfg.baseline, metrics["challenger"], metrics["baseline"], baseline_source))
    results.extend(check_limits(rules_cfg.limits, metrics["challenger"]))
    if champion_v is not None:
        fresher = _last_seen_day(challenger_v) > _last_seen_day(champion_v)
        results.append(check_primary(rules_cfg.primary, metrics["challenger"], metrics["champion"], fresher))
        results.extend(check_secondary(rules_cfg.secondary, metrics["challenger"], metrics["champion"]))
    results.append(check_latency(config.latency, latency["challenger"]))
    approved, rule, reason = decide(results, first_model=champion_v is None)
    reason = f"{challenger_v.tag} on holdout {', '.join(days)} ({len(frame):,} rows): {reason}"
    for r in results:
        log.info("gate rule %-28s %s  %s", r.rule, "PASS" if r.passed else "FAIL", r.message)
    return GateDecision(
        version=challenger_v.version, champion=champion_v.version if champion_v else None, approved=approved,
        deciding_rule=rule, reason=reason, rules=results, holdout=holdout, metrics=metrics,
        stored_champion_metrics=champion_v.metrics if champion_v else None, latency_ms=latency,
    )


def run_gate(version: str, *, registry: ModelRegistry | None = None, lake: DataLake | None = None,
             config: GateConfig | None = None) -> GateDecision:
    """Judge ``version`` and record the decision (all numbers, the deciding rule) in the registry."""
    from ai_factory.registry import ModelRegistry

    registry = registry or ModelRegistry.from_settings()
    decision = evaluate_gate(version, registry=registry, lake=lake, config=config)
    details = decision.to_dict()
    registry.record_decision(decision.version, decision=decision.decision, reason=decision.reason, gate=GATE_NAME,
                             metrics=decision.metrics, details=details)
    (log.info if decision.approved else log.warning)("gate %s: %s", decision.decision.upper(), decision.reason)
    return decision
