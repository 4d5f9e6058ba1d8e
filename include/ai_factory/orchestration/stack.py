"""Run Airflow's own processes (api-server, scheduler, dag-processor, triggerer) for this project.

Used by ``make up`` (scripts/up.py), ``make demo`` and the end-to-end tests, so all three
run the real scheduler the same way. Each component runs in its own process group and
logs to ``<airflow_home>/logs/<component>.log``; :meth:`AirflowStack.stop` terminates the
groups (``airflow standalone`` leaves children behind on Ctrl-C; this does not).
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

log = logging.getLogger(__name__)

COMPONENTS = ("api-server", "scheduler", "dag-processor", "triggerer")


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
    procs: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict, init=False)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def _port(self, name: str) -> int:
        """A free port for ``name``, chosen once per stack and remembered in its home."""
        f = self.home / f".port-{name}"
        if not f.exists():
            f.write_text(str(free_port()))
        return int(f.read_text())

    def env(self) -> dict[str, str]:
        """The environment every Airflow process (and CLI call) of this stack gets."""
        self.home.mkdir(parents=True, exist_ok=True)
        secret_file = self.home / ".stack-secret"
        if not secret_file.exists():
            secret_file.write_text(secrets.token_urlsafe(32))
        secret = secret_file.read_text().strip()
        pw_file = self.home / "simple_auth_manager_passwords.json"
        pw_file.write_text(json.dumps({self.admin_user: self.admin_password}))
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
                              capture_output=True, text=True, timeout=timeout)

    def migrate(self) -> None:
        log.info("migrating the Airflow metadata DB at %s", self.db_url.split("@")[-1])
        proc = self.airflow("db", "migrate", check=False, timeout=600)
        if proc.returncode != 0:
            raise RuntimeError(f"airflow db migrate failed:\n{proc.stderr[-4000:]}")

    def start(self) -> None:
        logs = self.home / "logs"
        logs.mkdir(parents=True, exist_ok=True)
        env = self.env()
        for comp in self.components:
            args = [sys.executable, "-m", "airflow", comp]
            if comp == "api-server":
                args += ["--port", str(self.port), "--host", "127.0.0.1"]
            out = open(logs / f"{comp}.log", "ab")  # noqa: SIM115 - owned by the child for its lifetime
            self.procs[comp] = subprocess.Popen(args, env=env, stdout=out, stderr=subprocess.STDOUT,
                                                start_new_session=True)
            log.info("started airflow %s (pid %d), log %s", comp, self.procs[comp].pid, logs / f"{comp}.log")

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
            try:  # children (task supervisors, gunicorn/uvicorn workers) go with the group
                os.killpg(proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            proc.wait(timeout=10)
        self.procs.clear()

    def __enter__(self) -> AirflowStack:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
