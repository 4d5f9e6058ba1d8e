"""A fit killed with SIGKILL mid-training resumes from its last checkpoint, not from epoch 0."""

from __future__ import annotations

import io as _io
import json
import signal
import time

import torch

from ai_factory.training import io
from ai_factory.training.loop import CHECKPOINT_FILE

from training_helpers import cli_popen, run_cli, write_validated

PARAMS = {"hidden_size": 64, "n_layers": 2, "batch_size": 64, "max_epochs": 12, "patience": 12,
          "embedding_dim_max": 4}


def _checkpoint_epoch(path) -> int:
    if not path.exists():
        return 0
    return int(torch.load(_io.BytesIO(path.read_bytes()), weights_only=True)["epoch"])


def test_killed_fit_resumes_from_its_last_checkpoint(train_env, tmp_path):
    write_validated(train_env, days=4, rows=3000)
    run = tmp_path / "run"
    assert run_cli("train", "window", "--output", str(run / "window.json"), "--days", "4").returncode == 0
    args = ["train", "fit", "--window", str(run / "window.json"), "--model", str(run / "model"),
            "--checkpoint", str(run / "ckpt"), "--params", json.dumps(PARAMS), "--output", str(run / "fit.json")]
    ckpt = run / "ckpt" / CHECKPOINT_FILE

    first = cli_popen(*args, log_path=tmp_path / "first.log")
    deadline = time.monotonic() + 240
    while _checkpoint_epoch(ckpt) < 3 and first.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)
    first.send_signal(signal.SIGKILL)
    first.wait(timeout=30)
    assert first.returncode == -signal.SIGKILL, (tmp_path / "first.log").read_text()[-2000:]
    killed_at = _checkpoint_epoch(ckpt)
    assert 3 <= killed_at < PARAMS["max_epochs"]
    assert not (run / "model" / "model.pt").exists()

    second = run_cli(*args)
    assert second.returncode == 0, second.stderr[-3000:]
    result = json.loads(second.stdout)
    assert result["resumed_from_epoch"] == killed_at
    assert result["epochs_run"] == PARAMS["max_epochs"]
    assert f"resuming from checkpoint {ckpt}" in second.stderr
    assert f"epoch {killed_at + 1}/{PARAMS['max_epochs']}" in second.stderr
    assert f"epoch {killed_at}/{PARAMS['max_epochs']}" not in second.stderr  # no epoch was redone
    assert io.read_json(str(run / "fit.json")) == result
    assert (run / "model" / "model.pt").is_file()
