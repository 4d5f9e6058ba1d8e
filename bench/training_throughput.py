"""Training throughput: rows/s per epoch at 10k, 100k and 1M training rows.

    python -m bench.training_throughput [--rows 10000 100000 1000000] [--epochs 3] [--json]

Demo credit-default rows, the default model (TrainParams), the device the code picks
(CUDA if present, else the CPU with all its cores). Throughput counts the training pass
only (forward, backward, optimiser step); the per-epoch validation pass is excluded. The
first epoch is reported separately (allocator warm-up); rows/s is the median of the rest.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import statistics
import sys
import time
from datetime import date
from typing import Any

import pandas as pd

from ai_factory.data.generate import generate_day
from ai_factory.spec import default_spec
from ai_factory.training.config import TrainParams
from ai_factory.training.device import configure_threads, select_device
from ai_factory.training.steps import fit_prepared, prepare

from ._training_common import setup_logging

DAY_ROWS = 50_000


def _frame(rows: int, first: date) -> pd.DataFrame:
    parts, day, left = [], first, rows
    while left > 0:
        n = min(DAY_ROWS, left)
        parts.append(generate_day(day, n))
        left -= n
        day = date.fromordinal(day.toordinal() + 1)
    return pd.concat(parts, ignore_index=True)


def run(rows_list: list[int], epochs: int = 3, threads: int | None = None) -> dict[str, Any]:
    spec = default_spec()
    device = select_device()
    if threads:
        device = dataclasses.replace(device, threads=threads)
    configure_threads(device)
    validation = _frame(5_000, date(2025, 12, 1))
    results = []
    for rows in rows_list:
        prepared = prepare(spec, {"train": _frame(rows, date(2026, 1, 1)), "validation": validation}, "quantile")
        params = TrainParams(max_epochs=epochs, patience=epochs + 1)
        t0 = time.perf_counter()
        result = fit_prepared(prepared, params, device, label=f"bench {rows:,}")
        wall = time.perf_counter() - t0
        rates = [h.rows_per_second for h in result.history]
        steady = rates[1:] or rates
        seconds = [rows / r for r in steady]
        results.append({
            "rows": rows,
            "threads": device.threads,
            "epochs": len(rates),
            "first_epoch_rows_per_s": round(rates[0]),
            "rows_per_s": round(statistics.median(steady)),
            "seconds_per_epoch": round(statistics.median(seconds), 3),
            "wall_seconds": round(wall, 2),
        })
    # How time per epoch grows with rows: the log-log slope between the smallest and largest size.
    first, last = results[0], results[-1]
    slope = (math.log(last["seconds_per_epoch"] / first["seconds_per_epoch"]) / math.log(last["rows"] / first["rows"])
             if len(results) > 1 else float("nan"))
    return {"device": device.describe(), "batch_size": TrainParams().batch_size, "results": results,
            "time_vs_rows_exponent": round(slope, 3)}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rows", type=int, nargs="+", default=[10_000, 100_000, 1_000_000])
    p.add_argument("--epochs", type=int, default=3)
    p.add_argument("--threads", type=int, help="torch CPU threads (default: all cores)")
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    p.add_argument("-v", "--verbose", action="store_true")
    args = p.parse_args(argv)
    setup_logging(args.verbose)
    out = run(args.rows, args.epochs, args.threads)
    if args.json:
        sys.stdout.write(json.dumps(out, indent=2) + "\n")
        return 0
    sys.stdout.write(f"device: {out['device']}, batch size {out['batch_size']}\n")
    sys.stdout.write(f"{'rows':>10} {'rows/s':>10} {'s/epoch':>9} {'1st epoch rows/s':>17}\n")
    for r in out["results"]:
        sys.stdout.write(f"{r['rows']:>10,} {r['rows_per_s']:>10,} {r['seconds_per_epoch']:>9.3f} "
                         f"{r['first_epoch_rows_per_s']:>17,}\n")
    sys.stdout.write(f"time per epoch grows as rows^{out['time_vs_rows_exponent']}\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
