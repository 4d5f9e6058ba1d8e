"""The test PostgreSQL (127.0.0.1:5432, trust auth): throwaway databases of the tests' own."""

from __future__ import annotations

import os

from requires import unavailable

PG_DSN = os.environ.get("AI_FACTORY_TEST_PG", "postgresql+psycopg2://postgres@127.0.0.1:5432")


def recreate_pg_database(name: str) -> str:
    """Drop and create ``name``; returns its SQLAlchemy URL (skips the test if PostgreSQL is unreachable; fails under CI=true)."""
    import psycopg2

    try:
        conn = psycopg2.connect(host="127.0.0.1", port=5432, user="postgres", dbname="postgres", connect_timeout=5)
    except psycopg2.OperationalError as exc:
        unavailable(f"PostgreSQL at 127.0.0.1:5432 is not reachable: {exc}")
    conn.autocommit = True
    with conn.cursor() as cur:
        cur.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        cur.execute(f'CREATE DATABASE "{name}"')
    conn.close()
    return f"{PG_DSN}/{name}"
