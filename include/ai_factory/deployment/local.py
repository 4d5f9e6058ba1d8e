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

Supervision and orphans:

* The front watches the live backend: when its server process dies it starts the same Bento
  again and switches to it by itself (:meth:`LocalTarget.revive_active`), with backoff. A cold
  start of ``bentoml serve`` takes 10-40 s; with a warm standby (``AI_FACTORY_SERVE_STANDBY``,
  on under ``ai-factory up``) a second server of the live version waits ready on a port of its
  own, and the front switches to it at once, then starts the next standby
  (:meth:`LocalTarget.ensure_standby`). The standby costs the memory of one more server.
* Every process started here carries ``AI_FACTORY_SERVING_HOME`` and ``AI_FACTORY_SERVING_PROC``
  (``<version>-<port>`` or ``front``) in its environment, which circus passes on to the API
  workers. Circus puts each worker in a session of its own, so a ``kill -9`` of a backend's
  arbiter leaves workers that no process group reaches; :meth:`LocalTarget.reap_orphans`
  finds them by that mark and stops them (``serve ensure`` and the supervisor run it first).
* Logs go through :mod:`ai_factory.orchestration.logpipe` (size cap + rotation); the folder is
  0700 and ``/_front/status`` shows pids, ports and log paths only with the token kept in
  ``.front-token`` (0600).
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
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from ai_factory.orchestration import logpipe
from ai_factory.orchestration.private import PRIVATE_UMASK, private_dir, write_private

log = logging.getLogger(__name__)

MARK_HOME = "AI_FACTORY_SERVING_HOME"
MARK_PROC = "AI_FACTORY_SERVING_PROC"
# Given to the leader (arbiter or front) only: it drops the variable from its own environment
# at start (``drop_leader_mark``), so its workers do not inherit it, while ``/proc/<pid>/environ``
# (the environment it was started with) keeps it. The command line cannot tell: circus renames
# its process to ``circusd``.
MARK_LEADER = "AI_FACTORY_SERVING_LEADER"


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
    # A zombie of another parent (the process that started a backend and never waits for it,
    # e.g. `ai-factory up`) is dead too: the front's supervisor must see it so.
    return not _is_zombie(pid)


def _is_zombie(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat", "rb") as fh:
            return fh.read().rsplit(b")", 1)[1].split()[0] == b"Z"
    except (OSError, IndexError):
        return False


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


def marked_processes(home: Path) -> dict[str, list[tuple[int, bool]]]:
    """The live processes started for the serving folder ``home``: ``{proc id: [(pid, is leader)]}``.

    Read from ``/proc`` (this user's processes only: others' environments are not readable).
    """
    want = f"{MARK_HOME}={home.resolve()}".encode()
    out: dict[str, list[tuple[int, bool]]] = {}
    me = os.getpid()
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit() or int(entry.name) == me:
            continue
        try:
            with open(f"/proc/{entry.name}/environ", "rb") as fh:
                env = fh.read().split(b"\0")
            with open(f"/proc/{entry.name}/cmdline", "rb") as fh:
                cmdline = fh.read().split(b"\0")
        except OSError:
            continue
        if _is_zombie(int(entry.name)):
            continue  # a zombie holds nothing; its parent reaps it
        if want not in env:
            continue
        proc_id = next((e.split(b"=", 1)[1].decode() for e in env if e.startswith(MARK_PROC.encode() + b"=")), "")
        # The log writer, forked from the leader before it ran its command, has the leader's environment.
        writer = len(cmdline) > 2 and cmdline[1:3] == [b"-m", b"ai_factory.orchestration.logpipe"]
        leader = f"{MARK_LEADER}=1".encode() in env and not writer
        out.setdefault(proc_id, []).append((int(entry.name), leader))
    return out


def drop_leader_mark() -> None:
    """Called first thing by a leader process: its children are workers, not leaders."""
    os.environ.pop(MARK_LEADER, None)


def kill_pids(pids: list[int], grace: float = 5.0) -> None:
    """SIGTERM, then SIGKILL what is left after ``grace`` s."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, sig)
        deadline = time.monotonic() + grace
        while time.monotonic() < deadline and any(pid_alive(p) for p in pids):
            time.sleep(0.1)
        if not any(pid_alive(p) for p in pids):
            return


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
    # How often the front checks the live backend's server (0: no supervision, tests of `ensure`).
    supervise_interval: float = 0.5
    # Keep a second, ready server of the live version for an instant switch when the live one dies.
    standby: bool = False

    @classmethod
    def from_settings(cls) -> LocalTarget:
        from ai_factory.settings import get_settings

        s = get_settings()
        return cls(home=s.model_store / "serving", host=s.serve_host, port=s.serve_port,
                   bentoml_home=s.model_store, standby=s.serve_standby)

    # -- state -------------------------------------------------------------------------------------
    @property
    def state_file(self) -> Path:
        return self.home / "state.json"

    @property
    def url(self) -> str:
        host = "127.0.0.1" if self.host in ("0.0.0.0", "") else self.host
        return f"http://{host}:{self.port}"

    @property
    def token_file(self) -> Path:
        return self.home / ".front-token"

    def token(self) -> str:
        """The secret that ``/_front/status`` asks for before it shows pids, ports and log paths."""
        if not self.token_file.exists():
            import secrets

            write_private(self.token_file, secrets.token_urlsafe(24))
        return self.token_file.read_text().strip()

    def _log_settings(self) -> tuple[int, int]:
        from ai_factory.settings import get_settings

        s = get_settings()
        return s.log_max_bytes, s.log_backups

    def _spawn(self, proc_id: str, cmd: list[str], log_path: Path) -> subprocess.Popen[bytes]:
        """Start ``cmd`` detached (own session), marked, logging through the rotating writer."""
        max_bytes, backups = self._log_settings()
        return subprocess.Popen(logpipe.command(log_path, cmd, max_bytes, backups), env=self._env(proc_id),
                                stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                start_new_session=True, cwd=str(self.home), umask=PRIVATE_UMASK)

    def read_state(self) -> dict[str, Any]:
        try:
            return json.loads(self.state_file.read_text())
        except FileNotFoundError:
            return {"front": None, "active": None, "candidates": {}, "history": []}

    def _write_state(self, state: dict[str, Any]) -> None:
        write_private(self.state_file, json.dumps(state, indent=2, sort_keys=True, default=str))

    @contextlib.contextmanager
    def _locked(self) -> Iterator[dict[str, Any]]:
        """Read-modify-write the state under an exclusive lock."""
        private_dir(self.home)
        with open(self.home / ".lock", "w") as fh:
            fcntl.flock(fh, fcntl.LOCK_EX)
            try:
                state = self.read_state()
                yield state
                self._write_state(state)
            finally:
                fcntl.flock(fh, fcntl.LOCK_UN)

    @staticmethod
    def _matches(standby: dict[str, Any] | None, active: dict[str, Any] | None) -> bool:
        return bool(standby and active and standby.get("version") == active.get("version")
                    and standby.get("bento") == active.get("bento") and pid_alive(standby.get("pid")))

    def ensure_standby(self) -> dict[str, Any] | None:
        """Keep one ready server of the live version beside it (replacing a stale one); returns a new one.

        The start happens outside the revive lock, so a live server dying meanwhile is still
        replaced at once (cold); the new standby is kept only if the live version is still the same.
        """
        state = self.read_state()
        active, standby = state.get("active"), state.get("standby")
        if self._matches(standby, active):
            return None
        if standby:
            log.info("standby %s (port %s) no longer matches the live version; stopping it", standby.get("version"),
                     standby.get("port"))
            with self._locked() as st:
                st["standby"] = None
            self.stop_backend(standby)
        if not active or not pid_alive(active.get("pid")):
            return None
        backend = self.start_backend(active["version"], active["bento"])
        with self._locked() as st:
            if (st.get("candidates") or {}).get(backend["version"], {}).get("pid") == backend["pid"]:
                st["candidates"].pop(backend["version"])
            live = st.get("active") or {}
            keep = live.get("version") == backend["version"] and live.get("bento") == backend["bento"]
            if keep:
                st["standby"] = {k: backend[k] for k in ("version", "bento", "port", "pid", "log", "url",
                                                          "metrics_dir")}
        if not keep:
            self.stop_backend(backend)
            return None
        log.info("standby of %s ready on port %d", backend["version"], backend["port"])
        return backend

    def _env(self, proc_id: str) -> dict[str, str]:
        env = dict(os.environ)
        env[MARK_HOME] = str(self.home.resolve())
        env[MARK_PROC] = proc_id
        env[MARK_LEADER] = "1"
        if self.bentoml_home is not None:
            env["BENTOML_HOME"] = str(self.bentoml_home)
        env.setdefault("BENTOML_DO_NOT_TRACK", "true")
        env.pop("AI_FACTORY_MODEL_TAG", None)  # a Bento serves the version it was built for
        return env

    # -- backends ----------------------------------------------------------------------------------
    def start_backend(self, version: str, bento: str) -> dict[str, Any]:
        """Start ``bentoml serve <bento>`` for ``version`` on a fresh port and wait until it is ready."""
        port = free_port()
        logs = private_dir(self.home / "logs")
        log_path = logs / f"{version}-{port}.log"
        metrics_dir = self.home / "metrics" / f"{version}-{port}"
        # Own Prometheus directory: bentoml serve empties the shared one, the live version's included.
        cmd = [sys.executable, "-m", "ai_factory.serving.launch", "--metrics-dir", str(metrics_dir),
               "serve", bento, "--host", "127.0.0.1", "--port", str(port)]
        proc = self._spawn(f"{version}-{port}", cmd, log_path)
        backend: dict[str, Any] = {"version": version, "bento": bento, "port": port, "pid": proc.pid,
                                   "log": str(log_path),
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
        # Workers live in sessions of their own: those that outlived their arbiter go by their mark.
        if backend.get("port"):
            self.reap(f"{backend['version']}-{backend['port']}")
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
        # Read, not created here: `serve status` on a machine with no front writes nothing.
        token = self.token_file.read_text().strip() if self.token_file.exists() else ""
        req = urllib.request.Request(f"{self.url}/_front/status", headers={"Authorization": f"Bearer {token}"})
        try:
            with urllib.request.urlopen(req, timeout=2) as resp:
                return json.loads(resp.read()) if resp.status == 200 else None
        except (urllib.error.URLError, OSError, ValueError):
            return None

    def ensure_front(self) -> dict[str, Any]:
        """Start the front (detached) unless it is already running; returns its record."""
        state = self.read_state()
        front = state.get("front") or {}
        if front.get("pid") == os.getpid():  # called by the front itself (its supervisor revives a backend)
            return front
        if pid_alive(front.get("pid")) and self.front_status() is not None:
            return front
        log_path = private_dir(self.home / "logs") / "front.log"
        self.token()
        self.reap("front")  # a front whose pid the state lost (or a crashed one's leftovers)
        cmd = [sys.executable, "-m", "ai_factory.deployment.front", "--state", str(self.state_file),
               "--host", self.host, "--port", str(self.port), "--token-file", str(self.token_file),
               "--ready-timeout", str(self.ready_timeout), "--check-interval", str(self.supervise_interval)]
        if self.standby:
            cmd.append("--standby")
        proc = self._spawn("front", cmd, log_path)
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
            state.update({"front": None, "active": None, "standby": None, "candidates": {}})
            if active:
                state.setdefault("history", []).append({"at": datetime.now(UTC).isoformat(), "to": None,
                                                        "from": active.get("version"), "reason": reason})
        log.info("forgot the serving processes recorded in %s (%s)", self.state_file, reason)
        return dropped

    def stop_all(self) -> None:
        """Stop the front and every backend this target started (``ai-factory serve stop``), orphans included."""
        front = self.read_state().get("front")
        if front:  # first, so that it does not revive the backends stopped next
            stop_process(front.get("pid"))
        state = self.read_state()  # after: a backend its supervisor was starting is recorded by now
        for b in [state.get("active"), state.get("standby"), *(state.get("candidates") or {}).values()]:
            if b:
                stop_process(b.get("pid"))
        with self._locked() as st:
            st.update({"front": None, "active": None, "standby": None, "candidates": {}})
        self.reap_orphans()

    # -- supervision -----------------------------------------------------------------------------------
    def reap(self, proc_id: str) -> list[int]:
        """Stop every process marked ``proc_id`` (a dead backend's workers); returns their pids."""
        pids = [pid for pid, _ in marked_processes(self.home).get(proc_id, [])]
        if pids:
            log.warning("stopping %d leftover process(es) of %s: %s", len(pids), proc_id, pids)
            kill_pids(pids)
        return pids

    def reap_orphans(self) -> dict[str, list[int]]:
        """Stop the processes whose leader (arbiter or front) is gone; returns ``{proc id: pids}``.

        A leader that still runs keeps its processes, recorded or not: a deploy in another
        process may have started it a moment ago.
        """
        reaped: dict[str, list[int]] = {}
        for proc_id, procs in marked_processes(self.home).items():
            if not any(leader for _, leader in procs):
                pids = [pid for pid, _ in procs]
                log.warning("orphans of %s (its server process is gone): stopping %s", proc_id or "?", pids)
                kill_pids(pids)
                reaped[proc_id] = pids
        return reaped

    def revive_active(self, reason: str = "supervisor") -> dict[str, Any] | None:
        """Start the live version again if its server died; returns the new backend (None: nothing to do).

        Serialised by a lock of its own, so the front's supervisor and ``serve ensure`` never
        both start a replacement.
        """
        private_dir(self.home)
        with open(self.home / ".revive.lock", "w") as fh:
            fcntl.flock(fh, fcntl.LOCK_EX)
            try:
                state = self.read_state()
                dead, standby = state.get("active"), state.get("standby")
                if not dead or pid_alive(dead.get("pid")):
                    return None
                self.reap(f"{dead['version']}-{dead['port']}")
                shutil.rmtree(self.home / "metrics" / f"{dead['version']}-{dead['port']}", ignore_errors=True)
                backend: dict[str, Any]
                if standby is not None and self._matches(standby, dead):
                    log.warning("the server of %s (pid %s, port %s) is gone; switching to its standby on port %s "
                                "(%s)", dead["version"], dead.get("pid"), dead.get("port"), standby["port"], reason)
                    with self._locked() as st:
                        st["standby"] = None
                    backend = standby
                else:
                    log.warning("the server of %s (pid %s, port %s) is gone; starting it again (%s)",
                                dead["version"], dead.get("pid"), dead.get("port"), reason)
                    backend = self.start_backend(dead["version"], dead["bento"])
                self.switch_to(backend, reason=f"{reason}: server pid {dead.get('pid')} of {dead['version']} died")
                with self._locked() as state:
                    state.setdefault("candidates", {}).pop(f"{dead['version']}@retiring", None)
                return backend
            finally:
                fcntl.flock(fh, fcntl.LOCK_UN)
