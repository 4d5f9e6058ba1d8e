"""``dag.test()`` of model_gate and deployment on real models, real Bentos and real ``bentoml serve``."""

from __future__ import annotations

import json
import urllib.request

import pytest

from ai_factory.registry import ModelRegistry

from airflow_helpers import asset_events, task_states

pytestmark = [pytest.mark.e2e, pytest.mark.serving]


def _served_version(url: str) -> str:
    req = urllib.request.Request(f"{url}/model_info", data=b"{}", method="POST",
                                 headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=10) as resp:
        return json.loads(resp.read())["model_version"]


@pytest.fixture
def serve_env(store, monkeypatch):
    from ai_factory.deployment.local import LocalTarget, free_port
    from ai_factory.settings import reset_settings

    monkeypatch.setenv("AI_FACTORY_SERVE_PORT", str(free_port()))
    monkeypatch.setenv("AI_FACTORY_PREDICTION_LOG", "false")
    reset_settings()
    target = LocalTarget.from_settings()
    yield store, target
    target.stop_all()


def test_model_gate_approves_a_better_fresher_model_and_rejects_a_worse_one(airflow_db, dagbag, store):
    reg = ModelRegistry.from_settings()
    reg.set_champion(store.versions["a"], reason="test")
    dag = dagbag.dags["model_gate"]
    before = len(asset_events("approved_candidate"))

    worse = dag.test(run_conf={"version": store.versions["b"]})
    assert str(worse.state) == "success"  # a rejection is a normal outcome
    states = task_states(worse)
    assert states["judge"] == "success" and states["report_rejection"] == "success" and states["approve"] == "skipped"
    assert len(asset_events("approved_candidate")) == before
    assert reg.latest_decision(store.versions["b"])["decision"] == "rejected"

    better = dag.test(run_conf={"version": store.versions["fresh"]})
    assert str(better.state) == "success"
    assert task_states(better)["approve"] == "success" and task_states(better)["report_rejection"] == "skipped"
    [event] = asset_events("approved_candidate")[before:]
    assert event["extra"]["version"] == store.versions["fresh"] and "approved" in event["extra"]["decision"]
    assert reg.latest_decision(store.versions["fresh"])["decision"] == "approved"


def test_deployment_dag_promotes_then_a_broken_version_rolls_back(airflow_db, dagbag, serve_env):
    store, target = serve_env
    reg = ModelRegistry.from_settings()
    dag = dagbag.dags["deployment"]
    before = len(asset_events("champion"))

    good = dag.test(run_conf={"action": "deploy", "version": store.versions["a"], "target": "local"})
    assert str(good.state) == "success"
    states = task_states(good)
    assert states["promote"] == states["retire_previous"] == "success" and states["rollback"] == "skipped"
    assert reg.champion().version == store.versions["a"] and _served_version(target.url) == store.versions["a"]
    [event] = asset_events("champion")[before:]
    assert event["extra"] == {"version": store.versions["a"], "previous": None}

    # A version whose weights are corrupt: its server never becomes ready.
    broken = reg.get(store.versions["stale"])
    (broken.path / "model.pt").write_bytes(b"not a torch file")
    bad = dag.test(run_conf={"action": "deploy", "version": broken.version, "target": "local"})
    assert str(bad.state) == "failed"
    states = task_states(bad)
    assert states["start_candidate"] == "failed" and states["rollback"] == "success"
    assert states["promote"] == "upstream_failed"
    assert reg.champion().version == store.versions["a"]
    assert _served_version(target.url) == store.versions["a"]
    assert len(asset_events("champion")) == before + 1
