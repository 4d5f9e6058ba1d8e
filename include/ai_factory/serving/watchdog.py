"""Event-loop stall watchdog for the service's API process (off by default).

Every served request waits on the API process's event loop; anything that holds it (a garbage
collection, a thread holding the GIL, a slow callback) shows up as tail latency for all
requests in flight. With ``serving.yaml`` ``stall_watchdog_ms: N`` (or
``AI_FACTORY_SERVE_STALL_MS=N``) a daemon thread checks a heartbeat the loop updates every few
milliseconds; when the loop has not beaten for N ms it records the stall: how long, the main
thread's stack at that moment, and the garbage collections that ran meanwhile. Each stall is
logged (``ai_factory.serving.watchdog`` warning) and counted in
``ai_factory_event_loop_stalls`` on ``/metrics``; :attr:`StallWatchdog.stalls` keeps the last
ones for tests and the serving benchmark.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import sys
import threading
import time
import traceback
from collections import deque
from dataclasses import dataclass, field

log = logging.getLogger(__name__)


@dataclass
class Stall:
    started: float  # time.monotonic() of the last heartbeat before the stall
    ms: float  # how long the loop went without a heartbeat
    stack: str  # the loop thread's stack when the stall was noticed
    gc_ms: dict[int, float] = field(default_factory=dict)  # generation → ms spent collecting meanwhile


class StallWatchdog:
    """Watches one asyncio loop from a daemon thread."""

    def __init__(self, threshold_ms: float, beat_ms: float = 2.0, keep: int = 200) -> None:
        if threshold_ms <= 0:
            raise ValueError(f"stall threshold must be > 0 ms, got {threshold_ms}")
        self.threshold = threshold_ms / 1000
        # A heartbeat well inside the threshold, or an idle loop between two beats reads as a stall.
        self.beat = min(beat_ms, threshold_ms / 4) / 1000
        self.stalls: deque[Stall] = deque(maxlen=keep)
        self.count = 0
        self._last = time.monotonic()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._loop_thread_id: int | None = None
        self._stop = threading.Event()
        self._gc: deque[tuple[float, float, int]] = deque(maxlen=1000)  # (start, end, generation)
        self._gc_start = 0.0
        self._on_stall: list = []

    # -- loop side -------------------------------------------------------------------------------
    def start(self, loop: asyncio.AbstractEventLoop | None = None) -> StallWatchdog:
        """Start watching ``loop`` (default: the running loop); call from the loop's thread."""
        self._loop = loop or asyncio.get_running_loop()
        self._loop_thread_id = threading.get_ident()
        self._last = time.monotonic()
        self._loop.call_soon(self._heartbeat)
        gc.callbacks.append(self._gc_event)
        threading.Thread(target=self._watch, name="stall-watchdog", daemon=True).start()
        log.info("event-loop stall watchdog on: stalls over %.0f ms are logged", self.threshold * 1000)
        return self

    def on_stall(self, callback) -> None:  # noqa: ANN001 - Callable[[Stall], None]
        self._on_stall.append(callback)

    def _heartbeat(self) -> None:
        self._last = time.monotonic()
        if not self._stop.is_set() and self._loop is not None:
            self._loop.call_later(self.beat, self._heartbeat)

    def _gc_event(self, phase: str, info: dict) -> None:
        if threading.get_ident() != self._loop_thread_id:
            return
        now = time.monotonic()
        if phase == "start":
            self._gc_start = now
        else:
            self._gc.append((self._gc_start, now, info.get("generation", -1)))

    def stop(self) -> None:
        self._stop.set()
        if self._gc_event in gc.callbacks:
            gc.callbacks.remove(self._gc_event)

    # -- watcher thread ----------------------------------------------------------------------------
    def _watch(self) -> None:
        noticed: float | None = None  # heartbeat of the stall already being tracked
        stack = ""
        while not self._stop.wait(self.beat):
            last = self._last
            if time.monotonic() - last > self.threshold and noticed != last:
                noticed = last
                frame = sys._current_frames().get(self._loop_thread_id or 0)
                stack = "".join(traceback.format_stack(frame, limit=12)) if frame else "(no frame)"
                # Wait for the loop to come back, to measure the whole stall.
                while self._last == last and not self._stop.wait(self.beat):
                    pass
                self._record(last, self._last, stack)

    def _record(self, start: float, end: float, stack: str) -> None:
        gc_ms: dict[int, float] = {}
        for g_start, g_end, gen in list(self._gc):
            overlap = min(g_end, end) - max(g_start, start)
            if overlap > 0:
                gc_ms[gen] = gc_ms.get(gen, 0.0) + overlap * 1000
        stall = Stall(started=start, ms=(end - start) * 1000, stack=stack, gc_ms=gc_ms)
        self.stalls.append(stall)
        self.count += 1
        gc_note = ", ".join(f"gen{g} {ms:.1f} ms" for g, ms in sorted(gc_ms.items())) or "none"
        log.warning("event loop blocked for %.1f ms (garbage collection meanwhile: %s); loop thread was at:\n%s",
                    stall.ms, gc_note, stack)
        for cb in self._on_stall:
            try:
                cb(stall)
            except Exception:  # noqa: BLE001 - a metrics hook must not kill the watchdog
                log.exception("stall watchdog callback failed")
