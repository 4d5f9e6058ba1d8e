"""Every log a stack process writes is size-capped and rotated (a real child writing through the launcher)."""

from __future__ import annotations

import os
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest

from ai_factory.orchestration import logpipe

pytestmark = pytest.mark.faults

CHATTY = """
import sys, time
for i in range(2000):
    print(f"line {i:05d} " + "x" * 90, flush=True)   # 102 bytes a line, ~204 KB in all
print("the end", file=sys.stderr, flush=True)
"""


def test_a_chatty_process_fills_at_most_the_cap_times_the_copies(tmp_path: Path):
    log = tmp_path / "logs" / "chatty.log"
    proc = subprocess.run(logpipe.command(log, [sys.executable, "-c", CHATTY], max_bytes=10_000, backups=3),
                          env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}, timeout=60)
    assert proc.returncode == 0
    deadline = time.monotonic() + 10  # the writer drains the pipe after the command has exited
    while "the end" not in log.read_text() and time.monotonic() < deadline:
        time.sleep(0.05)
    files = sorted(log.parent.iterdir())
    assert [f.name for f in files] == ["chatty.log", "chatty.log.1", "chatty.log.2", "chatty.log.3"]
    assert all(f.stat().st_size <= 10_000 for f in files), [(f.name, f.stat().st_size) for f in files]
    assert all(stat.S_IMODE(f.stat().st_mode) == 0o600 for f in files)
    # Cut at line ends: every file holds whole lines, the newest ones in order.
    lines = [line for f in reversed(files) for line in f.read_text().splitlines()]
    assert lines[-1] == "the end" and all(len(line) == 101 for line in lines[:-1])
    numbers = [int(line.split()[1]) for line in lines[:-1]]
    assert numbers == list(range(numbers[0], 2000)) and numbers[0] > 0  # the newest, in order; the oldest gone


def test_the_command_keeps_its_pid_and_its_last_words_reach_the_log(tmp_path: Path):
    log = tmp_path / "svc.log"
    code = ("import signal, sys, time\n"
            "def bye(*_):\n    print('stopping cleanly', flush=True); sys.exit(0)\n"
            "signal.signal(signal.SIGTERM, bye)\nprint('ready', flush=True)\ntime.sleep(60)\n")
    proc = subprocess.Popen(logpipe.command(log, [sys.executable, "-c", code], 1_000_000, 1),
                            env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}, start_new_session=True)
    deadline = time.monotonic() + 20
    while not (log.exists() and "ready" in log.read_text()):
        assert time.monotonic() < deadline
        time.sleep(0.05)
    assert Path(f"/proc/{proc.pid}/cmdline").read_bytes().split(b"\0")[1] == b"-c"  # exec'd in place
    os.killpg(proc.pid, signal.SIGTERM)  # the whole group, as a stop does: the writer outlives the command
    assert proc.wait(timeout=10) == 0
    deadline = time.monotonic() + 10
    while "stopping cleanly" not in log.read_text() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert log.read_text().splitlines() == ["ready", "stopping cleanly"]
