"""``bentoml serve`` with a Prometheus multiprocess directory of its own.

``python -m ai_factory.serving.launch --metrics-dir DIR serve <bento> [bentoml serve options]``

BentoML keeps the per-process metric files of a server in ``$BENTOML_HOME/prometheus_multiproc_dir``
and empties that directory whenever a server starts. The local deployment target runs the new
version beside the serving one (same ``BENTOML_HOME``, the Bento store), so starting the
candidate wiped the live version's counters: its ``/metrics`` dropped to zero in the middle of
a deployment, and requests counted afterwards went to deleted files. Each backend started
through this launcher gets its own directory (BentoML's own dependency-injection setting, the
one its pytest plugin uses), removed when the backend is stopped.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m ai_factory.serving.launch", description=__doc__.splitlines()[0])
    parser.add_argument("--metrics-dir", required=True, type=Path,
                        help="Prometheus multiprocess directory of this server (created; emptied at start)")
    args, rest = parser.parse_known_args(argv)
    if not rest or rest[0] != "serve":
        parser.error("expected the bentoml command after the options: serve <bento> [options]")
    from bentoml._internal.configuration.containers import BentoMLContainer
    from bentoml_cli.cli import cli

    args.metrics_dir.mkdir(parents=True, exist_ok=True)
    BentoMLContainer.prometheus_multiproc_dir.set(str(args.metrics_dir.resolve()))
    cli(rest, prog_name="bentoml")


if __name__ == "__main__":
    main(sys.argv[1:])
