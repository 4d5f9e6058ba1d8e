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
"""

from __future__ import annotations

import io
import json
import logging
import posixpath
import re
import uuid
from collections.abc import Iterator
from datetime import date
from enum import StrEnum
from typing import TYPE_CHECKING, Any

import fsspec
from fsspec.core import url_to_fs

if TYPE_CHECKING:
    import pandas as pd

log = logging.getLogger(__name__)

_PARTITION_RE = re.compile(r"^ds=(\d{4}-\d{2}-\d{2})$")


class Zone(StrEnum):
    LANDING = "landing"
    VALIDATED = "validated"
    QUARANTINE = "quarantine"
    PREDICTIONS = "predictions"
    REPORTS_QUALITY = "reports/quality"
    REPORTS_DRIFT = "reports/drift"


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
        parent = posixpath.dirname(path)
        self.fs.makedirs(parent, exist_ok=True)
        tmp = posixpath.join(parent, f".tmp-{uuid.uuid4().hex}-{posixpath.basename(path)}")
        with self.fs.open(tmp, "wb") as fh:
            fh.write(data)
        self.fs.mv(tmp, path)
        return path

    def write_json(self, path: str, payload: Any) -> str:
        return self.write_bytes(path, json.dumps(payload, indent=2, sort_keys=True, default=str).encode())

    def read_json(self, path: str) -> Any:
        return json.loads(self.read_bytes(path))

    def write_parquet(self, path: str, df: pd.DataFrame) -> str:
        buf = io.BytesIO()
        df.to_parquet(buf, index=False)
        return self.write_bytes(path, buf.getvalue())

    # -- partition-level moves ------------------------------------------------------
    def replace_partition(self, zone: Zone | str, ds: str | date, files: dict[str, bytes]) -> str:
        """Make ``zone/ds=…`` hold exactly ``files`` (name → bytes), atomically where the store allows.

        The new partition is written beside the old one under a temporary name and swapped in, so a
        re-run replaces its own partition and nothing else.
        """
        final = self.partition_path(zone, ds)
        staging = posixpath.join(self.zone_path(zone), f".staging-{uuid.uuid4().hex}-{posixpath.basename(final)}")
        self.fs.makedirs(staging, exist_ok=True)
        for name, data in files.items():
            with self.fs.open(posixpath.join(staging, name), "wb") as fh:
                fh.write(data)
        self._swap_in(staging, final)
        return final

    def _swap_in(self, staging: str, final: str) -> None:
        trash = None
        if self.fs.exists(final):
            trash = posixpath.join(posixpath.dirname(final), f".trash-{uuid.uuid4().hex}-{posixpath.basename(final)}")
            self.fs.mv(final, trash, recursive=True)
        self.fs.mv(staging, final, recursive=True)
        if trash is not None:
            self.fs.rm(trash, recursive=True)

    def read_partition_files(self, zone: Zone | str, ds: str | date) -> dict[str, bytes]:
        path = self.partition_path(zone, ds)
        return {posixpath.basename(p): self.read_bytes(p) for p in self.files(path)}

    def remove_partition(self, zone: Zone | str, ds: str | date) -> bool:
        path = self.partition_path(zone, ds)
        if not self.fs.exists(path):
            return False
        self.fs.rm(path, recursive=True)
        return True

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
