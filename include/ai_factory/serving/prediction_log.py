"""Served records → ``predictions/ds=YYYY-MM-DD/*.parquet`` for drift monitoring, off the request path.

The request path only appends rows to an in-memory buffer (a lock-protected list append, a
few microseconds); a daemon thread flushes the buffer to one Parquet file per flush and per
day, written atomically (temporary name, then rename) by :class:`~ai_factory.storage.DataLake`,
so the drift monitor never reads half a file. A flush happens when ``flush_rows`` rows are
waiting or ``flush_seconds`` have passed, and on :meth:`PredictionLogger.close` (the service's
shutdown hook), so a clean stop loses nothing.

If the writer falls behind (the store is slow or down), the buffer is capped at
``max_buffer_rows``: further rows are dropped and counted (``dropped``), never blocking a
request. A failed write is logged with the path and the rows are kept for the next flush
until the cap is hit.

File contract (what ``ai_factory.monitoring`` reads): the spec's feature columns, then
``prediction``, ``probability`` (binary: P(positive class)), ``model_version`` and
``timestamp`` (UTC). Files are named ``part-<utc time>-<pid>-<seq>.parquet`` so several
workers and restarts never collide.
"""

from __future__ import annotations

import logging
import os
import posixpath
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Any

from ai_factory.spec import DatasetSpec
from ai_factory.storage import DataLake, Zone

log = logging.getLogger(__name__)

SERVING_COLUMNS = ("prediction", "probability", "model_version", "timestamp")


@dataclass(frozen=True)
class LogConfig:
    enabled: bool = True
    flush_rows: int = 5000
    flush_seconds: float = 10.0
    max_buffer_rows: int = 200_000


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
        self._rows: list[tuple[Any, ...]] = []
        self._lock = threading.Lock()
        self._write_lock = threading.Lock()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._seq = 0
        self.dropped = 0
        self.written = 0
        self.files: list[str] = []
        self._schema: Any = None  # pyarrow.Schema, from the first flush
        self._thread: threading.Thread | None = None
        if config.enabled:
            self._warm_up()
            self._thread = threading.Thread(target=self._run, name="prediction-log", daemon=True)
            self._thread.start()

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
        with self._lock:
            room = self.config.max_buffer_rows - len(self._rows)
            if room < len(rows):
                self.dropped += len(rows) - max(room, 0)
                rows = rows[: max(room, 0)]
            self._rows.extend(rows)
            pending = len(self._rows)
        if pending >= self.config.flush_rows:
            self._wake.set()

    # -- writer ---------------------------------------------------------------------------------
    def _run(self) -> None:
        while not self._stop.is_set():
            self._wake.wait(self.config.flush_seconds)
            self._wake.clear()
            self.flush()

    def flush(self) -> int:
        """Write everything buffered now (one file per day); returns rows written."""
        with self._write_lock:
            return self._flush()

    def _flush(self) -> int:
        with self._lock:
            rows, self._rows = self._rows, []
        if not rows:
            return 0
        try:
            written = self._write(rows)
        except OSError:
            log.exception("prediction log: writing %d rows under %s failed; keeping them for the next flush",
                          len(rows), self.lake.zone_path(Zone.PREDICTIONS))
            with self._lock:
                room = self.config.max_buffer_rows - len(self._rows)
                keep = rows[: max(room, 0)]
                self.dropped += len(rows) - len(keep)
                self._rows = keep + self._rows
            return 0
        self.written += written
        return written

    def _write(self, rows: list[tuple[Any, ...]]) -> int:
        by_day: dict[date, list[tuple[Any, ...]]] = {}
        ts_at = len(self.columns) - 1
        for row in rows:
            by_day.setdefault(row[ts_at].astimezone(UTC).date(), []).append(row)
        for ds in sorted(by_day):
            self._seq += 1
            stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S%f")
            path = posixpath.join(self.lake.partition_path(Zone.PREDICTIONS, ds),
                                  f"part-{stamp}-{os.getpid()}-{self._seq:06d}.parquet")
            self.lake.write_bytes(path, self._parquet(by_day[ds]))
            self.files.append(path)
            log.debug("prediction log: %d rows -> %s", len(by_day[ds]), path)
        return len(rows)

    def _parquet(self, rows: list[tuple[Any, ...]]) -> bytes:
        """One Parquet file of ``rows``, built column by column with Arrow.

        This runs beside the request path in the same process: every millisecond it holds the
        GIL can delay a request by up to the interpreter's switch interval (5 ms), so it avoids
        pandas (a DataFrame plus per-column ``astype`` held the GIL for tens of milliseconds per
        flush, measured as a 30-60 ms stall of the event loop every ``flush_seconds``) and yields
        the GIL between columns. The schema (pandas metadata included, so readers get the same
        dtypes as before) comes from :func:`_typed` on the first flush; values Arrow will not take
        as-is fall back to the pandas path for that flush.
        """
        import pyarrow as pa
        import pyarrow.parquet as pq

        if self._schema is None:
            import pandas as pd

            sample = _typed(pd.DataFrame.from_records(rows[:1], columns=self.columns), self.spec)
            self._schema = pa.Schema.from_pandas(sample, preserve_index=False)
        arrays = []
        try:
            for column, fld in zip(zip(*rows, strict=True), self._schema, strict=True):
                arrays.append(pa.array(column, type=fld.type))
                time.sleep(0)  # let the event loop thread have the GIL now, not at the next switch interval
            table = pa.Table.from_arrays(arrays, schema=self._schema)
        except (pa.ArrowInvalid, pa.ArrowTypeError, OverflowError) as exc:
            import pandas as pd

            log.debug("prediction log: Arrow refused a value (%s); typing this flush with pandas", exc)
            table = pa.Table.from_pandas(_typed(pd.DataFrame.from_records(rows, columns=self.columns), self.spec),
                                         schema=self._schema, preserve_index=False, safe=False)
        buf = pa.BufferOutputStream()
        pq.write_table(table, buf)
        return buf.getvalue().to_pybytes()

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
        log.info("prediction log closed: %d rows written in %d file(s), %d dropped", self.written,
                 len(self.files), self.dropped)
        self._thread = None
