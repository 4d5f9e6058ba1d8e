"""Training benchmarks (throughput, tuning with/without pruning, quality vs HistGradientBoosting).

``python -m bench training`` runs the full report (about 25 minutes on 2 cores) and writes the
"Training" section of docs/benchmarks.md; ``python -m bench.training_report --help`` for options.
"""

from __future__ import annotations

from .training_report import main as _report


def main() -> int:
    return _report([])


if __name__ == "__main__":
    raise SystemExit(main())
