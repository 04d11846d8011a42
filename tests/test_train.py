"""Training: the loss falls, and a resumed run equals an uninterrupted one."""

from __future__ import annotations

import pytest
import torch

import clipmem_core.train as train_module
from clipmem_core.data import load_image, read_dataset
from clipmem_core.models import create_clip
from clipmem_core.train import TrainConfig, train_clip, warmup_cosine


@pytest.fixture(scope="module")
def pairs(noisy_shapes):
    dataset = read_dataset(noisy_shapes, progress=False)
    samples = dataset.samples.head(64)
    return [load_image(dataset.root, p) for p in samples["filepath"]], [list(c) for c in samples["captions"]]


def _train(pairs, epochs: int, checkpoint, resume: bool = False):
    torch.manual_seed(0)
    bundle = create_clip("clipmem-tiny")
    config = TrainConfig(epochs=epochs, batch_size=16, lr=2e-3, warmup_steps=2, seed=0)
    return bundle, train_clip(bundle, *pairs, config, checkpoint, device=torch.device("cpu"), resume=resume)


def test_loss_falls(pairs, tmp_path):
    _, result = _train(pairs, 6, tmp_path / "m.pt")
    assert result.epoch_losses[-1] < result.epoch_losses[0]
    assert (tmp_path / "m.pt").exists()


def test_resume_continues_exactly_where_it_stopped(pairs, tmp_path, monkeypatch):
    straight, _ = _train(pairs, 3, tmp_path / "straight.pt")
    save = train_module._save_checkpoint

    def save_then_die_after_epoch_two(path, model, optimizer, scheduler, epoch, *rest):
        save(path, model, optimizer, scheduler, epoch, *rest)
        if epoch == 1:
            raise KeyboardInterrupt

    monkeypatch.setattr(train_module, "_save_checkpoint", save_then_die_after_epoch_two)
    with pytest.raises(KeyboardInterrupt):
        _train(pairs, 3, tmp_path / "stopped.pt")
    monkeypatch.undo()
    resumed, result = _train(pairs, 3, tmp_path / "stopped.pt", resume=True)
    assert result.resumed_from_epoch == 2 and len(result.epoch_losses) == 3
    for (name, a), (_, b) in zip(straight.model.state_dict().items(), resumed.model.state_dict().items()):
        torch.testing.assert_close(a, b, msg=name)


def test_warmup_then_cosine_schedule():
    factor = warmup_cosine(10, 110)
    assert factor(0) == pytest.approx(0.1)
    assert factor(9) == pytest.approx(1.0)
    assert factor(60) == pytest.approx(0.5)
    assert factor(110) == pytest.approx(0.0)
