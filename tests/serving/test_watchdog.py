"""The event-loop stall watchdog: notices a blocked loop, measures it, names where it was and the GC in it."""

from __future__ import annotations

import asyncio
import gc
import time

import pytest

from ai_factory.serving.watchdog import StallWatchdog


def _hog_the_loop(seconds: float) -> None:
    time.sleep(seconds)  # a blocking call on the event loop, as a slow handler would make


def _collect_on_the_loop() -> None:
    garbage = [[i] for i in range(200_000)]
    for a, b in zip(garbage, garbage[1:], strict=False):
        a.append(b)  # a reference chain, so the full collection has work to do
    del garbage
    gc.collect()
    time.sleep(0.06)


async def _run(watchdog: StallWatchdog, blocker, *args) -> None:
    watchdog.start()
    await asyncio.sleep(0.05)  # a few healthy heartbeats first
    asyncio.get_running_loop().call_soon(blocker, *args)
    await asyncio.sleep(0.3)  # the stall, then time for the watcher to see the loop back
    watchdog.stop()


def test_a_blocked_loop_is_recorded_with_its_length_and_stack(caplog):
    watchdog = StallWatchdog(threshold_ms=30)
    seen = []
    watchdog.on_stall(seen.append)
    with caplog.at_level("WARNING", logger="ai_factory.serving.watchdog"):
        asyncio.run(_run(watchdog, _hog_the_loop, 0.15))
    assert watchdog.count == 1 and seen == list(watchdog.stalls)
    [stall] = watchdog.stalls
    assert 140 <= stall.ms < 1000, stall.ms
    assert "_hog_the_loop" in stall.stack
    assert "event loop blocked for" in caplog.text and "_hog_the_loop" in caplog.text


def test_garbage_collection_during_a_stall_is_attributed():
    watchdog = StallWatchdog(threshold_ms=30)
    asyncio.run(_run(watchdog, _collect_on_the_loop))
    [stall] = watchdog.stalls
    assert stall.gc_ms.get(2, 0) > 0, stall.gc_ms


def test_a_healthy_loop_records_nothing():
    async def healthy() -> None:
        watchdog.start()
        for _ in range(20):
            await asyncio.sleep(0.005)
        watchdog.stop()

    watchdog = StallWatchdog(threshold_ms=200)
    asyncio.run(healthy())
    assert watchdog.count == 0


def test_the_threshold_must_be_positive():
    with pytest.raises(ValueError, match="stall threshold must be > 0 ms"):
        StallWatchdog(threshold_ms=0)
