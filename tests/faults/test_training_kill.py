"""SIGKILL the training entry point (``ai-factory train fit``) mid-fit, twice: the third run resumes
from the last checkpoint and ends with the very model an uninterrupted fit produces, bit for bit.

Nothing is lost but the epoch in flight at each kill; no finished epoch is trained again.
"""

from __future__ import annotations

import io as _io
import json
import signal
import time

import pytest
import torch

from ai_factory.training.loop import CHECKPOINT_FILE

from fault_helpers import cli_popen, run_cli, tail, wait_until

pytestmark = pytest.mark.faults

PARAMS = {"hidden_size": 32, "n_layers": 1, "batch_size": 64, "max_epochs": 8, "patience": 8,
          "embedding_dim_max": 4}


def _epoch(path) -> int:
    if not path.exists():
        return 0
    return int(torch.load(_io.BytesIO(path.read_bytes()), weights_only=True)["epoch"])


def _weights(model_dir) -> dict[str, torch.Tensor]:
    return torch.load(_io.BytesIO((model_dir / "model.pt").read_bytes()), weights_only=True)


def test_fit_killed_twice_resumes_to_the_model_an_uninterrupted_fit_makes(train_env, tmp_path):
    window = tmp_path / "window.json"
    assert run_cli("train", "window", "--output", str(window), "--days", "5").returncode == 0

    def fit_args(name: str) -> list[str]:
        d = tmp_path / name
        return ["train", "fit", "--window", str(window), "--model", str(d / "model"), "--checkpoint", str(d / "ckpt"),
                "--params", json.dumps(PARAMS), "--output", str(d / "fit.json")]

    t0 = time.monotonic()
    ref = run_cli(*fit_args("reference"))
    uninterrupted_s = time.monotonic() - t0
    assert ref.returncode == 0, ref.stderr[-3000:]
    reference = json.loads(ref.stdout)

    ckpt = tmp_path / "killed" / "ckpt" / CHECKPOINT_FILE
    kills = []
    for at_least in (2, 5):
        log = tmp_path / f"kill-{len(kills)}.log"
        proc = cli_popen(*fit_args("killed"), log_path=log)
        wait_until(f"checkpoint of epoch {at_least}", lambda n=at_least: _epoch(ckpt) >= n, timeout=240,
                   every=0.02, alive=proc)
        proc.send_signal(signal.SIGKILL)
        assert proc.wait(timeout=30) == -signal.SIGKILL, tail(log)
        kills.append(_epoch(ckpt))
        assert not (tmp_path / "killed" / "model" / "model.pt").exists()  # no half-trained model published
    assert kills[0] < kills[1] < PARAMS["max_epochs"], kills

    t0 = time.monotonic()
    last = run_cli(*fit_args("killed"))
    resumed_s = time.monotonic() - t0
    assert last.returncode == 0, last.stderr[-3000:]
    result = json.loads(last.stdout)
    assert result["resumed_from_epoch"] == kills[1]
    assert f"epoch {kills[1] + 1}/{PARAMS['max_epochs']}" in last.stderr
    assert f"epoch {kills[1]}/{PARAMS['max_epochs']}" not in last.stderr  # no finished epoch redone
    assert result["epochs_run"] == reference["epochs_run"] == PARAMS["max_epochs"]
    assert result["best_epoch"] == reference["best_epoch"] and result["best_metric"] == reference["best_metric"]
    got, want = _weights(tmp_path / "killed" / "model"), _weights(tmp_path / "reference" / "model")
    assert got.keys() == want.keys() and all(torch.equal(got[k], want[k]) for k in want)
    print(f"\nfault training-kill: killed at epochs {kills}; the third run resumed at {kills[1]} and took "
          f"{resumed_s:.1f}s (uninterrupted fit {uninterrupted_s:.1f}s); weights equal to the uninterrupted fit's")
