"""A SQL source: the rows of a query, through an Airflow connection, into ``landing/ds=…``.

The query's result goes through the same path as a landed file (:func:`ai_factory.data.land.land_table`):
the spec's column check, the day split, the atomic and idempotent partition write, and no
overwrite of a different day's bytes without ``replace``. Bind the day as a parameter
(``WHERE event_date = :ds``) so a re-run of a day reads that day again.
"""

from __future__ import annotations

import logging
from datetime import date
from typing import Any

import pyarrow as pa

from ai_factory.data.land import Landed, land_table
from ai_factory.spec import DatasetSpec
from ai_factory.storage import DataLake

log = logging.getLogger(__name__)

# Airflow writes some URIs with scheme names SQLAlchemy does not know.
_SCHEMES = {"postgres": "postgresql", "mysql": "mysql+pymysql", "mssql": "mssql+pymssql"}


class SQLSourceError(ValueError):
    """The query cannot run (connection, SQL); the message names the connection and the query."""


def connection_url(conn_id: str) -> str:
    """A SQLAlchemy URL from an Airflow connection (the metadata DB, a secrets backend or ``AIRFLOW_CONN_*``)."""
    from airflow.sdk.bases.hook import BaseHook

    uri = BaseHook.get_connection(conn_id).get_uri()
    scheme, sep, rest = uri.partition("://")
    return f"{_SCHEMES.get(scheme, scheme)}{sep}{rest}"


def query_table(url: str, sql: str, params: dict[str, Any] | None = None) -> pa.Table:
    """Run ``sql`` (with bound ``params``) and return its rows as an Arrow table."""
    import pandas as pd
    import sqlalchemy as sa

    engine = sa.create_engine(url)
    shown = engine.url.render_as_string(hide_password=True)
    try:
        with engine.connect() as conn:
            frame = pd.read_sql_query(sa.text(sql), conn, params=params or {})
    except sa.exc.SQLAlchemyError as exc:
        raise SQLSourceError(f"query on {shown} failed: {' '.join(str(getattr(exc, 'orig', None) or exc).split())}") from None
    finally:
        engine.dispose()
    log.info("query on %s returned %d rows x %d columns", shown, len(frame), frame.shape[1])
    return pa.Table.from_pandas(frame, preserve_index=False)


def land_query(url: str, sql: str, spec: DatasetSpec, lake: DataLake, *, ds: date, params: dict[str, Any] | None = None,
               replace: bool = False, spec_source: str = "the spec") -> list[Landed]:
    """Land the rows ``sql`` returns for day ``ds`` (bound as ``:ds`` unless ``params`` say otherwise)."""
    import sqlalchemy as sa

    bound = {"ds": ds, **(params or {})}
    table = query_table(url, sql, {k: v for k, v in bound.items() if f":{k}" in sql})
    if table.num_rows == 0:
        log.warning("ds=%s: the query returned no rows; nothing landed", ds)
        return []
    source = f"query on {sa.engine.make_url(url).render_as_string(hide_password=True)}"
    return land_table(table, source, spec, lake, ds=ds, replace=replace, spec_source=spec_source)
