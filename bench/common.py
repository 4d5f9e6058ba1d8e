"""Small helpers shared by the benchmarks."""

from __future__ import annotations

import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path


def isolated_env() -> Path:
    """Point settings at a throwaway data root so benchmarks never touch real data."""
    tmp = Path(tempfile.mkdtemp(prefix="aif-bench-"))
    os.environ["AI_FACTORY_DATA_ROOT"] = str(tmp / "lake")
    os.environ.setdefault("BENTOML_HOME", str(tmp / "bentoml"))
    os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")
    from ai_factory.settings import reset_settings

    reset_settings()
    return tmp


def timeit(fn: Callable[[], object], repeat: int = 3) -> float:
    """Median wall time of ``repeat`` calls (seconds)."""
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def table(headers: list[str], rows: list[list[object]]) -> None:
    sys.stdout.write("| " + " | ".join(headers) + " |\n")
    sys.stdout.write("|" + "|".join("---" for _ in headers) + "|\n")
    for r in rows:
        sys.stdout.write("| " + " | ".join(str(c) for c in r) + " |\n")
    sys.stdout.flush()
