"""Fixtures for the UI plugin tests: seeded reports and registry, one real Airflow stack.

The stack is the one ``airflow_stack`` (tests/conftest.py) starts — api-server, scheduler,
dag-processor, triggerer on the session's metadata DB, with the project's plugins folder — but
started once for the whole ``tests/ui`` package rather than once per test: every test here
only reads, and Airflow takes about a minute to come up on a small machine.
"""

from __future__ import annotations

import json
import sys
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from ui_seed import SECRET, Seeded, seed  # noqa: E402

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="package")
def seeded(tmp_path_factory: pytest.TempPathFactory) -> Seeded:
    """Reports, quarantine and registry made by the factory's own code (see seed.py), plus bait files.

    The bait: ``<lake>/secret.txt`` (beside ``reports/``), ``<root>/outside.txt`` (beside the lake),
    and symlinks inside ``reports/`` pointing at both and at the lake root.
    """
    root = tmp_path_factory.mktemp("ui-seed")
    out = seed(root)
    (out.data_root / "secret.txt").write_text(SECRET)
    (root / "outside.txt").write_text(SECRET)
    reports = out.data_root / "reports"
    (reports / "drift" / "leak.html").symlink_to(out.data_root / "secret.txt")
    (reports / "outside.html").symlink_to(root / "outside.txt")
    (reports / "lakeroot").symlink_to(out.data_root, target_is_directory=True)
    return out


@pytest.fixture(scope="package")
def ui_stack(airflow_db: str, seeded: Seeded, tmp_path_factory: pytest.TempPathFactory) -> Iterator[object]:
    from ai_factory.orchestration.stack import AirflowStack, free_port

    stack = AirflowStack(
        home=tmp_path_factory.mktemp("ui-airflow-home"), dags_folder=REPO / "dags",
        plugins_folder=REPO / "plugins", db_url=airflow_db, port=free_port(), paused_at_creation=False,
        extra_env={"AIRFLOW__SCHEDULER__USE_JOB_SCHEDULE": "False", **seeded.env},
    )
    stack.start()
    try:
        stack.wait_ready(timeout=240)
        yield stack
    finally:
        stack.stop()


def get_token(stack: object) -> str:
    """A JWT from SimpleAuthManager's token endpoint (what the UI's login does)."""
    body = json.dumps({"username": stack.admin_user, "password": stack.admin_password}).encode()
    req = urllib.request.Request(f"{stack.url}/auth/token", data=body, method="POST",
                                 headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=30) as resp:
        return json.loads(resp.read())["access_token"]


@pytest.fixture(scope="package")
def token(ui_stack: object) -> str:
    return get_token(ui_stack)
