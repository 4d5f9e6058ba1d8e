"""Read a user's CSV or Parquet export (local path or any fsspec URL) as Arrow record batches.

Shared by ``spec infer`` (which streams a sample) and ``data land`` (which reads the whole
file). CSV types are inferred by Arrow from the first block; when a later block disagrees
(an integer column that turns out to hold ``1.5`` further down), the column is widened
(int → float → string) and the read restarts, so a big file never fails on its 10-millionth row.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import IO, TypeVar

import fsspec
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

log = logging.getLogger(__name__)

CSV_SUFFIXES = (".csv", ".tsv", ".txt")
PARQUET_SUFFIXES = (".parquet", ".pq", ".parq")
_BLOCK_BYTES = 16 << 20
_CSV_COLUMN_RE = re.compile(r"column #(\d+)")
T = TypeVar("T")


class TabularFileError(ValueError):
    """The file cannot be read as a CSV or Parquet table; the message names the file and the fix."""


def file_format(url: str) -> str:
    lower = url.lower()
    if lower.endswith(CSV_SUFFIXES):
        return "csv"
    if lower.endswith(PARQUET_SUFFIXES):
        return "parquet"
    raise TabularFileError(
        f"{url}: unknown file type; name it *.csv or *.parquet (compressed CSVs: decompress first)"
    )


@contextmanager
def _open(url: str) -> Iterator[IO[bytes]]:
    try:
        with fsspec.open(url, "rb") as fh:
            yield fh
    except FileNotFoundError:
        raise TabularFileError(f"{url}: no such file") from None


def _widen(t: pa.DataType) -> pa.DataType:
    if pa.types.is_integer(t):
        return pa.float64()
    return pa.string()


def scan(url: str, consume: Callable[[Iterator[pa.RecordBatch]], T], max_rows: int | None = None) -> T:
    """``consume(batches)`` over the file's rows (the first ``max_rows``, or all), returning its result.

    ``consume`` must start from scratch each time it is called: when a CSV column needs a wider
    type than its first block suggested, the read restarts with the column widened.
    """
    fmt = file_format(url)
    if fmt == "parquet":
        return consume(_parquet_batches(url, max_rows))
    overrides: dict[str, pa.DataType] = {}
    for _attempt in range(256):
        try:
            return consume(_csv_batches(url, max_rows, overrides))
        except _Retype as retype:
            overrides[retype.column] = retype.to
            log.info("%s: column %r holds values beyond its first block's type; reading it as %s",
                     url, retype.column, retype.to)
    raise TabularFileError(f"{url}: column types kept changing while reading; export it as Parquet")


class _Retype(Exception):  # noqa: N818 - control flow, never leaves this module
    def __init__(self, column: str, to: pa.DataType) -> None:
        self.column, self.to = column, to


def _csv_batches(url: str, max_rows: int | None, overrides: dict[str, pa.DataType]) -> Iterator[pa.RecordBatch]:
    delimiter = "\t" if url.lower().endswith(".tsv") else ","
    seen = 0
    with _open(url) as fh:
        try:
            reader = pacsv.open_csv(
                fh,
                read_options=pacsv.ReadOptions(block_size=_BLOCK_BYTES),
                parse_options=pacsv.ParseOptions(delimiter=delimiter),
                convert_options=pacsv.ConvertOptions(column_types=overrides, strings_can_be_null=True),
            )
        except pa.ArrowInvalid as exc:
            raise TabularFileError(f"{url}: not a readable CSV file ({exc})") from None
        schema = reader.schema
        while True:
            try:
                batch = reader.read_next_batch()
            except StopIteration:
                return
            except pa.ArrowInvalid as exc:
                m = _CSV_COLUMN_RE.search(str(exc))
                if not m:
                    raise TabularFileError(f"{url}: not a readable CSV file ({exc})") from None
                field = schema.field(int(m.group(1)))
                raise _Retype(field.name, _widen(field.type)) from None
            if max_rows is not None and seen + batch.num_rows >= max_rows:
                yield batch.slice(0, max_rows - seen)
                return
            seen += batch.num_rows
            yield batch


def _parquet_batches(url: str, max_rows: int | None) -> Iterator[pa.RecordBatch]:
    seen = 0
    with _open(url) as fh:
        try:
            pf = pq.ParquetFile(fh)
        except (pa.ArrowException, OSError) as exc:
            raise TabularFileError(f"{url}: not a readable Parquet file ({exc})") from None
        for batch in pf.iter_batches(batch_size=131_072):
            if max_rows is not None and seen + batch.num_rows >= max_rows:
                yield batch.slice(0, max_rows - seen)
                return
            seen += batch.num_rows
            yield batch


def read_table(url: str) -> pa.Table:
    """The whole file as one Arrow table (types settled over every row).

    CSV goes through Arrow's multithreaded whole-file reader (about twice the streaming
    reader's speed); the same widening applies when a later block disagrees with the first.
    """
    if file_format(url) == "parquet":
        table = scan(url, _collect)
    else:
        table = _read_csv(url)
    if table.num_rows == 0:
        raise TabularFileError(f"{url}: the file holds no rows")
    return table


def _read_csv(url: str) -> pa.Table:
    delimiter = "\t" if url.lower().endswith(".tsv") else ","
    overrides: dict[str, pa.DataType] = {}
    for _attempt in range(256):
        with _open(url) as fh:
            try:
                return pacsv.read_csv(
                    fh,
                    read_options=pacsv.ReadOptions(block_size=_BLOCK_BYTES),
                    parse_options=pacsv.ParseOptions(delimiter=delimiter),
                    convert_options=pacsv.ConvertOptions(column_types=overrides, strings_can_be_null=True),
                )
            except pa.ArrowInvalid as exc:
                m = _CSV_COLUMN_RE.search(str(exc))
                if not m:
                    raise TabularFileError(f"{url}: not a readable CSV file ({exc})") from None
                header = _csv_header(url, delimiter)
                name = header[int(m.group(1))]
                current = overrides.get(name)
                overrides[name] = pa.string() if current is not None or "to double" in str(exc) else pa.float64()
                log.info("%s: column %r holds values beyond its first block's type; reading it as %s",
                         url, name, overrides[name])
    raise TabularFileError(f"{url}: column types kept changing while reading; export it as Parquet")


def _csv_header(url: str, delimiter: str) -> list[str]:
    with _open(url) as fh:
        reader = pacsv.open_csv(fh, parse_options=pacsv.ParseOptions(delimiter=delimiter))
        return list(reader.schema.names)


def _collect(batches: Iterator[pa.RecordBatch]) -> pa.Table:
    got = list(batches)
    return pa.Table.from_batches(got) if got else pa.table({})
