"""Fault and attack probes on the data path; prints the reliability figures (rows and bytes lost).

``python -m bench data_faults``. Every probe is real: writes are stopped half-way by the kernel
in a child process (a file-size limit at a random offset: ``EFBIG``, or killed by ``SIGXFSZ``),
drift checks run on days holding extreme values, reports are built from hostile category
values and parsed the way a browser tokenizes them, and a validated day gets a corrupt
re-delivery through the real GX gate, then is restored.
"""

from __future__ import annotations

import hashlib
import os
import random
import subprocess
import sys
import time
from datetime import date, timedelta
from html.parser import HTMLParser
from pathlib import Path

from bench.common import isolated_env, table

DS = date(2026, 5, 20)
WRITE_PROBES = 40  # per (file | partition) x (EFBIG | killed)

_CHILD = """
import resource, signal, sys
from ai_factory.storage import DataLake
kind, on_limit, root, ds, limit, size = sys.argv[1:7]
signal.signal(signal.SIGXFSZ, signal.SIG_IGN if on_limit == "efbig" else signal.SIG_DFL)
resource.setrlimit(resource.RLIMIT_FSIZE, (int(limit), int(limit)))
lake = DataLake(root)
data = b"n" * int(size)
if kind == "file":
    lake.write_bytes(lake.partition_path("validated", ds) + "/part-0.parquet", data)
else:
    lake.replace_partition("validated", ds, {"part-0.parquet": b"a" * 100, "part-1.parquet": data})
"""


def _digest(files: dict[str, bytes]) -> dict[str, str]:
    return {k: hashlib.sha256(v).hexdigest() for k, v in files.items()}


def write_probes(root: Path) -> list[list[object]]:
    from ai_factory.storage import DataLake, Zone

    rng = random.Random(0)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    rows = []
    for kind in ("file", "partition"):
        for on_limit in ("efbig", "killed"):
            lake = DataLake(str(root / f"writes-{kind}-{on_limit}"))
            old = {"part-0.parquet": os.urandom(4096)}
            lake.replace_partition(Zone.VALIDATED, DS, old)
            visible_partial = bytes_lost = leftovers = 0
            for _ in range(WRITE_PROBES):
                size = rng.randint(2 << 10, 4 << 20)
                limit = rng.randint(1, size - 1)
                subprocess.run([sys.executable, "-c", _CHILD, kind, on_limit, lake.root, DS.isoformat(),
                                str(limit), str(size)], env=env, capture_output=True, timeout=60, check=False)
                seen = lake.read_partition_files(Zone.VALIDATED, DS)
                visible_partial += int(set(seen) != set(old))
                bytes_lost += sum(len(v) for k, v in old.items() if _digest(seen).get(k) != _digest(old)[k])
                leftovers += len([p for p in Path(lake.root).rglob(".tmp-*")] +
                                 [p for p in Path(lake.root).rglob(".staging-*")])
                lake.sweep_temporaries(older_than_s=0)
            rows.append([f"write stopped half-way ({kind}, {on_limit})", WRITE_PROBES, visible_partial,
                         bytes_lost, leftovers if on_limit == "killed" else f"{leftovers} (must be 0)"])
    return rows


def drift_probes(root: Path) -> list[list[object]]:
    import numpy as np

    from ai_factory.data.generate import generate_day, to_parquet_bytes
    from ai_factory.monitoring.config import parse_config
    from ai_factory.monitoring.monitor import run_drift_check
    from ai_factory.storage import DataLake, Zone

    lake = DataLake(str(root / "drift"))
    for i in range(1, 8):
        d = DS - timedelta(days=i)
        lake.replace_partition(Zone.VALIDATED, d, {"part-0.parquet": to_parquet_bytes(generate_day(d, 1500))})
    huge = float(np.finfo(np.float64).max)
    cases = {
        "annual_income = ±1.7e308": [1.7e308, -1.7e308],
        "float max, tiny, NaN, ±inf": [huge, -huge, np.finfo(np.float64).tiny, np.nan, np.inf, -np.inf],
        "a third of the day at 1e300": [1e300] * 1000,
    }
    rows = []
    for name, values in cases.items():
        df = generate_day(DS, 3000, seed=5)
        df.loc[: len(values) - 1, "annual_income"] = values
        lake.replace_partition(Zone.VALIDATED, DS, {"part-0.parquet": to_parquet_bytes(df)})
        try:
            s = run_drift_check(DS, lake=lake, config=parse_config({})).summary
            income = next(c for c in s.drift.columns if c.name == "annual_income")
            outcome = f"ok: annual_income score {income.score:.3g}, drifted={income.drifted}"
            failed = 0
        except Exception as exc:  # noqa: BLE001 - a probe reports any failure as its outcome
            outcome, failed = f"FAILED: {type(exc).__name__}: {exc}"[:120], 1
        rows.append([f"drift check, {name}", 1, failed, 0, outcome])
    return rows


class _Tags(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.tags: list[str] = []

    def handle_starttag(self, tag: str, attrs: list) -> None:
        self.tags.append(tag)


def injection_probes(root: Path) -> list[list[object]]:
    from ai_factory.data.generate import generate_day, to_parquet_bytes
    from ai_factory.monitoring.config import parse_config
    from ai_factory.monitoring.monitor import run_drift_check
    from ai_factory.storage import DataLake, Zone

    payloads = ["</script><img src=x onerror=alert(1)>", "</SCRIPT ><svg onload=alert(2)>",
                "<!--<script>", "]]></script><iframe src=javascript:alert(3)>", "&lt;/script&gt;", "\u2028</script>"]
    lake = DataLake(str(root / "inject"))
    for i in range(1, 8):
        d = DS - timedelta(days=i)
        lake.replace_partition(Zone.VALIDATED, d, {"part-0.parquet": to_parquet_bytes(generate_day(d, 1500))})
    df = generate_day(DS, 3000, seed=5)
    df["region"] = df["region"].astype("object")
    for i, p in enumerate(payloads):
        df.loc[i * 100: i * 100 + 99, "region"] = p
    lake.replace_partition(Zone.VALIDATED, DS, {"part-0.parquet": to_parquet_bytes(df)})
    check = run_drift_check(DS, lake=lake, config=parse_config({}))
    html = lake.read_bytes(check.partition + "/report.html").decode()
    parser = _Tags()
    parser.feed(html)
    injected = sum(parser.tags.count(t) for t in ("img", "svg", "iframe"))
    raw = sum(p in html for p in payloads if "<" in p)
    return [["Evidently report, hostile category values", len(payloads), injected + raw, 0,
             f"{injected} injected tags, {raw} raw payloads in the HTML"]]


def redelivery_probe(root: Path) -> list[list[object]]:
    from ai_factory.data.generate import write_day
    from ai_factory.quality.validate import QualityGateFailed, run_quality_gate
    from ai_factory.storage import DataLake, Zone

    lake = DataLake(str(root / "lake"))
    write_day(lake, DS, 3000)
    run_quality_gate(DS, lake=lake)
    good = lake.read_partition_files(Zone.VALIDATED, DS)
    write_day(lake, DS, 3000, corruption="unreadable_file")
    try:
        run_quality_gate(DS, lake=lake)
    except QualityGateFailed:
        pass
    t0 = time.perf_counter()
    lake.restore_partition(Zone.VALIDATED, DS)
    restore_s = time.perf_counter() - t0
    back = lake.read_partition_files(Zone.VALIDATED, DS)
    lost = sum(len(v) for k, v in good.items() if back.get(k) != v)
    return [["corrupt re-delivery of a validated day, then restore", 1, int(lost > 0), lost,
             f"3000 rows, {sum(map(len, good.values())):,} bytes archived and restored identical "
             f"(restore {restore_s * 1000:.0f} ms)"]]


def main() -> None:
    root = isolated_env()
    rows = write_probes(root) + drift_probes(root) + injection_probes(root) + redelivery_probe(root)
    table(["probe", "tries", "failures (visible partial / crash / breakout / loss)", "bytes lost", "notes"], rows)


if __name__ == "__main__":
    main()
