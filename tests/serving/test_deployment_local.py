"""Local deployment with real processes: Bento build, bentoml serve beside the live version, smoke test,
switch through the stable front, promotion, and rollback when the new version does not answer right."""

from __future__ import annotations

import json
import urllib.request

import pytest

from ai_factory.deployment import flow
from ai_factory.deployment.local import LocalTarget, free_port, pid_alive
from ai_factory.deployment.smoke import SmokeTestFailed
from ai_factory.registry import ModelRegistry

pytestmark = pytest.mark.serving


@pytest.fixture
def local_env(store, monkeypatch):
    from ai_factory.settings import reset_settings

    monkeypatch.setenv("AI_FACTORY_SERVE_PORT", str(free_port()))
    monkeypatch.setenv("AI_FACTORY_SERVE_TARGET", "local")
    monkeypatch.setenv("AI_FACTORY_PREDICTION_LOG", "false")
    reset_settings()
    target = LocalTarget.from_settings()
    yield store, target
    target.stop_all()


def _served_version(url: str) -> str:
    req = urllib.request.Request(f"{url}/model_info", data=b"{}", method="POST",
                                 headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=10) as resp:
        return json.loads(resp.read())["model_version"]


def _predictions_counted(url: str, version: str) -> float:
    """Records the server at ``url`` says it scored for ``version`` (``/metrics``, all workers)."""
    with urllib.request.urlopen(f"{url}/metrics", timeout=10) as resp:
        text = resp.read().decode()
    return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
               if line.startswith("ai_factory_predictions_total{") and f'model_version="{version}"' in line)


def _deploy(version: str) -> dict:
    p = flow.plan("deploy", version=version)
    bento = flow.build(p)
    cand = flow.start_candidate(p, bento)
    result = {"plan": p, "candidate": cand, "smoke": flow.smoke(p, cand)}
    switched = flow.switch(p, cand)
    result["promoted"] = flow.promote(p)
    result["retired"] = flow.retire(p, switched)
    return result


def test_good_deploy_promotes_and_a_bad_one_rolls_back_while_the_old_version_keeps_answering(local_env):
    store, target = local_env
    reg = ModelRegistry.from_settings()
    a, fresh, b = store.versions["a"], store.versions["fresh"], store.versions["b"]

    first = _deploy(a)
    assert first["promoted"] == {"version": a, "previous": None, "since": first["promoted"]["since"]}
    assert reg.champion().version == a and _served_version(target.url) == a
    assert first["smoke"]["max_abs_diff"] <= 1e-4 and first["smoke"]["rows"] == 64

    second = _deploy(fresh)
    assert reg.champion().version == fresh and _served_version(target.url) == fresh
    assert second["retired"]["stopped"]["version"] == a
    assert not pid_alive(first["candidate"]["pid"])  # the old server is gone, the front moved on
    assert reg.champion_history()[-1]["previous"] == a

    live = second["candidate"]["url"]
    counted = _predictions_counted(live, fresh)
    assert counted >= 64  # the smoke test's records

    # A mis-packed Bento: built for `b`, deployed as `a` -> the smoke test catches it.
    bad_plan = flow.plan("deploy", version=a)
    wrong_bento = flow.build({**bad_plan, "tag": reg.get(b).tag})
    cand = flow.start_candidate(bad_plan, wrong_bento)
    # Starting a server beside the live one leaves the live one's metrics alone.
    assert _predictions_counted(live, fresh) == counted
    with pytest.raises(SmokeTestFailed, match=f"expected {a}"):
        flow.smoke(bad_plan, cand)
    undone = flow.rollback(bad_plan)
    assert undone["rolled_back"] and undone["serving"] == fresh
    assert not pid_alive(cand["pid"])
    assert reg.champion().version == fresh  # the alias did not move
    assert _served_version(target.url) == fresh  # the old version still answers through the stable address


def test_a_failure_after_the_switch_puts_the_previous_champion_back(local_env):
    store, target = local_env
    reg = ModelRegistry.from_settings()
    a, fresh = store.versions["a"], store.versions["fresh"]
    _deploy(a)
    p = flow.plan("deploy", version=fresh)
    cand = flow.start_candidate(p, flow.build(p))
    flow.switch(p, cand)
    assert _served_version(target.url) == fresh
    # Promotion then fails (someone else moved the alias meanwhile) -> roll back.
    from ai_factory.registry import ChampionConflict

    reg.set_champion(store.versions["b"], reason="concurrent actor")
    with pytest.raises(ChampionConflict):
        flow.promote(p)
    reg.set_champion(a, reason="restore for the test")
    out = flow.rollback(p)
    assert out["restored"] == a and _served_version(target.url) == a
    assert not pid_alive(cand["pid"])


def test_manual_rollback_plans_the_previous_champion(local_env):
    store, _ = local_env
    reg = ModelRegistry.from_settings()
    with pytest.raises(flow.PlanError, match="nothing to roll back to"):
        flow.plan("rollback")
    reg.set_champion(store.versions["a"], reason="one")
    reg.set_champion(store.versions["fresh"], reason="two")
    p = flow.plan("rollback")
    assert p["version"] == store.versions["a"] and p["previous"] == store.versions["fresh"]
    assert "rollback" in p["reason"]
