"""Run Airflow's own processes (api-server, scheduler, dag-processor, triggerer) for this project.

Used by ``make up`` (``ai-factory up``), ``make demo`` and the end-to-end tests, so all three
run the real scheduler the same way. Each component runs in its own process group and
logs to ``<airflow_home>/logs/<component>.log`` (size-capped and rotated, see
:mod:`ai_factory.orchestration.logpipe`); :meth:`AirflowStack.stop` terminates the groups
(``airflow standalone`` leaves children behind on Ctrl-C; this does not), and
:meth:`AirflowStack.supervise` restarts a component that died, with backoff, after clearing
what its dead group left behind (an orphaned task supervisor, a port it held).

Secrets (the JWT signing secret, the admin password file, the SQLite metadata DB) are 0600
in a 0700 home, created so. The scheduler and triggerer run with ``--skip-serve-logs``:
Airflow 3.3's log server binds every interface (``host=""``, no setting to change it) and
on one machine the api-server reads the task log files directly, so nothing needs it.
"""

from __future__ import annotations

import json
import logging
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ai_factory.orchestration import logpipe
from ai_factory.orchestration.private import PRIVATE_UMASK, private_dir, tighten, write_private

log = logging.getLogger(__name__)

COMPONENTS = ("api-server", "scheduler", "dag-processor", "triggerer")
# Components whose own log server (0.0.0.0, see the module doc) is not started.
SKIP_SERVE_LOGS = ("scheduler", "triggerer")
# Restart backoff: 1 s, 2 s, 4 s ... up to this; reset once a component has run this long.
BACKOFF_MAX_S = 60.0
STABLE_AFTER_S = 60.0


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class AirflowStack:
    """One Airflow installation: its home, metadata DB, folders and the processes it runs."""

    home: Path
    dags_folder: Path
    plugins_folder: Path
    db_url: str
    port: int = 8080
    admin_user: str = "admin"
    admin_password: str = field(default_factory=lambda: secrets.token_urlsafe(12))
    paused_at_creation: bool = True
    parallelism: int = 4
    extra_env: dict[str, str] = field(default_factory=dict)
    components: tuple[str, ...] = COMPONENTS
    log_max_bytes: int = logpipe.DEFAULT_MAX_BYTES
    log_backups: int = logpipe.DEFAULT_BACKUPS
    procs: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict, init=False)
    restarts: dict[str, int] = field(default_factory=dict, init=False)
    _next_start: dict[str, float] = field(default_factory=dict, init=False)
    _started_at: dict[str, float] = field(default_factory=dict, init=False)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def _port(self, name: str) -> int:
        """A free port for ``name``, chosen once per stack and remembered in its home."""
        f = self.home / f".port-{name}"
        if not f.exists():
            write_private(f, str(free_port()))
        return int(f.read_text())

    def secret_files(self) -> list[Path]:
        """The files of this home that hold secrets (0600)."""
        return [self.home / ".stack-secret", self.home / "simple_auth_manager_passwords.json",
                self.home / "airflow.db", self.home / "ui-login.json"]

    def env(self) -> dict[str, str]:
        """The environment every Airflow process (and CLI call) of this stack gets."""
        private_dir(self.home)
        tighten(self.secret_files())
        secret_file = self.home / ".stack-secret"
        if not secret_file.exists():
            write_private(secret_file, secrets.token_urlsafe(32))
        secret = secret_file.read_text().strip()
        pw_file = self.home / "simple_auth_manager_passwords.json"
        write_private(pw_file, json.dumps({self.admin_user: self.admin_password}))
        env = dict(os.environ)
        env.update({
            "AIRFLOW_HOME": str(self.home),
            "AIRFLOW__CORE__DAGS_FOLDER": str(self.dags_folder),
            "AIRFLOW__CORE__PLUGINS_FOLDER": str(self.plugins_folder),
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            "AIRFLOW__CORE__EXECUTOR": "LocalExecutor",
            "AIRFLOW__CORE__PARALLELISM": str(self.parallelism),
            "AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION": str(self.paused_at_creation),
            "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"{self.url}/execution/",
            "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": f"{self.admin_user}:admin",
            "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE": str(pw_file),
            "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": self.db_url,
            "AIRFLOW__API__PORT": str(self.port),
            # Log-serving ports of their own, so several stacks (tests, helpers) can share a machine.
            "AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT": str(self._port("worker_log")),
            "AIRFLOW__LOGGING__TRIGGER_LOG_SERVER_PORT": str(self._port("trigger_log")),
            "AIRFLOW__API__HOST": "127.0.0.1",
            "AIRFLOW__API__BASE_URL": self.url,
            "AIRFLOW__API_AUTH__JWT_SECRET": secret,
            "AIRFLOW__API__SECRET_KEY": secret,
            "AIRFLOW__SCHEDULER__MIN_FILE_PROCESS_INTERVAL": "10",
            "AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL": "10",
            "AIRFLOW__SCHEDULER__SCHEDULER_HEARTBEAT_SEC": "2",
            "AIRFLOW__SCHEDULER__TASK_QUEUED_TIMEOUT": "600",
            "GX_ANALYTICS_ENABLED": "false",
        })
        env.update(self.extra_env)
        return env

    def airflow(self, *args: str, check: bool = True, timeout: float = 300) -> subprocess.CompletedProcess[str]:
        """Run an ``airflow`` CLI command against this stack."""
        return subprocess.run([sys.executable, "-m", "airflow", *args], env=self.env(), check=check,
                              capture_output=True, text=True, timeout=timeout, umask=PRIVATE_UMASK)

    def migrate(self) -> None:
        log.info("migrating the Airflow metadata DB at %s", self.db_url.split("@")[-1])
        proc = self.airflow("db", "migrate", check=False, timeout=600)
        if proc.returncode != 0:
            raise RuntimeError(f"airflow db migrate failed:\n{proc.stderr[-4000:]}")

    def start(self) -> None:
        env = self.env()
        for comp in self.components:
            self._spawn(comp, env)

    def _spawn(self, comp: str, env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
        logs = private_dir(self.home / "logs")
        args = [sys.executable, "-m", "airflow", comp]
        if comp == "api-server":
            args += ["--port", str(self.port), "--host", "127.0.0.1"]
        if comp in SKIP_SERVE_LOGS:
            args.append("--skip-serve-logs")
        cmd = logpipe.command(logs / f"{comp}.log", args, self.log_max_bytes, self.log_backups)
        proc = subprocess.Popen(cmd, env=env or self.env(), stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL, start_new_session=True, umask=PRIVATE_UMASK)
        self.procs[comp] = proc
        self._started_at[comp] = time.monotonic()
        log.info("started airflow %s (pid %d), log %s", comp, proc.pid, logs / f"{comp}.log")
        return proc

    @staticmethod
    def _clear_group(pgid: int, grace: float = 5.0) -> None:
        """Stop what a dead component's process group still holds (task runners, a log-server port)."""
        for sig in (signal.SIGTERM, signal.SIGKILL):
            try:
                os.killpg(pgid, sig)
            except ProcessLookupError:
                return
            deadline = time.monotonic() + grace
            while time.monotonic() < deadline:
                try:
                    os.killpg(pgid, 0)
                except ProcessLookupError:
                    return
                time.sleep(0.1)

    def supervise(self) -> list[str]:
        """Restart every component that has exited (backoff 1, 2, 4 .. 60 s); returns what it did, one line each.

        Called every second or so by ``ai-factory up``. Before a restart the dead component's
        process group is cleared, so the new one does not meet its predecessor's orphans.
        """
        events: list[str] = []
        now = time.monotonic()
        for comp, proc in list(self.procs.items()):
            code = proc.poll()
            if code is None:
                if now - self._started_at.get(comp, now) > STABLE_AFTER_S:
                    self.restarts.pop(comp, None)
                continue
            if comp not in self._next_start:
                n = self.restarts.get(comp, 0)
                delay = min(BACKOFF_MAX_S, 2.0 ** n)
                self._clear_group(proc.pid)
                self._next_start[comp] = now + delay
                events.append(f"airflow {comp} (pid {proc.pid}) exited with {code}; restarting in {delay:.0f}s "
                              f"(restart {n + 1})")
            elif now >= self._next_start[comp]:
                del self._next_start[comp]
                self.restarts[comp] = self.restarts.get(comp, 0) + 1
                new = self._spawn(comp)
                events.append(f"airflow {comp} restarted (pid {new.pid})")
        for line in events:
            log.warning("%s", line)
        return events

    def health(self) -> dict[str, Any] | None:
        try:
            with urllib.request.urlopen(f"{self.url}/api/v2/monitor/health", timeout=3) as resp:
                return json.loads(resp.read())
        except (urllib.error.URLError, OSError, ValueError):
            return None

    def wait_ready(self, timeout: float = 180) -> dict[str, Any]:
        """Wait until the api-server answers and the scheduler and dag-processor report healthy."""
        deadline = time.monotonic() + timeout
        last: dict[str, Any] | None = None
        while time.monotonic() < deadline:
            for comp, proc in self.procs.items():
                if proc.poll() is not None:
                    tail = (self.home / "logs" / f"{comp}.log").read_text(errors="replace")[-3000:]
                    raise RuntimeError(f"airflow {comp} exited with {proc.returncode}:\n{tail}")
            last = self.health()
            if last and last.get("scheduler", {}).get("status") == "healthy" and (
                "dag-processor" not in self.components
                or (last.get("dag_processor") or {}).get("status") == "healthy"
            ):
                return last
            time.sleep(1)
        raise TimeoutError(f"Airflow at {self.url} not healthy after {timeout:.0f}s (last health: {last})")

    def stop(self, grace: float = 20) -> None:
        self._next_start.clear()
        for proc in self.procs.values():
            if proc.poll() is None:
                try:
                    os.killpg(proc.pid, signal.SIGTERM)
                except ProcessLookupError:
                    pass
        deadline = time.monotonic() + grace
        for comp, proc in self.procs.items():
            try:
                proc.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                log.warning("airflow %s did not stop in %.0fs; killing its process group", comp, grace)
            # Children (task supervisors, gunicorn/uvicorn workers, the log writer) go with the group;
            # a short wait first lets the log writer drain the component's last lines.
            self._clear_group(proc.pid, grace=2.0)
            proc.wait(timeout=10)
            log.info("stopped airflow %s (pid %d, exit %s)", comp, proc.pid, proc.returncode)
        self.procs.clear()

    def __enter__(self) -> AirflowStack:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
