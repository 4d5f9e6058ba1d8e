"""A small HTTP load generator, run as its own process (``python -m ai_factory.deployment.loadgen``).

Two modes: ``rate`` (open loop: requests start on a fixed schedule of ``rps`` per second, whatever
the server does, which is what measures latency at a given traffic level honestly) and
``closed`` (``concurrency`` workers back to back: the throughput ceiling). It prints one JSON
object: counts, status codes, errors, throughput, latency percentiles (ms) and, with
``--timeline``, per-request ``[start offset s, latency ms, status]`` rows (the switch-gap
measurement uses these to see what happened during a deploy).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import sys
import time
from typing import Any


def _pct(values: list[float], q: float) -> float:
    if not values:
        return math.nan
    ordered = sorted(values)
    return ordered[max(0, min(len(ordered) - 1, math.ceil(q / 100 * len(ordered)) - 1))]


async def _run(url: str, body: bytes, mode: str, rps: float, concurrency: int, duration: float,
               timeout: float) -> list[tuple[float, float, int]]:
    import aiohttp

    results: list[tuple[float, float, int]] = []
    conn = aiohttp.TCPConnector(limit=max(concurrency, 64), keepalive_timeout=30)
    headers = {"Content-Type": "application/json"}
    async with aiohttp.ClientSession(connector=conn, timeout=aiohttp.ClientTimeout(total=timeout)) as session:
        t0 = time.perf_counter()

        async def one() -> None:
            start = time.perf_counter()
            try:
                async with session.post(url, data=body, headers=headers) as resp:
                    await resp.read()
                    status = resp.status
            except (TimeoutError, aiohttp.ClientError):
                status = 0  # connection refused / reset / timeout
            results.append((start - t0, (time.perf_counter() - start) * 1000, status))

        if mode == "rate":
            tasks = []
            n = int(rps * duration)
            for i in range(n):
                delay = t0 + i / rps - time.perf_counter()
                if delay > 0:
                    await asyncio.sleep(delay)
                tasks.append(asyncio.create_task(one()))
            await asyncio.gather(*tasks)
        else:
            async def worker() -> None:
                while time.perf_counter() - t0 < duration:
                    await one()

            await asyncio.gather(*(worker() for _ in range(concurrency)))
    return results


def summarize(results: list[tuple[float, float, int]], rows_per_request: int = 1) -> dict[str, Any]:
    ok = [r for r in results if r[2] == 200]
    span = (max(r[0] + r[1] / 1000 for r in results) - min(r[0] for r in results)) if results else math.nan
    lat = [r[1] for r in ok]
    codes: dict[str, int] = {}
    for r in results:
        codes[str(r[2])] = codes.get(str(r[2]), 0) + 1
    return {"requests": len(results), "ok": len(ok), "failed": len(results) - len(ok), "status": codes,
            "seconds": span, "req_per_s": len(ok) / span if span else math.nan,
            "rows_per_s": len(ok) * rows_per_request / span if span else math.nan,
            "p50_ms": _pct(lat, 50), "p90_ms": _pct(lat, 90), "p99_ms": _pct(lat, 99), "max_ms": max(lat, default=math.nan),
            "slow_over_100ms": sum(1 for x in lat if x > 100)}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="loadgen", description=__doc__.splitlines()[0])
    p.add_argument("--url", required=True)
    p.add_argument("--body-file", required=True, help="JSON request body")
    p.add_argument("--mode", choices=["rate", "closed"], default="rate")
    p.add_argument("--rps", type=float, default=200)
    p.add_argument("--concurrency", type=int, default=16)
    p.add_argument("--duration", type=float, default=10)
    p.add_argument("--timeout", type=float, default=30)
    p.add_argument("--rows-per-request", type=int, default=1)
    p.add_argument("--timeline", action="store_true")
    args = p.parse_args(argv)
    with open(args.body_file, "rb") as fh:
        body = fh.read()
    results = asyncio.run(_run(args.url, body, args.mode, args.rps, args.concurrency, args.duration, args.timeout))
    out = summarize(results, args.rows_per_request)
    if args.timeline:
        out["timeline"] = results
    sys.stdout.write(json.dumps(out) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
