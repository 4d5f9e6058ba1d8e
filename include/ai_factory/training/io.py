"""URI-addressed artifact I/O for training (local paths, ``file://`` or any fsspec store).

Every write is atomic (temporary name, then rename) so a pod killed mid-write never leaves a
half checkpoint or a half result for the retry to trip over. Results are also written to
``/airflow/xcom/return.json`` when that directory exists: the KubernetesPodOperator XCom
sidecar reads the task's return value from there.
"""

from __future__ import annotations

import io
import json
import logging
import os
import posixpath
from pathlib import Path
from typing import Any

import fsspec
from fsspec.core import url_to_fs

from ai_factory.fsutil import atomic_write_text, fs_atomic_write_bytes, json_bytes

log = logging.getLogger(__name__)

XCOM_DIR_ENV = "AI_FACTORY_XCOM_DIR"
DEFAULT_XCOM_DIR = "/airflow/xcom"


def _fs(uri: str) -> tuple[fsspec.AbstractFileSystem, str]:
    fs, path = url_to_fs(str(uri))
    return fs, path


def join(uri: str, *parts: str) -> str:
    """Join path parts onto a URI or path (``posixpath`` semantics, scheme kept)."""
    return posixpath.join(str(uri).rstrip("/"), *parts)


def exists(uri: str) -> bool:
    fs, path = _fs(uri)
    return bool(fs.exists(path))


def read_bytes(uri: str) -> bytes:
    fs, path = _fs(uri)
    try:
        with fs.open(path, "rb") as fh:
            return fh.read()
    except FileNotFoundError:
        raise FileNotFoundError(f"{uri}: no such file") from None


def write_bytes(uri: str, data: bytes) -> str:
    fs, path = _fs(uri)
    fs_atomic_write_bytes(fs, path, data)
    return uri


def read_json(uri: str) -> Any:
    try:
        return json.loads(read_bytes(uri))
    except json.JSONDecodeError as exc:
        raise ValueError(f"{uri}: not valid JSON: {exc}") from None


def write_json(uri: str, payload: Any) -> str:
    return write_bytes(uri, json_bytes(payload))


def read_parquet(uri: str) -> Any:
    import pandas as pd

    return pd.read_parquet(io.BytesIO(read_bytes(uri)))


def write_parquet(uri: str, df: Any) -> str:
    buf = io.BytesIO()
    df.to_parquet(buf, index=False)
    return write_bytes(uri, buf.getvalue())


def remove(uri: str) -> None:
    fs, path = _fs(uri)
    if fs.exists(path):
        fs.rm(path, recursive=True)


def copy_to_local(uri: str, dest: Path) -> Path:
    """Copy one file at ``uri`` to the local path ``dest``."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    dest.write_bytes(read_bytes(uri))
    return dest


def write_result(payload: dict[str, Any], output: str | None) -> dict[str, Any]:
    """Write a command's result JSON to ``output`` (if given) and to the XCom sidecar path (if present)."""
    if output:
        write_json(output, payload)
        log.info("result written to %s", output)
    xcom_dir = Path(os.environ.get(XCOM_DIR_ENV, DEFAULT_XCOM_DIR))
    if xcom_dir.is_dir():
        target = xcom_dir / "return.json"
        atomic_write_text(target, json.dumps(payload, default=str))
        log.info("result written to %s for the XCom sidecar", target)
    return payload
