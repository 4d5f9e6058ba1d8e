"""``bentoml serve`` with a Prometheus multiprocess directory of its own.

``python -m ai_factory.serving.launch --metrics-dir DIR serve <bento> [bentoml serve options]``

BentoML keeps the per-process metric files of a server in ``$BENTOML_HOME/prometheus_multiproc_dir``
and empties that directory whenever a server starts. The local deployment target runs the new
version beside the serving one (same ``BENTOML_HOME``, the Bento store), so starting the
candidate wiped the live version's counters: its ``/metrics`` dropped to zero in the middle of
a deployment, and requests counted afterwards went to deleted files. Each backend started
through this launcher gets its own directory (BentoML's own dependency-injection setting, the
one its pytest plugin uses), removed when the backend is stopped.

The circus arbiter that ``bentoml serve`` runs (the process manager of the API workers)
listens for control commands on ``tcp://127.0.0.1:<port>`` by default, with no
authentication: any local user could ``circusctl --endpoint tcp://127.0.0.1:<port> quit``
(or ``incr``) the model server. Here its control and pub/sub endpoints are unix sockets
(``ipc://``), 0600, in a fresh 0700 directory (``--control-dir``, or one under the system's
temporary folder: a socket path must stay under 108 bytes). The owner can still use it:
``circusctl --endpoint ipc://<dir>/circus.sock list``.
"""

from __future__ import annotations

import argparse
import atexit
import logging
import os
import shutil
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)


def _chmod_when_bound(paths: list[Path], timeout: float = 120.0) -> None:
    """Make the sockets 0600 once the arbiter has bound them (zmq creates them with the umask's bits)."""
    deadline = time.monotonic() + timeout
    pending = list(paths)
    while pending and time.monotonic() < deadline:
        for p in list(pending):
            if p.exists():
                p.chmod(0o600)
                pending.remove(p)
        time.sleep(0.05)


def private_circus(control_dir: Path | None) -> Path:
    """Point bentoml's circus arbiter at unix sockets in a private directory; returns the directory."""
    from bentoml._internal.utils import circus

    if control_dir is None:
        control_dir = Path(tempfile.mkdtemp(prefix="aif-circus-"))  # 0700
        atexit.register(shutil.rmtree, control_dir, True)
    control_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    control_dir.chmod(0o700)
    endpoint, pubsub = control_dir / "circus.sock", control_dir / "pubsub.sock"
    original = circus.create_standalone_arbiter

    def create_standalone_arbiter(watchers: list[Any], *, threaded: bool = False, **kwargs: Any) -> Any:
        arbiter_cls = circus.ThreadedArbiter if threaded else circus.Arbiter
        threading.Thread(target=_chmod_when_bound, args=([endpoint, pubsub],), daemon=True).start()
        return arbiter_cls(watchers, endpoint=f"ipc://{endpoint}", pubsub_endpoint=f"ipc://{pubsub}",
                           check_delay=kwargs.pop("check_delay", 10), **kwargs)

    create_standalone_arbiter.__wrapped__ = original  # type: ignore[attr-defined]
    circus.create_standalone_arbiter = create_standalone_arbiter
    log.info("circus control endpoint: ipc://%s", endpoint)
    return control_dir


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m ai_factory.serving.launch", description=__doc__.splitlines()[0])
    parser.add_argument("--metrics-dir", required=True, type=Path,
                        help="Prometheus multiprocess directory of this server (created; emptied at start)")
    parser.add_argument("--control-dir", type=Path, default=None,
                        help="private directory for the circus control sockets (default: a fresh one in $TMPDIR)")
    args, rest = parser.parse_known_args(argv)
    if not rest or rest[0] != "serve":
        parser.error("expected the bentoml command after the options: serve <bento> [options]")
    from bentoml._internal.configuration.containers import BentoMLContainer
    from bentoml_cli.cli import cli

    os.umask(0o077)
    # The API workers must not look like leaders to the orphan reaper (deployment/local.py).
    os.environ.pop("AI_FACTORY_SERVING_LEADER", None)
    private_circus(args.control_dir)
    args.metrics_dir.mkdir(parents=True, exist_ok=True)
    BentoMLContainer.prometheus_multiproc_dir.set(str(args.metrics_dir.resolve()))
    cli(rest, prog_name="bentoml")


if __name__ == "__main__":
    main(sys.argv[1:])
