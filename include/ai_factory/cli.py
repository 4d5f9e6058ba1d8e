"""The ``ai-factory`` command line (also the training container's command).

Each area registers its own sub-commands; heavy libraries are imported only inside the
command that needs them, so ``ai-factory --help`` stays instant.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import os
import sys
from collections.abc import Callable, Sequence
from datetime import date, timedelta
from pathlib import Path
from typing import Any

from ai_factory.cliutil import emit as _emit
from ai_factory.cliutil import iso_date as _date
from ai_factory.data.cli import register_land, register_spec

log = logging.getLogger("ai_factory")

EXIT_USER_ERROR = 2
# A user's mistake (bad spec, bad flag, bad file) is one line and exit 2; anything else is a bug
# and keeps its traceback. Named by module so that checking one costs no import: an exception
# can only be an instance of a class whose module is already loaded.
USER_ERRORS = (
    "ai_factory.spec:SpecError",
    "ai_factory.settings:SettingsError",
    "ai_factory.data.tabular:TabularFileError",
    "ai_factory.data.infer:InferError",
    "ai_factory.data.land:LandError",
    "ai_factory.quality.reader:UnreadableFileError",
    "ai_factory.quality.validate:PartitionMissingError",
    "ai_factory.quality.validate:SuiteMissingError",
    "ai_factory.quality.project:QualityInitError",
    "ai_factory.quality.context:GXProjectMissingError",
    "ai_factory.monitoring.config:MonitoringConfigError",
    "ai_factory.monitoring.assembly:AssemblyError",
    "ai_factory.serving.config:ServingConfigError",
    "ai_factory.training.config:ConfigError",
    "ai_factory.training.window:WindowError",
    "ai_factory.registry:RegistryError",
)
# Libraries whose INFO lines drown the command's own output (about 210 of 243 lines of one
# `quality validate`); their warnings and errors still show, and -v shows everything.
CHATTY_LIBRARIES = ("great_expectations", "evidently", "bentoml", "numexpr", "urllib3", "fsspec")


# -- data ---------------------------------------------------------------------------
def _corruption_arg(value: str) -> tuple[date, str]:
    from ai_factory.data.generate import Corruption

    if "=" not in value:
        raise argparse.ArgumentTypeError(f"--corrupt takes DATE=KIND, got {value!r}")
    day, kind = value.split("=", 1)
    try:
        Corruption(kind)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"unknown corruption {kind!r}; choose from {', '.join(c.value for c in Corruption)}"
        ) from None
    return _date(day), kind


def cmd_data_generate(args: argparse.Namespace) -> int:
    from ai_factory.data.generate import DriftConfig, DriftKind, date_range, write_day
    from ai_factory.settings import get_settings
    from ai_factory.storage import DataLake

    settings = get_settings()
    lake = DataLake(args.root or settings.data_root)
    end = args.end or date.today()
    start = args.start or (end - timedelta(days=args.days - 1))
    drift = DriftConfig(start=args.drift_start, kind=DriftKind(args.drift_kind), strength=args.drift_strength)
    corruptions = dict(args.corrupt or [])
    written = []
    for day in date_range(start, end):
        path = write_day(lake, day, args.rows or settings.demo_rows_per_day, seed=args.seed, drift=drift,
                         corruption=corruptions.get(day))
        written.append({"ds": day.isoformat(), "path": path, "corruption": corruptions.get(day),
                        "drift": drift.active(day) and drift.kind.value or None})
    _emit({"landed": written})
    return 0


def _lake(args: argparse.Namespace) -> Any:
    from ai_factory.settings import get_settings
    from ai_factory.storage import DataLake

    return DataLake(getattr(args, "root", None) or get_settings().data_root)


def cmd_data_restore(args: argparse.Namespace) -> int:
    from ai_factory.storage import ArchiveDamagedError, ArchiveNotFoundError

    lake = _lake(args)
    try:
        path, entry = lake.restore_partition(args.zone, args.ds, args.archive_id)
    except (ArchiveNotFoundError, ArchiveDamagedError) as exc:
        raise SystemExit(f"ai-factory data restore: {exc}") from None
    _emit({"restored": lake.url(path), "from": entry.id, "archive": lake.url(entry.path),
           "archived_because": entry.reason.get("reason"), "files": sorted(entry.reason.get("files") or {})})
    return 0


def cmd_data_archived(args: argparse.Namespace) -> int:
    lake = _lake(args)
    _emit({"zone": args.zone, "ds": args.ds.isoformat(), "archived": [
        {"id": e.id, "path": lake.url(e.path), **{k: e.reason.get(k) for k in ("reason", "archived_at", "run")},
         "files": sorted(e.reason.get("files") or {})}
        for e in lake.archived(args.zone, args.ds)
    ]})
    return 0


def cmd_data_withdraw(args: argparse.Namespace) -> int:
    lake = _lake(args)
    entry = lake.archive_partition(args.zone, args.ds, reason=f"withdrawn by hand: {args.reason}")
    if entry is None:
        raise SystemExit(f"ai-factory data withdraw: nothing at {lake.partition_path(args.zone, args.ds)}")
    _emit({"withdrawn": lake.url(lake.partition_path(args.zone, args.ds)), "archive": lake.url(entry.path),
           "id": entry.id})
    return 0


def cmd_data_sweep(args: argparse.Namespace) -> int:
    _emit({"removed": _lake(args).sweep_temporaries(older_than_s=args.older_than)})
    return 0


def _zone_arg(value: str) -> str:
    from ai_factory.storage import Zone

    zones = [z.value for z in Zone]
    if value not in zones:
        raise argparse.ArgumentTypeError(f"unknown zone {value!r}; choose from {', '.join(zones)}")
    return value


def _register_data(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("data", help="demo data, the archive (restore, withdraw) and leftovers of killed writes")
    dsub = p.add_subparsers(dest="data_cmd", required=True)
    register_land(dsub)
    g = dsub.add_parser("generate", help="land N days of synthetic credit-default data under landing/ds=…")
    g.add_argument("--start", type=_date, help="first day (default: --days before --end)")
    g.add_argument("--end", type=_date, help="last day (default: today)")
    g.add_argument("--days", type=int, default=7, help="number of days when --start is not given")
    g.add_argument("--rows", type=int, default=0, help="rows per day (default: AI_FACTORY_DEMO_ROWS)")
    g.add_argument("--seed", type=int, default=0)
    g.add_argument("--drift-start", type=_date, default=None)
    g.add_argument("--drift-kind", choices=["none", "covariate", "concept"], default="none")
    g.add_argument("--drift-strength", type=float, default=1.0)
    g.add_argument("--corrupt", type=_corruption_arg, action="append", metavar="DATE=KIND",
                   help="corrupt one day: nulls, out_of_range, unknown_category, missing_column, "
                        "wrong_dtype, empty_file, unreadable_file (repeatable)")
    g.add_argument("--root", help="data root (default: AI_FACTORY_DATA_ROOT)")
    g.set_defaults(func=cmd_data_generate)
    for name, func, text in (
        ("restore", cmd_data_restore, "copy an archived partition back into its zone (the latest unless --from)"),
        ("archived", cmd_data_archived, "list the archived copies of a partition, oldest first"),
        ("withdraw", cmd_data_withdraw, "move a partition out of its zone into the archive (never deleted)"),
    ):
        c = dsub.add_parser(name, help=text)
        c.add_argument("--zone", type=_zone_arg, required=True, help="e.g. validated, quarantine, landing")
        c.add_argument("--ds", type=_date, required=True)
        c.add_argument("--root", help="data root (default: AI_FACTORY_DATA_ROOT)")
        if name == "restore":
            c.add_argument("--from", dest="archive_id", help="archive id (see `ai-factory data archived`)")
        if name == "withdraw":
            c.add_argument("--reason", required=True, help="why (kept in the archive's _reason.json)")
        c.set_defaults(func=func)
    w = dsub.add_parser("sweep", help="remove temporaries left by writes killed mid-way (never published bytes)")
    w.add_argument("--older-than", type=float, default=3600.0, help="seconds (default 3600: a write in progress is safe)")
    w.add_argument("--root", help="data root (default: AI_FACTORY_DATA_ROOT)")
    w.set_defaults(func=cmd_data_sweep)


# -- quality ------------------------------------------------------------------------
def cmd_quality_init(args: argparse.Namespace) -> int:
    from ai_factory.quality.project import init_suite
    from ai_factory.settings import get_settings
    from ai_factory.spec import load_spec

    settings = get_settings()
    spec = load_spec(args.spec or settings.spec_path)
    if args.demo_reference:
        _emit(_init_demo_suite(args, spec, settings))
    else:
        _emit(init_suite(spec, settings, reference_days=args.reference_days))
    return 0


def _init_demo_suite(args: argparse.Namespace, spec: Any, settings: Any) -> dict[str, Any]:
    """The committed demo suite: distributions learned from generated credit-default days (reproducible)."""
    import pandas as pd

    from ai_factory.data.generate import date_range, generate_day
    from ai_factory.quality.project import QualityInitError, init_project

    days = date_range(args.reference_start, args.reference_start + timedelta(days=(args.reference_days or 7) - 1))
    frames = [generate_day(d, args.reference_rows, seed=args.seed) for d in days]
    if set(frames[0].columns) != set(spec.landing_columns):
        raise QualityInitError(
            f"--demo-reference generates the credit-default demo's columns, not those of spec {spec.name!r}; "
            f"drop --demo-reference: the suite then starts from the spec alone and learns from validated days"
        )
    source = {"generated": [d.isoformat() for d in days], "rows_per_day": args.reference_rows, "seed": args.seed}
    names = init_project(spec, pd.concat(frames, ignore_index=True), settings, day_rows=args.reference_rows,
                         source=source)
    return {"gx_root": str(settings.gx_root), **names, "reference_days": source["generated"]}


def cmd_quality_validate(args: argparse.Namespace) -> int:
    from ai_factory.quality.validate import QualityGateFailed, run_quality_gate
    from ai_factory.spec import load_spec

    spec = load_spec(args.spec) if args.spec else None
    try:
        _emit(run_quality_gate(args.ds, spec=spec, spec_source=args.spec))
    except QualityGateFailed as exc:
        _emit(exc.summary)
        log.error("%s", exc)
        return 1
    return 0


def _register_quality(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("quality", help="Great Expectations suite and validation")
    qsub = p.add_subparsers(dest="quality_cmd", required=True)
    i = qsub.add_parser("init", help="(re)create the GX datasource, suite, validation definition and checkpoint: "
                                     "the spec's contract, plus distributions once enough validated days exist")
    i.add_argument("--spec", help="dataset spec (default: AI_FACTORY_SPEC)")
    i.add_argument("--reference-days", type=int, default=None,
                   help="validated days needed to learn distributions; the latest that many are used "
                        "(default: AI_FACTORY_QUALITY_REFERENCE_DAYS)")
    i.add_argument("--demo-reference", action="store_true",
                   help="learn distributions from generated credit-default days (the demo's committed suite)")
    i.add_argument("--reference-start", type=_date, default=date(2026, 1, 1), help="with --demo-reference")
    i.add_argument("--reference-rows", type=int, default=5000, help="with --demo-reference")
    i.add_argument("--seed", type=int, default=0, help="with --demo-reference")
    i.set_defaults(func=cmd_quality_init)
    v = qsub.add_parser("validate", help="validate one day: publish to validated/ or quarantine")
    v.add_argument("--ds", type=_date, required=True)
    v.add_argument("--spec", help="dataset spec (default: AI_FACTORY_SPEC)")
    v.set_defaults(func=cmd_quality_validate)


# -- up / demo ------------------------------------------------------------------------
class StopRequested(BaseException):
    """SIGTERM/SIGINT/SIGHUP reached ``ai-factory up``: unwind and stop everything (as Ctrl-C does)."""


def _stop_on_signals() -> None:
    """Turn SIGTERM, SIGINT and SIGHUP into :class:`StopRequested` in the main thread.

    Without this, SIGTERM (``kill``, systemd, a container stop) and SIGHUP (a closed terminal)
    end the process at once, and the detached stack keeps running with nobody watching it. A
    signal the parent set to ignored stays ignored (``nohup`` ignores SIGHUP, a shell's
    background job SIGINT): SIGTERM always works.
    """
    import signal

    def handler(signum: int, frame: object) -> None:
        for s in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):  # the first one wins; stop in peace
            signal.signal(s, signal.SIG_IGN)
        raise StopRequested(signal.Signals(signum).name)

    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        if sig == signal.SIGTERM or signal.getsignal(sig) is not signal.SIG_IGN:
            signal.signal(sig, handler)


def _watch_serving(serving: Any, backoff: dict[str, float]) -> list[str]:
    """Restart the serving front if it died (it supervises the model backends itself)."""
    import time

    from ai_factory.deployment.local import DeploymentError, pid_alive

    front = serving.read_state().get("front")
    if not front or pid_alive(front.get("pid")) or time.monotonic() < backoff.get("next", 0.0):
        return []
    try:
        new = serving.ensure_front()
    except (DeploymentError, OSError) as exc:
        backoff["delay"] = min(60.0, backoff.get("delay", 0.5) * 2)
        backoff["next"] = time.monotonic() + backoff["delay"]
        return [f"serving front (pid {front.get('pid')}) is gone and did not restart: {exc}; "
                f"next try in {backoff['delay']:.0f}s"]
    backoff.clear()
    return [f"serving front (pid {front.get('pid')}) was gone; restarted (pid {new.get('pid')})"]


def cmd_up(args: argparse.Namespace) -> int:
    """Seed the demo data, run Airflow and the model server, and keep them running until stopped."""
    import time

    from ai_factory.data.generate import date_range, write_day
    from ai_factory.orchestration.local import LocalLayout, local_stack, record_stack
    from ai_factory.orchestration.private import PRIVATE_UMASK, private_dir
    from ai_factory.settings import get_settings
    from ai_factory.storage import DataLake, Zone

    os.umask(PRIVATE_UMASK)  # the metadata DB, secrets, logs and data: readable by this user only
    _stop_on_signals()
    repo = get_settings().home
    layout = LocalLayout(private_dir(Path(args.state_dir or repo / ".local")))
    end = date.today()
    start = end - timedelta(days=args.days - 1)
    # A warm standby server: the model address answers again within a second when a server dies.
    layout.export(start.isoformat(), AI_FACTORY_SERVE_STANDBY=os.environ.get("AI_FACTORY_SERVE_STANDBY") or "true")
    lake = DataLake(str(layout.data_root))
    for day in date_range(start, end):
        if not any(lake.partition_exists(z, day) for z in (Zone.LANDING, Zone.VALIDATED, Zone.QUARANTINE)):
            write_day(lake, day, args.rows)
    stack = local_stack(layout, repo, port=args.port, paused=args.paused)
    from ai_factory.deployment.local import DeploymentError, LocalTarget

    serving = LocalTarget.from_settings()
    record_stack(layout, stack.url, serving.port)
    reason = "stopped"
    try:
        stack.migrate()
        stack.start()
        stack.wait_ready(timeout=300)
        try:  # a champion from an earlier session is served again at once; new ones arrive via the DAGs
            from ai_factory.serving.cli import cmd_serve_ensure

            cmd_serve_ensure(args)
        except (DeploymentError, RuntimeError, OSError) as exc:
            log.error("could not serve the existing champion: %s", exc)
        sys.stderr.write(
            f"\n  AI Factory is running.\n  models:   {serving.url}  (POST /predict once a champion is deployed)"
            f"\n  UI:       {stack.url}\n  login:    {stack.admin_user} / "
            f"{stack.admin_password}\n  data:     {layout.data_root}\n  days:     {start} .. {end} "
            f"(DAG start date {start}; the scheduler runs each complete day)\n  logs:     "
            f"{layout.airflow_home / 'logs'}\n  Ctrl-C (or SIGTERM) stops every process; a component that "
            f"dies is restarted.\n\n"
        )
        sys.stderr.flush()
        backoff: dict[str, float] = {}
        while True:
            for line in [*stack.supervise(), *_watch_serving(serving, backoff)]:
                sys.stderr.write(f"  supervisor: {line}\n")
                sys.stderr.flush()
            time.sleep(1.0)
    except (StopRequested, KeyboardInterrupt) as exc:
        reason = f"{type(exc).__name__} {exc}".strip()
    finally:
        sys.stderr.write(f"stopping Airflow and the model server ({reason})...\n")
        sys.stderr.flush()
        serving.stop_all()
        stack.stop()
        sys.stderr.write("stopped.\n")
    return 0


NO_CRON_START = "2100-01-01"


def cmd_demo(args: argparse.Namespace) -> int:
    """Run the scenario headless through the real scheduler and print its story."""
    import shutil

    from ai_factory.demo import DemoRunner, Scenario, demo_environment, render, serving_summary, stage_timings
    from ai_factory.deployment.local import LocalTarget
    from ai_factory.orchestration.local import LocalLayout, local_stack
    from ai_factory.orchestration.stack import free_port
    from ai_factory.settings import get_settings
    from ai_factory.storage import DataLake

    _stop_on_signals()  # SIGTERM stops the stack and the model server as Ctrl-C does
    repo = get_settings().home
    layout = LocalLayout(Path(args.state_dir or repo / ".demo"))
    if layout.root.exists() and not args.keep:
        shutil.rmtree(layout.root)
    scenario = Scenario.standard(end=args.end or date.today() - timedelta(days=1), days=args.days, rows=args.rows)
    # The demo drives every logical date itself (a one-day backfill per daily DAG and day). A DAG
    # start date far in the future keeps the scheduler from adding cron runs of its own, while it
    # still creates the Asset-triggered runs (training, model_gate, deployment) as in production.
    layout.export(NO_CRON_START, db_url=args.db_url,
                  **demo_environment(args.serve_port or free_port(), trials=args.trials))
    stack = local_stack(layout, repo, port=args.port or free_port(), paused=False)
    stack.migrate()
    try:
        with stack:
            stack.wait_ready(timeout=300)
            stories = DemoRunner(stack, DataLake(str(layout.data_root)), scenario).run()
        serving = serving_summary()
        sys.stdout.write(render(stories, DataLake(str(layout.data_root)), serving) + "\n")
        if args.json:
            out = {"scenario": {"start": scenario.start, "days": scenario.days, "rows": scenario.rows,
                                "corrupt": {str(k): v for k, v in scenario.corrupt.items()},
                                "drift_start": scenario.drift_start},
                   "days": [dataclasses.asdict(s) for s in stories], "serving": serving,
                   "timings": stage_timings(stories), "airflow_url": stack.url,
                   "data_root": str(layout.data_root), "model_store": str(layout.model_store)}
            from ai_factory.fsutil import atomic_write_text

            atomic_write_text(args.json, json.dumps(out, indent=2, default=str))
    finally:
        if not args.keep_serving:
            LocalTarget.from_settings().stop_all()
    return 0


def _register_up_demo(sub: argparse._SubParsersAction) -> None:
    up = sub.add_parser("up", help="seed demo data and run Airflow (UI + scheduler) until Ctrl-C")
    up.add_argument("--days", type=int, default=7, help="demo days landed, up to today")
    up.add_argument("--rows", type=int, default=3000)
    up.add_argument("--port", type=int, default=int(os.environ.get("AI_FACTORY_UI_PORT", "8080")))
    up.add_argument("--state-dir", help="where Airflow, data and models live (default: .local/)")
    up.add_argument("--paused", action="store_true", help="keep the DAGs paused (unpause them in the UI)")
    up.set_defaults(func=cmd_up)
    demo = sub.add_parser("demo", help="run the pipeline headless through the real scheduler and print its story")
    demo.add_argument("--days", type=int, default=10)
    demo.add_argument("--rows", type=int, default=3000)
    demo.add_argument("--end", type=_date, help="last simulated day (default: yesterday)")
    demo.add_argument("--port", type=int, default=0)
    demo.add_argument("--state-dir", help="default: .demo/ (wiped first unless --keep)")
    demo.add_argument("--keep", action="store_true")
    demo.add_argument("--serve-port", type=int, default=0, help="stable model address port (default: a free one)")
    demo.add_argument("--keep-serving", action="store_true", help="leave the champion serving after the demo")
    demo.add_argument("--db-url", help="Airflow metadata DB (default: SQLite in the state dir)")
    demo.add_argument("--trials", type=int, default=4, help="Optuna trials per training run")
    demo.add_argument("--json", help="also write the story, timings and serving summary to this JSON file")
    demo.set_defaults(func=cmd_demo)


# -- registry of sub-command groups ----------------------------------------------------
def _registrars() -> list[Callable[[argparse._SubParsersAction], None]]:
    regs: list[Callable[[argparse._SubParsersAction], None]] = [
        _register_data, register_spec, _register_quality, _register_up_demo]
    from ai_factory import cli_extensions

    regs.extend(cli_extensions.REGISTRARS)
    return regs


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="ai-factory", description=__doc__.splitlines()[0])
    parser.add_argument("-v", "--verbose", action="store_true")
    sub = parser.add_subparsers(dest="cmd", required=True)
    for register in _registrars():
        register(sub)
    return parser


def is_user_error(exc: BaseException) -> bool:
    """True when ``exc`` is a user's mistake (see :data:`USER_ERRORS`), not a bug."""
    for ref in USER_ERRORS:
        module, name = ref.split(":")
        loaded = sys.modules.get(module)
        if loaded is not None and isinstance(exc, getattr(loaded, name)):
            return True
    return False


def one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split())


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    if not args.verbose:
        for name in CHATTY_LIBRARIES:
            logging.getLogger(name).setLevel(logging.WARNING)
    try:
        return int(args.func(args) or 0)
    except Exception as exc:
        if args.verbose or not is_user_error(exc):
            raise
        sys.stderr.write(f"{parser.prog} {args.cmd}: error: {one_line(exc)}\n")
        return EXIT_USER_ERROR


if __name__ == "__main__":
    raise SystemExit(main())
