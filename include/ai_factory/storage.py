"""Data zones under one base location, with atomic, date-keyed partition writes.

The base location is a local folder (the embedded default) or any fsspec URL (``s3://…``,
``gs://…``) in production. Every write goes to a temporary name first and is then renamed
into place, so a reader never sees half a partition, and a re-run replaces its own
partition and nothing else.

Layout::

    <root>/landing/ds=YYYY-MM-DD/part-0.parquet
    <root>/validated/ds=YYYY-MM-DD/part-0.parquet
    <root>/quarantine/ds=YYYY-MM-DD/{part-0.parquet, validation_result.json, reason.json}
    <root>/predictions/ds=YYYY-MM-DD/*.parquet
    <root>/reports/quality/ds=YYYY-MM-DD/summary.json      (+ Data Docs site under reports/quality/site)
    <root>/reports/drift/ds=YYYY-MM-DD/{report.html, report.json}
    <root>/archive/<zone>/ds=YYYY-MM-DD/<archive id>/{the partition's files…, _reason.json}

Bytes are never deleted from a zone. A partition that is withdrawn (a validated day whose
re-delivery failed), superseded or replaced by different bytes is *moved* to
``archive/<zone>/ds=…/<archive id>/`` with ``_reason.json`` (why, when, which run, and the
size and sha256 of every file); :meth:`DataLake.restore_partition` (``ai-factory data
restore``) copies it back. A re-run that writes the same bytes archives nothing.

A write that fails half-way leaves nothing visible: files are written under ``.tmp-…``
names and partitions under ``.staging-…`` folders, renamed into place only when complete,
and removed when the write raises. Readers skip names starting with ``.`` or ``_``; the
temporaries of a process killed mid-write are removed by :meth:`DataLake.sweep_temporaries`
(``ai-factory data sweep``).
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import os
import posixpath
import re
import socket
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime
from enum import StrEnum
from typing import TYPE_CHECKING, Any

import fsspec
from fsspec.core import url_to_fs

from ai_factory.fsutil import STAGING_PREFIX, TEMP_PREFIXES, fs_atomic_write_bytes, fs_discard, json_bytes

if TYPE_CHECKING:
    import pandas as pd

log = logging.getLogger(__name__)

_PARTITION_RE = re.compile(r"^ds=(\d{4}-\d{2}-\d{2})$")
ARCHIVE = "archive"
# Inside an archive entry, beside the partition's own files (a leading "_" keeps readers off it,
# and it cannot collide with a quarantined partition's own reason.json).
ARCHIVE_REASON_FILE = "_reason.json"
_ARCHIVE_ID_RE = re.compile(r"^\d{8}T\d{6}\.\d{6}Z-[0-9a-f]{8}$")
# Prefixes of in-flight writes: invisible to readers, renamed into place when complete.


class Zone(StrEnum):
    LANDING = "landing"
    VALIDATED = "validated"
    QUARANTINE = "quarantine"
    PREDICTIONS = "predictions"
    REPORTS_QUALITY = "reports/quality"
    REPORTS_DRIFT = "reports/drift"


@dataclass(frozen=True)
class ArchiveEntry:
    """One archived copy of a partition: ``archive/<zone>/ds=…/<id>/``, with why it left the zone."""

    id: str
    zone: str
    ds: date
    path: str
    reason: dict[str, Any]


class ArchiveNotFoundError(FileNotFoundError):
    """No archived copy matches the zone, date (and id) asked for."""


class ArchiveDamagedError(ValueError):
    """An archived file no longer matches the sha256 recorded when it was archived."""


def current_run() -> str:
    """Which run is acting: the Airflow task (its env vars) or, outside Airflow, user@host pid."""
    dag, run, task = (os.environ.get(f"AIRFLOW_CTX_{k}") for k in ("DAG_ID", "DAG_RUN_ID", "TASK_ID"))
    if dag and run:
        return f"airflow:{dag}/{run}/{task or '?'}"
    user = os.environ.get("USER") or os.environ.get("LOGNAME") or str(os.getuid())
    return f"cli:{user}@{socket.gethostname()} pid {os.getpid()}"


def as_date(ds: str | date) -> date:
    """Accept ``date`` or ``YYYY-MM-DD`` and return a ``date`` (a clear error otherwise)."""
    if isinstance(ds, date):
        return ds
    try:
        return date.fromisoformat(str(ds)[:10])
    except ValueError as exc:
        raise ValueError(f"partition date {ds!r} is not YYYY-MM-DD") from exc


class DataLake:
    """The data zones below one base location."""

    def __init__(self, root: str) -> None:
        self.root_url = root
        fs, path = url_to_fs(root)
        self.fs: fsspec.AbstractFileSystem = fs
        self.root = path.rstrip("/")
        self.is_local = "file" in (fs.protocol if isinstance(fs.protocol, tuple) else (fs.protocol,))

    @classmethod
    def from_settings(cls) -> DataLake:
        from ai_factory.settings import get_settings

        return cls(get_settings().data_root)

    # -- paths --------------------------------------------------------------------
    def zone_path(self, zone: Zone | str) -> str:
        return posixpath.join(self.root, str(zone))

    def partition_path(self, zone: Zone | str, ds: str | date) -> str:
        return posixpath.join(self.zone_path(zone), f"ds={as_date(ds).isoformat()}")

    def url(self, path: str) -> str:
        """A path as a URL another process can open (``file://`` for local paths)."""
        return f"file://{path}" if self.is_local else self.fs.unstrip_protocol(path)

    # -- queries ------------------------------------------------------------------
    def exists(self, path: str) -> bool:
        return bool(self.fs.exists(path))

    def partition_exists(self, zone: Zone | str, ds: str | date) -> bool:
        return self.exists(self.partition_path(zone, ds))

    def partitions(self, zone: Zone | str) -> list[date]:
        """Dates that have a partition in ``zone``, oldest first."""
        base = self.zone_path(zone)
        if not self.fs.exists(base):
            return []
        out = []
        for entry in self.fs.ls(base, detail=False):
            m = _PARTITION_RE.match(posixpath.basename(entry.rstrip("/")))
            if m:
                out.append(date.fromisoformat(m.group(1)))
        return sorted(out)

    def files(self, path: str, suffix: str = "") -> list[str]:
        """Files directly in ``path`` (sorted), skipping hidden and temporary names."""
        if not self.fs.exists(path):
            return []
        names = [p for p in self.fs.ls(path, detail=False) if self.fs.isfile(p)]
        return sorted(
            p for p in names
            if not posixpath.basename(p).startswith((".", "_")) and p.endswith(suffix)
        )

    # -- byte-level I/O -----------------------------------------------------------
    def read_bytes(self, path: str) -> bytes:
        with self.fs.open(path, "rb") as fh:
            return fh.read()

    def write_bytes(self, path: str, data: bytes) -> str:
        """Write ``data`` to ``path`` atomically (temporary name, then rename)."""
        return fs_atomic_write_bytes(self.fs, path, data)

    def write_json(self, path: str, payload: Any) -> str:
        return self.write_bytes(path, json_bytes(payload))

    def read_json(self, path: str) -> Any:
        return json.loads(self.read_bytes(path))

    def write_parquet(self, path: str, df: pd.DataFrame) -> str:
        buf = io.BytesIO()
        df.to_parquet(buf, index=False)
        return self.write_bytes(path, buf.getvalue())

    # -- partition-level moves ------------------------------------------------------
    def replace_partition(
        self, zone: Zone | str, ds: str | date, files: dict[str, bytes], *,
        reason: str = "replaced by a new write of this partition", run: str | None = None,
    ) -> str:
        """Make ``zone/ds=…`` hold exactly ``files`` (name → bytes), atomically where the store allows.

        The new partition is written beside the old one under a temporary name and swapped in, so a
        re-run replaces its own partition and nothing else. Old bytes that differ are moved to the
        archive with ``reason``; a re-run that writes the same bytes leaves everything as it is.
        """
        final = self.partition_path(zone, ds)
        if self._holds_exactly(final, files):
            log.debug("%s already holds these %d file(s); nothing to replace", final, len(files))
            return final
        staging = posixpath.join(self.zone_path(zone), f"{STAGING_PREFIX}{uuid.uuid4().hex}-{posixpath.basename(final)}")
        try:
            self.fs.makedirs(staging, exist_ok=True)
            for name, data in files.items():
                with self.fs.open(posixpath.join(staging, name), "wb") as fh:
                    fh.write(data)
        except BaseException:
            self._discard_temporary(staging)
            raise
        if self.fs.exists(final):
            self.archive_partition(zone, ds, reason=reason, run=run)
        try:
            self.fs.mv(staging, final, recursive=True)
        except BaseException:
            # The old bytes are in the archive (restore them with restore_partition); the new ones
            # were never published.
            self._discard_temporary(staging)
            raise
        return final

    def _holds_exactly(self, path: str, files: dict[str, bytes]) -> bool:
        """True when ``path`` holds exactly these files with these bytes (sizes compared first)."""
        if not self.fs.exists(path):
            return False
        present = {posixpath.basename(p): p for p in self.fs.ls(path, detail=False)}
        if set(present) != set(files):
            return False
        if any(self.fs.size(present[n]) != len(data) for n, data in files.items()):
            return False
        return all(self.read_bytes(present[n]) == data for n, data in files.items())

    def read_partition_files(self, zone: Zone | str, ds: str | date) -> dict[str, bytes]:
        path = self.partition_path(zone, ds)
        return {posixpath.basename(p): self.read_bytes(p) for p in self.files(path)}

    def remove_partition(self, zone: Zone | str, ds: str | date, *, reason: str, run: str | None = None) -> bool:
        """Take ``zone/ds=…`` out of its zone: it is moved to the archive (with ``reason``), never deleted."""
        return self.archive_partition(zone, ds, reason=reason, run=run) is not None

    # -- archive --------------------------------------------------------------------
    def archive_path(self, zone: Zone | str, ds: str | date) -> str:
        return posixpath.join(self.root, ARCHIVE, str(zone), f"ds={as_date(ds).isoformat()}")

    def archive_partition(
        self, zone: Zone | str, ds: str | date, *, reason: str, run: str | None = None
    ) -> ArchiveEntry | None:
        """Move ``zone/ds=…`` (every byte, as is) to ``archive/<zone>/ds=…/<id>/``; None when absent."""
        source = self.partition_path(zone, ds)
        if not self.fs.exists(source):
            return None
        day = as_date(ds)
        now = datetime.now(UTC)
        entry_id = f"{now:%Y%m%dT%H%M%S.%fZ}-{uuid.uuid4().hex[:8]}"
        target = posixpath.join(self.archive_path(zone, day), entry_id)
        inventory = {
            posixpath.basename(p): {"bytes": len(data), "sha256": hashlib.sha256(data).hexdigest()}
            for p in self.files(source) for data in (self.read_bytes(p),)
        }
        self.fs.makedirs(posixpath.dirname(target), exist_ok=True)
        self.fs.mv(source, target, recursive=True)
        record = {
            "zone": str(zone), "ds": day.isoformat(), "id": entry_id, "reason": reason,
            "archived_at": now.isoformat(), "run": run or current_run(), "from": source, "files": inventory,
        }
        self.write_json(posixpath.join(target, ARCHIVE_REASON_FILE), record)
        log.warning("moved %s (%d file(s)) to the archive %s: %s", source, len(inventory), target, reason)
        return ArchiveEntry(id=entry_id, zone=str(zone), ds=day, path=target, reason=record)

    def archived(self, zone: Zone | str, ds: str | date) -> list[ArchiveEntry]:
        """Archived copies of ``zone/ds=…``, oldest first."""
        base = self.archive_path(zone, ds)
        if not self.fs.exists(base):
            return []
        entries = []
        for p in sorted(self.fs.ls(base, detail=False)):
            name = posixpath.basename(p.rstrip("/"))
            if not _ARCHIVE_ID_RE.match(name):
                continue
            reason_path = posixpath.join(p, ARCHIVE_REASON_FILE)
            reason = self.read_json(reason_path) if self.fs.exists(reason_path) else {}
            entries.append(ArchiveEntry(id=name, zone=str(zone), ds=as_date(ds), path=p, reason=reason))
        return entries

    def restore_partition(
        self, zone: Zone | str, ds: str | date, archive_id: str | None = None, *, run: str | None = None
    ) -> tuple[str, ArchiveEntry]:
        """Copy an archived partition (the latest unless ``archive_id``) back into its zone.

        The archive keeps its copy; whatever the zone holds now is archived first (when it
        differs), so a restore can itself be undone.
        """
        entries = self.archived(zone, ds)
        if not entries:
            raise ArchiveNotFoundError(
                f"nothing archived for {zone}/ds={as_date(ds)} (looked in {self.archive_path(zone, ds)})"
            )
        if archive_id is None:
            entry = entries[-1]
        else:
            matches = [e for e in entries if e.id == archive_id]
            if not matches:
                raise ArchiveNotFoundError(
                    f"no archived copy {archive_id!r} of {zone}/ds={as_date(ds)}; "
                    f"choose one of: {', '.join(e.id for e in entries)}"
                )
            entry = matches[0]
        files = {posixpath.basename(p): self.read_bytes(p) for p in self.files(entry.path)}
        expected = entry.reason.get("files") or {}
        for name, meta in expected.items():
            if name not in files or hashlib.sha256(files[name]).hexdigest() != meta.get("sha256"):
                raise ArchiveDamagedError(
                    f"archived copy {entry.path} is damaged: {name} does not match its recorded sha256 "
                    "(choose another copy with --from; see `ai-factory data archived`)")
        path = self.replace_partition(zone, ds, files, reason=f"replaced by a restore of archive {entry.id}", run=run)
        log.warning("restored %s/ds=%s from archive %s (%d file(s))", zone, as_date(ds), entry.id, len(files))
        return path, entry

    # -- temporaries ------------------------------------------------------------------
    def _discard_temporary(self, path: str) -> None:
        """Remove a temporary file or folder of a write that did not complete (never a published one)."""
        fs_discard(self.fs, path)

    def sweep_temporaries(self, older_than_s: float = 3600.0) -> list[str]:
        """Remove the ``.tmp-…``/``.staging-…`` leftovers of writes killed mid-way, older than the age given.

        They were never visible to readers, so removing them loses nothing; the age keeps a write
        still in progress safe.
        """
        cutoff = time.time() - older_than_s
        removed = []
        for dirpath, dirnames, filenames in self.fs.walk(self.root, detail=False):
            for name in [*dirnames, *filenames]:
                if not name.startswith(TEMP_PREFIXES):
                    continue
                path = posixpath.join(dirpath, name)
                if self._mtime(path) < cutoff:
                    self._discard_temporary(path)
                    removed.append(path)
            # never descend into a temporary folder (it is removed whole) or the archive's copies
            dirnames[:] = [d for d in dirnames if not d.startswith(TEMP_PREFIXES)]
        if removed:
            log.warning("swept %d temporary leftover(s) of interrupted writes: %s", len(removed), removed)
        return removed

    def _mtime(self, path: str) -> float:
        info = self.fs.info(path)
        value = info.get("mtime", info.get("LastModified", info.get("created")))
        if isinstance(value, datetime):
            return value.timestamp()
        return float(value) if value is not None else time.time()

    def iter_parquet(self, zone: Zone | str, ds: str | date) -> Iterator[str]:
        yield from self.files(self.partition_path(zone, ds), suffix=".parquet")

    def read_partition(self, zone: Zone | str, ds: str | date, columns: list[str] | None = None) -> pd.DataFrame:
        """All Parquet files of one partition as one DataFrame."""
        import pandas as pd

        paths = list(self.iter_parquet(zone, ds))
        if not paths:
            raise FileNotFoundError(f"no parquet files in {self.partition_path(zone, ds)}")
        frames = []
        for p in paths:
            with self.fs.open(p, "rb") as fh:
                frames.append(pd.read_parquet(fh, columns=columns))
        return frames[0] if len(frames) == 1 else pd.concat(frames, ignore_index=True)
