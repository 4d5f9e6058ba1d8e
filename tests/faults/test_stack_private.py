"""Secrets of the stack are 0600 in 0700 folders from the moment they exist, whatever the umask,
and an installation made before the rule is tightened when the stack next starts."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from ai_factory.orchestration.private import write_private
from ai_factory.orchestration.stack import AirflowStack

pytestmark = pytest.mark.faults


def _mode(p: Path) -> int:
    return stat.S_IMODE(p.stat().st_mode)


@pytest.fixture
def open_umask():
    old = os.umask(0)  # the worst case: everything created world-writable unless asked otherwise
    yield
    os.umask(old)


def test_secrets_are_born_private_even_under_umask_0(tmp_path: Path, open_umask):
    f = write_private(tmp_path / "state" / "secret.json", '{"password": "x"}')
    assert _mode(f) == 0o600 and _mode(f.parent) == 0o700
    assert not [p for p in f.parent.iterdir() if p.name.startswith(".")]  # no temporary left behind

    stack = AirflowStack(home=tmp_path / "airflow", dags_folder=tmp_path, plugins_folder=tmp_path,
                         db_url=f"sqlite:///{tmp_path / 'airflow' / 'airflow.db'}")
    env = stack.env()
    home = stack.home
    assert _mode(home) == 0o700
    for name in (".stack-secret", "simple_auth_manager_passwords.json"):
        assert _mode(home / name) == 0o600, name
    assert env["AIRFLOW__API_AUTH__JWT_SECRET"] == (home / ".stack-secret").read_text()


def test_an_older_installation_is_tightened(tmp_path: Path):
    home = tmp_path / "airflow"
    home.mkdir(mode=0o755)
    for name in (".stack-secret", "airflow.db", "ui-login.json"):
        (home / name).write_text("old")
        (home / name).chmod(0o644)
    AirflowStack(home=home, dags_folder=tmp_path, plugins_folder=tmp_path, db_url="sqlite://").env()
    assert _mode(home) == 0o700
    assert {name: _mode(home / name) for name in (".stack-secret", "airflow.db", "ui-login.json")} == {
        ".stack-secret": 0o600, "airflow.db": 0o600, "ui-login.json": 0o600}
    assert (home / ".stack-secret").read_text() == "old"  # tightened, not replaced
