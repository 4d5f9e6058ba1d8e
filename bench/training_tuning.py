"""Tuning: trials per minute and the best score after a fixed time budget, with and without pruning.

    python -m bench.training_tuning [--budget-seconds 180] [--days 7] [--rows 5000] [--json]

One worker, the packaged search space (``config/search_space.yaml``), the demo window
(``--days`` validated days of ``--rows`` rows: train, 1 validation day, 1 holdout day). The
same study settings run twice for the same wall-clock budget: once with the configured
median pruner, once with pruning off. Reported: finished trials, trials/min, pruned
trials, best validation ROC AUC, and the holdout ROC AUC of a final fit with the best
parameters (the number the registry would record).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from datetime import date
from pathlib import Path
from typing import Any

import yaml

from ai_factory.storage import DataLake
from ai_factory.training.config import DEFAULT_SEARCH_SPACE
from ai_factory.training.steps import evaluate, fit, make_window, tune_worker

from ._training_common import bench_env, setup_logging, write_window


def _space_without_pruning(root: Path) -> Path:
    raw = yaml.safe_load(DEFAULT_SEARCH_SPACE.read_text())
    raw["pruner"] = {"name": "none"}
    out = root / "space-no-pruning.yaml"
    out.write_text(yaml.safe_dump(raw))
    return out


def run(budget_seconds: float = 180, days: int = 7, rows: int = 5000, threads: int | None = None) -> dict[str, Any]:
    with bench_env("tuning") as root:
        return _run(root, budget_seconds, days, rows, threads)


def _run(root: Path, budget_seconds: float, days: int, rows: int, threads: int | None) -> dict[str, Any]:
    from ai_factory.settings import get_settings

    lake = DataLake(get_settings().data_root)
    write_window(lake, date(2026, 2, 1), days, rows)
    window = make_window(str(root / "window.json"), days=days)["window"]
    storage = get_settings().optuna_storage
    out: dict[str, Any] = {"budget_seconds": budget_seconds, "train_rows": rows * (days - 2), "runs": []}
    for label, space in (("median pruning", str(DEFAULT_SEARCH_SPACE)), ("no pruning", str(_space_without_pruning(root)))):
        study = f"bench.{label.replace(' ', '_')}"
        t0 = time.perf_counter()
        # n_trials is a ceiling the budget never reaches; the timeout ends the run.
        res = tune_worker(window, study, storage, n_trials=10_000, search_space=space, timeout_seconds=budget_seconds,
                          threads=threads)
        elapsed = time.perf_counter() - t0
        states = res["states"]
        finished = states.get("complete", 0) + states.get("pruned", 0)
        model = str(root / f"model-{study}")
        fit(window, model, study=study, storage=storage, search_space=space, threads=threads)
        holdout = evaluate(window, model)["holdout"]["roc_auc"]
        out["runs"].append({
            "pruner": label,
            "finished_trials": finished,
            "pruned_trials": states.get("pruned", 0),
            "trials_per_minute": round(finished / (elapsed / 60), 2),
            "best_validation_roc_auc": round(res["best_value"], 4),
            "holdout_roc_auc_of_best": round(holdout, 4),
            "seconds": round(elapsed, 1),
        })
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--budget-seconds", type=float, default=180)
    p.add_argument("--days", type=int, default=7)
    p.add_argument("--rows", type=int, default=5000)
    p.add_argument("--threads", type=int)
    p.add_argument("--json", action="store_true")
    p.add_argument("-v", "--verbose", action="store_true")
    args = p.parse_args(argv)
    setup_logging(args.verbose)
    out = run(args.budget_seconds, args.days, args.rows, args.threads)
    if args.json:
        sys.stdout.write(json.dumps(out, indent=2) + "\n")
        return 0
    sys.stdout.write(f"budget {out['budget_seconds']:.0f}s per run, {out['train_rows']:,} training rows\n")
    sys.stdout.write(f"{'pruner':<16}{'trials':>8}{'pruned':>8}{'trials/min':>12}{'best val AUC':>14}{'holdout AUC':>13}\n")
    for r in out["runs"]:
        sys.stdout.write(f"{r['pruner']:<16}{r['finished_trials']:>8}{r['pruned_trials']:>8}{r['trials_per_minute']:>12}"
                         f"{r['best_validation_roc_auc']:>14}{r['holdout_roc_auc_of_best']:>13}\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
