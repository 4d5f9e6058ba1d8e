"""Run the training benchmarks and write their table into docs/benchmarks.md ("## Training").

    python -m bench.training_report [--only throughput,tuning,quality] [--quick] [--no-write]

Raw results are kept in ``bench/results/training.json``; ``--only`` re-runs some benchmarks
and keeps the others' last results. ``--quick`` shrinks every benchmark (a smoke run, never
written to the docs). The section between the ``<!-- training-bench:start -->`` and
``<!-- training-bench:end -->`` markers is replaced; the rest of the file is left alone.

Tuning runs with one torch thread so its two timed runs stay comparable on a shared
machine; throughput is measured with one thread and with every core.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
from datetime import UTC, datetime
from pathlib import Path

from . import training_quality, training_throughput, training_tuning
from ._training_common import setup_logging

DOC = Path(__file__).resolve().parents[1] / "docs" / "benchmarks.md"
RESULTS = Path(__file__).resolve().parent / "results" / "training.json"
PARTS = ("throughput", "tuning", "quality")
START, END = "<!-- training-bench:start -->", "<!-- training-bench:end -->"


def _scaling_sentence(exponent: float) -> str:
    shape = ("about linear" if 0.9 <= exponent <= 1.1 else
             "sub-linear" if exponent < 0.9 else "super-linear")
    return f"time per epoch grows as rows^{exponent:.2f} ({shape})."


def render(tp: dict, tu: dict, q: dict) -> str:
    lines = [
        START,
        "## Training",
        "",
        "Measured with `python -m bench.training_report` (raw numbers in `bench/results/training.json`). "
        "The machine was shared with other jobs; each table notes when it ran and the load average then.",
        "",
        "**Throughput** (`bench/training_throughput.py`): default model (2×256 MLP, batch "
        f"{tp['batch_size']}), training pass only, median of epochs after the first; device {tp['device_kind']}, "
        f"torch CPU threads as shown. {tp['when']}.",
        "",
        "| training rows | threads | rows/s | s/epoch | first epoch rows/s |",
        "|---:|---:|---:|---:|---:|",
        *(f"| {r['rows']:,} | {r['threads']} | {r['rows_per_s']:,} | {r['seconds_per_epoch']:.2f} | "
          f"{r['first_epoch_rows_per_s']:,} |" for r in tp["results"]),
        "",
        " ".join(f"{t} thread(s): {_scaling_sentence(e)}" for t, e in tp["exponents"].items()),
        "",
        f"**Tuning** (`bench/training_tuning.py`): one worker (1 thread), packaged search space, "
        f"{tu['budget_seconds']:.0f} s budget each, {tu['train_rows']:,} training rows. {tu['when']}.",
        "",
        "| pruner | finished trials | pruned | trials/min | best validation ROC AUC | holdout ROC AUC (final fit) |",
        "|---|---:|---:|---:|---:|---:|",
        *(f"| {r['pruner']} | {r['finished_trials']} | {r['pruned_trials']} | {r['trials_per_minute']} | "
          f"{r['best_validation_roc_auc']:.4f} | {r['holdout_roc_auc_of_best']:.4f} |" for r in tu["runs"]),
        "",
        f"**Quality vs HistGradientBoosting** (`bench/training_quality.py`): {len(q['windows'])} demo windows of "
        f"{q['days']} days × {q['rows_per_day']:,} rows; same train/validation/holdout rows for both; "
        f"tuned = {q['trials']} Optuna trials. {q['when']}. Holdout ROC AUC:",
        "",
        "| holdout day | HistGradientBoosting | MLP (defaults) | MLP (tuned) |",
        "|---|---:|---:|---:|",
        *(f"| {r['holdout']} | {r['hgb']:.4f} | {r['mlp_default']:.4f} | {r.get('mlp_tuned', float('nan')):.4f} |"
          for r in q["windows"]),
        f"| **mean** | **{q['mean']['hgb']:.4f}** | **{q['mean']['mlp_default']:.4f}** | "
        f"**{q['mean'].get('mlp_tuned', float('nan')):.4f}** |",
        "",
        "Gap to HistGradientBoosting (mean holdout ROC AUC, MLP − HGB): "
        + ", ".join(f"{k.replace('mlp_', '')} {v:+.4f}" for k, v in q["gap_to_hgb"].items()) + ".",
        END,
    ]
    return "\n".join(lines) + "\n"


def write_section(text: str, doc: Path = DOC) -> None:
    current = doc.read_text() if doc.exists() else "# Benchmarks\n\n"
    if START in current and END in current:
        head, rest = current.split(START, 1)
        tail = rest.split(END, 1)[1].lstrip("\n")
        new = head + text + ("\n" + tail if tail else "")
    else:
        new = current.rstrip("\n") + "\n\n" + text
    doc.parent.mkdir(parents=True, exist_ok=True)
    doc.write_text(new)


def _throughput(rows: list[int], epochs: int, thread_counts: list[int]) -> dict:
    runs = [training_throughput.run(rows, epochs, threads=t) for t in thread_counts]
    return {
        "device_kind": runs[0]["device"].split(" ")[0],
        "batch_size": runs[0]["batch_size"],
        "results": [r for run in runs for r in run["results"]],
        "exponents": {str(t): run["time_vs_rows_exponent"] for t, run in zip(thread_counts, runs, strict=True)},
    }


def _when() -> str:
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    return f"Run {datetime.now(UTC):%Y-%m-%d %H:%M} UTC, load average {load:.1f} on {os.cpu_count()} cores"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--only", default=",".join(PARTS), help="comma-separated subset of " + ", ".join(PARTS))
    p.add_argument("--quick", action="store_true", help="small sizes (smoke run; implies --no-write)")
    p.add_argument("--no-write", action="store_true", help="print the section, do not touch docs or results")
    p.add_argument("-v", "--verbose", action="store_true")
    args = p.parse_args(argv)
    setup_logging(args.verbose)
    only = {x.strip() for x in args.only.split(",") if x.strip()}
    unknown = only - set(PARTS)
    if unknown:
        p.error(f"unknown benchmark(s) {', '.join(sorted(unknown))}; choose from {', '.join(PARTS)}")
    results = json.loads(RESULTS.read_text()) if RESULTS.exists() and not args.quick else {}
    missing = set(PARTS) - only - set(results)
    if missing:
        p.error(f"no stored results for {', '.join(sorted(missing))}; run them too (--only)")
    cores = os.cpu_count() or 1
    threads = sorted({1, cores})
    machine = f"{platform.machine()}, {cores} cores, Python {platform.python_version()}"
    if "throughput" in only:
        sizes = [2_000, 20_000] if args.quick else [10_000, 100_000, 1_000_000]
        results["throughput"] = {**_throughput(sizes, 2 if args.quick else 3, threads), "when": _when(),
                                 "machine": machine}
    if "tuning" in only:
        when = _when()
        kwargs = {"budget_seconds": 20, "days": 4, "rows": 1000} if args.quick else {"budget_seconds": 180}
        results["tuning"] = {**training_tuning.run(threads=1, **kwargs), "when": when}
    if "quality" in only:
        when = _when()
        kwargs = {"windows": 1, "days": 4, "rows": 1000, "trials": 2} if args.quick else {"windows": 3, "trials": 12}
        results["quality"] = {**training_quality.run(**kwargs), "when": when}
    text = render(results["throughput"], results["tuning"], results["quality"])
    sys.stdout.write(text)
    if not (args.no_write or args.quick):
        RESULTS.parent.mkdir(parents=True, exist_ok=True)
        RESULTS.write_text(json.dumps(results, indent=2) + "\n")
        write_section(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
