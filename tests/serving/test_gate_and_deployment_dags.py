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


def _no_retries(dag, monkeypatch) -> None:
    """A failing step fails the run at once: the retry (same step, same reason) only adds minutes here."""
    for task in dag.tasks:
        monkeypatch.setattr(task, "retries", 0)


def test_deployment_dag_promote_failures_roll_back_and_a_manual_rollback_restores_the_previous_champion(
        airflow_db, dagbag, serve_env, monkeypatch, caplog):
    """The runbook's claims, each through a real ``deployment`` run on one serving home: a version that
    never starts, a smoke-test failure and a promote failure each leave the champion serving and fail the
    run with the step's reason; ``action=rollback`` moves the alias back to the previous champion, and
    the stable address serves it."""
    from ai_factory.deployment import flow

    store, target = serve_env
    reg = ModelRegistry.from_settings()
    dag = dagbag.dags["deployment"]
    a, fresh, b = store.versions["a"], store.versions["fresh"], store.versions["b"]
    real_build = flow.build
    built: dict[str, str] = {}

    def build_once(p: flow.DeploymentPlan) -> str:  # one Bento per version for the whole test: builds are the slow part
        if p.tag not in built:
            built[p.tag] = real_build(p)
        return built[p.tag]

    monkeypatch.setattr(flow, "build", build_once)
    before = len(asset_events("champion"))

    good = dag.test(run_conf={"action": "deploy", "version": a, "target": "local"})
    assert str(good.state) == "success"
    states = task_states(good)
    assert states["promote"] == states["retire_previous"] == "success" and states["rollback"] == "skipped"
    assert reg.champion().version == a and _served_version(target.url) == a
    [event] = asset_events("champion")[before:]
    assert event["extra"] == {"version": a, "previous": None}

    _no_retries(dag, monkeypatch)
    # A version whose weights are corrupt: its server never becomes ready.
    broken = reg.get(store.versions["stale"])
    (broken.path / "model.pt").write_bytes(b"not a torch file")
    from ai_factory.deployment import local

    real_wait = local.wait_ready
    with monkeypatch.context() as m:  # it will never be ready: waiting the full 120 s proves nothing more
        m.setattr(local, "wait_ready", lambda url, pid, timeout, log_path=None: real_wait(url, pid, 30.0, log_path))
        bad = dag.test(run_conf={"action": "deploy", "version": broken.version, "target": "local"})
    assert str(bad.state) == "failed"
    states = task_states(bad)
    assert states["start_candidate"] == "failed" and states["rollback"] == "success"
    assert states["promote"] == "upstream_failed"
    assert reg.champion().version == a
    assert _served_version(target.url) == a
    assert len(asset_events("champion")) == before + 1

    # Smoke-test failure: a mis-packed Bento (a's model shipped as `fresh`) answers with the wrong version.
    monkeypatch.setattr(flow, "build", lambda p: build_once(p.model_copy(update={"tag": str(reg.get(a).tag)})))
    caplog.clear()
    smoked = dag.test(run_conf={"action": "deploy", "version": fresh, "target": "local"})
    assert str(smoked.state) == "failed"
    states = task_states(smoked)
    assert states["smoke_test"] == "failed" and states["rollback"] == "success"
    assert states["switch"] == states["promote"] == "upstream_failed"
    assert f"expected {fresh}" in caplog.text
    assert reg.champion().version == a and _served_version(target.url) == a
    monkeypatch.setattr(flow, "build", build_once)

    # A good deploy of `fresh`, then the manual rollback: back to `a`, through the same steps.
    assert str(dag.test(run_conf={"action": "deploy", "version": fresh, "target": "local"}).state) == "success"
    assert reg.champion().version == fresh and _served_version(target.url) == fresh
    before = len(asset_events("champion"))
    back = dag.test(run_conf={"action": "rollback", "target": "local"})
    assert str(back.state) == "success"
    states = task_states(back)
    assert states["smoke_test"] == states["switch"] == states["promote"] == "success"
    assert states["rollback"] == "skipped"  # the failure-undo task: a manual rollback is a deploy of the old one
    assert reg.champion().version == a and _served_version(target.url) == a
    last = reg.champion_history()[-1]
    assert (last["version"], last["previous"], last["actor"]) == (a, fresh, "deployment")
    assert "rollback" in last["reason"]
    [event] = asset_events("champion")[before:]
    assert event["extra"] == {"version": a, "previous": fresh}

    # Promote failure: another actor moves the alias while `fresh` is being switched in -> the
    # compare-and-set refuses, the rollback task puts `a` back behind the stable address.
    real_switch = flow.switch

    def switch_then_alias_moves(p: flow.DeploymentPlan, candidate: dict) -> dict:
        out = real_switch(p, candidate)
        reg.set_champion(b, reason="a concurrent actor", actor="someone-else")
        return out

    monkeypatch.setattr(flow, "switch", switch_then_alias_moves)
    caplog.clear()
    conflicted = dag.test(run_conf={"action": "deploy", "version": fresh, "target": "local"})
    assert str(conflicted.state) == "failed"
    states = task_states(conflicted)
    assert states["promote"] == "failed" and states["rollback"] == "success"
    assert states["retire_previous"] == "upstream_failed"
    assert f"expected '{a}'; not moving it to {fresh}" in caplog.text
    assert _served_version(target.url) == a  # the previous champion serves again
    assert reg.champion().version == b and reg.champion_history()[-1]["actor"] == "someone-else"  # not clobbered
