"""State that holds secrets: folders 0700, files 0600, never world-readable even for a moment.

A file written with ``write_text`` and then ``chmod``-ed is readable by every local user in
between (and a ``chmod`` that never runs leaves it so). Here the file is created 0600 under a
temporary name (``O_EXCL``) and renamed into place, so no reader ever sees other bits.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterable
from pathlib import Path

from ai_factory.fsutil import atomic_write_text

log = logging.getLogger(__name__)

PRIVATE_UMASK = 0o077


def private_dir(path: Path) -> Path:
    """Create ``path`` (and missing parents) as 0700; tighten it if it exists with wider bits."""
    path.mkdir(parents=True, exist_ok=True, mode=0o700)
    if path.stat().st_mode & 0o077:
        path.chmod(0o700)
    return path


def write_private(path: Path, text: str) -> Path:
    """Atomically write ``text`` to ``path`` as a 0600 file (created so, not chmod-ed after)."""
    private_dir(path.parent)
    atomic_write_text(path, text, mode=0o600)
    return path


def tighten(paths: Iterable[Path]) -> None:
    """Make existing state files 0600 (installations made before this rule had 0644)."""
    for p in paths:
        with contextlib.suppress(FileNotFoundError):
            if p.stat().st_mode & 0o077:
                p.chmod(0o600)
                log.info("made %s private (0600)", p)
