"""The stable local address: a tiny HTTP reverse proxy in front of the live ``bentoml serve``.

Why a proxy (and not swapping ports): the new version must start and be smoke-tested
*beside* the old one, which needs two listening sockets, and the switch must not drop a
request. The front keeps the clients' connections; per request it forwards to the backend
named in the deployment state file. A switch is: the deployer rewrites the state file
atomically and sends ``SIGHUP``; the front re-reads it, and from then on new requests go to
the new backend while requests already in flight to the old one finish there. The deployer
waits until the old backend has nothing in flight (``GET /_front/status``) before stopping it.

It runs as its own detached process (``python -m ai_factory.deployment.front``), so serving
outlives the Airflow task that deployed it. It re-reads the state file on ``SIGHUP`` and,
as a fallback, whenever the file's mtime changes (checked every second).

Responses carry ``X-AI-Factory-Backend: <version>``. When no backend is configured or the
backend refuses the connection, the front answers 503 with a JSON reason (never a hang); with a
warm standby, a refused request (nothing reached the dead backend) waits up to 5 s for the
supervisor's switch and is sent to the standby instead.

``GET /_front/status`` answers everyone with the served version only; pids, ports, log paths
and in-flight counts need ``Authorization: Bearer <token>``, the token being the content of
``--token-file`` (0600, readable by the owner of the serving folder only).

The front also supervises the live backend: a thread checks its server process every
``--check-interval`` seconds and, when it has died, starts the same Bento again and switches
to it (:meth:`ai_factory.deployment.local.LocalTarget.revive_active`), retrying with backoff
(1, 2, 4 .. 60 s) if the start fails. Until then requests get the 503 above.
"""

from __future__ import annotations

import argparse
import asyncio
import hmac
import json
import logging
import os
import signal
import sys
import threading
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

STATUS_PATH = "/_front/status"
HOP_BY_HOP = frozenset({"connection", "keep-alive", "proxy-authenticate", "proxy-authorization", "te",
                        "trailers", "transfer-encoding", "upgrade", "host", "content-length"})


class Front:
    def __init__(self, state_file: Path, timeout: float = 30.0, token: str | None = None,
                 failover_wait: float = 0.0) -> None:
        self.state_file = state_file
        self.timeout = timeout
        # How long a request refused by a dead backend waits for the supervisor's switch (0: not at all).
        self.failover_wait = failover_wait
        self.token = token
        self.backend: dict[str, Any] | None = None
        self.generation = 0
        self.inflight: dict[int, int] = {}
        self.served = 0
        self.failed = 0
        self._mtime = 0.0
        self._session: Any = None

    def reload(self) -> None:
        try:
            state = json.loads(self.state_file.read_text())
            self._mtime = self.state_file.stat().st_mtime
        except (OSError, ValueError) as exc:
            log.error("front: cannot read %s (%s); keeping backend %s", self.state_file, exc, self.backend)
            return
        active = state.get("active")
        if active != self.backend:
            log.info("front: backend %s -> %s", self.backend and self.backend.get("version"),
                     active and active.get("version"))
            self.backend = active
            self.generation += 1

    async def watch(self) -> None:
        while True:
            await asyncio.sleep(1.0)
            try:
                if self.state_file.stat().st_mtime != self._mtime:
                    self.reload()
            except OSError:
                continue

    def authorized(self, header: str) -> bool:
        if not self.token:
            return False
        return hmac.compare_digest(header.encode(), f"Bearer {self.token}".encode())

    async def handle(self, request: Any) -> Any:
        from aiohttp import ClientConnectorError, ClientError, web

        if request.path == STATUS_PATH:
            if not self.authorized(request.headers.get("Authorization", "")):
                return web.json_response({"status": "ok", "version": (self.backend or {}).get("version"),
                                          "generation": self.generation})
            return web.json_response({"backend": self.backend, "generation": self.generation,
                                      "inflight": {str(k): v for k, v in self.inflight.items()},
                                      "served": self.served, "failed": self.failed})
        backend = self.backend
        if not backend:
            return web.json_response({"error": "no model version is deployed behind this address"}, status=503)
        headers = {k: v for k, v in request.headers.items() if k.lower() not in HOP_BY_HOP}
        body = await request.read()
        try:
            return await self._forward(request, backend, headers, body)
        except ClientConnectorError as exc:
            # The connection was refused: nothing reached the backend, so the request can go to the
            # server the supervisor switches to (a standby: within a second) instead of failing.
            newer = await self._next_backend(backend)
            if newer is None:
                return self._unavailable(backend, exc)
            log.info("front: backend %s (port %s) refused; resending to port %s", backend.get("version"),
                     backend.get("port"), newer.get("port"))
            try:
                return await self._forward(request, newer, headers, body)
            except (TimeoutError, ClientError) as exc2:
                return self._unavailable(newer, exc2)
        except (TimeoutError, ClientError) as exc:
            return self._unavailable(backend, exc)

    async def _next_backend(self, failed: dict[str, Any]) -> dict[str, Any] | None:
        """Wait up to ``failover_wait`` s for the front to be switched away from ``failed``."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.failover_wait
        while loop.time() < deadline:
            if self.backend and self.backend.get("pid") != failed.get("pid"):
                return self.backend
            await asyncio.sleep(0.05)
        return None

    def _unavailable(self, backend: dict[str, Any], exc: BaseException) -> Any:
        from aiohttp import web

        self.failed += 1
        log.warning("front: backend %s (port %s) failed: %r", backend.get("version"), backend.get("port"), exc)
        return web.json_response({"error": f"model backend {backend.get('version')} is unavailable: {exc!r}"},
                                 status=503)

    async def _forward(self, request: Any, backend: dict[str, Any], headers: dict[str, str], body: bytes) -> Any:
        from aiohttp import web

        port = int(backend["port"])
        url = f"http://127.0.0.1:{port}{request.rel_url}"
        self.inflight[port] = self.inflight.get(port, 0) + 1
        try:
            async with self._session.request(request.method, url, headers=headers, data=body) as resp:
                payload = await resp.read()
                out_headers = {k: v for k, v in resp.headers.items() if k.lower() not in HOP_BY_HOP}
                out_headers["X-AI-Factory-Backend"] = str(backend.get("version"))
                self.served += 1
                return web.Response(status=resp.status, body=payload, headers=out_headers)
        finally:
            self.inflight[port] -= 1

    async def run(self, host: str, port: int) -> None:
        import aiohttp
        from aiohttp import web

        self.reload()
        self._session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=0, keepalive_timeout=30),
            timeout=aiohttp.ClientTimeout(total=self.timeout), auto_decompress=False)
        app = web.Application(client_max_size=64 * 1024**2)
        app.router.add_route("*", "/{tail:.*}", self.handle)
        runner = web.AppRunner(app, access_log=None, handle_signals=False)
        await runner.setup()
        site = web.TCPSite(runner, host, port, reuse_address=True, backlog=1024)
        await site.start()
        log.info("front: listening on http://%s:%d (state %s)", host, port, self.state_file)
        loop = asyncio.get_running_loop()
        stop = asyncio.Event()
        loop.add_signal_handler(signal.SIGHUP, self.reload)
        loop.add_signal_handler(signal.SIGTERM, stop.set)
        loop.add_signal_handler(signal.SIGINT, stop.set)
        watcher = asyncio.create_task(self.watch())
        await stop.wait()
        watcher.cancel()
        log.info("front: stopping (served %d, failed %d)", self.served, self.failed)
        await runner.cleanup()
        await self._session.close()


def supervise(state_file: Path, host: str, port: int, interval: float, ready_timeout: float,
              stop: threading.Event, standby: bool = False) -> None:
    """Revive the live backend whenever its server process is gone (runs in a thread of the front)."""
    from ai_factory.deployment.local import LocalTarget, pid_alive

    bentoml_home = os.environ.get("BENTOML_HOME")
    target = LocalTarget(home=state_file.parent, host=host, port=port, ready_timeout=ready_timeout,
                         bentoml_home=Path(bentoml_home) if bentoml_home else None, standby=standby)
    failures = 0
    while not stop.wait(interval if failures == 0 else min(60.0, 2.0 ** failures)):
        try:
            active = target.read_state().get("active")
        except ValueError as exc:
            log.error("front supervisor: cannot read %s: %s", state_file, exc)
            continue
        if not active or pid_alive(active.get("pid")):
            failures = 0
            if standby and active:
                try:
                    target.ensure_standby()
                except Exception as exc:  # noqa: BLE001 - retried with backoff, and said
                    failures += 1
                    log.error("front supervisor: could not start a standby of %s (attempt %d): %s",
                              active.get("version"), failures, exc)
            continue
        try:
            backend = target.revive_active(reason="front supervisor")
        except Exception as exc:  # noqa: BLE001 - any failure to start is retried with backoff, and said
            failures += 1
            log.error("front supervisor: could not restart %s (attempt %d, next in %.0fs): %s",
                      active.get("version"), failures, min(60.0, 2.0 ** failures), exc)
            continue
        failures = 0
        if backend:
            log.warning("front supervisor: %s serves again on port %d", backend["version"], backend["port"])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="ai-factory-front", description=__doc__.splitlines()[0])
    parser.add_argument("--state", required=True, type=Path)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--timeout", type=float, default=30.0)
    parser.add_argument("--token-file", type=Path, help="0600 file holding the token that /_front/status asks for")
    parser.add_argument("--check-interval", type=float, default=0.5,
                        help="seconds between checks of the live backend's server process (0: do not supervise)")
    parser.add_argument("--ready-timeout", type=float, default=120.0)
    parser.add_argument("--standby", action="store_true",
                        help="keep a second ready server of the live version, switched to at once if the live one dies")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        import uvloop

        uvloop.install()
    except ImportError:
        log.debug("uvloop not installed; using the default asyncio loop")
    from ai_factory.deployment.local import drop_leader_mark

    drop_leader_mark()  # the backends this front starts get a leader mark of their own
    token = args.token_file.read_text().strip() if args.token_file else None
    stop = threading.Event()
    if args.check_interval > 0:
        threading.Thread(target=supervise, name="supervisor", daemon=True,
                         args=(args.state, args.host, args.port, args.check_interval, args.ready_timeout,
                               stop, args.standby)).start()
    try:
        # With a standby the switch comes within a second; a cold start takes longer than a client waits.
        wait = 5.0 if args.check_interval > 0 and args.standby else 0.0
        asyncio.run(Front(args.state, timeout=args.timeout, token=token, failover_wait=wait).run(args.host, args.port))
    finally:
        stop.set()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
