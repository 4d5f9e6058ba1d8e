"""Fixtures of the fault-injection suite (``-m faults``): isolated stores, small data, a space of fast trials."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from requires import unavailable

from ai_factory.storage import DataLake

from fault_helpers import write_validated
from own_postgres import OwnPostgres, server_bin_dir


@pytest.fixture
def train_env(train_env: DataLake) -> DataLake:
    """The training tests' isolated stores (tests/conftest.py), with five validated days."""
    write_validated(train_env, days=5, rows=800)
    return train_env


@pytest.fixture
def slow_trials_space(tmp_path: Path) -> Path:
    """Trials of a few seconds (small batches, no pruning) so a worker is surely caught mid-trial."""
    path = tmp_path / "space.yaml"
    path.write_text(yaml.safe_dump({
        "trial_max_epochs": 4,
        "trial_patience": 4,
        "sampler": {"n_startup_trials": 2, "seed": 7},
        "pruner": {"name": "none"},
        "heartbeat": {"interval_seconds": 1, "grace_period_seconds": 3, "max_retry": 1},
        "fixed": {"n_layers": 1, "embedding_dim_max": 4, "batch_size": 32},
        "params": {
            "learning_rate": {"type": "float", "low": 1e-3, "high": 1e-2, "log": True},
            "hidden_size": {"type": "int", "low": 16, "high": 48, "step": 16},
        },
    }))
    return path


@pytest.fixture
def own_postgres() -> Iterator[OwnPostgres]:
    """A PostgreSQL cluster of this test's own on a free port, removed afterwards (never the shared one)."""
    from ai_factory.orchestration.stack import free_port

    bin_dir = server_bin_dir()
    if bin_dir is None:
        unavailable("PostgreSQL server binaries (initdb, pg_ctl) are not installed (install Debian's postgresql)")
    server = OwnPostgres(bin_dir, free_port())
    try:
        server.start()
        yield server
    finally:
        server.stop()
