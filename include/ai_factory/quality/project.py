"""Create or refresh the committed GX objects (datasource, suite, validation definition, checkpoint).

Run by ``ai-factory quality init``. The suite's distribution expectations are learned from a
reference window: generated demo days by default (deterministic, so the committed suite is
reproducible), or validated partitions from the lake (``--from-lake``).
"""

from __future__ import annotations

import logging
from typing import Any

import pandas as pd

from ai_factory.quality import context as gxctx
from ai_factory.quality.suite import build_suite, reference_stats
from ai_factory.settings import Settings, get_settings
from ai_factory.spec import DatasetSpec
from ai_factory.storage import DataLake

log = logging.getLogger(__name__)


def _delete_if_exists(collection: Any, name: str) -> None:
    from great_expectations.exceptions import DataContextError

    try:
        collection.delete(name)
    except DataContextError as exc:
        # GX words "missing" differently per store; anything else is a real error.
        if not any(s in str(exc).lower() for s in ("cannot be found", "not found", "could not find", "does not exist")):
            raise


def init_project(spec: DatasetSpec, reference: pd.DataFrame | None, settings: Settings | None = None) -> dict[str, str]:
    """(Re)create the dataset's GX objects in the file context; returns their names."""
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

    stats = reference_stats(spec, reference) if reference is not None else None
    _delete_if_exists(ctx.checkpoints, n["checkpoint"])
    _delete_if_exists(ctx.validation_definitions, n["validation"])
    _delete_if_exists(ctx.suites, n["suite"])
    suite = ctx.suites.add(build_suite(spec, stats))
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
