"""``ai-factory drift …``: run, plan and inspect drift checks from a shell (registered in cli_extensions)."""

from __future__ import annotations

import argparse
from typing import Any

from ai_factory.cliutil import emit as _emit
from ai_factory.cliutil import iso_date as _date


def _context(args: argparse.Namespace) -> tuple[Any, Any, Any, Any]:
    from ai_factory.monitoring.assembly import resolve_provider
    from ai_factory.monitoring.config import load_config
    from ai_factory.spec import default_spec
    from ai_factory.storage import DataLake

    spec = default_spec()
    config = load_config(args.config).check_against(spec)
    return DataLake.from_settings(), spec, config, resolve_provider(config.reference.provider)


def cmd_check(args: argparse.Namespace) -> int:
    from ai_factory.monitoring.monitor import run_drift_check

    lake, spec, config, provider = _context(args)
    check = run_drift_check(args.ds, lake=lake, spec=spec, config=config, provider=provider)
    _emit({**check.summary.xcom(check.partition_url), "seconds": {k: round(v, 3) for k, v in check.seconds.items()}})
    return 0


def cmd_plan(args: argparse.Namespace) -> int:
    from ai_factory.monitoring.assembly import plan_inputs

    lake, spec, config, provider = _context(args)
    _emit(plan_inputs(lake, args.ds, spec, config, provider).model_dump(mode="json"))
    return 0


def cmd_show(args: argparse.Namespace) -> int:
    from ai_factory.monitoring.summary import SUMMARY_FILE
    from ai_factory.storage import DataLake, Zone

    lake = DataLake.from_settings()
    path = f"{lake.partition_path(Zone.REPORTS_DRIFT, args.ds)}/{SUMMARY_FILE}"
    if not lake.exists(path):
        raise SystemExit(f"no drift summary for ds={args.ds} at {path}; run `ai-factory drift check --ds {args.ds}`")
    _emit(lake.read_json(path))
    return 0


def cmd_schema(args: argparse.Namespace) -> int:
    from ai_factory.monitoring.summary import DriftSummary

    _emit(DriftSummary.model_json_schema())
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("drift", help="drift monitoring (Evidently)")
    dsub = p.add_subparsers(dest="drift_cmd", required=True)
    for name, func, text in (
        ("check", cmd_check, "check one day: write reports/drift/ds=… and print the decision"),
        ("plan", cmd_plan, "show which current data and reference a day would be checked with"),
    ):
        c = dsub.add_parser(name, help=text)
        c.add_argument("--ds", type=_date, required=True)
        c.add_argument("--config", help="drift config YAML (default: AI_FACTORY_DRIFT_CONFIG)")
        c.set_defaults(func=func)
    s = dsub.add_parser("show", help="print a day's summary.json")
    s.add_argument("--ds", type=_date, required=True)
    s.set_defaults(func=cmd_show)
    j = dsub.add_parser("schema", help="print the JSON Schema of summary.json")
    j.set_defaults(func=cmd_schema)
