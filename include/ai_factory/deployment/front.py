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
backend refuses the connection, the front answers 503 with a JSON reason (never a hang).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import signal
import sys
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

STATUS_PATH = "/_front/status"
HOP_BY_HOP = frozenset({"connection", "keep-alive", "proxy-authenticate", "proxy-authorization", "te",
                        "trailers", "transfer-encoding", "upgrade", "host", "content-length"})


class Front:
    def __init__(self, state_file: Path, timeout: float = 30.0) -> None:
        self.state_file = state_file
        self.timeout = timeout
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

    async def handle(self, request: Any) -> Any:
        from aiohttp import ClientError, web

        if request.path == STATUS_PATH:
            return web.json_response({"backend": self.backend, "generation": self.generation,
                                      "inflight": {str(k): v for k, v in self.inflight.items()},
                                      "served": self.served, "failed": self.failed})
        backend = self.backend
        if not backend:
            return web.json_response({"error": "no model version is deployed behind this address"}, status=503)
        port = int(backend["port"])
        url = f"http://127.0.0.1:{port}{request.rel_url}"
        headers = {k: v for k, v in request.headers.items() if k.lower() not in HOP_BY_HOP}
        body = await request.read()
        self.inflight[port] = self.inflight.get(port, 0) + 1
        try:
            async with self._session.request(request.method, url, headers=headers, data=body) as resp:
                payload = await resp.read()
                out_headers = {k: v for k, v in resp.headers.items() if k.lower() not in HOP_BY_HOP}
                out_headers["X-AI-Factory-Backend"] = str(backend.get("version"))
                self.served += 1
                return web.Response(status=resp.status, body=payload, headers=out_headers)
        except (TimeoutError, ClientError) as exc:
            self.failed += 1
            log.warning("front: backend %s (port %d) failed: %r", backend.get("version"), port, exc)
            return web.json_response({"error": f"model backend {backend.get('version')} is unavailable: {exc!r}"},
                                     status=503)
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


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="ai-factory-front", description=__doc__.splitlines()[0])
    parser.add_argument("--state", required=True, type=Path)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--timeout", type=float, default=30.0)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        import uvloop

        uvloop.install()
    except ImportError:
        log.debug("uvloop not installed; using the default asyncio loop")
    asyncio.run(Front(args.state, timeout=args.timeout).run(args.host, args.port))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
