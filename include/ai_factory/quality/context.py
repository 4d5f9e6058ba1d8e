"""The project's GX file context (``great_expectations/``) and its fixed objects.

The folder is committed: ``great_expectations.yml`` (stores, the Data Docs site, the pandas
datasource), the suite under ``expectations/``, the validation definition and checkpoint.
Validation results and Data Docs are data, not code: they live under
``<data_root>/reports/quality/_gx`` (``${AI_FACTORY_QUALITY_DIR}`` in the yml, filled in
through GX's runtime environment), beside the per-day summaries.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

from ai_factory.settings import Settings, get_settings
from ai_factory.storage import DataLake, Zone

log = logging.getLogger(__name__)

DATASOURCE = "lake"
ASSET = "partition"
BATCH_DEFINITION = "whole_partition"
SITE_NAME = "local_site"


class GXProjectMissingError(FileNotFoundError):
    """``AI_FACTORY_GX_ROOT`` holds no ``great_expectations.yml``."""


def names(suite_name: str) -> dict[str, str]:
    """GX object names for a dataset (suite, validation definition, checkpoint)."""
    return {"suite": suite_name, "validation": f"{suite_name}_partition", "checkpoint": f"{suite_name}_checkpoint"}


def quality_dir(lake: DataLake) -> str:
    """Where GX keeps validation results and the Data Docs site (local data roots only)."""
    if not lake.is_local:
        raise NotImplementedError(
            "GX stores on an object store need TupleS3StoreBackend (or GCS/Azure) entries in "
            "great_expectations/great_expectations.yml; the embedded default keeps them on local disk"
        )
    return f"{lake.zone_path(Zone.REPORTS_QUALITY)}/_gx"


def site_dir(lake: DataLake) -> str:
    return f"{quality_dir(lake)}/site"


def get_context(lake: DataLake | None = None, settings: Settings | None = None) -> Any:
    """The file context rooted at ``settings.gx_root`` with stores under the data root."""
    import great_expectations as gx
    from ai_factory.quality import gx_compat

    gx_compat.apply()
    settings = settings or get_settings()
    lake = lake or DataLake(settings.data_root)
    os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")
    root = Path(settings.gx_root)
    if not (root / "great_expectations.yml").is_file():
        raise GXProjectMissingError(
            f"no GX project at {root} (great_expectations.yml missing): point AI_FACTORY_GX_ROOT at the repository's "
            f"great_expectations/ folder, or copy its great_expectations.yml there, then run `ai-factory quality init`"
        )
    return gx.get_context(
        mode="file",
        context_root_dir=str(root),
        runtime_environment={"AI_FACTORY_QUALITY_DIR": quality_dir(lake)},
    )
