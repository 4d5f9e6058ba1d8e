"""Registry and Predictor: immutable versions in the BentoML store, champion alias, decisions, predictions."""

from __future__ import annotations

import json
import threading

import numpy as np
import pandas as pd
import pytest

from ai_factory.registry import ChampionConflict, ModelRegistry, RegistryError
from ai_factory.spec import default_spec
from ai_factory.training import io
from ai_factory.training.predictor import Predictor, load_predictor
from ai_factory.training.preprocess import InputError
from ai_factory.training.steps import evaluate, fit, make_window, register
from ai_factory.training.window import TrainingWindow, load_frames

from training_helpers import SMALL_PARAMS


@pytest.fixture
def trained(demo_lake, tmp_path):
    """A fitted, evaluated model directory for the demo window."""
    window = make_window(str(tmp_path / "window.json"), days=5)["window"]
    model = str(tmp_path / "model")
    fit(window, model, params_override=SMALL_PARAMS)
    evaluation = evaluate(window, model)
    io.write_json(str(tmp_path / "evaluation.json"), evaluation)
    return {"window": window, "model": model, "evaluation": str(tmp_path / "evaluation.json"), "lake": demo_lake,
            "scores": evaluation}


def _register(trained, run_key: str) -> dict:
    return register(trained["window"], trained["model"], trained["evaluation"], run_key=run_key,
                    reference_rows=300)


def test_register_stores_an_immutable_version_with_its_metadata(trained):
    out = _register(trained, "run-1")
    reg = ModelRegistry.from_settings()
    v = reg.get(out["version"])
    assert v.name == "credit_default" and v.tag == out["tag"]
    md = v.metadata
    assert md["metrics"] == pytest.approx(trained["scores"]["holdout"])
    assert md["baseline_metrics"]["roc_auc"] == 0.5 and md["metrics"]["roc_auc"] > 0.6
    assert md["spec_fingerprint"] == default_spec().fingerprint()
    window = TrainingWindow.load(trained["window"]).to_dict()
    assert md["window"] == {k: window[k] for k in ("train", "validation", "holdout")}
    assert md["params"]["hidden_size"] == SMALL_PARAMS["hidden_size"]
    assert md["preprocessing"]["categorical"] and md["preprocessing"]["numeric"]
    assert md["code_version"] and md["run_key"] == "run-1"
    for name in ("model.pt", "model.json", "evaluation.json", "window.json", "reference.parquet"):
        assert (v.path / name).is_file(), name
    ref = reg.reference_sample(v.version)
    assert len(ref) == 300 and set(default_spec().feature_names) <= set(ref.columns)

    # Same run again (a retried task): the same version, not a second one.
    assert _register(trained, "run-1")["version"] == out["version"]
    second = _register(trained, "run-2")
    assert second["version"] != out["version"]
    assert [x.version for x in reg.list_versions()] == [second["version"], out["version"]]
    assert reg.get("latest").version == second["version"]
    diff = reg.compare(out["version"], second["version"])
    assert diff["same_holdout"] and diff["metrics"]["roc_auc"]["delta"] == pytest.approx(0.0)


def test_champion_alias_moves_atomically_with_history_and_compare_and_set(trained):
    reg = ModelRegistry.from_settings()
    a, b = _register(trained, "run-a")["version"], _register(trained, "run-b")["version"]
    with pytest.raises(RegistryError, match="no champion"):
        reg.get("champion")
    reg.set_champion(a, reason="first model", check_expected=True, expected=None)
    assert reg.champion().version == a
    with pytest.raises(ChampionConflict, match=f"expected '{b}'"):
        reg.set_champion(b, reason="stale view", check_expected=True, expected=b)
    reg.set_champion(b, reason="better auc", actor="gate", check_expected=True, expected=a)
    assert reg.get("champion").version == b
    history = reg.champion_history()
    assert [(h["version"], h["previous"], h["reason"]) for h in history] == [(a, None, "first model"),
                                                                          (b, a, "better auc")]
    record = json.loads(reg.champion_file.read_text())
    assert record["version"] == b and record["actor"] == "gate"
    assert not list(reg.champion_file.parent.glob(".*.tmp"))  # no leftovers from the atomic writes
    with pytest.raises(RegistryError, match="not registered"):
        reg.set_champion("nope123", reason="typo")

    # Concurrent promoters: every move lands in the history exactly once.
    threads = [threading.Thread(target=reg.set_champion, args=(v,), kwargs={"reason": f"t{i}"})
               for i, v in enumerate([a, b] * 4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(reg.champion_history()) == 2 + 8


def test_gate_decisions_are_recorded_per_version(trained):
    reg = ModelRegistry.from_settings()
    v = _register(trained, "run-d")["version"]
    reg.record_decision(v, decision="rejected", reason="auc 0.70 < champion 0.72", metrics={"roc_auc": 0.70})
    reg.record_decision(v, decision="approved", reason="manual override", gate="ops")
    got = reg.decisions(v)
    assert [d["decision"] for d in got] == ["rejected", "approved"]
    assert reg.latest_decision(v)["gate"] == "ops" and got[0]["metrics"] == {"roc_auc": 0.70}
    with pytest.raises(ValueError, match="decision must be one of"):
        reg.record_decision(v, decision="maybe", reason="?")


def test_predictor_loads_a_registered_version_and_scores_a_dataframe(trained):
    version = _register(trained, "run-p")["version"]
    reg = ModelRegistry.from_settings()
    reg.set_champion(version, reason="test")
    predictor = load_predictor("champion")
    assert predictor.version == version and predictor.classes == [0, 1]
    spec = default_spec()
    holdout = load_frames(trained["lake"], spec, TrainingWindow.load(trained["window"]), ("holdout",))["holdout"]
    proba = predictor.predict_proba(holdout)
    assert proba.shape == (len(holdout), 2) and np.allclose(proba.sum(axis=1), 1.0)
    # Same numbers as the evaluation that was registered with it.
    from sklearn.metrics import roc_auc_score

    assert roc_auc_score(holdout["default"], proba[:, 1]) == pytest.approx(trained["scores"]["holdout"]["roc_auc"])
    assert np.array_equal(Predictor.from_dir(trained["model"]).predict_proba(holdout), proba)
    labels = predictor.predict(holdout.head(20))
    assert set(labels.tolist()) <= {0, 1}
    frame = predictor.predict_frame(holdout.head(5))
    assert list(frame.columns) == ["prediction", "proba_0", "proba_1"]

    odd = holdout.head(3).copy()
    odd["region"] = ["atlantis", None, "north"]  # unknown and missing categories go to the OOV slot
    odd["savings_balance"] = np.nan
    assert np.isfinite(predictor.predict_proba(odd)).all()
    with pytest.raises(InputError, match="credit_score"):
        predictor.predict_proba(holdout.drop(columns=["credit_score"]))
    assert predictor.predict_proba(holdout.head(0)).shape == (0, 2)
    assert isinstance(predictor.predict_frame(pd.DataFrame(holdout.head(2))), pd.DataFrame)


def test_champion_reference_feeds_the_drift_monitor(trained, caplog):
    from ai_factory.training.reference import champion_reference

    spec = default_spec()
    day = pd.Timestamp("2026-03-06").date()
    assert champion_reference(day, spec, None) is None  # nothing registered is champion yet
    a, b = _register(trained, "run-r1")["version"], _register(trained, "run-r2")["version"]
    ModelRegistry.from_settings().set_champion(b, reason="test")

    ref = champion_reference(day, spec, None)
    assert ref.model_version == b and ref.source == f"registry:credit_default:{b}"
    assert len(ref.data) == 300 and {"prediction", "probability", "default"} <= set(ref.data.columns)
    assert set(ref.data["prediction"]) <= {0, 1} and ref.data["probability"].between(0, 1).all()
    assert ref.metrics["roc_auc"] == pytest.approx(trained["scores"]["holdout"]["roc_auc"])
    # A day served by an older version is compared with that version's reference ...
    assert champion_reference(day, spec, a).model_version == a
    # ... and an unknown version falls back to the champion, loudly.
    assert champion_reference(day, spec, "gone123").model_version == b
    assert "gone123, which is not in the registry" in caplog.text
    again = champion_reference(day, spec, None)
    pd.testing.assert_frame_equal(again.data, ref.data)  # deterministic


def test_drift_monitor_uses_the_champion_reference_end_to_end(trained):
    from ai_factory.monitoring.assembly import resolve_provider
    from ai_factory.monitoring.monitor import run_drift_check

    version = _register(trained, "run-drift")["version"]
    ModelRegistry.from_settings().set_champion(version, reason="test")
    provider = resolve_provider("ai_factory.training.reference:champion_reference")
    check = run_drift_check("2026-03-05", lake=trained["lake"], provider=provider)
    ref = check.summary.reference
    assert ref.kind == "provider" and ref.source == f"registry:credit_default:{version}"
    assert ref.model_version == version and ref.rows == 300
