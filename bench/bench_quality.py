"""GX validation throughput of one partition, and DAG parse/import cost.

    python -m bench quality            # all sizes (10k, 100k, 1M rows)
    BENCH_ROWS=10000,100000 python -m bench quality
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import date
from pathlib import Path

from bench.common import isolated_env, table, timeit

REPO = Path(__file__).resolve().parents[1]


def bench_validation() -> None:
    isolated_env()
    from ai_factory.data.generate import generate_day, to_parquet_bytes
    from ai_factory.quality.reader import read_parquet_bytes
    from ai_factory.quality.validate import validate_frame
    from ai_factory.settings import get_settings
    from ai_factory.spec import default_spec
    from ai_factory.storage import DataLake

    settings, spec = get_settings(), default_spec()
    lake = DataLake(settings.data_root)
    sizes = [int(s) for s in os.environ.get("BENCH_ROWS", "10000,100000,1000000").split(",")]
    rows = []
    day = date(2026, 5, 1)
    for n in sizes:
        data = to_parquet_bytes(generate_day(day, n))
        df = read_parquet_bytes(data)
        validate_frame(df, day, spec, lake, settings, update_docs=False)  # warm-up: context, imports
        t_read = timeit(lambda data=data: read_parquet_bytes(data))
        t_val = timeit(lambda df=df: validate_frame(df, day, spec, lake, settings, update_docs=False))
        t_docs = timeit(lambda df=df: validate_frame(df, day, spec, lake, settings, update_docs=True))
        rows.append([f"{n:,}", f"{t_read:.2f}", f"{t_val:.2f}", f"{n / t_val:,.0f}", f"{t_docs:.2f}",
                     f"{n / t_docs:,.0f}", f"{n / (t_read + t_docs):,.0f}"])
    table(["rows", "read s", "validate s (no docs)", "rows/s (no docs)", "validate+Data Docs s",
           "rows/s (with docs)", "rows/s end to end"], rows)


_IMPORT_PROBE = r"""
import sys, time
t0 = time.perf_counter(); import airflow.sdk; t1 = time.perf_counter()
import runpy; runpy.run_path(sys.argv[1]); t2 = time.perf_counter()
print(f"{t1 - t0:.4f} {t2 - t1:.4f}")
"""


def bench_dag_parse() -> None:
    tmp = isolated_env()
    env = dict(os.environ, AIRFLOW_HOME=str(tmp / "airflow"), AIRFLOW__CORE__LOAD_EXAMPLES="False",
               AIRFLOW__CORE__DAGS_FOLDER=str(REPO / "dags"),
               AIRFLOW__DATABASE__SQL_ALCHEMY_CONN=f"sqlite:///{tmp / 'airflow.db'}")
    subprocess.run([sys.executable, "-m", "airflow", "db", "migrate"], env=env, capture_output=True, check=True)
    report = subprocess.run([sys.executable, "-m", "airflow", "dags", "report", "-o", "json"], env=env,
                            capture_output=True, text=True, check=True).stdout
    parsed = json.loads(next(line for line in reversed(report.splitlines()) if line.startswith("[")))
    rows = []
    for entry in parsed:
        f = Path(entry["file"]).name if "file" in entry else entry.get("filepath", "?")
        path = REPO / "dags" / Path(f).name
        samples = []
        for _ in range(5):
            # Last line only: a provider's deprecation warning may be logged to stdout before it.
            out = subprocess.run([sys.executable, "-c", _IMPORT_PROBE, str(path)], env=env, capture_output=True,
                                 text=True, check=True).stdout.splitlines()[-1].split()
            samples.append(float(out[1]))
        samples.sort()
        duration = entry.get("duration")
        secs = float(str(duration).split(":")[-1]) if duration else float("nan")
        rows.append([Path(f).name, f"{secs:.3f}", f"{samples[len(samples) // 2]:.3f}", entry.get("dag_num", "")])
    table(["DAG file", "dags report parse s", "import s beyond airflow.sdk (median of 5)", "DAGs"], rows)


def main() -> None:
    bench_validation()
    bench_dag_parse()


if __name__ == "__main__":
    main()
