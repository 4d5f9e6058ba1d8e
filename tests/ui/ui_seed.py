"""Realistic data for the UI pages, made by the factory's own code (no hand-written reports).

Twelve days from :data:`FIRST_DAY`: the generator lands days 1-11 (day 12 never arrives),
day 8 lands corrupt (out-of-range ages) and the inputs drift (covariate) from day 9. The GX
quality gate validates days 1-10 (day 11 stays landed, not yet validated), the Evidently
monitor checks days 4-10 (day 8 has no validated data, so no report), and three small real
models are trained, registered, judged by the gate and promoted when approved.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from datetime import date, timedelta
from pathlib import Path

log = logging.getLogger(__name__)

FIRST_DAY = date(2026, 3, 1)
DAYS = 12
ROWS = 1500
CORRUPT_DAY = FIRST_DAY + timedelta(days=7)      # day 8
DRIFT_START = FIRST_DAY + timedelta(days=8)      # day 9
PENDING_DAY = FIRST_DAY + timedelta(days=10)     # day 11: landed, not validated
MISSING_DAY = FIRST_DAY + timedelta(days=11)     # day 12: never landed
# Bait for the traversal tests: written beside the reports folder, must never be served.
SECRET = "TOP-SECRET-0xC0FFEE: this file lies outside the reports folder"
DRIFT_DAYS = [FIRST_DAY + timedelta(days=i) for i in range(3, 10)]  # days 4-10

SMALL = {"hidden_size": 32, "n_layers": 1, "batch_size": 256, "max_epochs": 4, "patience": 4,
         "embedding_dim_max": 4}
# (run key, window end day, window days, params): v2 is deliberately a weak network.
MODELS = [
    ("ui-run-1", 5, 5, SMALL),
    ("ui-run-2", 6, 5, {**SMALL, "hidden_size": 8, "max_epochs": 1}),
    ("ui-run-3", 7, 6, SMALL),
]


@dataclass
class Seeded:
    data_root: Path
    model_home: Path
    days: list[date]
    versions: list[str] = field(default_factory=list)

    @property
    def env(self) -> dict[str, str]:
        return {"AI_FACTORY_DATA_ROOT": str(self.data_root), "BENTOML_HOME": str(self.model_home),
                "BENTOML_DO_NOT_TRACK": "true"}


def seed(root: Path) -> Seeded:
    """Build the lake and the model store under ``root`` (the process environment is restored after)."""
    from ai_factory.settings import reset_settings

    out = Seeded(root / "lake", root / "bentoml", [FIRST_DAY + timedelta(days=i) for i in range(DAYS)])
    saved = {k: os.environ.get(k) for k in out.env}
    os.environ.update(out.env)
    reset_settings()
    try:
        _seed_quality(out)
        _seed_models(out, root / "runs")
        _seed_drift(out)
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
        reset_settings()
    return out


def _seed_quality(out: Seeded) -> None:
    from ai_factory.data.generate import Corruption, DriftConfig, DriftKind, write_day
    from ai_factory.quality.validate import QualityGateFailed, run_quality_gate
    from ai_factory.storage import DataLake

    lake = DataLake(str(out.data_root))
    drift = DriftConfig(start=DRIFT_START, kind=DriftKind.COVARIATE)
    for day in out.days:
        if day == MISSING_DAY:
            continue
        write_day(lake, day, ROWS, drift=drift,
                  corruption=Corruption.OUT_OF_RANGE if day == CORRUPT_DAY else None)
        if day == PENDING_DAY:
            continue
        try:
            run_quality_gate(day, lake=lake)
        except QualityGateFailed:
            log.info("seed: ds=%s quarantined, as intended", day)


def _gate_config():
    """The project's gate rules with a roomier latency budget.

    On a shared 2-core test machine the p99 of in-process inference is noise-bound (25 ms is
    exceeded by scheduling jitter alone), which would reject every model by latency. The
    latency rule has its own tests (tests/serving); here decisions should turn on the metrics.
    """
    from ai_factory.gating import load_gate_config

    cfg = load_gate_config()
    return cfg.model_copy(update={"latency": cfg.latency.model_copy(
        update={"single_ms_p99": 500.0, "batch_ms_p99": 2000.0, "repeats": 10, "warmup": 2})})


def _seed_models(out: Seeded, runs: Path) -> None:
    from ai_factory.gating import run_gate
    from ai_factory.registry import ModelRegistry
    from ai_factory.training.steps import evaluate, fit, make_window, register

    data_root = str(out.data_root)
    for run_key, end_day, days, params in MODELS:
        work = runs / run_key
        end = FIRST_DAY + timedelta(days=end_day - 1)
        window = make_window(str(work / "window.json"), days=days, end=end, data_root=data_root)["window"]
        fit(window, str(work / "model"), params_override=params, data_root=data_root, threads=1)
        evaluate(window, str(work / "model"), data_root=data_root, output=str(work / "evaluation.json"))
        reg = register(window, str(work / "model"), str(work / "evaluation.json"), run_key=run_key,
                       data_root=data_root, reference_rows=300, model_home=str(out.model_home))
        out.versions.append(reg["version"])
        registry = ModelRegistry(out.model_home, reg["tag"].split(":")[0])
        decision = run_gate(reg["version"], registry=registry, config=_gate_config())
        if decision.approved:
            registry.set_champion(reg["version"], reason=decision.reason, actor="deployment",
                                  expected=decision.champion, check_expected=True)


def _seed_drift(out: Seeded) -> None:
    from ai_factory.monitoring.monitor import run_drift_check
    from ai_factory.storage import DataLake, Zone

    lake = DataLake(str(out.data_root))
    for day in DRIFT_DAYS:
        if not lake.partition_exists(Zone.VALIDATED, day):
            continue  # a quarantined day: nothing to monitor, the page shows it as missing
        run_drift_check(day, lake=lake)
