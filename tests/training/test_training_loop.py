"""The training loop: determinism, early stopping, checkpoints that resume to the same model."""

from __future__ import annotations

import io as _io

import pytest
import torch

from ai_factory.training import io
from ai_factory.training.config import TrainParams
from ai_factory.training.device import select_device
from ai_factory.training.loop import CHECKPOINT_FILE, CheckpointStore
from ai_factory.training.steps import fit_prepared, prepare

from training_helpers import SMALL_PARAMS, toy_frame, toy_spec

DEVICE = select_device("cpu")


@pytest.fixture(scope="module")
def prepared():
    spec = toy_spec("binary")
    frames = {"train": toy_frame(spec, 1500, seed=1), "validation": toy_frame(spec, 400, seed=2)}
    return prepare(spec, frames, "quantile")


def _weights(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.clone() for k, v in model.state_dict().items()}


def test_same_seed_same_data_gives_the_same_model_and_metrics(prepared):
    params = TrainParams(**SMALL_PARAMS)
    a = fit_prepared(prepared, params, DEVICE)
    b = fit_prepared(prepared, params, DEVICE)
    assert [h.val_metric for h in a.history] == [h.val_metric for h in b.history]
    assert [h.train_loss for h in a.history] == [h.train_loss for h in b.history]
    wa, wb = _weights(a.model), _weights(b.model)
    assert all(torch.equal(wa[k], wb[k]) for k in wa)
    c = fit_prepared(prepared, params.with_overrides(seed=params.seed + 1), DEVICE)
    assert [h.train_loss for h in c.history] != [h.train_loss for h in a.history]


def test_early_stopping_stops_and_restores_the_best_epoch(prepared):
    # A learning rate this high makes validation AUC stop improving quickly.
    params = TrainParams(**{**SMALL_PARAMS, "max_epochs": 30, "patience": 2, "learning_rate": 0.5})
    result = fit_prepared(prepared, params, DEVICE)
    assert result.stopped_early
    assert len(result.history) == result.best_epoch + params.patience < params.max_epochs
    best = max(h.val_metric for h in result.history)
    assert result.best_metric == best == result.history[result.best_epoch - 1].val_metric


class _Crash(RuntimeError):
    pass


def test_interrupted_run_resumes_from_its_checkpoint_and_matches_an_uninterrupted_run(prepared, tmp_path):
    params = TrainParams(**{**SMALL_PARAMS, "max_epochs": 6, "patience": 6})
    reference = fit_prepared(prepared, params, DEVICE)

    store = CheckpointStore(str(tmp_path / "ckpt"))

    def crash_after_epoch_3(stats):
        if stats.epoch == 3:
            raise _Crash("simulated crash after epoch 3")

    with pytest.raises(_Crash):
        fit_prepared(prepared, params, DEVICE, checkpoint=store, on_epoch=crash_after_epoch_3)
    saved = torch.load(_io.BytesIO(io.read_bytes(store.uri)), weights_only=True)
    assert saved["epoch"] == 3 and not saved["finished"]

    resumed = fit_prepared(prepared, params, DEVICE, checkpoint=store)
    assert resumed.resumed_from_epoch == 3
    assert [h.epoch for h in resumed.history] == list(range(1, 7))
    assert [h.val_metric for h in resumed.history] == [h.val_metric for h in reference.history]
    wr, wu = _weights(resumed.model), _weights(reference.model)
    assert all(torch.equal(wr[k], wu[k]) for k in wr)

    # A finished checkpoint is not trained again.
    again = fit_prepared(prepared, params, DEVICE, checkpoint=store)
    assert again.resumed_from_epoch == 6 and len(again.history) == 6


def test_checkpoint_of_other_parameters_is_not_reused(prepared, tmp_path, caplog):
    store = CheckpointStore(str(tmp_path / "ckpt"))
    fit_prepared(prepared, TrainParams(**{**SMALL_PARAMS, "max_epochs": 2}), DEVICE, checkpoint=store)
    other = fit_prepared(prepared, TrainParams(**{**SMALL_PARAMS, "max_epochs": 2, "hidden_size": 16}), DEVICE,
                         checkpoint=store)
    assert other.resumed_from_epoch == 0
    assert any("belongs to a different run" in r.getMessage() for r in caplog.records)
    assert (tmp_path / "ckpt" / CHECKPOINT_FILE).is_file()


def test_non_finite_loss_fails_loudly_with_the_learning_rate(prepared):
    from ai_factory.training.loop import TensorSplit
    from ai_factory.training.steps import Prepared

    train = prepared.splits["train"]
    poisoned = TensorSplit(train.x_num.clone(), train.x_cat, train.y)
    poisoned.x_num[5, 0] = float("nan")
    bad = Prepared(prepared.preprocessor, {**prepared.splits, "train": poisoned})
    with pytest.raises(FloatingPointError, match=r"epoch 1 \(learning_rate=0.001\)"):
        fit_prepared(bad, TrainParams(**SMALL_PARAMS), DEVICE)
