"""Atomic file writes: the one helper every writer of a local file (and the lake, through fsspec) uses.

A write goes to a temporary name beside the target (``.tmp-<uuid>-<name>``: hidden, so listings
and readers skip it, and the lake's sweep recognises it), then one rename publishes it. A write
that fails half-way removes its temporary and re-raises, so nothing half-written is ever
visible under the real name and nothing is left behind. ``mode`` creates the file with those
permission bits from the start (a secret never exists as a world-readable file, even briefly).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import posixpath
import uuid
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import fsspec

log = logging.getLogger(__name__)

TEMP_PREFIX = ".tmp-"
STAGING_PREFIX = ".staging-"  # a folder written in full before one rename publishes it
TEMP_PREFIXES = (TEMP_PREFIX, STAGING_PREFIX)


def temp_name(name: str) -> str:
    """The temporary name a write of ``name`` goes to before its rename (unique per write)."""
    return f"{TEMP_PREFIX}{uuid.uuid4().hex}-{name}"


def json_bytes(payload: Any) -> bytes:
    """The JSON every artifact and state file is written as: indented, sorted keys, str() for the rest."""
    return json.dumps(payload, indent=2, sort_keys=True, default=str).encode()


def atomic_write_bytes(path: str | Path, data: bytes, *, mode: int | None = None, fsync: bool = True) -> Path:
    """Write ``data`` to the local ``path`` atomically; ``mode`` (e.g. ``0o600``) is set at creation."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(temp_name(target.name))
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666 if mode is None else mode)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            if fsync:
                fh.flush()
                os.fsync(fh.fileno())
        os.replace(tmp, target)
    except BaseException:
        # Never published, so removing it loses nothing; the caller sees the original error.
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        raise
    return target


def atomic_write_text(path: str | Path, text: str, *, mode: int | None = None) -> Path:
    """:func:`atomic_write_bytes` for UTF-8 text."""
    return atomic_write_bytes(path, text.encode(), mode=mode)


def atomic_write_json(path: str | Path, payload: Any, *, mode: int | None = None) -> Path:
    """:func:`atomic_write_bytes` for a JSON document (:func:`json_bytes`)."""
    return atomic_write_bytes(path, json_bytes(payload), mode=mode)


def fs_discard(fs: fsspec.AbstractFileSystem, path: str) -> None:
    """Remove the temporary of a write that did not complete (never a published file: the name is checked)."""
    if not posixpath.basename(path).startswith(TEMP_PREFIXES):
        raise ValueError(f"refusing to discard {path}: not a temporary name")
    try:
        if fs.exists(path):
            fs.rm(path, recursive=True)
    except OSError as exc:
        log.warning("could not remove the temporary %s (readers skip it; `ai-factory data sweep` "
                    "removes it later): %s", path, exc)


def fs_atomic_write_bytes(fs: fsspec.AbstractFileSystem, path: str, data: bytes) -> str:
    """:func:`atomic_write_bytes` through an fsspec filesystem (local folder or object store)."""
    parent = posixpath.dirname(path)
    fs.makedirs(parent, exist_ok=True)
    tmp = posixpath.join(parent, temp_name(posixpath.basename(path)))
    try:
        with fs.open(tmp, "wb") as fh:
            fh.write(data)
        fs.mv(tmp, path)
    except BaseException:
        fs_discard(fs, tmp)
        raise
    return path
