"""Serve files below ``<data root>/reports/`` and nothing else.

A requested path is refused (:class:`ReportPathError`, a 400) when, after undoing percent-encoding
as many times as it was applied, it is absolute, holds a ``..`` segment, a backslash, a NUL or a
drive letter. What is left is resolved with symlinks followed and must still lie inside the
reports folder (a 404 otherwise, so a probe learns nothing about what exists outside).
"""

from __future__ import annotations

import mimetypes
import posixpath
import re
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote

from ai_factory.storage import DataLake

REPORTS_ZONE = "reports"
# Undo percent-encoding at most this often; a path still changing after that is refused.
_MAX_DECODES = 4
_DRIVE = re.compile(r"^[A-Za-z]:")


class ReportPathError(ValueError):
    """The requested report path is malformed or tries to leave the reports folder."""


class ReportNotFound(FileNotFoundError):
    """No report file at that path inside the reports folder."""


def _fully_decoded(raw: str) -> str:
    text = raw
    for _ in range(_MAX_DECODES):
        decoded = unquote(text)
        if decoded == text:
            return text
        text = decoded
    raise ReportPathError(f"report path {raw!r} is percent-encoded more than {_MAX_DECODES} times")


def clean_relative_path(raw: str) -> str:
    """The normalised relative path for ``raw``, or :class:`ReportPathError` naming what is wrong."""
    text = _fully_decoded(raw)
    if not text or text.strip("/") == "":
        raise ReportPathError("empty report path")
    if "\x00" in text:
        raise ReportPathError("report path contains a NUL byte")
    if "\\" in text:
        raise ReportPathError(f"report path {raw!r} contains a backslash")
    if text.startswith("/") or _DRIVE.match(text):
        raise ReportPathError(f"report path {raw!r} is absolute; paths are relative to the reports folder")
    parts = text.split("/")
    if ".." in parts:
        raise ReportPathError(f"report path {raw!r} contains '..'")
    return posixpath.normpath("/".join(p for p in parts if p not in ("", ".")))


@dataclass(frozen=True)
class ReportFile:
    relative: str
    media_type: str
    local_path: Path | None  # set for local data roots (served with sendfile)
    url: str                 # where it lives (file:// or the object-store URL)


class ReportStore:
    """The reports folder of one data lake."""

    def __init__(self, lake: DataLake) -> None:
        self.lake = lake
        self.root = lake.zone_path(REPORTS_ZONE)

    def resolve(self, raw: str) -> ReportFile:
        rel = clean_relative_path(raw)
        media = mimetypes.guess_type(rel)[0] or "application/octet-stream"
        if self.lake.is_local:
            root = Path(self.root).resolve()
            target = (root / rel).resolve()
            # resolve() follows symlinks, so a link pointing outside lands outside and is refused.
            if not target.is_relative_to(root) or not target.is_file():
                raise ReportNotFound(f"no report file {rel!r}")
            return ReportFile(rel, media, target, f"file://{target}")
        key = posixpath.join(self.root, rel)
        if not self.lake.fs.isfile(key):
            raise ReportNotFound(f"no report file {rel!r}")
        return ReportFile(rel, media, None, self.lake.url(key))

    def read_bytes(self, report: ReportFile) -> bytes:
        if report.local_path is not None:
            return report.local_path.read_bytes()
        return self.lake.read_bytes(posixpath.join(self.root, report.relative))
