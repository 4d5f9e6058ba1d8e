"""Draft a dataset spec from a CSV or Parquet file: ``ai-factory spec infer``.

One streaming pass over a sample of the file (the first ``sample_rows`` rows; the whole file
when it is smaller) profiles every column with Arrow compute: its type, nulls, min and max,
and its distinct values up to a cap. From the profile it proposes, column by column:

* **dtype** — Arrow's type: integers → ``int``, floats → ``float``, booleans → ``bool``,
  strings with at most ``category_cap`` distinct values → ``category`` (every value listed).
* **high-cardinality strings** (more distinct values than the cap: names, free text, raw keys)
  are not enumerated: they go under ``ignore:`` with a comment, so the data keeps them and
  the model does not see them. Dates and times, and columns that are always null, go there too.
* **ranges** — the observed min and max widened by ``margin`` of the span on each side (never
  below 0 when no negative value was seen), rounded outward to 3 significant digits of the span,
  so a normal day does not fail on a new extreme while a unit change still does.
* **nullability** — nullable exactly when the sample holds a null.
* **task** (when not given) — a string or boolean target is classification (binary with 2
  values, multiclass with more); an integer target (or a float one holding only whole numbers)
  with at most ``max_classes`` distinct values is classification; anything else is regression.
* **classes** — the target's values as they appear in the file (strings stay quoted strings);
  for a binary target the rarer class is the positive one.

The result is commented YAML saying why each choice was made; it loads with
:func:`ai_factory.spec.load_spec` (checked before anything is written).
"""

from __future__ import annotations

import logging
import math
import re
import textwrap
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import yaml

from ai_factory.data.tabular import scan
from ai_factory.fsutil import atomic_write_text
from ai_factory.spec import DatasetSpec, SpecError, TaskType, parse_spec

log = logging.getLogger(__name__)

DEFAULT_SAMPLE_ROWS = 1_000_000
DEFAULT_CATEGORY_CAP = 50
DEFAULT_MAX_CLASSES = 20
DEFAULT_MARGIN = 0.10
_NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
# Distinct values kept per column while profiling: enough for any category list or class set.
_DISTINCT_LIMIT = 1000


class InferError(ValueError):
    """The file or the options cannot give a spec; the message names the column and the fix."""


@dataclass
class ColumnProfile:
    name: str
    arrow_type: pa.DataType
    rows: int = 0
    nulls: int = 0
    min: float | None = None
    max: float | None = None
    # Distinct non-null values with their counts, until there are more than _DISTINCT_LIMIT.
    values: Counter[Any] | None = field(default_factory=Counter)
    integral: bool = True

    @property
    def kind(self) -> str:
        t = self.arrow_type
        if pa.types.is_boolean(t):
            return "bool"
        if pa.types.is_integer(t):
            return "int"
        if pa.types.is_floating(t) or pa.types.is_decimal(t):
            return "float"
        if pa.types.is_string(t) or pa.types.is_large_string(t) or pa.types.is_dictionary(t):
            return "string"
        if pa.types.is_temporal(t):
            return "temporal"
        if pa.types.is_null(t):
            return "null"
        return "other"

    @property
    def distinct(self) -> int | None:
        return None if self.values is None else len(self.values)

    def add(self, arr: pa.ChunkedArray | pa.Array) -> None:
        self.rows += len(arr)
        self.nulls += arr.null_count
        kind = self.kind
        if kind in ("int", "float") and arr.null_count < len(arr):
            mm = pc.min_max(arr)
            lo, hi = mm["min"].as_py(), mm["max"].as_py()
            self.min = lo if self.min is None else min(self.min, lo)
            self.max = hi if self.max is None else max(self.max, hi)
            if kind == "float" and self.integral:
                finite = pc.drop_null(arr)
                self.integral = bool(pc.all(pc.equal(finite, pc.floor(finite))).as_py() is not False)
        if self.values is not None and kind in ("bool", "int", "float", "string"):
            counts = pc.value_counts(arr)
            if len(counts) > _DISTINCT_LIMIT + 1:  # (+1: null counts as a value here) too many to list
                self.values = None
                return
            for v, n in zip(counts.field("values").to_pylist(), counts.field("counts").to_pylist(), strict=True):
                if v is not None:
                    self.values[v] += n
            if len(self.values) > _DISTINCT_LIMIT:
                self.values = None


@dataclass
class Profile:
    source: str
    rows: int
    columns: dict[str, ColumnProfile]
    truncated: bool


def profile_file(url: str, sample_rows: int = DEFAULT_SAMPLE_ROWS) -> Profile:
    """Profile the first ``sample_rows`` rows of a CSV or Parquet file (local path or fsspec URL)."""

    def consume(batches: Iterator[pa.RecordBatch]) -> Profile:
        cols: dict[str, ColumnProfile] = {}
        rows = 0
        for batch in batches:
            if not cols:
                cols = {n: ColumnProfile(n, batch.schema.field(n).type) for n in batch.schema.names}
            for name, arr in zip(batch.schema.names, batch.columns, strict=True):
                cols[name].add(arr)
            rows += batch.num_rows
        return Profile(source=url, rows=rows, columns=cols, truncated=rows >= sample_rows)

    prof = scan(url, consume, max_rows=sample_rows)
    if not prof.columns or prof.rows == 0:
        raise InferError(f"{url}: the file holds no rows to infer a spec from")
    return prof


# -- proposing ------------------------------------------------------------------------------
def _fmt_num(v: float) -> str:
    return f"{v:.6g}"


def _widen_range(lo: float, hi: float, margin: float, integral: bool) -> tuple[float, float]:
    span = hi - lo
    pad = margin * span if span > 0 else max(abs(hi) * margin, 1.0)
    new_lo, new_hi = lo - pad, hi + pad
    if lo >= 0:
        new_lo = max(new_lo, 0.0)
    # Round outward to 3 significant digits of the padded span: readable bounds, never tighter.
    step = 10.0 ** (math.floor(math.log10(new_hi - new_lo)) - 2) if new_hi > new_lo else 1.0
    if integral:
        step = max(step, 1.0)
    new_lo = math.floor(new_lo / step) * step
    new_hi = math.ceil(new_hi / step) * step
    if integral:
        return float(int(new_lo)), float(int(new_hi))
    return float(_fmt_num(new_lo)), float(_fmt_num(new_hi))


def _plain(v: Any) -> Any:
    """Numbers as ints where whole, so YAML shows ``18`` rather than ``18.0``."""
    if isinstance(v, float) and v.is_integer():
        return int(v)
    return v


def _flow(d: dict[str, Any]) -> str:
    return yaml.safe_dump(d, default_flow_style=True, sort_keys=False, width=10**9, allow_unicode=True).strip()


def _scalar(v: Any) -> str:
    """One YAML scalar, quoted where YAML would otherwise read it as something else (``"No"``)."""
    return yaml.safe_dump([v], default_flow_style=True, width=10**9, allow_unicode=True).strip()[1:-1]


def _null_note(p: ColumnProfile) -> str:
    if p.nulls:
        return f"{p.nulls} null(s) in {p.rows} rows, so nullable"
    return f"no nulls in {p.rows} rows"


def _infer_task(p: ColumnProfile, max_classes: int) -> tuple[TaskType, str]:
    kind, distinct = p.kind, p.distinct
    if kind in ("string", "bool"):
        if distinct == 2:
            return TaskType.BINARY, f"a {kind} target with 2 distinct values"
        return TaskType.MULTICLASS, f"a {kind} target with {distinct if distinct is not None else 'many'} distinct values"
    if kind in ("int", "float") and p.integral and distinct is not None and distinct <= max_classes:
        what = "an integer" if kind == "int" else "a whole-number float"
        task = TaskType.BINARY if distinct == 2 else TaskType.MULTICLASS
        return task, f"{what} target with {distinct} distinct values (at most {max_classes} means classes)"
    if kind in ("int", "float"):
        many = "more than " + str(_DISTINCT_LIMIT) if distinct is None else str(distinct)
        why = "non-whole values" if not p.integral else f"{many} distinct values (over {max_classes})"
        return TaskType.REGRESSION, f"a numeric target with {why}"
    raise InferError(f"{p.name}: the target column is {p.arrow_type}, which no task can use; "
                     f"pick a numeric, string or boolean column as --target")


def _target(p: ColumnProfile, task: TaskType | None, max_classes: int, source: str) -> tuple[dict[str, Any], str]:
    if task is None:
        task, why = _infer_task(p, max_classes)
        why = f"task {task.value}, inferred: {why} (pass --task to choose)"
    else:
        why = f"task {task.value}, as given by --task"
    out: dict[str, Any] = {"name": p.name, "task": task.value}
    if p.nulls:
        why += f"; {p.nulls} row(s) have no target: a day holding one is quarantined, drop them upstream"
    if task == TaskType.REGRESSION:
        if p.kind not in ("int", "float"):
            raise InferError(f"{source}: --task regression needs a numeric target, but '{p.name}' is {p.arrow_type}; "
                             f"use --task binary or multiclass")
        return out, why
    if p.values is None or len(p.values) > max(max_classes, 2) * 50:
        raise InferError(f"{source}: target '{p.name}' has too many distinct values for {task.value} classes; "
                         f"use --task regression or another --target")
    n = len(p.values)
    if task == TaskType.BINARY and n != 2:
        raise InferError(f"{source}: --task binary needs 2 target values, but '{p.name}' has {n} "
                         f"({', '.join(map(str, sorted(p.values, key=str)[:5]))}{'…' if n > 5 else ''}); "
                         f"use --task multiclass or regression")
    if n < 2:
        raise InferError(f"{source}: target '{p.name}' holds a single value in {p.rows} rows; nothing to learn")
    if p.kind == "bool":
        # A boolean column's labels are written 0/1: YAML booleans are refused where labels are meant.
        counts: Counter[Any] = Counter({int(k): v for k, v in p.values.items()})
        why += "; a boolean column: classes written as 0 (false) and 1 (true)"
    elif p.kind == "float":
        counts = Counter({int(k): v for k, v in p.values.items()})
    else:
        counts = Counter(p.values)
    classes = sorted(counts, key=lambda c: (isinstance(c, str), c))
    out["classes"] = classes
    shares = ", ".join(f"{c}: {counts[c] / p.rows:.1%}" for c in classes[:10])
    why += f"; classes as they appear in the file ({shares}{', …' if len(classes) > 10 else ''})"
    if task == TaskType.BINARY:
        positive = min(classes, key=lambda c: (counts[c], str(c)))
        out["positive_class"] = positive
        why += f"; positive_class {positive!r} is the rarer one (change it if the other is the event you predict)"
    return out, why


@dataclass
class Proposal:
    """The proposed spec plus the why of each choice (rendered as YAML comments)."""

    raw: dict[str, Any]
    ignore_notes: dict[str, str]
    feature_notes: dict[str, str]
    target_note: str
    rows: int
    truncated: bool


def propose(prof: Profile, target: str, *, task: TaskType | None = None, name: str | None = None,
            id_column: str | None = None, time_column: str | None = None, ignore: Sequence[str] = (),
            category_cap: int = DEFAULT_CATEGORY_CAP, max_classes: int = DEFAULT_MAX_CLASSES,
            margin: float = DEFAULT_MARGIN) -> Proposal:
    """A spec (as a raw mapping) from a profile, with the reason for every column."""
    src = prof.source
    given = {"--target": [target], "--id": [id_column] if id_column else [], "--time": [time_column] if time_column else [],
             "--ignore": list(ignore)}
    for flag, cols in given.items():
        missing = [c for c in cols if c not in prof.columns]
        if missing:
            raise InferError(f"{src}: {flag} names column(s) {', '.join(missing)} that the file does not have "
                             f"(it has: {', '.join(list(prof.columns)[:40])}{', …' if len(prof.columns) > 40 else ''})")
    named = [target, *given["--id"], *given["--time"], *ignore]
    twice = sorted({c for c in named if named.count(c) > 1})
    if twice:
        raise InferError(f"{src}: column(s) {', '.join(twice)} given to more than one of --target/--id/--time/--ignore")

    t_raw, t_note = _target(prof.columns[target], task, max_classes, src)
    features: list[dict[str, Any]] = []
    feature_notes: dict[str, str] = {}
    ignored: dict[str, str] = {c: "as given by --ignore" for c in ignore}
    bad_names: list[str] = []
    for col, p in prof.columns.items():
        if col in named:
            continue
        kind = p.kind
        if kind == "null" or p.nulls == p.rows:
            ignored[col] = f"every value is null in {p.rows} rows: nothing to learn from"
            continue
        if kind == "temporal":
            ignored[col] = f"a {p.arrow_type} column: dates are not modelled (pass --time {col} if it is the row's time)"
            continue
        if kind == "other":
            ignored[col] = f"a {p.arrow_type} column: no spec dtype holds it"
            continue
        if kind == "string" and (p.distinct is None or p.distinct > category_cap):
            many = f"more than {_DISTINCT_LIMIT}" if p.distinct is None else str(p.distinct)
            looks = " (every value unique: an id? pass --id)" if p.distinct == p.rows - p.nulls else ""
            ignored[col] = (f"a string with {many} distinct values, over the category cap of {category_cap}: "
                            f"not enumerated, kept in the lake but not modelled{looks}. To model it, bin it "
                            f"upstream or list it as a category feature with its values")
            continue
        if not _NAME_RE.match(col):
            bad_names.append(col)
            continue
        feat: dict[str, Any] = {"name": col}
        if kind == "bool":
            feat["dtype"] = "bool"
            note = f"bool: {_null_note(p)}"
        elif kind == "string":
            cats = sorted(p.values or {}, key=str)
            feat["dtype"] = "category"
            feat["categories"] = [str(c) for c in cats]
            top = ", ".join(f"{c}: {(p.values or {})[c] / p.rows:.1%}" for c in cats[:6])
            note = (f"category: {len(cats)} distinct strings (cap {category_cap}), all listed "
                    f"({top}{', …' if len(cats) > 6 else ''}); {_null_note(p)}")
        else:
            integral = kind == "int"
            feat["dtype"] = "int" if integral else "float"
            assert p.min is not None and p.max is not None
            lo, hi = _widen_range(float(p.min), float(p.max), margin, integral)
            feat["min"], feat["max"] = _plain(lo), _plain(hi)
            floor = " (not below 0: no negative value seen)" if p.min >= 0 and lo == 0 else ""
            note = (f"{feat['dtype']}: observed {_fmt_num(p.min)}..{_fmt_num(p.max)}, widened by {margin:.0%} "
                    f"of the span{floor}; {_null_note(p)}")
        if p.nulls:
            feat["nullable"] = True
        features.append(feat)
        feature_notes[col] = note
    if bad_names:
        raise InferError(f"{src}: column name(s) {', '.join(repr(c) for c in bad_names)} cannot be feature names "
                         f"(letters, digits and _ only, not starting with a digit): rename them in the export, "
                         f"or pass --ignore for each to keep them unmodelled")
    if not features:
        raise InferError(f"{src}: no column is left to model after the target, id, time and ignored columns")

    raw: dict[str, Any] = {
        "name": name or _dataset_name(src),
        "description": f"Drafted by ai-factory spec infer from {Path(src).name}.",
        "version": 1,
        "partition": {"key": "ds", "frequency": "daily"},
        "target": t_raw,
    }
    if id_column:
        raw["id_column"] = id_column
    if time_column:
        raw["time_column"] = time_column
    if ignored:
        raw["ignore"] = list(ignored)
    raw["quality"] = {"min_rows": 1}
    raw["features"] = features
    return Proposal(raw=raw, ignore_notes=ignored, feature_notes=feature_notes, target_note=t_note,
                    rows=prof.rows, truncated=prof.truncated)


def _dataset_name(url: str) -> str:
    stem = Path(url.rstrip("/")).name.split(".")[0].lower()
    name = re.sub(r"[^a-z0-9_]+", "_", stem).strip("_")
    if not name or not name[0].isalpha():
        name = f"dataset_{name}".rstrip("_")
    return name


# -- rendering ----------------------------------------------------------------------------
def _comment(text: str, indent: str = "") -> list[str]:
    return textwrap.wrap(text, width=110, initial_indent=f"{indent}# ", subsequent_indent=f"{indent}#   ",
                         break_on_hyphens=False)


def render(p: Proposal, command: str) -> str:
    """The proposal as commented YAML (loads with :func:`ai_factory.spec.load_spec`)."""
    raw = p.raw
    sample = f"the first {p.rows} rows" if p.truncated else f"all {p.rows} rows"
    lines = [
        f"# Drafted by `{command}` from {sample} of the file.",
        "# Review it before the first day lands: it is the contract every day is validated against.",
        "# Worth a person's look: descriptions, `key: true` on the features whose drift alone should",
        "# trigger retraining, ranges tighter than the sample's, and quality.min_rows (the fewest rows",
        "# a normal day holds). A feature without `nullable: true` quarantines a day holding a null:",
        "# add it where nulls are legitimate but the sample had none.",
        f"name: {_scalar(raw['name'])}",
        f"description: {_scalar(raw['description'])}",
        "version: 1",
        f"partition: {_flow(raw['partition'])}",
        *_comment(p.target_note),
        f"target: {_flow(raw['target'])}",
    ]
    if "id_column" in raw:
        lines += ["# id_column: unique and non-null in every day; kept in the lake, never modelled (as given by --id)",
                  f"id_column: {_scalar(raw['id_column'])}"]
    if "time_column" in raw:
        lines += ["# time_column: the row's time; kept in the lake, never modelled (as given by --time);",
                  "# `ai-factory data land FILE --by <it>` splits a file into days by it",
                  f"time_column: {_scalar(raw['time_column'])}"]
    if raw.get("ignore"):
        lines.append("# ignore: allowed in the data and kept in the lake, never modelled, served or drift-checked")
        lines.append("ignore:")
        for col in raw["ignore"]:
            lines += _comment(f"{col}: {p.ignore_notes[col]}", indent="  ")
            lines.append(f"  - {_scalar(col)}")
    lines += ["quality:", "  min_rows: 1  # raise to the fewest rows a normal day holds", "features:"]
    for feat in raw["features"]:
        lines += _comment(f"{feat['name']}: {p.feature_notes[feat['name']]}", indent="  ")
        lines.append(f"  - {_flow(feat)}")
    return "\n".join(lines) + "\n"


def infer_spec(url: str, target: str, *, sample_rows: int = DEFAULT_SAMPLE_ROWS, command: str = "ai-factory spec infer",
               **options: Any) -> tuple[str, DatasetSpec]:
    """Profile ``url`` and return (commented YAML, the spec it loads as)."""
    prof = profile_file(url, sample_rows)
    if target not in prof.columns:
        raise InferError(f"{url}: --target {target!r} is not a column of the file "
                         f"(it has: {', '.join(list(prof.columns)[:40])}{', …' if len(prof.columns) > 40 else ''})")
    proposal = propose(prof, target, **options)
    text = render(proposal, command)
    try:
        spec = parse_spec(yaml.safe_load(text), source="<inferred spec>")
    except SpecError as exc:  # a bug here, not the user's mistake: say so
        raise RuntimeError(f"spec infer produced a spec that does not load: {exc}") from exc
    log.info("%s: %d columns profiled over %d rows: %d features, %d ignored, task %s",
             url, len(prof.columns), prof.rows, len(spec.features), len(spec.ignore), spec.target.task.value)
    return text, spec


def write_spec(text: str, out: Path, force: bool = False) -> Path:
    """Write the spec file (refusing to overwrite a person's edits unless ``force``)."""
    if out.exists() and not force:
        raise InferError(f"{out}: already exists; pass --force to overwrite it, or -o another path")
    atomic_write_text(out, text)
    return out
