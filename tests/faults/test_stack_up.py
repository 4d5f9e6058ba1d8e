"""Fault injection on ``ai-factory up`` with real processes: a killed scheduler comes back, SIGTERM
stops everything, and the state it keeps is private (0600 files, 0700 folders, nothing on 0.0.0.0)."""

from __future__ import annotations

import json
import os
import signal
import socket
import stat
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

# `ai-factory up` runs on its own SQLite metadata DB: make test's first pass runs it.
pytestmark = pytest.mark.faults

REPO = Path(__file__).resolve().parents[2]
# 127.0.0.1, ::1 and ::ffff:127.0.0.1 as /proc/net/tcp{,6} write them.
LOOPBACK = ("0100007F", "00000000000000000000000001000000", "0000000000000000FFFF00000100007F")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _stack_pids(airflow_home: Path) -> dict[int, str]:
    """Every live process started for this Airflow home (by its environment), with its command line."""
    want = f"AIRFLOW_HOME={airflow_home}".encode()
    out = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            if want not in (entry / "environ").read_bytes().split(b"\0"):
                continue
            if (entry / "stat").read_bytes().rsplit(b")", 1)[1].split()[0] == b"Z":
                continue
            out[int(entry.name)] = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
    return out


def _listening(pids: set[int]) -> list[tuple[str, int]]:
    """(address, port) of every TCP socket these processes listen on."""
    inodes = set()
    for pid in pids:
        try:
            for fd in Path(f"/proc/{pid}/fd").iterdir():
                link = os.readlink(fd)
                if link.startswith("socket:["):
                    inodes.add(link[8:-1])
        except OSError:
            continue
    found = []
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            f = line.split()
            if f[3] == "0A" and f[9] in inodes:
                addr, port = f[1].rsplit(":", 1)
                found.append((addr, int(port, 16)))
    return found


def _wait_for(log: Path, text: str, proc: subprocess.Popen, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if text in log.read_text(errors="replace"):
            return
        assert proc.poll() is None, f"ai-factory up exited ({proc.returncode}):\n{log.read_text()[-4000:]}"
        time.sleep(0.5)
    raise AssertionError(f"{text!r} not in the output of ai-factory up after {timeout}s:\n{log.read_text()[-4000:]}")


def _beat_since(health: dict, when: datetime) -> bool:
    sched = health.get("scheduler") or {}
    beat = sched.get("latest_scheduler_heartbeat")
    return sched.get("status") == "healthy" and bool(beat) and datetime.fromisoformat(beat) > when


def _health(url: str) -> dict:
    try:
        with urllib.request.urlopen(f"{url}/api/v2/monitor/health", timeout=3) as resp:
            return json.loads(resp.read())
    except OSError:
        return {}


@pytest.fixture
def up(tmp_path: Path) -> Iterator[dict]:
    state = tmp_path / "state"
    port = _free_port()
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path), "AI_FACTORY_HOME": str(REPO),
           "AI_FACTORY_SERVE_PORT": str(_free_port()), "AI_FACTORY_STACK_FILE": str(tmp_path / "stack.json")}
    for k in ("BENTOML_HOME", "AI_FACTORY_DATA_ROOT", "AIRFLOW_HOME", "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"):
        env.pop(k, None)
    log = tmp_path / "up.log"
    with open(log, "wb") as out:
        # A shell's background job: SIGINT ignored, as under `nohup cmd &` (SIGTERM must still stop it).
        proc = subprocess.Popen([sys.executable, "-m", "ai_factory.cli", "up", "--state-dir", str(state), "--days",
                                 "1", "--rows", "50", "--port", str(port), "--paused"], env=env, stdout=out,
                                stderr=subprocess.STDOUT, start_new_session=True,
                                preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_IGN))
    info = {"proc": proc, "log": log, "state": state, "airflow_home": state / "airflow", "env": env,
            "url": f"http://127.0.0.1:{port}", "stack_file": tmp_path / "stack.json"}
    try:
        yield info
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
        for pid in _stack_pids(info["airflow_home"]):
            os.kill(pid, signal.SIGKILL)


def test_up_restarts_a_killed_scheduler_keeps_its_state_private_and_stops_everything_on_sigterm(up):
    proc, log, home = up["proc"], up["log"], up["airflow_home"]
    _wait_for(log, "AI Factory is running", proc, timeout=400)

    # State: 0700 folders, 0600 secrets (the JWT secret, the admin password, the metadata DB).
    for d in (up["state"], home, home / "logs"):
        assert stat.S_IMODE(d.stat().st_mode) == 0o700, d
    for f in (home / ".stack-secret", home / "simple_auth_manager_passwords.json", home / "airflow.db",
              home / "ui-login.json", home / "logs" / "scheduler.log", up["stack_file"]):
        assert stat.S_IMODE(f.stat().st_mode) == 0o600, f
    # Nothing of the stack listens beyond loopback (Airflow's log servers bound 0.0.0.0).
    pids = _stack_pids(home)
    exposed = [(a, p) for a, p in _listening(set(pids)) if a not in LOOPBACK]
    assert not exposed, exposed

    # A plain shell finds this stack's serving state through the stack file.
    env = {k: v for k, v in up["env"].items() if k not in ("AI_FACTORY_SERVE_PORT",)}
    status = subprocess.run([sys.executable, "-m", "ai_factory.cli", "serve", "status"], env=env,
                            capture_output=True, text=True, timeout=60)
    assert status.returncode == 0, status.stderr
    assert json.loads(status.stdout)["serving_home"] == str(up["state"] / "bentoml" / "serving")

    # kill -9 the scheduler: `up` says so, clears its group, starts a new one that becomes healthy.
    scheduler = [p for p, cmd in pids.items() if cmd.split()[1:4] == ["-m", "airflow", "scheduler"]]
    assert len(scheduler) == 1, pids
    os.kill(scheduler[0], signal.SIGKILL)
    killed_at, t0 = datetime.now(UTC), time.monotonic()
    _wait_for(log, "airflow scheduler restarted", proc, timeout=60)
    while not _beat_since(_health(up["url"]), killed_at):  # a heartbeat only the new scheduler can have made
        assert time.monotonic() - t0 < 120, _health(up["url"])
        time.sleep(0.5)
    print(f"\nkill -9 of the scheduler under `up`: healthy again after {time.monotonic() - t0:.1f}s")
    assert f"airflow scheduler (pid {scheduler[0]}) exited with -9; restarting in 1s" in log.read_text()
    assert "Address already in use" not in (home / "logs" / "scheduler.log").read_text(errors="replace")

    # SIGTERM (SIGINT is ignored here, as under nohup): every process of the stack stops.
    proc.send_signal(signal.SIGTERM)
    t0 = time.monotonic()
    assert proc.wait(timeout=90) == 0, log.read_text()[-3000:]
    print(f"SIGTERM to `up`: everything stopped after {time.monotonic() - t0:.1f}s")
    assert "stopping Airflow and the model server (StopRequested SIGTERM)" in log.read_text()
    left = _stack_pids(home)
    assert not left, left
