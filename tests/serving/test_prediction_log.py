"""The prediction log's files: what the drift monitor reads, typed per spec, whatever the flush path."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import pandas as pd
import pytest

from ai_factory.data.generate import generate_day
from ai_factory.deployment.smoke import frame_to_records
from ai_factory.serving.prediction_log import SERVING_COLUMNS, LogConfig, PredictionLogger, _typed
from ai_factory.spec import default_spec
from ai_factory.storage import DataLake, Zone

SPEC = default_spec()
MANUAL = LogConfig(flush_rows=10**9, flush_seconds=3600)  # flushes only when the test says so


@pytest.fixture
def lake(tmp_path):
    return DataLake(str(tmp_path / "lake"))


def _records(n: int, seed: int = 0) -> list[dict]:
    return frame_to_records(SPEC, generate_day(date(2026, 3, 1), n, seed))


def _expected(records, predictions, probabilities, version, when) -> pd.DataFrame:
    """What the pandas writer produced before (and what the monitor was built against)."""
    rows = [(*(r.get(n) for n in SPEC.feature_names), p, pr, version, when)
            for r, p, pr in zip(records, predictions, probabilities, strict=True)]
    return _typed(pd.DataFrame.from_records(rows, columns=[*SPEC.feature_names, *SERVING_COLUMNS]), SPEC)


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
