"""Shared helpers for the training benchmarks: a throwaway environment and demo windows."""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import tempfile
from collections.abc import Iterator
from datetime import date, timedelta
from pathlib import Path

from ai_factory.data.generate import generate_day, to_parquet_bytes
from ai_factory.storage import DataLake, Zone

log = logging.getLogger("bench.training")


@contextlib.contextmanager
def bench_env(name: str) -> Iterator[Path]:
    """Point data root, model store and Optuna storage at a fresh temporary directory (removed after)."""
    from ai_factory.settings import reset_settings

    root = Path(tempfile.mkdtemp(prefix=f"aif-bench-{name}-"))
    os.environ["AI_FACTORY_DATA_ROOT"] = str(root / "lake")
    os.environ["BENTOML_HOME"] = str(root / "bentoml")
    os.environ["AI_FACTORY_OPTUNA_STORAGE"] = f"sqlite:///{root / 'optuna.db'}"
    os.environ.setdefault("BENTOML_DO_NOT_TRACK", "true")
    reset_settings()
    try:
        yield root
    finally:
        shutil.rmtree(root, ignore_errors=True)
        reset_settings()


def write_window(lake: DataLake, first: date, days: int, rows: int, seed: int = 0) -> list[date]:
    """``days`` validated demo partitions of ``rows`` rows starting at ``first``."""
    out = []
    for i in range(days):
        day = first + timedelta(days=i)
        lake.replace_partition(Zone.VALIDATED, day, {"part-0.parquet": to_parquet_bytes(generate_day(day, rows, seed))})
        out.append(day)
    return out


def setup_logging(verbose: bool) -> None:
    logging.basicConfig(level=logging.INFO if verbose else logging.WARNING,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("bench").setLevel(logging.INFO)
    if not verbose:
        import optuna

        # Optuna logs every trial at INFO; keep benchmark output to the numbers.
        optuna.logging.set_verbosity(optuna.logging.WARNING)
