"""``ai-factory gate``, ``deploy [--rollback]``, ``serve status|stop`` and ``models compare`` in-process,
on the session's real trained models: each command's effect (decision recorded, alias moved, what the
stable address serves, processes stopped), not only its exit code."""

from __future__ import annotations

import json

import pytest

from ai_factory.cli import main
from ai_factory.deployment.local import pid_alive
from ai_factory.registry import ModelRegistry

pytestmark = pytest.mark.serving


def _run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, dict]:
    code = main(list(argv))
    out = capsys.readouterr().out
    return code, json.loads(out) if out.strip() else {}



def test_gate_records_a_rejection_and_models_compare_shows_both_versions(store, capsys):
    reg = ModelRegistry.from_settings()
    a, b = store.versions["a"], store.versions["b"]
    reg.set_champion(a, reason="test")

    code, decision = _run(capsys, "gate", "--version", b)
    assert code == 1  # a rejection is exit 1, so a script can branch on it
    assert decision["decision"] == "rejected" and decision["champion"] == a and "roc_auc" in decision["reason"]
    recorded = reg.latest_decision(b)
    assert recorded["decision"] == "rejected" and recorded["reason"] == decision["reason"]
    assert reg.champion().version == a  # judging never moves the alias

    code, compared = _run(capsys, "models", "compare", a, b)
    assert code == 0
    assert (compared["a"], compared["b"]) == (f"credit_default:{a}", f"credit_default:{b}")
    assert compared["same_holdout"] is True  # both trained on days 1..5
    auc = compared["metrics"]["roc_auc"]
    assert auc["a"] == reg.get(a).metrics["roc_auc"] and auc["b"] == reg.get(b).metrics["roc_auc"]
    assert auc["delta"] == pytest.approx(auc["b"] - auc["a"])
    assert {"roc_auc", "log_loss"} <= set(compared["metrics"])


def test_deploy_then_deploy_rollback_then_serve_status_and_stop(local_env, capsys):
    store, target = local_env
    reg = ModelRegistry.from_settings()
    a, fresh = store.versions["a"], store.versions["fresh"]
    reg.set_champion(a, reason="an earlier champion, never served here")

    code, deployed = _run(capsys, "deploy", "--version", fresh)
    assert code == 0
    assert deployed["promoted"]["version"] == fresh and deployed["promoted"]["previous"] == a
    assert deployed["smoke"]["max_abs_diff"] <= 1e-4 and deployed["url"] == target.url
    assert reg.champion().version == fresh

    code, status = _run(capsys, "serve", "status")
    assert code == 0 and status["url"] == target.url
    assert status["active"]["version"] == fresh and status["active_alive"] is True

    code, back = _run(capsys, "deploy", "--rollback")
    assert code == 0
    assert back["plan"]["action"] == "rollback" and back["plan"]["version"] == a
    assert back["promoted"] == {"version": a, "previous": fresh, "since": back["promoted"]["since"]}
    assert reg.champion().version == a
    assert back["retired"]["stopped"]["version"] == fresh

    code, status = _run(capsys, "serve", "status")
    assert status["active"]["version"] == a and status["active_alive"] is True
    assert status["history"][-1]["to"] == a
    served = status["active"]["pid"]

    assert main(["serve", "stop"]) == 0
    assert not pid_alive(served)
    code, status = _run(capsys, "serve", "status")
    assert status["active_alive"] is False
