"""Fixtures for the training tests: small validated windows, a tiny search space, isolated stores.

Validated partitions are written straight into ``validated/`` (the quality gate has its own
tests); rows are few so the whole module stays fast on two cores.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from ai_factory.storage import DataLake

from training_helpers import write_validated


@pytest.fixture
def demo_lake(train_env: DataLake) -> DataLake:
    """Five validated days of 800 rows: 3 train, 1 validation, 1 holdout."""
    write_validated(train_env, days=5, rows=800)
    return train_env


@pytest.fixture
def tiny_space(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A 2-parameter search space with short trials; installed as AI_FACTORY_SEARCH_SPACE."""
    path = tmp_path / "space.yaml"
    path.write_text(yaml.safe_dump({
        "trial_max_epochs": 3,
        "trial_patience": 3,
        "sampler": {"n_startup_trials": 2, "seed": 7},
        "pruner": {"name": "median", "n_startup_trials": 2, "n_warmup_steps": 0},
        "heartbeat": {"interval_seconds": 1, "grace_period_seconds": 3, "max_retry": 1},
        "fixed": {"n_layers": 1, "embedding_dim_max": 4, "batch_size": 256},
        "params": {
            "learning_rate": {"type": "float", "low": 1e-3, "high": 1e-2, "log": True},
            "hidden_size": {"type": "int", "low": 16, "high": 48, "step": 16},
        },
    }))
    monkeypatch.setenv("AI_FACTORY_SEARCH_SPACE", str(path))
    return path
