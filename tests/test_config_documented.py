"""Every ``AI_FACTORY_*`` variable the package reads is in the README's configuration table.

The table is where a newcomer looks for a knob; a variable read in the code but missing
there is a knob nobody can find. Rows spell each name out in full; one group is allowed
(``AI_FACTORY_K8S_*``, the Kubernetes settings).
"""

from __future__ import annotations

import re
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
_NAME = re.compile(r"\bAI_FACTORY_[A-Z0-9_]*[A-Z0-9]\b")
# Set by the project for its own child processes, not knobs for a person.
INTERNAL = {
    "AI_FACTORY_HOME",  # the repository root, set by the Makefile and the stack
    "AI_FACTORY_QUALITY_DIR",  # filled into the GX context's yml by quality/context.py
    # Marks on the local model server's processes, to find orphans (deployment/local.py).
    "AI_FACTORY_SERVING_HOME", "AI_FACTORY_SERVING_PROC", "AI_FACTORY_SERVING_LEADER",
}


def _read_in_code() -> set[str]:
    names: set[str] = set()
    for path in (REPO / "include" / "ai_factory").rglob("*.py"):
        names |= set(_NAME.findall(path.read_text()))
    return names


def _documented() -> tuple[set[str], list[str]]:
    text = (REPO / "README.md").read_text()
    section = text[text.index("## Configuration"):]
    section = section[: section.index("\n## ", 1)]
    names: set[str] = set()
    prefixes: list[str] = []
    for token in re.findall(r"`([A-Z0-9_]+\*?)`", section):
        if token.endswith("*"):
            prefixes.append(token[:-1])
        elif token.startswith("AI_FACTORY_"):
            names.add(token)
    return names, prefixes


def test_every_variable_the_package_reads_is_documented():
    documented, prefixes = _documented()
    missing = sorted(n for n in _read_in_code() - INTERNAL - documented
                     if not any(n.startswith(p) for p in prefixes))
    assert not missing, f"read in include/ai_factory but not in the README's configuration table: {missing}"


def test_the_table_names_no_variable_the_package_does_not_read():
    documented, _ = _documented()
    stale = sorted(n for n in documented if n.startswith("AI_FACTORY_") and n not in _read_in_code())
    assert not stale, f"in the README's configuration table but read nowhere in include/ai_factory: {stale}"
