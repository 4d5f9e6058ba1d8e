"""Helpers of the fault-injection suite: real CLI processes, small data, waiting on conditions."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable
from datetime import date, timedelta
from pathlib import Path
from typing import TypeVar

from ai_factory.data.generate import generate_day, to_parquet_bytes
from ai_factory.storage import DataLake, Zone

T = TypeVar("T")
FIRST_DAY = date(2026, 3, 1)


def write_validated(lake: DataLake, days: int, rows: int, first: date = FIRST_DAY) -> list[date]:
    """``days`` validated partitions of ``rows`` generated rows (the quality gate has its own tests)."""
    out = []
    for i in range(days):
        day = first + timedelta(days=i)
        lake.replace_partition(Zone.VALIDATED, day, {"part-0.parquet": to_parquet_bytes(generate_day(day, rows, 0))})
        out.append(day)
    return out


def cli_popen(*args: str, log_path: Path, env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
    """``ai-factory <args>`` as a real process of its own, output to ``log_path``."""
    fh = open(log_path, "w")  # noqa: SIM115 - the child owns it until it exits
    return subprocess.Popen([sys.executable, "-m", "ai_factory.cli", *args], stdout=fh, stderr=subprocess.STDOUT,
                            env={**os.environ, **(env or {})})


def wait_until(what: str, probe: Callable[[], T | None], timeout: float, every: float = 0.05,
               alive: subprocess.Popen | None = None) -> T:
    """Poll ``probe`` until it returns something truthy; fail naming ``what`` (and a dead ``alive``)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        got = probe()
        if got:
            return got
        if alive is not None and alive.poll() is not None:
            raise AssertionError(f"{what}: the process exited with {alive.returncode} before it happened")
        time.sleep(every)
    raise TimeoutError(f"{what}: not within {timeout:.0f}s")


def tail(path: Path, chars: int = 3000) -> str:
    return path.read_text(errors="replace")[-chars:] if path.exists() else f"({path} does not exist)"


def kill_component(stack: object, name: str) -> int:
    """SIGKILL an Airflow component's whole process group (as when its container dies); returns its pid."""
    import signal

    proc = stack.procs[name]  # type: ignore[attr-defined]
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(timeout=30)
    return proc.pid


def start_component(stack: object, name: str) -> subprocess.Popen[bytes]:
    """Start a new ``airflow <name>`` for ``stack`` the way it started the first (its log appended to)."""
    log = stack.home / "logs" / f"{name}.log"  # type: ignore[attr-defined]
    with open(log, "ab") as out:
        proc = subprocess.Popen([sys.executable, "-m", "airflow", name], env=stack.env(),  # type: ignore[attr-defined]
                                stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    stack.procs[name] = proc  # type: ignore[attr-defined]  # stopped with the rest of the stack
    return proc


def run_cli(*args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    """``ai-factory <args>`` to completion, output captured."""
    return subprocess.run([sys.executable, "-m", "ai_factory.cli", *args], capture_output=True, text=True,
                          env=os.environ.copy(), timeout=timeout)


def tune_workers(window: str, study: str, url: str, space: Path, out_dir: Path, *, trials: int,
                 workers: int) -> tuple[list[subprocess.Popen[bytes]], list[Path]]:
    """``workers`` real ``ai-factory train tune`` processes on one study; their logs under ``out_dir``."""
    logs = [out_dir / f"worker-{i}.log" for i in range(workers)]
    procs = [cli_popen("train", "tune", "--window", window, "--study", study, "--storage", url,
                       "--trials", str(trials), "--workers", str(workers), "--worker", str(i),
                       "--search-space", str(space), "--output", str(out_dir / f"worker-{i}.json"),
                       log_path=logs[i])
             for i in range(workers)]
    return procs, logs
