"""Drift report time at 10k, 100k and 1M current rows: the fast path vs Evidently's default.

Each measurement runs in a fresh Python process, as an Airflow task does, so both sides pay
for importing their libraries and reading the day's Parquet file:

* **fast path** — ``run_drift_check`` exactly as the DAG runs it: read the served records,
  Evidently's default per-column tests on every row, quality on every labelled row, the
  Evidently HTML/JSON report on a sample (``report.max_rows``), summary, atomic write.
* **Evidently default** — read the same file, then one Evidently ``Report`` on *all* rows with
  the same metrics (``DataDriftPreset`` over the features, ``ValueDrift`` for target and
  predictions, ``ClassificationPreset``) and its HTML.

Both see the same current day (served records of a covariate-drifted day, strength 0.3: some
columns drift clearly, several sit near the 0.1 threshold) and the same 20k-row champion
reference sample; the bench prints whether their per-column flags, share and decision agree.

Usage::

    python -m bench drift                             # (also part of `make bench`)
    python bench/bench_drift.py                       # 10k, 100k, 1M; fast path 3x, Evidently once
    python bench/bench_drift.py --rows 10000 100000 --repeat 1
    python bench/bench_drift.py --skip-evidently-above 100000
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import date
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DS = date(2026, 11, 20)
REFERENCE_ROWS = 20_000


def _prepare(root: Path, rows: int) -> None:
    """Write the day's served records and the champion's reference sample under ``root``."""
    # The served-record format and the toy champion are the tests' (one definition of "what serving logs").
    sys.path.insert(0, str(REPO / "tests"))
    from ai_factory.data.generate import generate_day, to_parquet_bytes
    from ai_factory.storage import DataLake, Zone

    from drift_fixtures import drift, served

    current = served(generate_day(DS, rows, seed=11, drift=drift("covariate", DS, 0.3)), DS)
    DataLake(str(root / "lake")).replace_partition(Zone.PREDICTIONS, DS, {"part-0.parquet": to_parquet_bytes(current)})
    ref_day = date(2026, 10, 1)
    served(generate_day(ref_day, REFERENCE_ROWS, seed=3), ref_day).to_parquet(root / "reference.parquet", index=False)


def _one(mode: str, root: Path) -> dict:
    """One measurement (runs in the child process); returns timings and per-column flags."""
    import pandas as pd

    from ai_factory.monitoring.assembly import Reference
    from ai_factory.monitoring.config import parse_config
    from ai_factory.spec import default_spec
    from ai_factory.storage import DataLake

    t0 = time.perf_counter()
    spec, config, lake = default_spec(), parse_config({}), DataLake(str(root / "lake"))
    reference = Reference(data=pd.read_parquet(root / "reference.parquet"), source="champion reference sample")
    if mode == "fast":
        from ai_factory.monitoring.monitor import run_drift_check

        check = run_drift_check(DS, lake=lake, spec=spec, config=config, provider=lambda d, s, mv: reference)
        s = check.summary
        return {"seconds": time.perf_counter() - t0, "stages": check.seconds, "share": s.drift.share,
                "drift": s.decision.drift, "flags": {c.name: c.drifted for c in s.drift.columns},
                "report_rows": s.report.current_rows}

    from ai_factory.monitoring.assembly import load_inputs, plan_inputs
    from ai_factory.monitoring.evidently_report import run_evidently
    from ai_factory.monitoring.monitor import drift_tests

    provider = lambda d, s, mv: reference  # noqa: E731
    current, ref = load_inputs(lake, plan_inputs(lake, DS, spec, config, provider), spec, config, provider)
    tests = drift_tests(spec, config, current, ref.data)
    result = run_evidently(current, ref.data, spec, tests, config, DS.isoformat(), quality=True, probability=True)
    return {"seconds": time.perf_counter() - t0, "share": result.share,
            "drift": (result.share or 0.0) >= config.drift.share_threshold,
            "flags": {k: v.drifted for k, v in result.columns.items()}}


def _spawn(mode: str, root: Path) -> dict:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO / "include"),
                                                                     os.environ.get("PYTHONPATH")]))}
    out = subprocess.run([sys.executable, __file__, "--one", mode, "--root", str(root)], env=env,
                         capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, nargs="+", default=[10_000, 100_000, 1_000_000])
    parser.add_argument("--repeat", type=int, default=3, help="fast-path runs per size (median reported)")
    parser.add_argument("--skip-evidently-above", type=int, default=None,
                        help="do not run Evidently's default above this many rows")
    parser.add_argument("--one", choices=["fast", "evidently"], help=argparse.SUPPRESS)
    parser.add_argument("--root", type=Path, help=argparse.SUPPRESS)
    # `python -m bench` calls main() with no arguments: the defaults.
    args = parser.parse_args(argv or [])
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    os.environ.setdefault("AI_FACTORY_HOME", str(REPO))
    if args.one:
        sys.stdout.write(json.dumps(_one(args.one, args.root)) + "\n")
        return 0

    rows_out = []
    for rows in args.rows:
        with tempfile.TemporaryDirectory(prefix="bench-drift-") as tmp:
            root = Path(tmp)
            _prepare(root, rows)
            fast = [_spawn("fast", root) for _ in range(args.repeat)]
            run_ev = args.skip_evidently_above is None or rows <= args.skip_evidently_above
            ev = _spawn("evidently", root) if run_ev else None
        med = statistics.median(f["seconds"] for f in fast)
        stages = {k: statistics.median(f["stages"][k] for f in fast) for k in fast[0]["stages"]}
        agree = None
        if ev is not None:
            agree = sorted(k for k in fast[0]["flags"] if ev["flags"].get(k) != fast[0]["flags"][k])
            agree = agree if agree or ev["drift"] != fast[0]["drift"] else []
        rows_out.append((rows, med, min(f["seconds"] for f in fast), stages, fast[0], ev, agree))
        sys.stdout.write(
            f"{rows:>9,} rows | fast path {med:6.2f}s median of {len(fast)} (load {stages['load']:.2f}, "
            f"tests+quality {stages['tests_and_quality']:.2f}, report on {fast[0]['report_rows']:,} rows "
            f"{stages['report']:.2f}) share {fast[0]['share']:.3f}"
            + (f" | Evidently default {ev['seconds']:6.2f}s share {ev['share']:.3f} | disagreements: "
               f"{agree or 'none'}" if ev else "") + "\n")
        sys.stdout.flush()

    sys.stdout.write(
        "\n| current rows | fast path s (median) | load | tests + quality, all rows | Evidently report on sample "
        "| Evidently default, all rows s | speed-up | same decisions |\n|---:|---:|---:|---:|---:|---:|---:|:---|\n")
    for rows, med, _, st, f, ev, agree in rows_out:
        ev_cells = (f"{ev['seconds']:.2f} | {ev['seconds'] / med:.1f}x | "
                    + ("yes (every column, share, decision)" if not agree else "no: " + ", ".join(agree))
                    if ev else "not run | | ")
        sys.stdout.write(f"| {rows:,} | {med:.2f} | {st['load']:.2f} | {st['tests_and_quality']:.2f} | "
                         f"{st['report']:.2f} ({f['report_rows']:,} rows) | {ev_cells} |\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
