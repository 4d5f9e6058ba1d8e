"""The whole loop's wall time on this machine, split by stage, and the orchestration overhead.

Runs ``ai-factory demo`` (the same scenario as tests/test_loop.py: ten simulated days, a
corrupt 4th day, covariate drift from the 7th, real Airflow scheduler with Asset-triggered
training → gate → deployment, real ``bentoml serve``, replayed traffic, nightly drift checks)
in a throwaway state folder, then prints:

* wall time per day and for the whole loop;
* per DAG (stage): runs, time inside runs (run start → end) and task compute time (the sum of
  task durations Airflow recorded);
* the orchestration overhead ratio: loop wall time ÷ sum of all task durations.

Usage::

    python -m bench loop                      # (also part of `make bench`): SQLite metadata DB
    python bench/bench_loop.py --db-url postgresql+psycopg2://postgres@127.0.0.1:5432/aif_bench_loop
    python bench/bench_loop.py --days 6 --rows 1000
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--days", type=int, default=10)
    parser.add_argument("--rows", type=int, default=2000)
    parser.add_argument("--trials", type=int, default=4)
    parser.add_argument("--db-url", help="metadata DB (default: SQLite in the state folder)")
    parser.add_argument("--end", default="2026-06-10")
    args = parser.parse_args(argv or [])
    with tempfile.TemporaryDirectory(prefix="bench-loop-") as tmp:
        out = Path(tmp) / "story.json"
        cmd = [sys.executable, "-m", "ai_factory.cli", "demo", "--state-dir", str(Path(tmp) / "state"),
               "--days", str(args.days), "--rows", str(args.rows), "--trials", str(args.trials),
               "--end", args.end, "--json", str(out)]
        if args.db_url:
            cmd += ["--db-url", args.db_url]
        proc = subprocess.run(cmd, cwd=REPO, env={**os.environ, "AI_FACTORY_HOME": str(REPO)},
                              capture_output=True, text=True)
        if proc.returncode != 0:
            sys.stderr.write(proc.stderr[-4000:])
            return proc.returncode
        story = json.loads(out.read_text())
    t = story["timings"]
    sys.stdout.write(f"{args.days} days x {args.rows} rows, {args.trials} trials per training run, metadata DB "
                     f"{'SQLite' if not args.db_url else args.db_url.split('@')[-1]}\n\n")
    sys.stdout.write("| day | wall s | runs |\n|---|---|---|\n")
    for d in story["days"]:
        runs = ", ".join(f"{r['dag_id']}={r['state']}" for r in d["runs"])
        sys.stdout.write(f"| {d['ds']} | {d['wall_seconds']:.0f} | {runs} |\n")
    sys.stdout.write("\n| stage (DAG) | runs | time in runs s | task compute s |\n|---|---|---|---|\n")
    for dag_id, st in sorted(t["stages"].items()):
        sys.stdout.write(f"| {dag_id} | {int(st['runs'])} | {st['run_seconds']:.0f} | {st['task_seconds']:.0f} |\n")
    sys.stdout.write(f"| **loop** | | **{t['wall_seconds']:.0f}** (wall) | **{t['task_seconds']:.0f}** |\n\n")
    sys.stdout.write(f"orchestration overhead ratio (wall / task compute): {t['overhead_ratio']:.2f}\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
