"""``ai-factory serve ensure --forget-processes``: after a restart, recorded pids mean nothing."""

from __future__ import annotations

import json
import os

from ai_factory.cli import main
from ai_factory.deployment.local import LocalTarget


def _state(pid: int) -> dict:
    backend = {"version": "v1", "bento": "b:1", "port": 1, "pid": pid, "log": "l", "url": "http://127.0.0.1:1"}
    return {"front": {"pid": pid, "host": "0.0.0.0", "port": 3000, "log": "f"}, "active": backend,
            "candidates": {"v2": {**backend, "version": "v2"}}, "history": []}


def test_forget_processes_drops_every_pid_even_a_live_one(tmp_path):
    target = LocalTarget(home=tmp_path / "serving")
    target.home.mkdir()
    # Our own pid is alive: exactly the recycled-pid case a restarted container can hit.
    target.state_file.write_text(json.dumps(_state(os.getpid())))
    dropped = target.forget_processes("test restart")
    assert dropped["active"]["version"] == "v1" and set(dropped["candidates"]) == {"v2"}
    state = target.read_state()
    assert state["front"] is None and state["active"] is None and state["candidates"] == {}
    assert state["history"][-1]["from"] == "v1" and state["history"][-1]["to"] is None


def test_ensure_with_forget_processes_clears_the_state_when_there_is_no_champion(tmp_path, monkeypatch, capsys):
    from ai_factory.settings import reset_settings

    monkeypatch.setenv("BENTOML_HOME", str(tmp_path / "bentoml"))
    reset_settings()
    try:
        target = LocalTarget.from_settings()
        target.home.mkdir(parents=True)
        target.state_file.write_text(json.dumps(_state(os.getpid())))
        assert main(["serve", "ensure", "--forget-processes"]) == 0
        assert json.loads(capsys.readouterr().out) == {"serving": None}
        assert target.read_state()["active"] is None and target.read_state()["front"] is None
    finally:
        reset_settings()
