"""Sub-command groups contributed by the other areas (training, serving, monitoring, demo).

Each entry is a function ``register(subparsers)``; keep imports inside the commands.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ai_factory.monitoring.cli import register as _register_drift
from ai_factory.serving.cli import register as _register_serving
from ai_factory.training.cli import register as _register_training

# training: `ai-factory train window|tune|fit|evaluate|register` and `ai-factory models …`
# serving: `ai-factory gate`, `ai-factory deploy`, `ai-factory serve status|stop|ensure|manifests`
# drift: `ai-factory drift …`
REGISTRARS: list[Callable[[Any], None]] = [_register_training, _register_serving, _register_drift]
