"""Fixtures for gating, serving and deployment tests: real registered model versions, trained once.

A session-scoped store holds three small real models trained on six validated demo days;
each test gets its own copy of that store and data root (through ``BENTOML_HOME`` and
``AI_FACTORY_DATA_ROOT``), so champion moves and decisions never leak between tests.

* ``a`` — window days 1..5 (holdout day 5), the usual champion.
* ``b`` — same window as ``a``, a different (smaller, shorter-trained) network.
* ``fresh`` — window days 2..6: trained on newer data than ``a`` (holdout day 6).
* ``stale`` — ``a``'s model registered with doctored stored metrics (roc_auc 0.999).

The gate's holdout is the newest validated day (day 6), which ``a``, ``b`` and ``stale`` never saw.
"""

from __future__ import annotations

import json
import shutil
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "training"))

from ai_factory.storage import DataLake  # noqa: E402

from training_helpers import FIRST_DAY, SMALL_PARAMS, write_validated  # noqa: E402

DAYS = 6
ROWS = 700


@dataclass(frozen=True)
class Store:
    root: Path
    versions: dict[str, str]

    @property
    def lake_root(self) -> Path:
        return self.root / "lake"

    @property
    def model_home(self) -> Path:
        return self.root / "bentoml"


def _train(root: Path, name: str, days: int, end_day: int, params: dict, run_key: str,
           doctor: dict | None = None) -> str:
    from datetime import timedelta

    from ai_factory.training import io
    from ai_factory.training.steps import evaluate, fit, make_window, register

    data_root = str(root / "lake")
    work = root / "runs" / name
    end = FIRST_DAY + timedelta(days=end_day - 1)
    window = make_window(str(work / "window.json"), days=days, end=end, data_root=data_root)["window"]
    model = str(work / "model")
    if not (work / "model" / "model.pt").exists():
        fit(window, model, params_override=params, data_root=data_root, threads=1)
    evaluation = evaluate(window, model, data_root=data_root)
    if doctor:
        evaluation["holdout"].update(doctor)
    io.write_json(str(work / f"evaluation-{run_key}.json"), evaluation)
    out = register(window, model, str(work / f"evaluation-{run_key}.json"), run_key=run_key, data_root=data_root,
                   reference_rows=200, model_home=str(root / "bentoml"))
    return out["version"]


@pytest.fixture(scope="session")
def trained_store(tmp_path_factory: pytest.TempPathFactory) -> Store:
    root = tmp_path_factory.mktemp("serving-store")
    write_validated(DataLake(str(root / "lake")), days=DAYS, rows=ROWS)
    versions = {
        "a": _train(root, "a", days=5, end_day=5, params=SMALL_PARAMS, run_key="run-a"),
        "b": _train(root, "b", days=5, end_day=5, params={**SMALL_PARAMS, "hidden_size": 8, "max_epochs": 1},
                    run_key="run-b"),
        "fresh": _train(root, "fresh", days=5, end_day=6, params=SMALL_PARAMS, run_key="run-fresh"),
    }
    versions["stale"] = _train(root, "a", days=5, end_day=5, params=SMALL_PARAMS, run_key="run-stale",
                               doctor={"roc_auc": 0.999, "log_loss": 0.01})
    return Store(root, versions)


@pytest.fixture
def store(trained_store: Store, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Store]:
    """A private copy of the trained store for one test, installed as the settings' data root and model store."""
    from ai_factory.settings import reset_settings

    root = tmp_path / "store"
    shutil.copytree(trained_store.lake_root, root / "lake")
    shutil.copytree(trained_store.model_home, root / "bentoml", symlinks=True)
    monkeypatch.setenv("AI_FACTORY_DATA_ROOT", str(root / "lake"))
    monkeypatch.setenv("BENTOML_HOME", str(root / "bentoml"))
    monkeypatch.setenv("BENTOML_DO_NOT_TRACK", "true")
    monkeypatch.delenv("AI_FACTORY_MODEL_TAG", raising=False)
    reset_settings()
    yield Store(root, dict(trained_store.versions))
    reset_settings()


def read_json(path: Path) -> dict:
    return json.loads(path.read_text())


@pytest.fixture
def local_env(store, monkeypatch):
    """The store's models with a ``local`` deployment target on a free port (stopped afterwards)."""
    from ai_factory.deployment.local import LocalTarget, free_port
    from ai_factory.settings import reset_settings

    monkeypatch.setenv("AI_FACTORY_SERVE_PORT", str(free_port()))
    monkeypatch.setenv("AI_FACTORY_SERVE_TARGET", "local")
    monkeypatch.setenv("AI_FACTORY_PREDICTION_LOG", "false")
    reset_settings()
    target = LocalTarget.from_settings()
    yield store, target
    target.stop_all()
