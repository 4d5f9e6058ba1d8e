"""The lake under faults: a write that fails half-way, a writer killed mid-write, replaced bytes.

The failures are real and happen in the kernel: a child process runs with a file-size limit
(``RLIMIT_FSIZE``) below what it writes, so its ``write(2)`` stops half-way. With ``SIGXFSZ``
ignored the write raises ``EFBIG`` (a full disk looks the same to the writer); with the default
action the kernel kills the process mid-write, like a ``kill -9``, and nothing can clean up.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from datetime import date
from pathlib import Path

import pytest

from ai_factory.storage import DataLake, Zone

pytestmark = pytest.mark.faults

DS = date(2026, 3, 5)
LIMIT = 1 << 20  # the child may write at most 1 MiB per file
OLD = {"part-0.parquet": b"old-good-bytes" * 1000}

CHILD = textwrap.dedent("""
    import resource, signal, sys
    from ai_factory.storage import DataLake
    kind, on_limit, root, ds, limit = sys.argv[1:6]
    # Python ignores SIGXFSZ, so the write gets EFBIG; with the default action the kernel kills it.
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN if on_limit == "raise" else signal.SIG_DFL)
    resource.setrlimit(resource.RLIMIT_FSIZE, (int(limit), int(limit)))
    lake = DataLake(root)
    big = b"n" * (8 * int(limit))
    if kind == "file":
        lake.write_bytes(lake.partition_path("validated", ds) + "/part-0.parquet", big)
    else:
        lake.replace_partition("validated", ds, {"part-0.parquet": b"a" * 1000, "part-1.parquet": big})
""")


def _write_in_child(lake: DataLake, kind: str, on_limit: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    return subprocess.run([sys.executable, "-c", CHILD, kind, on_limit, lake.root, DS.isoformat(), str(LIMIT)],
                          capture_output=True, text=True, env=env, timeout=60)


def _temporaries(root: str) -> list[Path]:
    return [p for p in Path(root).rglob("*") if p.name.startswith((".tmp-", ".staging-"))]


def _partial_files(temps: list[Path]) -> list[Path]:
    return [f for t in temps for f in ([t] if t.is_file() else t.rglob("*")) if f.is_file() and f.stat().st_size]


@pytest.mark.parametrize("kind", ["file", "partition"])
@pytest.mark.parametrize("on_limit", ["raise", "killed"])
def test_a_write_that_fails_half_way_is_never_visible_and_loses_nothing(lake, kind, on_limit):
    lake.replace_partition(Zone.VALIDATED, DS, OLD)

    proc = _write_in_child(lake, kind, on_limit)

    if on_limit == "raise":
        assert proc.returncode == 1 and "File too large" in proc.stderr, proc.stderr[-2000:]
        assert _temporaries(lake.root) == []  # the failed write cleaned up after itself
    else:
        assert proc.returncode == -signal.SIGXFSZ, proc.stderr[-2000:]
        temps = _temporaries(lake.root)
        # the kernel really stopped it half-way: a partial temporary is on disk...
        assert temps and any(f.stat().st_size == LIMIT for f in _partial_files(temps))
    # ... and no reader sees it: the old partition is there, whole, and nothing else
    assert lake.partitions(Zone.VALIDATED) == [DS]
    assert lake.read_partition_files(Zone.VALIDATED, DS) == OLD
    assert [Path(p).name for p in lake.iter_parquet(Zone.VALIDATED, DS)] == ["part-0.parquet"]
    assert lake.archived(Zone.VALIDATED, DS) == []  # nothing was replaced, so nothing moved

    # a fresh leftover may be a write in progress: kept; an old one is swept
    assert lake.sweep_temporaries() == []
    lake.sweep_temporaries(older_than_s=0)
    assert _temporaries(lake.root) == []
    assert lake.read_partition_files(Zone.VALIDATED, DS) == OLD


def test_sweep_cli_removes_leftovers_of_killed_writes(lake, capsys):
    import json

    from ai_factory.cli import main

    lake.replace_partition(Zone.VALIDATED, DS, OLD)
    assert _write_in_child(lake, "partition", "killed").returncode == -signal.SIGXFSZ
    (leftover,) = _temporaries(lake.root)
    assert main(["data", "sweep", "--older-than", "0"]) == 0
    assert json.loads(capsys.readouterr().out)["removed"] == [str(leftover)]
    assert lake.read_partition_files(Zone.VALIDATED, DS) == OLD


def test_replacing_a_partition_archives_different_bytes_and_a_same_bytes_rerun_archives_nothing(lake):
    lake.replace_partition(Zone.VALIDATED, DS, OLD)
    lake.replace_partition(Zone.VALIDATED, DS, OLD)
    assert lake.archived(Zone.VALIDATED, DS) == []
    new = {"part-0.parquet": b"new bytes"}
    lake.replace_partition(Zone.VALIDATED, DS, new, reason="a backfill rewrote the day", run="test-run")
    (entry,) = lake.archived(Zone.VALIDATED, DS)
    assert entry.reason["reason"] == "a backfill rewrote the day" and entry.reason["run"] == "test-run"
    assert entry.reason["files"]["part-0.parquet"]["bytes"] == len(OLD["part-0.parquet"])
    assert (Path(entry.path) / "part-0.parquet").read_bytes() == OLD["part-0.parquet"]
    assert lake.read_partition_files(Zone.VALIDATED, DS) == new
    # archive copies never show up as partitions of the zone
    assert lake.partitions(Zone.VALIDATED) == [DS]

    path, restored = lake.restore_partition(Zone.VALIDATED, DS)
    assert restored.id == entry.id and lake.read_partition_files(Zone.VALIDATED, DS) == OLD
    # the restore archived what it replaced, so it can be undone too
    assert [e.reason["reason"] for e in lake.archived(Zone.VALIDATED, DS)][-1] == (
        f"replaced by a restore of archive {entry.id}")


def test_restore_refuses_a_damaged_archive_copy(lake):
    lake.replace_partition(Zone.VALIDATED, DS, OLD)
    entry = lake.archive_partition(Zone.VALIDATED, DS, reason="test")
    assert entry is not None
    (Path(entry.path) / "part-0.parquet").write_bytes(b"bit rot")
    with pytest.raises(ValueError, match="part-0.parquet does not match its recorded sha256"):
        lake.restore_partition(Zone.VALIDATED, DS)
    assert not lake.partition_exists(Zone.VALIDATED, DS)
