"""Run a command with its stdout/stderr going to a size-capped, rotated log file.

``python -m ai_factory.orchestration.logpipe --log FILE [--max-bytes N] [--backups K] -- CMD ...``

Why a launcher (and not ``stdout=open(FILE)``): a child that writes to an inherited file
descriptor grows that file without bound (a backend logging one traceback per rejected
request filled 14 MB in minutes). Here the launcher forks a small writer that reads a pipe
and rotates the file at ``--max-bytes`` (``FILE.1`` .. ``FILE.K``, like
:class:`logging.handlers.RotatingFileHandler`), then *execs* the command in its own place:

* the recorded pid is the command's pid (signals such as the front's ``SIGHUP`` reach it);
* the writer is in the command's process group, so stopping the group stops it, and it ends
  by itself once every process writing to the pipe (workers included) has exited;
* the writer ignores ``SIGINT``/``SIGTERM``/``SIGHUP`` so the last lines a stopping
  component writes still reach the file;
* the command runs under ``umask 077``: whatever state it creates is private to the user.

Only the standard library is imported: the writer is a fork of this small process.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
from pathlib import Path

DEFAULT_MAX_BYTES = 50 * 1024 * 1024
DEFAULT_BACKUPS = 5


class RotatingWriter:
    """Append bytes to ``path``; past ``max_bytes`` the file moves to ``path.1`` (and so on) first."""

    def __init__(self, path: Path, max_bytes: int = DEFAULT_MAX_BYTES, backups: int = DEFAULT_BACKUPS) -> None:
        self.path = path
        self.max_bytes = max_bytes
        self.backups = backups
        self._fd = -1
        self._size = 0
        self._open()

    def _open(self) -> None:
        self._fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        self._size = os.fstat(self._fd).st_size

    def _rotate(self) -> None:
        os.close(self._fd)
        if self.backups > 0:
            for i in range(self.backups - 1, 0, -1):
                src = self.path.with_name(f"{self.path.name}.{i}")
                if src.exists():
                    os.replace(src, self.path.with_name(f"{self.path.name}.{i + 1}"))
            os.replace(self.path, self.path.with_name(f"{self.path.name}.1"))
        else:
            os.truncate(self.path, 0)
        self._open()

    def write(self, data: bytes) -> None:
        """Append ``data``, rotating first whenever it would pass the cap (cut at a line end when one fits)."""
        while data:
            room = self.max_bytes - self._size if self.max_bytes > 0 else len(data)
            if room <= 0:
                self._rotate()
                continue
            if len(data) <= room:
                part, data = data, b""
            else:
                cut = data.rfind(b"\n", 0, room) + 1
                if cut == 0 and self._size > 0:  # the line does not fit: start it in a fresh file
                    self._rotate()
                    continue
                cut = cut or room
                part, data = data[:cut], data[cut:]
            self._write_all(part)
            if data:
                self._rotate()

    def _write_all(self, data: bytes) -> None:
        view = memoryview(data)
        while view:
            n = os.write(self._fd, view)
            view = view[n:]
        self._size += len(data)

    def close(self) -> None:
        os.close(self._fd)


def _pump(read_fd: int, writer: RotatingWriter) -> None:
    while chunk := os.read(read_fd, 65536):
        writer.write(chunk)
    writer.close()


def command(log: Path, cmd: list[str], max_bytes: int, backups: int) -> list[str]:
    """The argv that runs ``cmd`` through this launcher."""
    return [sys.executable, "-m", "ai_factory.orchestration.logpipe", "--log", str(log), "--max-bytes",
            str(max_bytes), "--backups", str(backups), "--", *cmd]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m ai_factory.orchestration.logpipe",
                                     description=__doc__.splitlines()[0])
    parser.add_argument("--log", required=True, type=Path)
    parser.add_argument("--max-bytes", type=int, default=DEFAULT_MAX_BYTES, help="rotate past this size (0: never)")
    parser.add_argument("--backups", type=int, default=DEFAULT_BACKUPS, help="rotated files kept")
    parser.add_argument("cmd", nargs=argparse.REMAINDER)
    args = parser.parse_args(argv)
    cmd = args.cmd[1:] if args.cmd[:1] == ["--"] else args.cmd
    if not cmd:
        parser.error("no command given after --")
    os.umask(0o077)
    args.log.parent.mkdir(parents=True, exist_ok=True)
    writer = RotatingWriter(args.log, args.max_bytes, args.backups)
    read_fd, write_fd = os.pipe()
    if os.fork() == 0:  # the writer
        os.close(write_fd)
        for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            signal.signal(sig, signal.SIG_IGN)
        try:
            _pump(read_fd, writer)
        finally:
            os._exit(0)
    os.close(read_fd)
    writer.close()
    os.dup2(write_fd, 1)
    os.dup2(write_fd, 2)
    os.close(write_fd)
    try:
        os.execvp(cmd[0], cmd)
    except OSError as exc:
        os.write(2, f"logpipe: cannot run {cmd[0]!r}: {exc}\n".encode())
        os._exit(127)


if __name__ == "__main__":
    main(sys.argv[1:])
