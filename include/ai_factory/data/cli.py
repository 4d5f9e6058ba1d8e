"""``ai-factory spec infer`` and ``ai-factory data land``: onboarding a dataset of one's own.

Imports of pyarrow and the spec machinery stay inside the commands (``ai-factory --help`` is instant).
"""

from __future__ import annotations

import argparse
import shlex
import sys
from pathlib import Path
from typing import Any

from ai_factory.cliutil import emit as _emit
from ai_factory.cliutil import iso_date as _date
from ai_factory.cliutil import positive_int as _positive


def cmd_spec_infer(args: argparse.Namespace) -> int:
    from ai_factory.data.infer import infer_spec, write_spec
    from ai_factory.spec import TaskType

    flags = [("--task", args.task), ("--name", args.name), ("--id", args.id), ("--time", args.time)]
    words = [Path(args.file).name, "--target", args.target, *(w for f, v in flags if v for w in (f, v))]
    if args.ignore:
        words += ["--ignore", *args.ignore]
    options: dict[str, Any] = {}
    if args.sample_rows:
        options["sample_rows"] = args.sample_rows
    if args.category_cap:
        options["category_cap"] = args.category_cap
    text, spec = infer_spec(
        args.file, args.target, command="ai-factory spec infer " + " ".join(shlex.quote(w) for w in words),
        task=TaskType(args.task) if args.task else None, name=args.name, id_column=args.id,
        time_column=args.time, ignore=args.ignore or (), **options,
    )
    if args.output == "-":
        sys.stdout.write(text)
        return 0
    out = write_spec(text, Path(args.output), force=args.force)
    _emit({"spec": str(out), "name": spec.name, "task": spec.target.task.value, "features": len(spec.features),
           "ignore": list(spec.ignore), "classes": list(spec.target.classes or []) or None})
    return 0


def register_spec(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("spec", help="dataset spec: draft one from a file")
    ssub = p.add_subparsers(dest="spec_cmd", required=True)
    i = ssub.add_parser("infer", help="draft a commented dataset spec from a CSV or Parquet file",
                        description="Profile a sample of FILE (local path or fsspec URL) and write a commented "
                                    "spec that says why it chose each dtype, range, category list and class.")
    i.add_argument("file", metavar="FILE", help="a .csv or .parquet file (local path or fsspec URL)")
    i.add_argument("--target", required=True, help="the column to predict")
    i.add_argument("--task", choices=["binary", "multiclass", "regression"],
                   help="default: inferred (strings/booleans: classes; whole numbers with at most 20 values: "
                        "classes; else regression)")
    i.add_argument("--name", help="dataset name (default: from the file name)")
    i.add_argument("--id", help="the row id column: unique, kept, never modelled")
    i.add_argument("--time", help="the row time column: kept, never modelled (data land --by can split by it)")
    i.add_argument("--ignore", nargs="+", metavar="COL", action="extend",
                   help="columns kept in the lake but never modelled (leakage, free text, …)")
    i.add_argument("--sample-rows", type=_positive, help="profile the first N rows (default 1000000)")
    i.add_argument("--category-cap", type=_positive,
                   help="strings with more distinct values go under ignore, not enumerated (default 50)")
    i.add_argument("-o", "--output", required=True, metavar="SPEC", help="spec file to write ('-': stdout)")
    i.add_argument("--force", action="store_true", help="overwrite SPEC if it exists")
    i.set_defaults(func=cmd_spec_infer)


def cmd_data_land(args: argparse.Namespace) -> int:
    from ai_factory.data.land import land, summary
    from ai_factory.settings import get_settings
    from ai_factory.spec import load_spec
    from ai_factory.storage import DataLake

    spec_path = args.spec or str(get_settings().spec_path)
    spec = load_spec(spec_path)
    lake = DataLake(args.root or get_settings().data_root)
    results = land(args.file, spec, lake, ds=args.ds, by=args.by, replace=args.replace, spec_source=spec_path)
    _emit({"dataset": spec.name, **summary(results)})
    return 0


def register_land(dsub: argparse._SubParsersAction) -> None:
    land = dsub.add_parser("land", help="put a CSV or Parquet export into landing/ds=… partitions",
                           description="Check FILE's columns against the spec and land it as Parquet under "
                                       "landing/ds=…, one day (--ds) or one per date of a column (--by). Same file "
                                       "again: no change. A different file for a landed day: refused unless "
                                       "--replace (the old bytes are kept aside).")
    land.add_argument("file", metavar="FILE", help="a .csv or .parquet file (local path or fsspec URL)")
    land.add_argument("--spec", help="dataset spec (default: AI_FACTORY_SPEC)")
    day = land.add_mutually_exclusive_group(required=True)
    day.add_argument("--ds", type=_date, help="land the whole file as this day")
    day.add_argument("--by", metavar="COL", help="land each row in the day of this date/timestamp column")
    land.add_argument("--replace", action="store_true",
                      help="land over a day that holds a different file (its bytes are kept aside)")
    land.add_argument("--root", help="data root (default: AI_FACTORY_DATA_ROOT)")
    land.set_defaults(func=cmd_data_land)
