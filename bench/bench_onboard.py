"""Onboarding a dataset: `ai-factory spec infer` and `ai-factory data land` on a 1M-row x 30-column CSV.

    python -m bench onboard                 # 1,000,000 rows
    BENCH_ROWS=200000 python -m bench onboard

Each command runs as the real CLI in its own process; the table gives its wall time (imports
included), its CPU time (user+sys over all its threads: on a shared machine the wall time
mostly measures the neighbours) and its peak resident memory (``wait4`` rusage of that process alone). Goals on the
2-core development machine: infer < 10 s, land < 15 s. The load average is printed with the
numbers because the machine may be shared.
"""

from __future__ import annotations

import os
import shutil
import sys
import time
from pathlib import Path

from bench.common import isolated_env, table

DAYS = 30


def make_csv(path: Path, rows: int, seed: int = 0) -> None:
    """30 columns: 18 float, 6 int, 3 category, 1 free-text id, 1 date, the binary target."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.csv as pacsv

    rng = np.random.default_rng(seed)
    cols: dict[str, object] = {}
    for i in range(18):
        cols[f"f{i:02d}"] = rng.normal(100 * i, 10 + i, rows).round(4)
    for i in range(6):
        cols[f"n{i}"] = rng.integers(0, 10 ** (i + 1), rows)
    for i, cats in enumerate((["a", "b", "c"], ["rent", "own", "mortgage", "other"], [f"r{k}" for k in range(40)])):
        cols[f"c{i}"] = np.asarray(cats)[rng.integers(0, len(cats), rows)]
    cols["customer_id"] = np.char.add("C", np.arange(rows).astype(str))
    start = np.datetime64("2026-01-01")
    cols["event_date"] = (start + rng.integers(0, DAYS, rows).astype("timedelta64[D]")).astype(str)
    cols["churned"] = np.where(rng.random(rows) < 0.2, "Yes", "No")
    pacsv.write_csv(pa.table(cols), str(path))


def _run(args: list[str], env: dict[str, str]) -> tuple[float, float, float, int]:
    """(wall seconds, CPU seconds (user+sys, all threads), peak RSS MiB, exit code) of one CLI process."""
    import subprocess

    exe = shutil.which("ai-factory", path=str(Path(sys.executable).parent)) or "ai-factory"
    t0 = time.perf_counter()
    proc = subprocess.Popen([exe, *args], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - t0
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode:
        sys.stderr.write((proc.stderr.read() if proc.stderr else b"").decode()[-2000:])
    return wall, usage.ru_utime + usage.ru_stime, usage.ru_maxrss / 1024, proc.returncode


def main() -> None:
    tmp = isolated_env()
    rows = int(os.environ.get("BENCH_ROWS", "1000000"))
    csv = tmp / "export.csv"
    t0 = time.perf_counter()
    make_csv(csv, rows)
    sys.stdout.write(f"generated {rows:,} rows x 30 columns ({csv.stat().st_size / 2**20:.0f} MiB CSV) "
                     f"in {time.perf_counter() - t0:.1f} s\n")
    env = dict(os.environ)
    spec = tmp / "spec.yaml"
    out = []
    load_before = os.getloadavg()
    for label, args in (
        ("spec infer", ["spec", "infer", str(csv), "--target", "churned", "--id", "customer_id",
                        "--time", "event_date", "-o", str(spec)]),
        (f"data land --by (first, {DAYS} days)", ["data", "land", str(csv), "--spec", str(spec), "--by", "event_date"]),
        ("data land --by (again: unchanged)", ["data", "land", str(csv), "--spec", str(spec), "--by", "event_date"]),
    ):
        wall, cpu, rss, rc = _run(args, env)
        out.append([label, f"{rows:,}", f"{wall:.1f}", f"{cpu:.1f}", f"{rss:,.0f}", rc])
    load_after = os.getloadavg()
    table(["command", "rows", "wall s", "CPU s", "peak RSS MiB", "exit"], out)
    sys.stdout.write(f"load average (1/5/15 min) before {load_before[0]:.1f}/{load_before[1]:.1f}/{load_before[2]:.1f}, "
                     f"after {load_after[0]:.1f}/{load_after[1]:.1f}/{load_after[2]:.1f} on {os.cpu_count()} CPUs\n")
    shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
