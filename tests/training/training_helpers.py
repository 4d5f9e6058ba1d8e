"""Helpers shared by the training tests (data, toy specs, CLI subprocesses, PostgreSQL)."""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import date, timedelta
from pathlib import Path

import numpy as np
import pandas as pd

from ai_factory.data.generate import generate_day, to_parquet_bytes
from ai_factory.spec import DatasetSpec, parse_spec
from ai_factory.storage import DataLake, Zone

from pg import recreate_pg_database  # noqa: F401 - re-exported for the training tests

FIRST_DAY = date(2026, 3, 1)

# Small, fast settings shared by the tests (a real model, just a small one).
SMALL_PARAMS = {"hidden_size": 32, "n_layers": 1, "batch_size": 256, "max_epochs": 4, "patience": 4,
                "embedding_dim_max": 4}


def write_validated(lake: DataLake, days: int, rows: int, first: date = FIRST_DAY, seed: int = 0) -> list[date]:
    out = []
    for i in range(days):
        day = first + timedelta(days=i)
        lake.replace_partition(Zone.VALIDATED, day, {"part-0.parquet": to_parquet_bytes(generate_day(day, rows, seed))})
        out.append(day)
    return out


def toy_spec(task: str) -> DatasetSpec:
    target: dict = {"name": "y", "task": task}
    if task == "binary":
        target.update(classes=["no", "yes"], positive_class="yes")
    elif task == "multiclass":
        target.update(classes=["a", "b", "c"])
    return parse_spec({
        "name": f"toy_{task}",
        "target": target,
        "features": [
            {"name": "x1", "dtype": "float"},
            {"name": "x2", "dtype": "int", "nullable": True},
            {"name": "color", "dtype": "category", "categories": ["red", "green", "blue", "violet"]},
            {"name": "flag", "dtype": "bool"},
        ],
    })


def toy_frame(spec: DatasetSpec, n: int, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    x1 = rng.normal(size=n)
    x2 = pd.Series(rng.integers(0, 10, size=n), dtype="Int64")
    x2[rng.random(n) < 0.1] = pd.NA
    # "violet" never appears: it is allowed by the spec but must map to the OOV slot.
    color = rng.choice(["red", "green", "blue"], size=n)
    flag = rng.random(n) < 0.5
    score = 1.5 * x1 + (color == "red") - 0.8 * flag + rng.normal(scale=0.3, size=n)
    task = spec.target.task
    if task == "binary":
        y = np.where(score > 0.2, "yes", "no")
    elif task == "multiclass":
        y = np.array(["a", "b", "c"])[np.digitize(score, [-0.5, 0.8])]
    else:
        y = score * 10 + 100
    return pd.DataFrame({"x1": x1, "x2": x2, "color": color, "flag": flag, "y": y})


def run_cli(*args: str, env: dict[str, str] | None = None, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "ai_factory.cli", *args], capture_output=True, text=True,
                          env={**os.environ, **(env or {})}, timeout=timeout)


def cli_popen(*args: str, log_path: Path) -> subprocess.Popen:
    fh = open(log_path, "w")  # noqa: SIM115 - the child owns it until it exits
    return subprocess.Popen([sys.executable, "-m", "ai_factory.cli", *args], stdout=fh, stderr=subprocess.STDOUT,
                            env=os.environ.copy())


