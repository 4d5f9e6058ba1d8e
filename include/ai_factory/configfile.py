"""Typed config files: the strict model base, YAML reading and the one-line error style.

Every YAML the package reads (dataset spec, gate rules, drift rules, serving config, search
space) is read by :func:`read_yaml` and validated into :class:`StrictModel` subclasses, and a
bad file gets one line naming the file and the key: ``config/gate.yaml: invalid gate config:
key 'tasks.binary.primary.metric': unknown key``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import BaseModel, ConfigDict, ValidationError

M = TypeVar("M", bound=BaseModel)


class StrictModel(BaseModel):
    """A config or hand-off model: unknown keys are errors (a typo never passes silently), values frozen."""

    model_config = ConfigDict(extra="forbid", frozen=True)


def _dotted(loc: Sequence[int | str]) -> str:
    return ".".join(str(p) for p in loc) or "<root>"


def validation_problems(exc: ValidationError, *, key: Callable[[tuple[int | str, ...]], str] = _dotted,
                        unknown: str = "unknown key") -> str:
    """``key 'a.b': what is wrong; key 'c': …`` for a pydantic error (``key`` labels a location)."""
    errors = exc.errors()
    locs = [tuple(e["loc"]) for e in errors]
    problems = []
    for err, loc in zip(errors, locs, strict=True):
        # pydantic counts only the items that validated: one bad list item also yields "Tuple
        # should have at least 1 item", which blames the list for its item's fault.
        if err["type"] == "too_short" and any(o[: len(loc)] == loc and len(o) > len(loc) for o in locs):
            continue
        msg = err["msg"].removeprefix("Value error, ")
        if err["type"] == "extra_forbidden":
            msg = unknown
        elif err["type"] == "missing":
            msg = "required key is missing"
        elif err["type"] == "too_short" and (err.get("ctx") or {}).get("min_length") == 1:
            msg = "must not be empty"
        problems.append(f"key '{key(loc)}': {msg}")
    return "; ".join(problems)


def read_yaml(path: str | Path, *, what: str, error: type[Exception]) -> Any:
    """The parsed YAML of ``path``, or ``error`` with one line naming the file (``what``: "gate config")."""
    p = Path(path)
    try:
        text = p.read_text()
    except OSError as exc:
        raise error(f"{p}: cannot read {what}: {exc.strerror or exc}") from None
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as exc:
        # PyYAML's message spans several lines with a caret drawing; keep the one-line style.
        raise error(f"{p}: not valid YAML: {' '.join(str(exc).split())}") from None


def validate(model: type[M], raw: Any, *, source: str | Path, what: str, error: type[Exception]) -> M:
    """``raw`` (a parsed YAML document; empty = ``{}``) as ``model``, or ``error`` naming the file and keys."""
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise error(f"{source}: the {what} must be a YAML mapping, got {type(raw).__name__}")
    try:
        return model.model_validate(raw)
    except ValidationError as exc:
        raise error(f"{source}: invalid {what}: {validation_problems(exc)}") from None


def load_model(model: type[M], path: str | Path, *, what: str, error: type[Exception]) -> M:
    """Read the YAML file ``path`` and validate it as ``model`` (:func:`read_yaml` + :func:`validate`)."""
    return validate(model, read_yaml(path, what=what, error=error), source=path, what=what, error=error)
