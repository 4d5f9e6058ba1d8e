"""Put a CSV or Parquet export into ``landing/ds=…`` partitions: ``ai-factory data land``.

The file (a local path or any fsspec URL) is checked against the spec's columns, split into
days (``--ds D`` for the whole file, or ``--by COL`` for the date of each row), and each day
is written as ``landing/ds=D/part-0.parquet`` through :class:`~ai_factory.storage.DataLake`'s
atomic partition write. The column check is the only judgement made here: types, nulls,
ranges and categories are the quality gate's to judge, so a bad day is quarantined with its
report rather than refused at the door.

* **Idempotent**: landing the same file again changes nothing (the day's Parquet bytes are
  compared with what landing, validated or quarantine already holds for that day).
* **No silent overwrite**: a day that already holds different bytes is refused, for every day
  of the file, before anything is written, unless ``replace=True``.
* **Nothing deleted**: with ``replace=True`` the old bytes are moved aside first, to the lake's
  archive when the lake has one, else to ``landing/_superseded/ds=D/<sha256[:12]>/`` with a
  ``_reason.json`` (the same convention as ``quarantine/_superseded``). Readers skip ``_`` names.
"""

from __future__ import annotations

import hashlib
import io
import logging
import posixpath
from dataclasses import asdict, dataclass
from datetime import UTC, date, datetime

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from ai_factory.data.tabular import read_table
from ai_factory.spec import DatasetSpec, DType, TaskType
from ai_factory.storage import DataLake, Zone, as_date

log = logging.getLogger(__name__)

PART_NAME = "part-0.parquet"
SUPERSEDED = "_superseded"
REASON_FILE = "_reason.json"
# Zones that hold a landed day's bytes as they were landed (the quality gate moves them on).
_HOLDERS = (Zone.LANDING, Zone.VALIDATED, Zone.QUARANTINE)


class LandError(ValueError):
    """The file does not fit the spec or would overwrite another landed file; the message says the fix."""


@dataclass(frozen=True)
class Landed:
    ds: str
    rows: int
    status: str  # landed | unchanged | replaced
    path: str
    sha256: str
    superseded: list[str]


def check_columns(names: list[str], spec: DatasetSpec, source: str, spec_source: str) -> None:
    """Refuse a file whose columns are not the spec's, naming the columns and the fix."""
    have = set(names)
    missing = [c for c in spec.landing_columns if c not in have]
    extra = [c for c in names if c not in set(spec.landing_columns)]
    problems = []
    if extra:
        problems.append(f"column(s) {', '.join(extra)} are not in the spec: list them under `ignore:` in {spec_source} "
                        f"(kept in the lake, never modelled) or drop them from the export")
    if missing:
        problems.append(f"missing column(s) {', '.join(missing)} that {spec_source} declares: add them to the export "
                        f"or take them out of the spec")
    if problems:
        raise LandError(f"{source}: " + "; ".join(problems))


def _as_spec_types(table: pa.Table, spec: DatasetSpec) -> pa.Table:
    """Give CSV's untyped text the spec's string columns: category codes like ``1`` stay labels."""
    string_cols = {f.name for f in spec.features if f.dtype == DType.CATEGORY}
    if spec.target.task != TaskType.REGRESSION and any(isinstance(c, str) for c in spec.target.classes or ()):
        string_cols.add(spec.target.name)
    for name in string_cols:
        col = table.column(name)
        if not (pa.types.is_string(col.type) or pa.types.is_large_string(col.type) or pa.types.is_dictionary(col.type)):
            table = table.set_column(table.schema.get_field_index(name), name, pc.cast(col, pa.string()))
    return table


def _days(table: pa.Table, by: str, source: str) -> pa.Array:
    col = table.column(by)
    if col.null_count:
        raise LandError(f"{source}: --by column '{by}' has {col.null_count} empty value(s): every row needs a date "
                        f"to land in a day; fill or drop them, or land the file with --ds")
    try:
        if pa.types.is_string(col.type) or pa.types.is_large_string(col.type):
            col = pc.cast(col, pa.timestamp("us"))
        if pa.types.is_timestamp(col.type) and col.type.tz is not None:
            col = pc.cast(col, pa.timestamp(col.type.unit))  # the day as written, not shifted to UTC
        return pc.cast(col, pa.date32())
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        raise LandError(f"{source}: --by column '{by}' ({col.type}) does not hold dates "
                        f"(YYYY-MM-DD or ISO timestamps); choose a date column or land with --ds") from None


def _parquet_bytes(table: pa.Table) -> bytes:
    buf = io.BytesIO()
    pq.write_table(table, buf, compression="snappy")
    return buf.getvalue()


def split_days(table: pa.Table, *, ds: date | None, by: str | None, source: str) -> dict[date, pa.Table]:
    if (ds is None) == (by is None):
        raise LandError(f"{source}: give exactly one of --ds DATE (the whole file is one day) or --by COLUMN")
    if ds is not None:
        return {as_date(ds): table}
    assert by is not None
    if by not in table.column_names:
        raise LandError(f"{source}: --by column '{by}' is not in the file")
    days = _days(table, by, source)
    out = {}
    for day in sorted(pc.unique(days).to_pylist()):
        out[day] = table.filter(pc.equal(days, pa.scalar(day, pa.date32())))
    return out


def _held(lake: DataLake, day: date) -> dict[Zone, dict[str, bytes]]:
    return {z: files for z in _HOLDERS if (files := lake.read_partition_files(z, day))}


def _set_aside(lake: DataLake, zone: Zone, day: date, files: dict[str, bytes], reason: str, move: bool) -> str:
    """Keep ``files`` out of the way before new bytes take their day; returns where they went."""
    archive = getattr(lake, "archive_partition", None)
    if move and archive is not None:
        # The lake's archive (archive/<zone>/ds=…/<id>/ with _reason.json) where this lake has one.
        entry = archive(zone, day, reason=reason)
        if entry is not None:
            return str(entry.path)
    digest = hashlib.sha256(b"".join(files[k] for k in sorted(files))).hexdigest()[:12]
    base = posixpath.join(lake.zone_path(Zone.LANDING), SUPERSEDED, f"ds={day.isoformat()}", f"{zone.value}-{digest}")
    for name, data in files.items():
        lake.write_bytes(posixpath.join(base, name), data)
    lake.write_json(posixpath.join(base, REASON_FILE), {
        "ds": day.isoformat(), "zone": zone.value, "reason": reason, "files": sorted(files),
        "set_aside_at": datetime.now(UTC).isoformat(),
    })
    if move:
        lake.remove_partition(zone, day, reason=reason)
    log.warning("ds=%s: kept the %s bytes it held under %s (%s)", day, zone.value, base, reason)
    return base


def land(source: str, spec: DatasetSpec, lake: DataLake, *, ds: date | None = None, by: str | None = None,
         replace: bool = False, spec_source: str = "the spec") -> list[Landed]:
    """Land ``source`` into ``landing/ds=…`` (see the module docstring for the guarantees)."""
    return land_table(read_table(source), source, spec, lake, ds=ds, by=by, replace=replace, spec_source=spec_source)


def land_table(table: pa.Table, source: str, spec: DatasetSpec, lake: DataLake, *, ds: date | None = None,
               by: str | None = None, replace: bool = False, spec_source: str = "the spec") -> list[Landed]:
    """Land an Arrow table read from ``source`` (a file, a query: named in messages and reasons)."""
    check_columns(table.column_names, spec, source, spec_source)
    table = _as_spec_types(table, spec).select(spec.landing_columns)
    days = split_days(table, ds=ds, by=by, source=source)
    planned = {day: {PART_NAME: _parquet_bytes(t)} for day, t in days.items()}

    conflicts = []
    held_by_day = {}
    for day, files in planned.items():
        held = _held(lake, day)
        held_by_day[day] = held
        if held and not any(h == files for h in held.values()):
            conflicts.append(f"{day} ({', '.join(z.value for z in held)})")
    if conflicts and not replace:
        raise LandError(
            f"{source}: a different file is already landed for {len(conflicts)} day(s): {', '.join(conflicts[:5])}"
            f"{' …' if len(conflicts) > 5 else ''}; pass --replace to land this one instead (the old bytes are "
            f"kept aside, not deleted)"
        )

    out = []
    for day, files in planned.items():
        digest = hashlib.sha256(files[PART_NAME]).hexdigest()
        table_rows = days[day].num_rows
        held = held_by_day[day]
        path = lake.partition_path(Zone.LANDING, day)
        if any(h == files for h in held.values()):
            zone = next(z for z, h in held.items() if h == files)
            log.info("ds=%s: %s already holds these %d rows; nothing to do", day, zone.value, table_rows)
            out.append(Landed(day.isoformat(), table_rows, "unchanged", lake.url(lake.partition_path(zone, day)),
                              digest, []))
            continue
        aside = []
        reason = f"replaced by `ai-factory data land --replace` of {source}"
        for zone, old in held.items():
            # Landing's old bytes are moved; validated/quarantine keep theirs until the quality gate
            # judges the new file, but a copy is kept here because that gate's own overwrite may not.
            aside.append(_set_aside(lake, zone, day, old, reason, move=zone == Zone.LANDING))
        lake.replace_partition(Zone.LANDING, day, files)
        log.info("ds=%s: landed %d rows at %s", day, table_rows, path)
        out.append(Landed(day.isoformat(), table_rows, "replaced" if held else "landed", lake.url(path), digest, aside))
    return out


def summary(results: list[Landed]) -> dict[str, object]:
    return {
        "days": [asdict(r) for r in results],
        "landed": sum(r.status != "unchanged" for r in results),
        "unchanged": sum(r.status == "unchanged" for r in results),
        "rows": sum(r.rows for r in results),
    }
