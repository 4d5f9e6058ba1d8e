"""What every ``ai-factory`` command shares: its JSON output and its argument types."""

from __future__ import annotations

import argparse
import json
import sys
from datetime import date
from typing import Any


def emit(payload: Any) -> None:
    """Print a command's result as indented JSON on stdout (logs go to stderr, so stdout stays parseable)."""
    sys.stdout.write(json.dumps(payload, indent=2, default=str) + "\n")


def iso_date(value: str) -> date:
    """argparse type for a ``YYYY-MM-DD`` day, with the one-line error argparse prints."""
    try:
        return date.fromisoformat(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{value!r} is not a date (YYYY-MM-DD)") from None


def positive_int(value: str) -> int:
    """argparse type for a count of at least 1."""
    try:
        n = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{value!r} is not an integer") from None
    if n < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {n}")
    return n
