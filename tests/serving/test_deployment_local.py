"""Local deployment with real processes: Bento build, bentoml serve beside the live version, smoke test,
switch through the stable front, promotion, and rollback when the new version does not answer right."""

from __future__ import annotations

import json
import os
import signal
import stat
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from ai_factory.deployment import flow
from ai_factory.deployment.local import LocalTarget, http_get, marked_processes, pid_alive
from ai_factory.deployment.smoke import SmokeTestFailed
from ai_factory.registry import ModelRegistry

pytestmark = pytest.mark.serving



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
    wrong_bento = flow.build(bad_plan.model_copy(update={"tag": reg.get(b).tag}))
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
    assert p.version == store.versions["a"] and p.previous == store.versions["fresh"]
    assert "rollback" in p.reason


# -- supervision, orphans and exposure (issue 10) ------------------------------------------------------
def _serve(target: LocalTarget, version: str) -> dict:
    """Serve ``version`` at the stable address as `serve ensure` does (start, switch), and make it champion."""
    from ai_factory.deployment.bento import build_bento

    reg = ModelRegistry.from_settings()
    backend = target.start_backend(version, build_bento(reg.get(version).tag))
    target.switch_to(backend, reason="test")
    reg.set_champion(version, reason="test")
    return backend


def _answers(url: str) -> bool:
    try:
        return http_get(f"{url}/readyz", timeout=1)[0] == 200
    except OSError:
        return False


def _leaders(target: LocalTarget) -> dict[str, list[int]]:
    """Backends (not the front) that have a live server process, with all their pids."""
    return {k: [p for p, _ in v] for k, v in marked_processes(target.home).items()
            if k != "front" and any(lead for _, lead in v)}


def _gone(pids: list[int], timeout: float = 15.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not any(pid_alive(p) for p in pids):
            return True
        time.sleep(0.2)
    return False


@pytest.mark.faults
@pytest.mark.parametrize(("victims", "standby"), [("all", True), ("arbiter", False)])
def test_kill_9_of_the_backend_the_front_restarts_it_and_no_worker_outlives_it(local_env, victims, standby):
    """``all``: the backend's every process dies (OOM killer), a warm standby takes over; ``arbiter``: only
    circusd dies, its workers go on serving unseen, and without a standby the same Bento starts cold."""
    store, target = local_env
    target = LocalTarget(home=target.home, host=target.host, port=target.port, bentoml_home=target.bentoml_home,
                         standby=standby)
    a = store.versions["a"]
    backend = _serve(target, a)
    if standby:
        deadline = time.monotonic() + 120
        while not LocalTarget._matches(target.read_state().get("standby"), target.active()):
            assert time.monotonic() < deadline, "no standby became ready"
            time.sleep(0.5)
    old_id = f"{a}-{backend['port']}"
    old = [p for p, _ in marked_processes(target.home)[old_id]]
    assert len(old) >= 3, old  # the arbiter, its log writer and the API workers

    # A client sending one request after another through the stable address meanwhile.
    results: list[int] = []
    stop = threading.Event()

    def client() -> None:
        while not stop.is_set():
            req = urllib.request.Request(f"{target.url}/model_info", data=b"{}", method="POST",
                                         headers={"Content-Type": "application/json"})
            try:
                with urllib.request.urlopen(req, timeout=30) as resp:
                    results.append(resp.status)
            except urllib.error.HTTPError as exc:
                results.append(exc.code)
            except OSError:
                results.append(0)

    load = threading.Thread(target=client, daemon=True)
    load.start()
    time.sleep(0.5)
    for pid in (old if victims == "all" else [backend["pid"]]):
        os.kill(pid, signal.SIGKILL)
    t0 = time.monotonic()
    down = 0.0
    while True:
        up = _answers(target.url)
        if not up:
            down = down or time.monotonic() - t0
        if up and (target.active() or {}).get("pid") != backend["pid"]:
            break
        assert time.monotonic() - t0 < 90, "the stable address was not served by a new backend within 90 s"
        time.sleep(0.1)
    recovered = time.monotonic() - t0
    time.sleep(0.5)
    stop.set()
    load.join(timeout=60)
    failed = sum(1 for code in results if code != 200)
    print(f"\nkill -9 of the backend ({victims}, standby {standby}): served by a new backend after "
          f"{recovered:.1f}s (first failed probe at {down:.1f}s); client requests meanwhile: {len(results)}, "
          f"failed {failed}")

    assert _served_version(target.url) == a
    active = target.active()
    assert pid_alive(active["pid"])
    assert _gone(old), f"processes of the killed backend still run: {[p for p in old if pid_alive(p)]}"
    leaders = _leaders(target)
    assert f"{a}-{active['port']}" in leaders and old_id not in leaders
    assert len(leaders) <= 2  # the live server and, with a standby, the next standby
    assert "front supervisor" in target.read_state()["history"][-1]["reason"]


@pytest.mark.faults
def test_serve_ensure_stops_the_workers_of_a_killed_arbiter_instead_of_starting_a_second_backend(local_env):
    store, target = local_env
    a = store.versions["a"]
    # The front here does not supervise, so that it is `ensure` that must notice.
    quiet = LocalTarget(home=target.home, host=target.host, port=target.port, bentoml_home=target.bentoml_home,
                        supervise_interval=0)
    quiet.ensure_front()
    backend = _serve(target, a)
    old_id = f"{a}-{backend['port']}"
    os.kill(backend["pid"], signal.SIGKILL)
    assert _gone([backend["pid"]], 5)
    orphans = [p for p, _ in marked_processes(target.home)[old_id]]
    assert orphans and all(pid_alive(p) for p in orphans)  # workers outlive their arbiter (the finding)

    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    t0 = time.monotonic()
    out = subprocess.run([sys.executable, "-m", "ai_factory.cli", "serve", "ensure"], env=env,
                         capture_output=True, text=True, timeout=180)
    assert out.returncode == 0, out.stderr[-3000:]
    print(f"\nkill -9 of the arbiter, then `serve ensure`: {len(orphans)} orphans stopped, serving again after "
          f"{time.monotonic() - t0:.1f}s")
    result = json.loads(out.stdout)
    assert result["restarted"] and sorted(result["orphans_stopped"][old_id]) == sorted(orphans)
    assert _gone(orphans, 5)
    assert len(_leaders(target)) == 1  # one backend, not a second one beside the orphans
    assert _served_version(target.url) == a


@pytest.mark.faults
def test_control_surfaces_are_closed_and_state_is_private(local_env):
    store, target = local_env
    backend = _serve(target, store.versions["a"])

    # /_front/status: the version for everyone, pids/ports/log paths only with the token.
    status, body = http_get(f"{target.url}/_front/status")
    public = json.loads(body)
    assert status == 200 and public["version"] == store.versions["a"]
    assert not {"backend", "inflight"} & set(public) and str(backend["pid"]) not in body.decode()
    assert str(target.home) not in body.decode()
    assert target.front_status()["backend"]["pid"] == backend["pid"]  # the owner, with the token

    # The model server listens on its serving port only: circus' control endpoint is no TCP port.
    assert _tcp_listening_ports(backend["pid"]) == {backend["port"]}
    sockets = _unix_socket_paths(backend["pid"])
    control = [p for p in sockets if p.name == "circus.sock"]
    assert control, sockets
    assert stat.S_IMODE(control[0].stat().st_mode) == 0o600
    assert stat.S_IMODE(control[0].parent.stat().st_mode) == 0o700
    ctl = subprocess.run([sys.executable, "-m", "circus.circusctl", "--endpoint", f"ipc://{control[0]}",
                          "--timeout", "10", "list"], capture_output=True, text=True, timeout=60)
    assert ctl.returncode == 0 and ctl.stdout.strip(), ctl.stderr  # the owner still controls it

    for path in (target.home, target.home / "logs"):
        assert stat.S_IMODE(path.stat().st_mode) == 0o700, path
    for path in (target.token_file, target.state_file, Path(backend["log"])):
        assert stat.S_IMODE(path.stat().st_mode) == 0o600, path


def _socket_inodes(pid: int) -> set[str]:
    out = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        try:
            link = os.readlink(fd)
        except OSError:
            continue
        if link.startswith("socket:["):
            out.add(link[8:-1])
    return out


def _tcp_listening_ports(pid: int) -> set[int]:
    inodes = _socket_inodes(pid)
    ports = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            f = line.split()
            if f[3] == "0A" and f[9] in inodes:  # LISTEN
                ports.add(int(f[1].rsplit(":", 1)[1], 16))
    return ports


def _unix_socket_paths(pid: int) -> list[Path]:
    inodes = _socket_inodes(pid)
    return [Path(f[7]) for f in (line.split() for line in Path("/proc/net/unix").read_text().splitlines()[1:])
            if len(f) > 7 and f[6] in inodes and f[7].startswith("/")]
