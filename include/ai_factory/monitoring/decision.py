"""The drift decision: three rules from the config, each with its numbers in the reason.

1. ``drift_share``: the share of drifted *feature* columns is >= ``drift.share_threshold``
   (the target and prediction columns are reported but not counted, as in Evidently's
   dataset-drift share over the features it is given);
2. ``key_column``: any key column drifted (the spec's ``key: true`` features, or
   ``drift.key_columns``, plus ``drift.extra_key_columns``);
3. ``quality``: a quality metric degraded by more than its ``quality.max_degradation`` margin.

Any rule firing is drift; none firing is no drift (and no Asset event).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

from pydantic import BaseModel, ConfigDict

from ai_factory.monitoring.quality import QualityComparison
from ai_factory.monitoring.stattests import ColumnDrift, ColumnRole


class Trigger(BaseModel):
    model_config = ConfigDict(frozen=True)

    rule: Literal["drift_share", "key_column", "quality"]
    detail: str


class Decision(BaseModel):
    model_config = ConfigDict(frozen=True)

    drift: bool
    reason: str
    triggers: list[Trigger] = []


def drift_share(columns: Sequence[ColumnDrift]) -> tuple[float, list[str], int]:
    """Share of drifted feature columns, their names, and the number of feature columns tested."""
    features = [c for c in columns if c.role == ColumnRole.FEATURE]
    drifted = [c.name for c in features if c.drifted]
    return (len(drifted) / len(features) if features else 0.0), drifted, len(features)


# How each test's score compares with its threshold when the column drifted / did not.
_OPS = {"wasserstein": (">=", "<"), "jensenshannon": (">=", "<"), "ks": ("<=", ">"),
        "chisquare": ("<", ">="), "z": ("<", ">=")}


def _fmt(c: ColumnDrift) -> str:
    drift_op, stable_op = _OPS.get(c.method, ("vs", "vs"))
    return f"{c.name} ({c.method} {c.score:.3g} {drift_op if c.drifted else stable_op} {c.threshold:g})"


def decide(
    columns: Sequence[ColumnDrift],
    quality: QualityComparison,
    key_columns: Sequence[str],
    share_threshold: float,
) -> Decision:
    """Apply the three rules; the reason names every rule's numbers whether it fired or not."""
    share, drifted, n_features = drift_share(columns)
    triggers: list[Trigger] = []
    notes: list[str] = []

    share_text = f"share of drifted features {share:.2f} {{}} {share_threshold:.2f} ({len(drifted)} of {n_features})"
    if n_features and share >= share_threshold:
        triggers.append(Trigger(rule="drift_share", detail=share_text.format(">=")))
    else:
        notes.append(share_text.format("<"))

    by_name = {c.name: c for c in columns}
    tested_keys = [k for k in key_columns if k in by_name]
    drifted_keys = [by_name[k] for k in tested_keys if by_name[k].drifted]
    if drifted_keys:
        triggers.append(Trigger(rule="key_column",
                                detail="key column(s) drifted: " + ", ".join(_fmt(c) for c in drifted_keys)))
    elif tested_keys:
        notes.append(f"no key column drifted ({', '.join(tested_keys)})")
    else:
        notes.append("no key columns configured")

    if quality.available:
        for m in quality.breached:
            unit = " relative" if m.relative else ""
            triggers.append(Trigger(
                rule="quality",
                detail=f"quality degraded: {m.name} {m.reference:.4f} -> {m.current:.4f} "
                       f"(degradation {m.degradation:.4f}{unit} > max {m.max_degradation:g})",
            ))
        if not quality.breached:
            notes.append("quality within margins (" + ", ".join(
                f"{m.name} {m.reference:.3f}->{m.current:.3f}" for m in quality.metrics) + ")")
    else:
        notes.append(f"quality not compared: {quality.reason}")

    if triggers:
        return Decision(drift=True, reason="drift: " + "; ".join(t.detail for t in triggers), triggers=triggers)
    return Decision(drift=False, reason="no drift: " + "; ".join(notes))
