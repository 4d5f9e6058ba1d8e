"""Serving benchmark: a real ``bentoml serve`` under load from a separate process.

``python -m bench serving``. Trains a small real model on generated data in a throwaway store,
then for each configuration (single records scored in the API process or through the runner ×
adaptive batching on/off × prediction logging on/off, with ``config/serving.yaml``'s API stack, plus
BentoML's default stack for comparison) starts the service, and drives it with
:mod:`ai_factory.deployment.loadgen` in its own process:

* single records at a fixed 200 req/s for 20 s (open loop) → latency p50/p99 at the goal's traffic;
* single records, closed loop (16 concurrent) → throughput ceiling;
* batches of 32 records, closed loop (4 concurrent) → rows/s.

The serving overhead ratio is served rows/s ÷ in-process ``Predictor`` rows/s on the same batch
size (records in, as the service calls it; the DataFrame path is shown beside it).
``AIF_BENCH_REPEATS=n`` runs the whole configuration sweep n times (stability check). Finally the switch gap: traffic at 100 req/s through the stable front while the local
target deploys a second version beside the first and switches to it.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from datetime import date, timedelta
from pathlib import Path

from bench.common import isolated_env, table

REPO = Path(__file__).resolve().parents[1]
# (API stack, single_record_scoring, adaptive batching, prediction log) per served configuration.
# "tuned" is config/serving.yaml as shipped (2 API workers, no per-request access log or spans);
# "bentoml" is BentoML's own defaults for those (1 worker, access log and tracing spans on).
CONFIGS = [("tuned", single, batching, logging_) for single in ("in_process", "runner") for batching in (True, False)
           for logging_ in (False, True)] + [("bentoml", "in_process", True, logging_) for logging_ in (False, True)]
STACKS = {"tuned": "2 workers", "bentoml": "1 worker + access log + spans"}
BENTOML_STACK = "api_workers: 1\naccess_log: true\ntrace_predictions: true\n"


def _train(tmp: Path, run_key: str, end_day: int, seed: int) -> str:
    from ai_factory.training import io
    from ai_factory.training.steps import evaluate, fit, make_window, register

    work = tmp / "runs" / run_key
    end = date(2026, 3, 1) + timedelta(days=end_day - 1)
    window = make_window(str(work / "window.json"), days=5, end=end)["window"]
    fit(window, str(work / "model"), params_override={"hidden_size": 64, "n_layers": 2, "max_epochs": 3,
                                                       "batch_size": 256, "seed": seed})
    io.write_json(str(work / "evaluation.json"), evaluate(window, str(work / "model")))
    return register(window, str(work / "model"), str(work / "evaluation.json"), run_key=run_key,
                    reference_rows=200)["tag"]


def _setup() -> tuple[Path, list[str], list[dict]]:
    from ai_factory.data.generate import generate_day, to_parquet_bytes
    from ai_factory.deployment.smoke import frame_to_records
    from ai_factory.spec import default_spec
    from ai_factory.storage import DataLake, Zone

    tmp = isolated_env()
    lake = DataLake.from_settings()
    for i in range(6):
        day = date(2026, 3, 1) + timedelta(days=i)
        lake.replace_partition(Zone.VALIDATED, day, {"part-0.parquet": to_parquet_bytes(generate_day(day, 2000, 0))})
    tags = [_train(tmp, "bench-a", 5, 1), _train(tmp, "bench-b", 6, 2)]
    holdout = lake.read_partition(Zone.VALIDATED, lake.partitions(Zone.VALIDATED)[-1])
    return tmp, tags, frame_to_records(default_spec(), holdout.head(256))


def _in_process_rows_per_s(tag: str, records: list[dict], batch: int, frame: bool, seconds: float = 3.0) -> float:
    import pandas as pd
    import torch

    from ai_factory.training.predictor import load_predictor

    torch.set_num_threads(1)  # what the service processes use
    predictor = load_predictor(tag)
    data = pd.DataFrame.from_records(records[:batch]) if frame else records[:batch]
    n, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        predictor.predict_proba(data)
        n += batch
    return n / (time.perf_counter() - t0)


def logging_cpu_per_record(records: list[dict], rows: int = 2000, repeats: int = 10) -> dict:
    """CPU the prediction log spends per served record: ``log()`` on the request path, and the
    background flush (Arrow + Parquet, ``rows`` rows per file, median of ``repeats``). Thread CPU
    time, so other jobs on the machine do not count, unlike the throughput ratios."""
    import tempfile as tf
    from datetime import UTC, datetime

    from ai_factory.serving.prediction_log import LogConfig, PredictionLogger
    from ai_factory.spec import default_spec
    from ai_factory.storage import DataLake

    spec = default_spec()
    lake = DataLake(tf.mkdtemp(prefix="aif-bench-plog-"))
    logger = PredictionLogger(lake, spec, LogConfig(flush_rows=10**9, flush_seconds=3600, max_buffer_rows=10**7))
    when = datetime.now(UTC)
    one = records[:1]
    t = time.thread_time()
    for _ in range(rows * repeats):
        logger.log(one, [1], [0.5], "bench", when)
    log_us = (time.thread_time() - t) / (rows * repeats) * 1e6
    buffered = logger._rows[:rows]
    logger._rows = []
    logger._parquet(buffered[:1])  # first flush builds the schema
    flush = []
    for _ in range(repeats):
        t = time.thread_time()
        logger._parquet(buffered)
        flush.append((time.thread_time() - t) * 1000)
    logger.close()
    flush_ms = sorted(flush)[len(flush) // 2]
    return {"log_us": log_us, "flush_ms": flush_ms, "rows": rows, "per_record_us": log_us + flush_ms * 1000 / rows}


def _serve(tag: str, port: int, single: str, batching: bool, logging_: bool, log_path: Path,
           config: Path | None = None) -> subprocess.Popen:
    env = {**os.environ, **({"AI_FACTORY_SERVING_CONFIG": str(config)} if config else {}), "AI_FACTORY_MODEL_TAG": tag, "AI_FACTORY_SERVE_BATCHING": str(batching).lower(),
           "AI_FACTORY_PREDICTION_LOG": str(logging_).lower(), "AI_FACTORY_SERVE_SINGLE": single,
           "BENTOML_DO_NOT_TRACK": "true",
           # The service imports this checkout's package, whatever is installed in the venv.
           "PYTHONPATH": os.pathsep.join([str(REPO / "include"), os.environ.get("PYTHONPATH", "")])}
    out = open(log_path, "wb")  # noqa: SIM115 - owned by the child
    return subprocess.Popen([sys.executable, "-m", "bentoml", "serve", "service:ModelService", "--host", "127.0.0.1",
                             "--port", str(port)], cwd=REPO / "bentos", env=env, stdout=out,
                            stderr=subprocess.STDOUT, start_new_session=True)


def _load(url: str, body: object, tmp: Path, **kw: object) -> dict:
    body_file = tmp / f"body-{time.monotonic_ns()}.json"
    body_file.write_text(json.dumps(body))
    args = [sys.executable, "-m", "ai_factory.deployment.loadgen", "--url", url, "--body-file", str(body_file)]
    for k, v in kw.items():
        if v is True:
            args.append(f"--{k.replace('_', '-')}")
        else:
            args += [f"--{k.replace('_', '-')}", str(v)]
    proc = subprocess.run(args, capture_output=True, text=True, check=True, timeout=600)
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _stop(proc: subprocess.Popen) -> None:
    import signal

    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(10)


def bench_configs(tmp: Path, tag: str, records: list[dict]) -> list[dict]:
    from ai_factory.deployment.local import free_port, wait_ready

    out = []
    batch = records[:32]
    bentoml_stack = tmp / "serving-bentoml-defaults.yaml"
    from ai_factory.serving.config import DEFAULT_SERVING_CONFIG

    bentoml_stack.write_text(DEFAULT_SERVING_CONFIG.read_text() + BENTOML_STACK)
    for stack, single, batching, logging_ in CONFIGS:
        port = free_port()
        log_path = tmp / f"serve-{stack}-{single}-{batching}-{logging_}.log"
        proc = _serve(tag, port, single, batching, logging_, log_path,
                      config=bentoml_stack if stack == "bentoml" else None)
        url = f"http://127.0.0.1:{port}"
        try:
            wait_ready(url, proc.pid, 180, log_path)
            _load(f"{url}/predict", records[0], tmp, mode="closed", concurrency=4, duration=3)  # warm-up
            before = _cpu_snapshot(proc)
            rate = _load(f"{url}/predict", records[0], tmp, mode="rate", rps=200, duration=20)
            closed = _load(f"{url}/predict", records[0], tmp, mode="closed", concurrency=16, duration=10)
            bulk = _load(f"{url}/predict_batch", {"records": batch}, tmp, mode="closed", concurrency=4,
                         duration=10, rows_per_request=32)
            after = _cpu_snapshot(proc)
        finally:
            _stop(proc)
        foreign = ((after[1] - before[1]) - (after[2] - before[2])) / (after[0] - before[0])
        out.append({"stack": stack, "single": single, "batching": batching, "logging": logging_, "rate": rate, "closed": closed,
                    "batch": bulk, "foreign_cores": max(foreign, 0.0)})
    return out


def _cpu_snapshot(server: subprocess.Popen) -> tuple[float, float, float]:
    """(wall s, CPU s the whole machine was busy, CPU s of this benchmark: itself, its load processes, the server).

    The difference of the last two over an interval is what other jobs on the machine used meanwhile.
    """
    import resource

    import psutil

    t = psutil.cpu_times()
    busy = sum(t) - t.idle - getattr(t, "iowait", 0.0)
    own = 0.0
    for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN):  # finished loadgen runs count as children
        r = resource.getrusage(who)
        own += r.ru_utime + r.ru_stime
    try:
        root = psutil.Process(server.pid)
        for p in [root, *root.children(recursive=True)]:
            c = p.cpu_times()
            own += c.user + c.system + c.children_user + c.children_system
    except psutil.NoSuchProcess:
        pass
    return time.monotonic(), busy, own


def bench_switch(tmp: Path, tags: list[str], records: list[dict]) -> dict:
    """Requests through the stable front at 100 req/s while version b replaces version a."""
    from ai_factory.deployment import flow
    from ai_factory.deployment.local import LocalTarget, free_port
    from ai_factory.registry import ModelRegistry
    from ai_factory.settings import reset_settings

    os.environ["AI_FACTORY_SERVE_PORT"] = str(free_port())
    os.environ["AI_FACTORY_PREDICTION_LOG"] = "false"
    reset_settings()
    reg = ModelRegistry.from_settings()
    target = LocalTarget.from_settings()
    try:
        def deploy(tag: str) -> float:
            p = flow.plan("deploy", version=tag.split(":")[1], target="local")
            cand = flow.start_candidate(p, flow.build(p))
            flow.smoke(p, cand)
            t = time.monotonic()
            switched = flow.switch(p, cand)
            flow.promote(p)
            flow.retire(p, switched)
            return t

        deploy(tags[0])
        body = tmp / "switch-body.json"
        body.write_text(json.dumps(records[0]))
        load = subprocess.Popen([sys.executable, "-m", "ai_factory.deployment.loadgen", "--url",
                                 f"{target.url}/predict", "--body-file", str(body), "--mode", "rate", "--rps", "100",
                                 "--duration", "60", "--timeline"], stdout=subprocess.PIPE, text=True)
        t_load = time.monotonic()
        time.sleep(2)
        t_switch = deploy(tags[1]) - t_load
        stdout, _ = load.communicate(timeout=300)
        result = json.loads(stdout.strip().splitlines()[-1])
        timeline = result.pop("timeline")
        around = [r for r in timeline if t_switch - 1 <= r[0] <= t_switch + 3]
        result.update({
            "switch_at_s": round(t_switch, 2),
            "failed_total": sum(1 for r in timeline if r[2] != 200),
            "window_requests": len(around),
            "window_failed": sum(1 for r in around if r[2] != 200),
            "window_max_ms": max((r[1] for r in around), default=float("nan")),
            "champion": reg.champion().version,
        })
        return result
    finally:
        target.stop_all()


def _report(configs: list[dict], inproc: dict, label: str) -> None:
    def on(flag: bool) -> str:
        return "on" if flag else "off"

    sys.stdout.write(f"\n### Latency and throughput{label} (one `bentoml serve`: API process + model runner)\n\n")
    rows = []
    for c in configs:
        r, cl, b = c["rate"], c["closed"], c["batch"]
        rows.append([STACKS[c["stack"]], c["single"], on(c["batching"]), on(c["logging"]),
                     f"{r['req_per_s']:.0f}", f"{r['p50_ms']:.1f}", f"{r['p99_ms']:.1f}", r["failed"],
                     f"{cl['req_per_s']:.0f}", f"{cl['p50_ms']:.1f}", f"{cl['p99_ms']:.1f}",
                     f"{b['rows_per_s']:.0f}", f"{b['p99_ms']:.1f}", f"{c['foreign_cores']:.2f}"])
    table(["API stack", "single records scored", "adaptive batching", "prediction log", "single @200/s: achieved req/s", "p50 ms",
           "p99 ms", "failed", "single closed-loop (16 conc) req/s", "p50 ms", "p99 ms", "batch-32 (4 conc) rows/s",
           "p99 ms", "other jobs' CPU (cores)"], rows)

    sys.stdout.write(f"\n### Prediction-logging cost{label} (throughput with logging ÷ without)\n\n")
    by = {(c["stack"], c["single"], c["batching"], c["logging"]): c for c in configs}
    table(["API stack", "single records scored", "adaptive batching", "single closed-loop", "batch-32"], [
        [STACKS[stack], single, on(bt),
         f"{by[(stack, single, bt, True)]['closed']['req_per_s'] / by[(stack, single, bt, False)]['closed']['req_per_s']:.2f}",
         f"{by[(stack, single, bt, True)]['batch']['rows_per_s'] / by[(stack, single, bt, False)]['batch']['rows_per_s']:.2f}"]
        for stack, single, bt in sorted({k[:3] for k in by}, reverse=True)])

    sys.stdout.write(f"\n### Serving overhead ratio{label} (served rows/s ÷ in-process Predictor rows/s, same batch "
                     "size)\n\n")
    single, batched = by[("tuned", "in_process", True, False)], by[("tuned", "runner", True, False)]
    table(["batch size", "in-process rows/s (records)", "in-process rows/s (DataFrame)", "served rows/s", "ratio"], [
        [1, f"{inproc[(1, False)]:.0f}", f"{inproc[(1, True)]:.0f}",
         f"{single['closed']['rows_per_s']:.0f} (in_process, log off)",
         f"{single['closed']['rows_per_s'] / inproc[(1, False)]:.2f}"],
        [32, f"{inproc[(32, False)]:.0f}", f"{inproc[(32, True)]:.0f}",
         f"{batched['batch']['rows_per_s']:.0f} (runner, batching on, log off)",
         f"{batched['batch']['rows_per_s'] / inproc[(32, False)]:.2f}"],
    ])


def main() -> None:
    tmp, tags, records = _setup()
    scratch = Path(tempfile.mkdtemp(prefix="aif-bench-serving-"))
    inproc = {(b, frame): _in_process_rows_per_s(tags[0], records, b, frame) for b in (1, 32) for frame in (False, True)}
    repeats = int(os.environ.get("AIF_BENCH_REPEATS", "1"))
    sweeps = [bench_configs(scratch, tags[0], records) for _ in range(repeats)]
    for i, configs in enumerate(sweeps, 1):
        _report(configs, inproc, f" (sweep {i} of {repeats})" if repeats > 1 else "")

    cost = logging_cpu_per_record(records)
    sys.stdout.write("\n### Prediction-log CPU per served record (thread CPU time)\n\n")
    table(["log() on the request path µs", f"flush of {cost['rows']} rows ms (writer thread)", "total per record µs"],
          [[f"{cost['log_us']:.1f}", f"{cost['flush_ms']:.1f}", f"{cost['per_record_us']:.1f}"]])

    switch = bench_switch(scratch, tags, records)
    sys.stdout.write("\n### Switch gap (100 req/s through the stable front while a new version takes over)\n\n")
    table(["requests", "failed (whole run)", "switch at s", "requests in [-1 s, +3 s]", "failed there",
           "max latency there ms", "p99 ms (whole run)"],
          [[switch["requests"], switch["failed_total"], switch["switch_at_s"], switch["window_requests"],
            switch["window_failed"], f"{switch['window_max_ms']:.1f}", f"{switch['p99_ms']:.1f}"]])


if __name__ == "__main__":
    main()
