"""The one atomic-write helper: nothing half-written is visible, nothing is left behind, secrets are 0600 from birth."""

from __future__ import annotations

import json
import os
import stat

import pytest

from ai_factory import fsutil
from ai_factory.training import io as train_io


class _Unserialisable:
    def __str__(self) -> str:
        raise RuntimeError("boom while serialising")


def test_a_local_write_that_fails_keeps_the_old_file_and_leaves_no_temporary(tmp_path):
    target = tmp_path / "state.json"
    fsutil.atomic_write_json(target, {"v": 1})
    with pytest.raises(TypeError):
        fsutil.atomic_write_bytes(target, "not bytes")  # type: ignore[arg-type]
    assert json.loads(target.read_text()) == {"v": 1}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["state.json"]


def test_mode_is_set_at_creation(tmp_path):
    old = os.umask(0)  # with no umask, a file created 0644 and chmod-ed later would show 0644 here
    try:
        path = fsutil.atomic_write_text(tmp_path / "secret", "s3cr3t", mode=0o600)
    finally:
        os.umask(old)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600 and path.read_text() == "s3cr3t"


def test_training_io_write_that_fails_half_way_leaves_no_temporary(tmp_path):
    # training/io.py had its own copy of the write without the cleanup: a failed write left .tmp-… behind.
    with pytest.raises(TypeError):
        train_io.write_bytes(str(tmp_path / "fit" / "result.json"), "not bytes")  # type: ignore[arg-type]
    assert [p.name for p in (tmp_path / "fit").iterdir()] == []


def test_fs_discard_refuses_a_published_name(tmp_path):
    from fsspec.implementations.local import LocalFileSystem

    keep = tmp_path / "model.json"
    keep.write_text("{}")
    with pytest.raises(ValueError, match="not a temporary name"):
        fsutil.fs_discard(LocalFileSystem(), str(keep))
    assert keep.exists()
