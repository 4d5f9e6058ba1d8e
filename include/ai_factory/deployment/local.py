"""The ``local`` deployment target: managed ``bentoml serve`` processes behind a stable address.

Layout (under ``<model store>/serving/``)::

    state.json        {"front": {pid, host, port}, "active": {version, bento, port, pid, log},
                       "candidates": {version: {...}}, "history": [...]}
    logs/<version>-<port>.log, logs/front.log

* Every model version runs as its own ``bentoml serve <bento>`` on a fresh port, detached from
  the deploying process (its own session), so it outlives the Airflow task.
* The stable address (``settings.serve_host:serve_port``) is :mod:`ai_factory.deployment.front`,
  also detached. It forwards each request to ``state.json``'s ``active`` backend.
* A deploy starts the candidate beside the live version, smoke-tests it on its own port, then
  switches the front (atomic state write + ``SIGHUP``, confirmed through ``/_front/status``)
  and, once the alias has moved, drains and stops the old backend. Until the switch the old
  version serves every request; after a failed deploy it still does.

All state changes happen under an exclusive file lock, so two deploys cannot interleave.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)


class DeploymentError(RuntimeError):
    """A deployment step failed; the message says which and why."""


def free_port(host: str = "127.0.0.1") -> int:
    import socket

    with socket.socket() as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def pid_alive(pid: int | None) -> bool:
    if not pid:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie child of this process still "exists"; reap it if it is ours.
    with contextlib.suppress(ChildProcessError):
        done, _ = os.waitpid(pid, os.WNOHANG)
        if done == pid:
            return False
    return True


def http_get(url: str, timeout: float = 2.0) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp:
            return resp.status, resp.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def http_post_json(url: str, payload: Any, timeout: float = 30.0,
                   headers: dict[str, str] | None = None) -> tuple[int, Any]:
    req = urllib.request.Request(url, data=json.dumps(payload).encode(), method="POST",
                                 headers={"Content-Type": "application/json", **(headers or {})})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            return resp.status, json.loads(resp.read() or b"null")
    except urllib.error.HTTPError as exc:
        body = exc.read()
        try:
            return exc.code, json.loads(body)
        except ValueError:
            return exc.code, body.decode(errors="replace")


def wait_ready(url: str, pid: int | None, timeout: float, log_path: Path | None = None) -> float:
    """Wait for ``<url>/readyz`` to answer 200; fail early (with the log tail) if ``pid`` exits."""
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout:
        if pid is not None and not pid_alive(pid):
            tail = log_path.read_text(errors="replace")[-3000:] if log_path and log_path.exists() else ""
            raise DeploymentError(f"the server process {pid} exited before {url} became ready:\n{tail}")
        try:
            status, _ = http_get(f"{url}/readyz", timeout=2)
            if status == 200:
                return time.monotonic() - t0
        except (urllib.error.URLError, OSError):
            pass
        time.sleep(0.25)
    tail = log_path.read_text(errors="replace")[-3000:] if log_path and log_path.exists() else ""
    raise DeploymentError(f"{url}/readyz did not answer 200 within {timeout:.0f}s:\n{tail}")


def stop_process(pid: int | None, grace: float = 20.0) -> bool:
    """SIGTERM the process group of ``pid`` (graceful), SIGKILL after ``grace`` s. True if it was running."""
    if not pid_alive(pid):
        return False
    assert pid is not None
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pid, signal.SIGTERM)
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline and pid_alive(pid):
        time.sleep(0.2)
    if pid_alive(pid):
        log.warning("process %d did not stop in %.0fs; killing its group", pid, grace)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pid, signal.SIGKILL)
    return True


@dataclass
class LocalTarget:
    """Local serving processes for one model store, and the stable front address."""

    home: Path
    host: str = "127.0.0.1"
    port: int = 3000
    ready_timeout: float = 120.0
    bentoml_home: Path | None = None

    @classmethod
    def from_settings(cls) -> LocalTarget:
        from ai_factory.settings import get_settings

        s = get_settings()
        return cls(home=s.model_store / "serving", host=s.serve_host, port=s.serve_port,
                   bentoml_home=s.model_store)

    # -- state -------------------------------------------------------------------------------------
    @property
    def state_file(self) -> Path:
        return self.home / "state.json"

    @property
    def url(self) -> str:
        host = "127.0.0.1" if self.host in ("0.0.0.0", "") else self.host
        return f"http://{host}:{self.port}"

    def read_state(self) -> dict[str, Any]:
        try:
            return json.loads(self.state_file.read_text())
        except FileNotFoundError:
            return {"front": None, "active": None, "candidates": {}, "history": []}

    def _write_state(self, state: dict[str, Any]) -> None:
        self.home.mkdir(parents=True, exist_ok=True)
        tmp = self.state_file.with_name(f".state.{uuid.uuid4().hex}.tmp")
        tmp.write_text(json.dumps(state, indent=2, sort_keys=True, default=str))
        os.replace(tmp, self.state_file)

    @contextlib.contextmanager
    def _locked(self) -> Iterator[dict[str, Any]]:
        """Read-modify-write the state under an exclusive lock."""
        self.home.mkdir(parents=True, exist_ok=True)
        with open(self.home / ".lock", "w") as fh:
            fcntl.flock(fh, fcntl.LOCK_EX)
            try:
                state = self.read_state()
                yield state
                self._write_state(state)
            finally:
                fcntl.flock(fh, fcntl.LOCK_UN)

    def _env(self) -> dict[str, str]:
        env = dict(os.environ)
        if self.bentoml_home is not None:
            env["BENTOML_HOME"] = str(self.bentoml_home)
        env.setdefault("BENTOML_DO_NOT_TRACK", "true")
        env.pop("AI_FACTORY_MODEL_TAG", None)  # a Bento serves the version it was built for
        return env

    # -- backends ----------------------------------------------------------------------------------
    def start_backend(self, version: str, bento: str) -> dict[str, Any]:
        """Start ``bentoml serve <bento>`` for ``version`` on a fresh port and wait until it is ready."""
        port = free_port()
        logs = self.home / "logs"
        logs.mkdir(parents=True, exist_ok=True)
        log_path = logs / f"{version}-{port}.log"
        metrics_dir = self.home / "metrics" / f"{version}-{port}"
        # Own Prometheus directory: bentoml serve empties the shared one, the live version's included.
        cmd = [sys.executable, "-m", "ai_factory.serving.launch", "--metrics-dir", str(metrics_dir),
               "serve", bento, "--host", "127.0.0.1", "--port", str(port)]
        with open(log_path, "ab") as out:
            proc = subprocess.Popen(cmd, env=self._env(), stdout=out, stderr=subprocess.STDOUT,
                                    stdin=subprocess.DEVNULL, start_new_session=True, cwd=str(self.home))
        backend = {"version": version, "bento": bento, "port": port, "pid": proc.pid, "log": str(log_path),
                   "metrics_dir": str(metrics_dir), "url": f"http://127.0.0.1:{port}", "started_at": datetime.now(UTC).isoformat()}
        log.info("started %s for %s on port %d (pid %d), log %s", bento, version, port, proc.pid, log_path)
        with self._locked() as state:
            state.setdefault("candidates", {})[version] = backend
        try:
            seconds = wait_ready(backend["url"], proc.pid, self.ready_timeout, log_path)
        except DeploymentError:
            self.stop_backend(backend)
            raise
        log.info("%s is ready on port %d after %.1fs", version, port, seconds)
        return {**backend, "ready_seconds": round(seconds, 2)}

    def stop_backend(self, backend: dict[str, Any] | None, grace: float = 20.0) -> bool:
        if not backend:
            return False
        stopped = stop_process(backend.get("pid"), grace)
        if backend.get("metrics_dir") and not pid_alive(backend.get("pid")):
            shutil.rmtree(backend["metrics_dir"], ignore_errors=True)
        with self._locked() as state:
            cands = state.setdefault("candidates", {})
            if cands.get(backend["version"], {}).get("pid") == backend.get("pid"):
                cands.pop(backend["version"])
        if stopped:
            log.info("stopped %s (port %s, pid %s)", backend["version"], backend.get("port"), backend.get("pid"))
        return stopped

    # -- front ---------------------------------------------------------------------------------------
    def front_status(self) -> dict[str, Any] | None:
        try:
            status, body = http_get(f"{self.url}/_front/status", timeout=2)
        except (urllib.error.URLError, OSError):
            return None
        return json.loads(body) if status == 200 else None

    def ensure_front(self) -> dict[str, Any]:
        """Start the front (detached) unless it is already running; returns its record."""
        state = self.read_state()
        front = state.get("front") or {}
        if pid_alive(front.get("pid")) and self.front_status() is not None:
            return front
        log_path = self.home / "logs" / "front.log"
        log_path.parent.mkdir(parents=True, exist_ok=True)
        cmd = [sys.executable, "-m", "ai_factory.deployment.front", "--state", str(self.state_file),
               "--host", self.host, "--port", str(self.port)]
        with open(log_path, "ab") as out:
            proc = subprocess.Popen(cmd, env=self._env(), stdout=out, stderr=subprocess.STDOUT,
                                    stdin=subprocess.DEVNULL, start_new_session=True)
        front = {"pid": proc.pid, "host": self.host, "port": self.port, "log": str(log_path)}
        with self._locked() as st:
            st["front"] = front
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if not pid_alive(proc.pid):
                raise DeploymentError(f"the serving front exited at start (port {self.port} taken?):\n"
                                      f"{log_path.read_text(errors='replace')[-2000:]}")
            if self.front_status() is not None:
                log.info("serving front listening on %s (pid %d)", self.url, proc.pid)
                return front
            time.sleep(0.2)
        raise DeploymentError(f"the serving front did not answer on {self.url} within 30s")

    def switch_to(self, backend: dict[str, Any], reason: str, timeout: float = 15.0) -> dict[str, Any] | None:
        """Point the front at ``backend``; returns the backend it replaced. Confirmed through the front."""
        if not pid_alive(backend.get("pid")):
            raise DeploymentError(f"cannot switch to {backend['version']}: its server (pid {backend.get('pid')}) "
                                  "is not running")
        with self._locked() as state:
            previous = state.get("active")
            state["active"] = {k: backend[k] for k in ("version", "bento", "port", "pid", "log", "url")}
            state.setdefault("candidates", {}).pop(backend["version"], None)
            if previous and previous.get("pid") != backend.get("pid"):
                state["candidates"][f"{previous['version']}@retiring"] = previous
            state.setdefault("history", []).append({"at": datetime.now(UTC).isoformat(), "to": backend["version"],
                                                    "from": previous and previous.get("version"),
                                                    "reason": reason})
        front = self.ensure_front()
        with contextlib.suppress(ProcessLookupError):
            os.kill(front["pid"], signal.SIGHUP)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            status = self.front_status()
            if status and (status.get("backend") or {}).get("port") == backend["port"]:
                log.info("front %s now serves %s (was %s): %s", self.url, backend["version"],
                         previous and previous.get("version"), reason)
                return previous
            time.sleep(0.1)
        raise DeploymentError(f"the front at {self.url} did not switch to {backend['version']} within {timeout}s")

    def drain(self, backend: dict[str, Any], timeout: float = 30.0) -> None:
        """Wait until the front has no request in flight to ``backend``."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            status = self.front_status() or {}
            if int((status.get("inflight") or {}).get(str(backend["port"]), 0)) == 0:
                return
            time.sleep(0.1)
        log.warning("requests still in flight to %s after %.0fs; stopping it anyway", backend["version"], timeout)

    def retire(self, backend: dict[str, Any] | None) -> bool:
        """Drain and stop a backend that the front no longer routes to."""
        if not backend:
            return False
        active = self.read_state().get("active") or {}
        if active.get("pid") == backend.get("pid"):
            raise DeploymentError(f"refusing to stop {backend['version']}: the front still routes to it")
        self.drain(backend)
        stopped = self.stop_backend(backend)
        with self._locked() as state:
            state.setdefault("candidates", {}).pop(f"{backend['version']}@retiring", None)
        return stopped

    def active(self) -> dict[str, Any] | None:
        return self.read_state().get("active")

    def forget_processes(self, reason: str) -> dict[str, Any]:
        """Drop every process record (front, active, candidates) after a restart; returns what was dropped.

        Pids are only meaningful in the process namespace that started them: after a container
        or machine restart none of the recorded servers exists, and a recycled pid would make a
        dead server look alive. The registry is untouched; ``ensure`` then starts the champion.
        """
        with self._locked() as state:
            dropped = {"front": state.get("front"), "active": state.get("active"),
                       "candidates": state.get("candidates") or {}}
            active = dropped["active"] or {}
            state.update({"front": None, "active": None, "candidates": {}})
            if active:
                state.setdefault("history", []).append({"at": datetime.now(UTC).isoformat(), "to": None,
                                                        "from": active.get("version"), "reason": reason})
        log.info("forgot the serving processes recorded in %s (%s)", self.state_file, reason)
        return dropped

    def stop_all(self) -> None:
        """Stop the front and every backend this target started (``ai-factory serve stop``)."""
        state = self.read_state()
        for b in [state.get("active"), *(state.get("candidates") or {}).values()]:
            if b:
                stop_process(b.get("pid"))
        if state.get("front"):
            stop_process(state["front"].get("pid"))
        with self._locked() as st:
            st.update({"front": None, "active": None, "candidates": {}})
