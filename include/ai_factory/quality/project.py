"""Create or refresh the committed GX objects (datasource, suite, validation definition, checkpoint).

Run by ``ai-factory quality init`` (and by the ``data_quality`` DAG's ``refresh_suite`` Param).
A new dataset's first suite is the spec's contract alone: it needs no data, so the first landed
days go through the gate like any other. Once ``AI_FACTORY_QUALITY_REFERENCE_DAYS`` validated
days are in the lake, :func:`init_suite` learns the distribution expectations from the latest
of them. The demo's committed suite learns from generated days (``--demo-reference``:
deterministic, so it is reproducible).
"""

from __future__ import annotations

import logging
from datetime import date
from typing import Any

import pandas as pd

from ai_factory.quality import context as gxctx
from ai_factory.quality.suite import build_suite, reference_stats
from ai_factory.settings import Settings, get_settings
from ai_factory.spec import DatasetSpec
from ai_factory.storage import DataLake, Zone

log = logging.getLogger(__name__)


class QualityInitError(ValueError):
    """The suite cannot be built as asked (a user's mistake: named, with the fix)."""


def _delete_if_exists(collection: Any, name: str) -> None:
    from great_expectations.exceptions import DataContextError

    try:
        collection.delete(name)
    except DataContextError as exc:
        # GX words "missing" differently per store; anything else is a real error.
        if not any(s in str(exc).lower() for s in ("cannot be found", "not found", "could not find", "does not exist")):
            raise


def init_project(spec: DatasetSpec, reference: pd.DataFrame | None, settings: Settings | None = None,
                 day_rows: int | None = None, source: dict[str, Any] | None = None) -> dict[str, str]:
    """(Re)create the dataset's GX objects in the file context; returns their names.

    ``reference`` (None: the contract alone) teaches the distribution expectations, with bands
    for days of ``day_rows`` rows; ``source`` says where it came from (kept in the suite's meta).
    """
    from great_expectations.checkpoint import UpdateDataDocsAction

    import great_expectations as gx

    settings = settings or get_settings()
    lake = DataLake(settings.data_root)
    ctx = gxctx.get_context(lake, settings)
    n = gxctx.names(spec.name)

    try:
        datasource = ctx.data_sources.get(gxctx.DATASOURCE)
    except (KeyError, ValueError):
        datasource = ctx.data_sources.add_pandas(gxctx.DATASOURCE)
    try:
        asset = datasource.get_asset(gxctx.ASSET)
    except LookupError:
        asset = datasource.add_dataframe_asset(gxctx.ASSET)
    try:
        batch_definition = asset.get_batch_definition(gxctx.BATCH_DEFINITION)
    except (KeyError, ValueError):
        batch_definition = asset.add_batch_definition_whole_dataframe(gxctx.BATCH_DEFINITION)

    try:
        stats = reference_stats(spec, reference, day_rows, settings.quality_noise_z) if reference is not None else None
    except ValueError as exc:
        raise QualityInitError(f"cannot learn distribution expectations for {spec.name!r}: {exc}") from exc
    _delete_if_exists(ctx.checkpoints, n["checkpoint"])
    _delete_if_exists(ctx.validation_definitions, n["validation"])
    _delete_if_exists(ctx.suites, n["suite"])
    suite = ctx.suites.add(build_suite(spec, stats, source))
    vd = ctx.validation_definitions.add(gx.ValidationDefinition(name=n["validation"], data=batch_definition, suite=suite))
    ctx.checkpoints.add(gx.Checkpoint(
        name=n["checkpoint"],
        validation_definitions=[vd],
        actions=[UpdateDataDocsAction(name="update_data_docs", site_names=[gxctx.SITE_NAME])],
        result_format={"result_format": "SUMMARY", "partial_unexpected_count": 5},
    ))
    log.info("GX project at %s: suite %s (%d expectations), checkpoint %s",
             settings.gx_root, suite.name, len(suite.expectations), n["checkpoint"])
    return n


def init_suite(spec: DatasetSpec, settings: Settings | None = None, reference_days: int | None = None,
               before: date | None = None) -> dict[str, Any]:
    """Build the suite from the spec, and from the lake's latest validated days when there are enough.

    With at least ``reference_days`` (default ``AI_FACTORY_QUALITY_REFERENCE_DAYS``) validated
    partitions (before ``before``, when given: a backfilled run learns only from its past), the
    latest that many teach the distribution expectations; with fewer, the suite is the
    contract alone and says how many more days it waits for.
    """
    settings = settings or get_settings()
    needed = settings.quality_reference_days if reference_days is None else reference_days
    if needed < 1:
        raise QualityInitError(f"--reference-days / AI_FACTORY_QUALITY_REFERENCE_DAYS must be at least 1, not {needed}")
    lake = DataLake(settings.data_root)
    found = [d for d in lake.partitions(Zone.VALIDATED) if before is None or d < before]
    days = found[-needed:] if len(found) >= needed else []
    reference, day_rows = None, None
    if days:
        frames = [lake.read_partition(Zone.VALIDATED, d) for d in days]
        reference = pd.concat(frames, ignore_index=True)
        day_rows = min(len(f) for f in frames)
    source = {"zone": Zone.VALIDATED.value, "days": [d.isoformat() for d in days], "smallest_day_rows": day_rows}
    names = init_project(spec, reference, settings, day_rows=day_rows, source=source)
    out: dict[str, Any] = {"gx_root": str(settings.gx_root), **names, "validated_days_found": len(found)}
    if days:
        out["distributions"] = f"learned from {len(days)} validated days ({days[0]} .. {days[-1]})"
        out["reference_days"] = source["days"]
    else:
        out["distributions"] = (f"none yet: the spec's contract alone; {needed - len(found)} more validated day(s) "
                                f"to learn them (AI_FACTORY_QUALITY_REFERENCE_DAYS={needed}), then run "
                                f"`ai-factory quality init` again")
        out["reference_days"] = []
    log.info("suite %s: distributions %s", names["suite"], out["distributions"])
    return out


def refresh_suite(before: str | date | None = None, settings: Settings | None = None) -> dict[str, Any]:
    """The ``data_quality`` DAG's ``refresh_suite`` Param: :func:`init_suite` for the configured spec."""
    from ai_factory.spec import load_spec
    from ai_factory.storage import as_date

    settings = settings or get_settings()
    return init_suite(load_spec(settings.spec_path), settings, before=as_date(before) if before else None)
