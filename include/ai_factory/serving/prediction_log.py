"""Served records → ``predictions/ds=YYYY-MM-DD/*.parquet`` for drift monitoring, off the request path.

The request path only appends rows to an in-memory buffer (a lock-protected list append, a
few microseconds); a daemon thread flushes the buffer to one Parquet file per flush and per
day, written atomically (temporary name, then rename) by :class:`~ai_factory.storage.DataLake`,
so the drift monitor never reads half a file. A flush happens when ``flush_rows`` rows are
waiting or ``flush_seconds`` have passed, and on :meth:`PredictionLogger.close` (the service's
shutdown hook), so a clean stop loses nothing.

Nothing is lost silently; every row ends up in exactly one of three counts:

* **written** — in a Parquet file of its day.
* **rejected** — a row that cannot be encoded (a value neither Arrow nor pandas takes, a
  timestamp outside what a Parquet ``timestamp[ns]`` holds, …) is kept aside with the reason
  in ``predictions/_rejected/ds=<day rejected>/rejected-*.jsonl`` (one JSON object per line:
  ``reason``, ``rejected_at``, ``row``), and the rest of its flush is written as usual. The
  ``_`` prefix keeps Hive-style readers (pyarrow datasets, Spark) out of it, and
  :meth:`~ai_factory.storage.DataLake.partitions` lists only ``ds=`` folders.
* **dropped** — if the writer falls behind (the store is slow or down), the buffer is capped
  at ``max_buffer_rows``: further rows are dropped and counted, never blocking a request. A
  failed write is logged with the path and its rows are kept for the next flush until the
  cap is hit.

The writer thread survives any error of a flush (logged with its traceback); if it dies
anyway, the next served request (or ``/readyz``) starts a new one and logs it. The counts go
to listeners (:meth:`PredictionLogger.on_count`: the service feeds Prometheus counters) and
:meth:`PredictionLogger.health` says whether the log is ``ok``, ``degraded`` (rows dropped,
a write failed or the writer restarted within ``health_window_seconds``, or the buffer more
than half full) or ``failed`` (no writer thread can be started).

File contract (what ``ai_factory.monitoring`` reads): the spec's feature columns, then
``prediction``, ``probability`` (binary: P(positive class)), ``model_version`` and
``timestamp`` (UTC). Files are named ``part-<utc time>-<pid>-<seq>.parquet`` so several
workers and restarts never collide.
"""

from __future__ import annotations

import json
import logging
import os
import posixpath
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Any

from ai_factory.spec import DatasetSpec
from ai_factory.storage import DataLake, Zone

log = logging.getLogger(__name__)

SERVING_COLUMNS = ("prediction", "probability", "model_version", "timestamp")
REJECTED_DIR = "_rejected"
COUNTS = ("written", "rejected", "dropped")

Row = tuple[Any, ...]


@dataclass(frozen=True)
class LogConfig:
    enabled: bool = True
    flush_rows: int = 5000
    flush_seconds: float = 10.0
    max_buffer_rows: int = 200_000
    # /readyz stays "degraded" this long after rows were dropped, a write failed or the writer restarted.
    health_window_seconds: float = 300.0


def _typed(df: Any, spec: DatasetSpec) -> Any:
    """Fixed column types per spec dtype, so every file of a day has the same schema (nulls included)."""
    import pandas as pd

    from ai_factory.spec import DType

    for f in spec.features:
        col = df[f.name]
        if f.dtype == DType.INT:
            df[f.name] = col.astype("Int64") if f.nullable else col.astype("int64")
        elif f.dtype == DType.FLOAT:
            df[f.name] = pd.to_numeric(col, errors="coerce").astype("float64")
        elif f.dtype == DType.BOOL:
            df[f.name] = col.astype("boolean") if f.nullable else col.astype("bool")
        else:
            df[f.name] = col.astype("string")
    df["probability"] = pd.to_numeric(df["probability"], errors="coerce").astype("float64")
    df["model_version"] = df["model_version"].astype("string")
    df["timestamp"] = pd.to_datetime(df["timestamp"], utc=True)
    return df



class PredictionLogger:
    """Buffered, background Parquet writer of served records (thread-safe ``log``)."""

    def __init__(self, lake: DataLake, spec: DatasetSpec, config: LogConfig = LogConfig()) -> None:
        self.lake = lake
        self.spec = spec
        self.config = config
        self.columns = [*spec.feature_names, *SERVING_COLUMNS]
        self._rows: list[Row] = []
        self._aside: list[tuple[Row, str]] = []  # rejected rows whose side file could not be written yet
        self._lock = threading.Lock()
        self._write_lock = threading.Lock()
        self._start_lock = threading.Lock()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._seq = 0
        self.written = 0
        self.rejected = 0
        self.dropped = 0
        self.restarts = 0
        self.files: list[str] = []
        self.rejected_files: list[str] = []
        self._listeners: list[Callable[[str, int], None]] = []
        self._problems: dict[str, tuple[float, str]] = {}  # kind → (time.monotonic(), what happened)
        self._schema: Any = None  # pyarrow.Schema, from the first row that types
        self._thread: threading.Thread | None = None
        if config.enabled:
            self._warm_up()
            self._start_writer()

    def _warm_up(self) -> None:
        """Import and exercise the Parquet writer now, at service start-up.

        The first write otherwise imports pandas' Parquet machinery and pyarrow's pandas bridge
        (~0.5 s of CPU, mostly holding the GIL) in the middle of live traffic, ten seconds in:
        a latency spike for every request served meanwhile.
        """
        import io

        import pandas as pd

        empty = _typed(pd.DataFrame({c: [] for c in self.columns}), self.spec)
        empty.to_parquet(io.BytesIO(), index=False)

    # -- counts and health ----------------------------------------------------------------------
    def on_count(self, callback: Callable[[str, int], None]) -> None:
        """Call ``callback(kind, n)`` whenever ``n`` rows are written, rejected or dropped (kind in COUNTS)."""
        self._listeners.append(callback)

    def _count(self, kind: str, n: int) -> None:
        if n <= 0:
            return
        with self._lock:
            setattr(self, kind, getattr(self, kind) + n)
        for callback in self._listeners:
            try:
                callback(kind, n)
            except Exception:  # noqa: BLE001 - a metrics hook must not stop the writer
                log.exception("prediction log: count listener failed")

    def _problem(self, kind: str, what: str) -> None:
        self._problems[kind] = (time.monotonic(), what)

    def health(self) -> tuple[str, str]:
        """``("ok" | "degraded" | "failed", reason)``; restarts a dead writer first."""
        if not self.config.enabled:
            return "ok", "prediction log off"
        if not self._ensure_writer():
            return "failed", "the prediction-log writer thread is not running and cannot be restarted"
        now = time.monotonic()
        reasons = [what for at, what in self._problems.values() if now - at <= self.config.health_window_seconds]
        pending = len(self._rows)
        if pending * 2 >= self.config.max_buffer_rows:
            reasons.append(f"prediction log behind: {pending} of {self.config.max_buffer_rows} buffer rows used")
        if reasons:
            return "degraded", "; ".join(reasons)
        return "ok", ""

    # -- request path ---------------------------------------------------------------------------
    def log(self, records: Sequence[dict[str, Any]], predictions: Sequence[Any],
            probabilities: Sequence[float | None], model_version: str, when: datetime | None = None) -> None:
        """Queue served rows; never blocks on I/O."""
        if not self.config.enabled:
            return
        ts = when or datetime.now(UTC)
        if ts.tzinfo is None:
            ts = ts.replace(tzinfo=UTC)  # naive = UTC, as everywhere in the lake
        names = self.spec.feature_names
        rows = [(*(r.get(n) for n in names), p, pr, model_version, ts)
                for r, p, pr in zip(records, predictions, probabilities, strict=True)]
        lost = 0
        with self._lock:
            room = self.config.max_buffer_rows - len(self._rows)
            if room < len(rows):
                lost = len(rows) - max(room, 0)
                rows = rows[: max(room, 0)]
            self._rows.extend(rows)
            pending = len(self._rows)
        if lost:
            self._dropped(lost, "the buffer is full")
        if pending >= self.config.flush_rows:
            self._wake.set()
        self._ensure_writer()

    def _dropped(self, n: int, why: str) -> None:
        self._count("dropped", n)
        self._problem("dropped", f"{self.dropped} row(s) dropped so far ({why}, max_buffer_rows="
                                 f"{self.config.max_buffer_rows})")
        log.error("prediction log: dropped %d row(s): %s", n, why)

    # -- writer thread --------------------------------------------------------------------------
    def _start_writer(self) -> None:
        self._thread = threading.Thread(target=self._run, name="prediction-log", daemon=True)
        self._thread.start()

    def _ensure_writer(self) -> bool:
        """Start a new writer thread if the last one died; ``False`` when none is running."""
        thread = self._thread
        if thread is not None and thread.is_alive():
            return True
        if self._stop.is_set() or thread is None:
            return thread is not None
        with self._start_lock:
            if self._thread is not None and not self._thread.is_alive() and not self._stop.is_set():
                try:
                    self._start_writer()
                except RuntimeError:  # the interpreter cannot start threads (shutting down, out of resources)
                    log.exception("prediction log: cannot restart the writer thread")
                    return False
                self.restarts += 1
                self._problem("restarted", f"writer thread restarted ({self.restarts} time(s))")
                log.error("prediction log: the writer thread had died; started a new one (restart %d)",
                          self.restarts)
        return self._thread is not None and self._thread.is_alive()

    def _run(self) -> None:
        while not self._stop.is_set():
            self._wake.wait(self.config.flush_seconds)
            self._wake.clear()
            try:
                self.flush()
            except Exception:  # noqa: BLE001 - the writer must outlive any one flush; its rows are kept (see _flush)
                log.exception("prediction log: flush failed; the writer goes on")

    def flush(self) -> int:
        """Write everything buffered now (one file per day); returns rows written."""
        with self._write_lock:
            return self._flush()

    def _flush(self) -> int:
        with self._lock:
            rows, self._rows = self._rows, []
            aside, self._aside = self._aside, []
        if aside:
            self._keep_aside(aside, count=False)
        if not rows:
            return 0
        unwritten = rows  # given back to the buffer if this flush is interrupted
        try:
            by_day, bad = self._encode(rows)
            if bad:
                self._keep_aside(bad, count=True)
            unwritten = [r for _, day_rows in by_day.values() for r in day_rows]
            written = 0
            for ds in sorted(by_day):
                data, day_rows = by_day[ds]
                path = self._write_day(ds, data)
                if path is None:
                    self._requeue(day_rows)
                else:
                    written += len(day_rows)
                unwritten = unwritten[len(day_rows):]
        except BaseException:
            self._requeue(unwritten)
            raise
        self._count("written", written)
        return written

    def _requeue(self, rows: list[Row]) -> None:
        with self._lock:
            room = self.config.max_buffer_rows - len(self._rows)
            keep = rows[: max(room, 0)]
            self._rows = keep + self._rows
        if len(keep) < len(rows):
            self._dropped(len(rows) - len(keep), "the buffer is full while writes fail")

    def _write_day(self, ds: date, data: bytes) -> str | None:
        self._seq += 1
        stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S%f")
        path = posixpath.join(self.lake.partition_path(Zone.PREDICTIONS, ds),
                              f"part-{stamp}-{os.getpid()}-{self._seq:06d}.parquet")
        try:
            self.lake.write_bytes(path, data)
        except Exception as exc:  # noqa: BLE001 - any store error (OSError, an object store's client error): retry later
            log.exception("prediction log: writing %s failed; keeping its rows for the next flush", path)
            self._problem("write_failed", f"writing {path} failed: {type(exc).__name__}: {exc}")
            return None
        self.files.append(path)
        log.debug("prediction log: %s written", path)
        return path

    # -- encoding -------------------------------------------------------------------------------
    def _encode(self, rows: list[Row]) -> tuple[dict[date, tuple[bytes, list[Row]]], list[tuple[Row, str]]]:
        """Rows → one Parquet file per event day, and the rows that cannot be encoded with the reason."""
        bad: list[tuple[Row, str]] = []
        by_day: dict[date, list[Row]] = {}
        ts_at = len(self.columns) - 1
        for row in rows:
            try:
                by_day.setdefault(row[ts_at].astimezone(UTC).date(), []).append(row)
            except (AttributeError, TypeError, ValueError, OverflowError) as exc:
                bad.append((row, f"timestamp {row[ts_at]!r}: {type(exc).__name__}: {exc}"))
        out: dict[date, tuple[bytes, list[Row]]] = {}
        for ds, day_rows in by_day.items():
            if self._schema is None:
                bad.extend(self._find_schema(day_rows))
                day_rows = [r for r in day_rows if not any(r is b for b, _ in bad)]
                if self._schema is None:
                    continue
            try:
                table = self._table(day_rows)
            except Exception:  # noqa: BLE001 - some row cannot be encoded: find it, keep it aside, write the rest
                table, day_rows, refused = self._table_row_by_row(day_rows)
                bad.extend(refused)
            if day_rows:
                out[ds] = (self._parquet(table), day_rows)
        return out, bad

    def _find_schema(self, rows: list[Row]) -> list[tuple[Row, str]]:
        """Take the Parquet schema (pandas metadata included) from the first row :func:`_typed` accepts."""
        import pandas as pd
        import pyarrow as pa

        refused: list[Any] = []
        for row in rows:
            try:
                sample = _typed(pd.DataFrame.from_records([row], columns=self.columns), self.spec)
                self._schema = pa.Schema.from_pandas(sample, preserve_index=False)
                return refused
            except Exception as exc:  # noqa: BLE001 - this row does not type; the next may
                refused.append((row, f"{type(exc).__name__}: {exc}"))
        return refused

    def _table(self, rows: list[Row]) -> Any:
        """One Arrow table of ``rows``, built column by column.

        This runs beside the request path in the same process: every millisecond it holds the
        GIL can delay a request by up to the interpreter's switch interval (5 ms), so it avoids
        pandas (a DataFrame plus per-column ``astype`` held the GIL for tens of milliseconds per
        flush, measured as a 30-60 ms stall of the event loop every ``flush_seconds``) and yields
        the GIL between columns. Values Arrow will not take as-is fall back to the pandas typing
        of :func:`_typed` for that flush (a string in a float column becomes a null).
        """
        import pyarrow as pa

        arrays = []
        try:
            for column, fld in zip(zip(*rows, strict=True), self._schema, strict=True):
                arrays.append(pa.array(column, type=fld.type))
                time.sleep(0)  # let the event loop thread have the GIL now, not at the next switch interval
            return pa.Table.from_arrays(arrays, schema=self._schema)
        except (pa.ArrowInvalid, pa.ArrowTypeError, OverflowError) as exc:
            import pandas as pd

            log.debug("prediction log: Arrow refused a value (%s); typing this flush with pandas", exc)
            return pa.Table.from_pandas(_typed(pd.DataFrame.from_records(rows, columns=self.columns), self.spec),
                                        schema=self._schema, preserve_index=False, safe=False)

    def _table_row_by_row(self, rows: list[Row]) -> tuple[Any, list[Row], list[tuple[Row, str]]]:
        """The slow path, only after a flush failed to encode: each row on its own."""
        import pyarrow as pa

        tables, good, refused = [], [], []
        for row in rows:
            try:
                tables.append(self._table([row]))
                good.append(row)
            except Exception as exc:  # noqa: BLE001 - the reason goes into the rejected file
                refused.append((row, f"{type(exc).__name__}: {exc}"))
        table = pa.concat_tables(tables) if tables else None
        return table, good, refused

    @staticmethod
    def _parquet(table: Any) -> bytes:
        import pyarrow as pa
        import pyarrow.parquet as pq

        buf = pa.BufferOutputStream()
        pq.write_table(table, buf)
        return buf.getvalue().to_pybytes()

    # -- rejected rows --------------------------------------------------------------------------
    def _keep_aside(self, bad: list[tuple[Row, str]], count: bool) -> None:
        """Write rejected rows with their reason to ``predictions/_rejected/``; kept in memory if that fails."""
        if count:
            self._count("rejected", len(bad))
            log.error("prediction log: %d row(s) cannot be encoded, kept aside (first: %s)", len(bad), bad[0][1])
        now = datetime.now(UTC)
        lines = [json.dumps({"reason": reason, "rejected_at": now.isoformat(),
                             "row": dict(zip(self.columns, row, strict=True))}, default=str)
                 for row, reason in bad]
        self._seq += 1
        path = posixpath.join(self.lake.zone_path(Zone.PREDICTIONS), REJECTED_DIR, f"ds={now.date().isoformat()}",
                              f"rejected-{now:%Y%m%dT%H%M%S%f}-{os.getpid()}-{self._seq:06d}.jsonl")
        try:
            self.lake.write_bytes(path, ("\n".join(lines) + "\n").encode())
        except Exception as exc:  # noqa: BLE001 - keep them for the next flush, like rows whose write failed
            log.exception("prediction log: writing rejected rows to %s failed; keeping them for the next flush", path)
            self._problem("write_failed", f"writing {path} failed: {type(exc).__name__}: {exc}")
            with self._lock:
                room = self.config.max_buffer_rows - len(self._aside)
                self._aside = bad[: max(room, 0)] + self._aside
            if room < len(bad):
                self._dropped(len(bad) - max(room, 0), "rejected rows cannot be kept aside")
            return
        self.rejected_files.append(path)

    def close(self, timeout: float = 30.0) -> None:
        """Stop the writer and flush what is left (called on service shutdown)."""
        if self._thread is None:
            return
        self._stop.set()
        self._wake.set()
        self._thread.join(timeout)
        deadline = time.monotonic() + timeout
        while self.flush() and time.monotonic() < deadline:
            pass
        with self._lock:
            left = len(self._rows) + len(self._aside)
            self._rows, self._aside = [], []
        if left:
            self._dropped(left, "the service stopped while writes were failing")
        log.info("prediction log closed: %d rows written in %d file(s), %d rejected, %d dropped", self.written,
                 len(self.files), self.rejected, self.dropped)
        self._thread = None
