"""Model quality: the factory's MLP vs scikit-learn's HistGradientBoostingClassifier, same holdout.

    python -m bench.training_quality [--windows 3] [--days 7] [--rows 5000] [--trials 12] [--json]

For each of ``--windows`` demo windows (``--days`` validated days of ``--rows`` rows starting
on different dates; train / 1 validation day / holdout = newest day) both models see the
same rows: HistGradientBoosting fits the train split with early stopping on the validation
split (``X_val``/``y_val``, native categorical support); the MLP goes through the factory's
own steps — defaults (no tuning), and tuned (``--trials`` Optuna trials, then the final fit).
Reported: holdout ROC AUC per window and the mean, and the mean gap to HistGradientBoosting.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from datetime import date
from pathlib import Path
from typing import Any

import pandas as pd
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.metrics import roc_auc_score

from ai_factory.spec import DatasetSpec, default_spec
from ai_factory.storage import DataLake
from ai_factory.training.steps import evaluate, fit, make_window, tune_worker
from ai_factory.training.window import TrainingWindow, load_frames

from ._training_common import bench_env, setup_logging, write_window

STARTS = [date(2026, 1, 1), date(2026, 2, 1), date(2026, 3, 1), date(2026, 4, 1), date(2026, 5, 1)]


def _hgb_frame(spec: DatasetSpec, df: pd.DataFrame) -> pd.DataFrame:
    x = df[spec.feature_names].copy()
    for f in spec.categorical_features:
        x[f.name] = x[f.name].astype(str).astype(pd.CategoricalDtype(
            list(f.categories) if f.categories else ["False", "True"]))
    for f in spec.numeric_features:
        x[f.name] = pd.to_numeric(x[f.name]).astype("float64")
    return x


def hgb_auc(spec: DatasetSpec, frames: dict[str, pd.DataFrame]) -> float:
    y = spec.target.name
    model = HistGradientBoostingClassifier(categorical_features="from_dtype", early_stopping=True, random_state=0)
    model.fit(_hgb_frame(spec, frames["train"]), frames["train"][y],
              X_val=_hgb_frame(spec, frames["validation"]), y_val=frames["validation"][y])
    proba = model.predict_proba(_hgb_frame(spec, frames["holdout"]))[:, 1]
    return float(roc_auc_score(frames["holdout"][y], proba))


def _window_row(spec: DatasetSpec, root: Path, i: int, start: date, days: int, rows: int, trials: int,
                threads: int | None) -> dict[str, Any]:
    from ai_factory.settings import get_settings

    lake = DataLake(get_settings().data_root)
    write_window(lake, start, days, rows)
    window = make_window(str(root / "window.json"), days=days)["window"]
    frames = load_frames(lake, spec, TrainingWindow.load(window))
    row: dict[str, Any] = {"holdout": str(TrainingWindow.load(window).holdout[0]), "hgb": hgb_auc(spec, frames)}
    fit(window, str(root / "default"), threads=threads)
    row["mlp_default"] = evaluate(window, str(root / "default"))["holdout"]["roc_auc"]
    if trials:
        study = f"bench.quality.{i}"
        tune_worker(window, study, n_trials=trials, threads=threads)
        fit(window, str(root / "tuned"), study=study, threads=threads)
        row["mlp_tuned"] = evaluate(window, str(root / "tuned"))["holdout"]["roc_auc"]
    return row


def run(windows: int = 3, days: int = 7, rows: int = 5000, trials: int = 12, threads: int | None = None) -> dict[str, Any]:
    spec = default_spec()
    rows_out = []
    for i, start in enumerate(STARTS[:windows]):
        with bench_env(f"quality-{i}") as root:
            row = _window_row(spec, root, i, start, days, rows, trials, threads)
        rows_out.append({k: (round(v, 4) if isinstance(v, float) else v) for k, v in row.items()})
    models = [m for m in ("hgb", "mlp_default", "mlp_tuned") if m in rows_out[0]]
    mean = {m: round(statistics.mean(r[m] for r in rows_out), 4) for m in models}
    gap = {m: round(mean[m] - mean["hgb"], 4) for m in models if m != "hgb"}
    return {"rows_per_day": rows, "days": days, "trials": trials, "windows": rows_out, "mean": mean,
            "gap_to_hgb": gap}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--windows", type=int, default=3, choices=range(1, len(STARTS) + 1))
    p.add_argument("--days", type=int, default=7)
    p.add_argument("--rows", type=int, default=5000)
    p.add_argument("--trials", type=int, default=12, help="Optuna trials for the tuned MLP (0: skip)")
    p.add_argument("--threads", type=int)
    p.add_argument("--json", action="store_true")
    p.add_argument("-v", "--verbose", action="store_true")
    args = p.parse_args(argv)
    setup_logging(args.verbose)
    out = run(args.windows, args.days, args.rows, args.trials, args.threads)
    if args.json:
        sys.stdout.write(json.dumps(out, indent=2) + "\n")
        return 0
    cols = [c for c in ("hgb", "mlp_default", "mlp_tuned") if c in out["mean"]]
    sys.stdout.write(f"{'holdout day':<14}" + "".join(f"{c:>14}" for c in cols) + "\n")
    for r in out["windows"]:
        sys.stdout.write(f"{r['holdout']:<14}" + "".join(f"{r[c]:>14.4f}" for c in cols) + "\n")
    sys.stdout.write(f"{'mean':<14}" + "".join(f"{out['mean'][c]:>14.4f}" for c in cols) + "\n")
    sys.stdout.write(f"gap to HistGradientBoosting: {out['gap_to_hgb']}\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
