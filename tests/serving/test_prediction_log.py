"""The prediction log's files: what the drift monitor reads, typed per spec, whatever the flush path."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import pandas as pd
import pytest

from ai_factory.data.generate import generate_day
from ai_factory.deployment.smoke import frame_to_records
from ai_factory.serving.prediction_log import LogConfig, PredictionLogger
from ai_factory.spec import default_spec
from ai_factory.storage import DataLake, Zone

SPEC = default_spec()
MANUAL = LogConfig(flush_rows=10**9, flush_seconds=3600)  # flushes only when the test says so


@pytest.fixture
def lake(tmp_path):
    return DataLake(str(tmp_path / "lake"))


def _records(n: int, seed: int = 0) -> list[dict]:
    return frame_to_records(SPEC, generate_day(date(2026, 3, 1), n, seed))


# The schema the drift monitor reads, written out by hand from specs/credit_default.yaml (not derived by
# the module's own typing): ints stay int64 (nullable ones Int64), floats float64, categories string.
EXPECTED_DTYPES = {
    "age": "int64", "annual_income": "float64", "loan_amount": "float64", "loan_term_months": "int64",
    "interest_rate": "float64", "credit_score": "int64", "debt_to_income": "float64", "num_open_accounts": "int64",
    "num_delinquencies_2y": "int64", "credit_utilization": "float64", "months_employed": "Int64",
    "savings_balance": "float64", "num_dependents": "int64", "previous_loans": "int64", "late_payments_12m": "int64",
    "employment_type": "string", "home_ownership": "string", "loan_purpose": "string", "region": "string",
    "education": "string", "has_cosigner": "bool",
    "prediction": "int64", "probability": "float64", "model_version": "string", "timestamp": "datetime64[ns, UTC]",
}


def _expected(records, predictions, probabilities, version, when) -> pd.DataFrame:
    """The served records as they went in, cast to the literal schema above."""
    rows = [{**r, "prediction": p, "probability": pr, "model_version": version, "timestamp": when}
            for r, p, pr in zip(records, predictions, probabilities, strict=True)]
    frame = pd.DataFrame.from_records(rows, columns=list(EXPECTED_DTYPES))
    return frame.astype({c: d for c, d in EXPECTED_DTYPES.items() if c != "timestamp"}).assign(
        timestamp=pd.to_datetime(frame["timestamp"], utc=True))


def test_rows_land_in_their_event_day_typed_like_the_pandas_writer(lake):
    records = _records(50)
    records[0] = {**records[0], **{f.name: None for f in SPEC.features if f.nullable}}
    day1 = datetime(2026, 4, 7, 23, 59, 59, tzinfo=UTC)
    day2 = day1 + timedelta(seconds=2)
    preds, probs = [i % 2 for i in range(50)], [i / 50 for i in range(50)]
    logger = PredictionLogger(lake, SPEC, MANUAL)
    try:
        logger.log(records[:30], preds[:30], probs[:30], "v1", day1)
        logger.log(records[30:], preds[30:], probs[30:], "v1", day2)
        assert logger.flush() == 50
    finally:
        logger.close()
    assert lake.partitions(Zone.PREDICTIONS) == [date(2026, 4, 7), date(2026, 4, 8)]
    first = lake.read_partition(Zone.PREDICTIONS, date(2026, 4, 7))
    pd.testing.assert_frame_equal(first, _expected(records[:30], preds[:30], probs[:30], "v1", day1))
    second = lake.read_partition(Zone.PREDICTIONS, date(2026, 4, 8))
    pd.testing.assert_frame_equal(second, _expected(records[30:], preds[30:], probs[30:], "v1", day2))
    assert first.iloc[0][[f.name for f in SPEC.features if f.nullable]].isna().all()


def test_files_of_one_day_share_one_schema_across_flushes(lake):
    records = _records(20, seed=3)
    when = datetime(2026, 4, 7, 12, tzinfo=UTC)
    logger = PredictionLogger(lake, SPEC, MANUAL)
    try:
        for chunk in (records[:1], records[1:]):  # the schema comes from the first flush's first row
            logger.log(chunk, [1] * len(chunk), [0.9] * len(chunk), "v2", when)
            logger.flush()
    finally:
        logger.close()
    assert len(logger.files) == 2
    import pyarrow.parquet as pq

    schemas = {str(pq.read_schema(lake.fs.open(p, "rb"))) for p in logger.files}
    assert len(schemas) == 1
    assert len(lake.read_partition(Zone.PREDICTIONS, date(2026, 4, 7))) == 20


def test_values_arrow_refuses_fall_back_to_the_pandas_typing(lake):
    records = _records(3)
    float_col = next(f.name for f in SPEC.features if f.dtype.value == "float")
    when = datetime(2026, 4, 7, 12, tzinfo=UTC)
    logger = PredictionLogger(lake, SPEC, MANUAL)
    try:
        logger.log(records[:1], [0], [0.1], "v1", when)
        logger.flush()
        logger.log([{**records[1], float_col: "not a number"}, records[2]], [1, 0], [0.8, 0.3], "v1", when)
        assert logger.flush() == 2
    finally:
        logger.close()
    logged = lake.read_partition(Zone.PREDICTIONS, date(2026, 4, 7))
    assert len(logged) == 3 and pd.isna(logged[float_col].iloc[1]) and logged[float_col].dtype == "float64"


def test_a_naive_timestamp_is_utc(lake):
    logger = PredictionLogger(lake, SPEC, MANUAL)
    try:
        logger.log(_records(1), [1], [0.7], "v1", datetime(2026, 4, 7, 23, 30))
        logger.flush()
    finally:
        logger.close()
    logged = lake.read_partition(Zone.PREDICTIONS, date(2026, 4, 7))
    assert logged["timestamp"].iloc[0] == pd.Timestamp("2026-04-07T23:30:00Z")


def test_a_full_buffer_drops_and_counts_rather_than_block(lake):
    logger = PredictionLogger(lake, SPEC, LogConfig(flush_rows=10**9, flush_seconds=3600, max_buffer_rows=5))
    try:
        logger.log(_records(8), [0] * 8, [0.5] * 8, "v1", datetime(2026, 4, 7, tzinfo=UTC))
        assert logger.dropped == 3
    finally:
        logger.close()
    assert logger.written == 5


def test_a_failed_write_keeps_the_rows_for_the_next_flush(lake, monkeypatch):
    logger = PredictionLogger(lake, SPEC, MANUAL)
    real = lake.write_bytes
    calls = []

    def flaky(path, data):
        calls.append(path)
        if len(calls) == 1:
            raise OSError("disk full")
        return real(path, data)

    monkeypatch.setattr(lake, "write_bytes", flaky)
    try:
        logger.log(_records(4), [0] * 4, [0.5] * 4, "v1", datetime(2026, 4, 7, tzinfo=UTC))
        assert logger.flush() == 0 and logger.written == 0
        assert logger.flush() == 4
    finally:
        logger.close()
    assert len(lake.read_partition(Zone.PREDICTIONS, date(2026, 4, 7))) == 4 and logger.dropped == 0


def test_the_background_writer_flushes_on_its_own_and_close_loses_nothing(lake):
    logger = PredictionLogger(lake, SPEC, LogConfig(flush_rows=10, flush_seconds=3600))
    records = _records(25)
    when = datetime(2026, 4, 7, tzinfo=UTC)
    logger.log(records[:12], [0] * 12, [0.5] * 12, "v1", when)  # over flush_rows: wakes the writer
    deadline = datetime.now(UTC) + timedelta(seconds=20)
    while logger.written < 12 and datetime.now(UTC) < deadline:
        import time

        time.sleep(0.05)
    assert logger.written == 12
    logger.log(records[12:], [0] * 13, [0.5] * 13, "v1", when)
    logger.close()
    assert len(lake.read_partition(Zone.PREDICTIONS, date(2026, 4, 7))) == 25


def _rejected_lines(lake: DataLake) -> list[dict]:
    import json
    from pathlib import Path

    base = Path(lake.zone_path(Zone.PREDICTIONS)) / "_rejected"
    return [json.loads(line) for f in sorted(base.rglob("*.jsonl")) for line in f.read_text().splitlines()]


@pytest.mark.parametrize("first", [True, False], ids=["bad-row-first", "bad-row-later"])
def test_an_unencodable_timestamp_is_kept_aside_and_the_writer_lives_on(lake, first):
    """The probe: ``X-Event-Time: 0001-01-01`` killed the writer thread (OutOfBoundsDatetime), losing its buffer."""
    records = _records(6)
    good = datetime(2026, 4, 7, 12, tzinfo=UTC)
    ancient = datetime(1, 1, 1, tzinfo=UTC)
    logger = PredictionLogger(lake, SPEC, LogConfig(flush_rows=4, flush_seconds=0.2))
    counts: list[tuple[str, int]] = []
    logger.on_count(lambda kind, n: counts.append((kind, n)))
    try:
        if not first:
            logger.log(records[:2], [0, 1], [0.1, 0.9], "v1", good)
            logger.flush()
        logger.log(records[2:3], [1], [0.7], "v1", ancient)
        logger.log(records[3:], [0, 0, 1], [0.2, 0.3, 0.8], "v1", good)
        logger.flush()
        assert logger._thread is not None and logger._thread.is_alive()
        logger.log(records[:1], [1], [0.6], "v1", good)  # served after the bad row: still written
    finally:
        logger.close()
    kept = 4 if first else 6
    assert logger.written == kept and logger.rejected == 1 and logger.dropped == 0
    assert len(lake.read_partition(Zone.PREDICTIONS, date(2026, 4, 7))) == kept
    [aside] = _rejected_lines(lake)
    assert aside["row"]["timestamp"].startswith("0001-01-01") and aside["row"]["age"] == records[2]["age"]
    assert "out of bounds" in aside["reason"].lower() or "OutOfBounds" in aside["reason"]
    assert ("rejected", 1) in counts and sum(n for k, n in counts if k == "written") == kept
    assert lake.partitions(Zone.PREDICTIONS) == [date(2026, 4, 7)]  # the side folder is no partition


def test_a_value_no_encoder_takes_is_kept_aside_with_its_reason(lake):
    records = _records(4)
    int_col = next(f.name for f in SPEC.features if f.dtype.value == "int" and not f.nullable)
    when = datetime(2026, 4, 7, 12, tzinfo=UTC)
    logger = PredictionLogger(lake, SPEC, MANUAL)
    try:
        logger.log(records[:1], [0], [0.1], "v1", when)
        logger.flush()
        logger.log([records[1], {**records[2], int_col: "forty"}, records[3]], [1, 0, 1], [0.8, 0.3, 0.6], "v1", when)
        assert logger.flush() == 2
    finally:
        logger.close()
    assert len(lake.read_partition(Zone.PREDICTIONS, date(2026, 4, 7))) == 3
    [aside] = _rejected_lines(lake)
    assert aside["row"][int_col] == "forty" and aside["reason"]
    assert (logger.written, logger.rejected, logger.dropped) == (3, 1, 0)


def test_a_dead_writer_thread_is_restarted_and_loses_nothing(lake, caplog):
    class Killed(BaseException):
        """Something a flush does not survive (the writer's loop catches every Exception)."""

    logger = PredictionLogger(lake, SPEC, LogConfig(flush_rows=1, flush_seconds=0.1))
    real = logger._encode
    calls = []

    def dying(rows):
        calls.append(len(rows))
        if len(calls) == 1:
            raise Killed
        return real(rows)

    logger._encode = dying  # type: ignore[method-assign]
    when = datetime(2026, 4, 7, 12, tzinfo=UTC)
    records = _records(5)
    import threading
    import time

    hook, threading.excepthook = threading.excepthook, lambda args: None  # the thread's death is the point
    try:
        logger.log(records[:2], [0, 1], [0.1, 0.9], "v1", when)
        deadline = time.monotonic() + 10
        while logger._thread.is_alive() and time.monotonic() < deadline:
            time.sleep(0.02)
        assert not logger._thread.is_alive()
        assert logger.health()[0] == "degraded"  # /readyz restarts it too, and says so
        logger.log(records[2:], [0, 0, 1], [0.2, 0.3, 0.8], "v1", when)
        assert logger._thread.is_alive() and logger.restarts == 1
    finally:
        threading.excepthook = hook
        logger.close()
    assert "restarted" in logger.health()[1] or logger.restarts == 1
    assert "started a new one" in caplog.text
    assert logger.written == 5 and logger.dropped == 0
    assert len(lake.read_partition(Zone.PREDICTIONS, date(2026, 4, 7))) == 5


def test_health_reports_dropping_and_failing_writes(lake, monkeypatch):
    logger = PredictionLogger(lake, SPEC, LogConfig(flush_rows=10**9, flush_seconds=3600, max_buffer_rows=4))
    try:
        assert logger.health() == ("ok", "")
        logger.log(_records(3), [0] * 3, [0.5] * 3, "v1", datetime(2026, 4, 7, tzinfo=UTC))
        state, reason = logger.health()
        assert state == "degraded" and "behind" in reason  # 3 of 4 buffer rows
        monkeypatch.setattr(lake, "write_bytes", lambda path, data: (_ for _ in ()).throw(OSError("disk full")))
        assert logger.flush() == 0
        logger.log(_records(3), [0] * 3, [0.5] * 3, "v1", datetime(2026, 4, 7, tzinfo=UTC))
        state, reason = logger.health()
        assert state == "degraded" and "disk full" in reason and "dropped" in reason
    finally:
        monkeypatch.undo()
        logger.close()
    assert logger.dropped == 2 and logger.written == 4  # nothing unaccounted: 6 served = 4 written + 2 dropped
