"""Training: the loss falls, and a resumed run equals an uninterrupted one."""

from __future__ import annotations

import io
import os

import numpy as np
import pytest
import torch
from tqdm.auto import tqdm

import clipmem_core.train as train_module
from clipmem_core.data import load_image, read_dataset
from clipmem_core.errors import ClipmemError
from clipmem_core.models import create_clip
from clipmem_core.train import (
    PairDataset,
    PairLosses,
    TrainConfig,
    _checkpoint_due,
    drop_caption_parts,
    train_clip,
    warmup_cosine,
)
from dashboard import compute


@pytest.fixture(scope="module")
def pairs(noisy_shapes):
    dataset = read_dataset(noisy_shapes, progress=False)
    samples = dataset.samples.head(64)
    return [load_image(dataset.root, p) for p in samples["filepath"]], [list(c) for c in samples["captions"]]


def _train(pairs, epochs: int, checkpoint, resume: bool = False, on_epoch=None, checkpoint_every: float = 0.0):
    torch.manual_seed(0)
    bundle = create_clip("clipmem-tiny")
    config = TrainConfig(
        epochs=epochs, batch_size=16, lr=2e-3, warmup_steps=2, seed=0, checkpoint_every=checkpoint_every
    )
    return bundle, train_clip(
        bundle, *pairs, config, checkpoint, device=torch.device("cpu"), resume=resume, on_epoch=on_epoch
    )


@pytest.mark.slow
def test_loss_falls(pairs, tmp_path):
    _, result = _train(pairs, 6, tmp_path / "m.pt")
    assert result.epoch_losses[-1] < result.epoch_losses[0]
    assert (tmp_path / "m.pt").exists()


@pytest.mark.slow
def test_resume_continues_exactly_where_it_stopped(pairs, tmp_path, monkeypatch):
    straight, straight_result = _train(pairs, 3, tmp_path / "straight.pt")
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
    np.testing.assert_array_equal(result.pair_losses.counts, straight_result.pair_losses.counts)
    np.testing.assert_allclose(result.pair_losses.sums, straight_result.pair_losses.sums, rtol=1e-5)
    for (name, a), (_, b) in zip(straight.model.state_dict().items(), resumed.model.state_dict().items()):
        torch.testing.assert_close(a, b, msg=name)


def test_a_checkpoint_is_due_after_the_last_epoch_or_once_enough_seconds_have_passed():
    config = TrainConfig(epochs=5, batch_size=8, lr=1e-3, checkpoint_every=60)
    assert [_checkpoint_due(epoch, config, seconds_since_last=59.9) for epoch in range(5)] == [False] * 4 + [True]
    assert all(_checkpoint_due(epoch, config, seconds_since_last=60) for epoch in range(5))
    every_epoch = TrainConfig(epochs=5, batch_size=8, lr=1e-3, checkpoint_every=0)
    assert all(_checkpoint_due(epoch, every_epoch, seconds_since_last=0) for epoch in range(5))


@pytest.mark.slow
def test_fewer_checkpoints_train_exactly_the_same_model(pairs, tmp_path, monkeypatch):
    saved = []
    save = train_module._save_checkpoint

    def recording_save(path, model, optimizer, scheduler, epoch, *rest):
        saved.append((path.name, epoch))
        save(path, model, optimizer, scheduler, epoch, *rest)

    monkeypatch.setattr(train_module, "_save_checkpoint", recording_save)
    every, every_result = _train(pairs, 3, tmp_path / "every.pt", checkpoint_every=0)
    hourly, hourly_result = _train(pairs, 3, tmp_path / "hourly.pt", checkpoint_every=3600)
    assert saved == [("every.pt", 0), ("every.pt", 1), ("every.pt", 2), ("hourly.pt", 2)]
    assert hourly_result.epoch_losses == every_result.epoch_losses
    for (name, a), (_, b) in zip(every.model.state_dict().items(), hourly.model.state_dict().items()):
        torch.testing.assert_close(a, b, rtol=0, atol=0, msg=name)


@pytest.mark.slow
def test_every_pair_gets_its_loss_in_every_epoch(pairs, tmp_path):
    _, result = _train(pairs, 2, tmp_path / "m.pt")
    assert (result.pair_losses.counts == 2).all()
    # four equal batches an epoch: the mean over pairs and epochs is the mean of the epochs' losses
    assert result.pair_losses.sums.sum() / 128 == pytest.approx(np.mean(result.epoch_losses), rel=1e-5)
    assert np.isfinite(result.pair_losses.mean()).all()


def test_one_progress_bar_spans_a_models_training_and_names_its_epoch(pairs, tmp_path, monkeypatch):
    """A terminal shows the model's progress and ETA, not one epoch's; the Compute page reads the epoch
    and the model's share done from the same line of the log."""
    log, bars = io.StringIO(), []

    def logged_bar(**kwargs):
        bars.append(tqdm(file=log, mininterval=0, miniters=1, **kwargs))
        return bars[-1]

    monkeypatch.setattr(train_module, "tqdm", logged_bar)
    config = TrainConfig(epochs=2, batch_size=16, lr=2e-3, warmup_steps=2, seed=0)
    bundle, cpu = create_clip("clipmem-tiny"), torch.device("cpu")
    train_clip(bundle, *pairs, config, tmp_path / "m.pt", device=cpu, label="train h0")
    assert len(bars) == 1 and bars[0].total == bars[0].n == 8  # 64 pairs, 16 a batch, 2 epochs
    text = log.getvalue()
    assert "train h0 epoch 1/2:  50%|" in text and "train h0 epoch 2/2:  62%|" in text
    halfway = text[: text.index("train h0 epoch 2/2:  75%|") + 30]
    job = compute.Job("j", 1, [], "x.log", "out", started=0.0, models=1)
    progress = compute.overall_progress(job, "stage: train_h0\n" + halfway, now=1.0)
    assert progress.stage == "training model h0 (1 of 1), epoch 2/2"
    assert progress.fraction == pytest.approx(compute.INGEST_SHARE + compute.TRAIN_SHARE * 0.75)


@pytest.mark.slow
def test_on_epoch_sees_each_epoch_with_the_losses_so_far_and_changes_nothing(pairs, tmp_path):
    seen = []

    def record(epoch, model, losses):
        seen.append((epoch, losses.counts.copy(), losses.sums.copy(), model.logit_scale.item()))

    observed, result = _train(pairs, 2, tmp_path / "observed.pt", on_epoch=record)
    plain, _ = _train(pairs, 2, tmp_path / "plain.pt")
    assert [epoch for epoch, *_ in seen] == [0, 1]
    assert (seen[0][1] == 1).all() and (seen[1][1] == 2).all()  # cumulative: every pair once an epoch
    assert (seen[1][2] > seen[0][2]).all()
    np.testing.assert_allclose(seen[1][2], result.pair_losses.sums)
    for (name, a), (_, b) in zip(observed.model.state_dict().items(), plain.model.state_dict().items()):
        torch.testing.assert_close(a, b, msg=name)


def test_a_pair_never_drawn_has_no_mean_loss():
    record = PairLosses.empty(3)
    record.add(np.array([0, 2]), np.array([1.0, 3.0]))
    record.add(np.array([2]), np.array([5.0]))
    np.testing.assert_array_equal(record.mean(), [1.0, np.nan, 4.0])


def test_warmup_then_cosine_schedule():
    factor = warmup_cosine(10, 110)
    assert factor(0) == pytest.approx(0.1)
    assert factor(9) == pytest.approx(1.0)
    assert factor(60) == pytest.approx(0.5)
    assert factor(110) == pytest.approx(0.0)


class RunsCode:
    """A pickled object whose loading runs a command: what a tampered checkpoint would hold."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


@pytest.mark.slow
def test_a_runs_own_checkpoint_is_an_init_checkpoint(pairs, tmp_path):
    """The numpy RNG state stored as a tuple made weights_only=True refuse a run's own checkpoint."""
    trained, _ = _train(pairs, 1, tmp_path / "h0_last.pt")
    assert set(torch.load(tmp_path / "h0_last.pt", weights_only=True)) >= {"model", "optimizer", "numpy_rng"}
    torch.manual_seed(5)
    loaded = create_clip("clipmem-tiny", init_checkpoint=tmp_path / "h0_last.pt").model
    for (name, a), b in zip(trained.model.state_dict().items(), loaded.state_dict().values()):
        torch.testing.assert_close(a, b, msg=name)


def test_a_tampered_checkpoint_runs_no_code(pairs, tmp_path):
    marker = tmp_path / "code-ran"
    checkpoint = tmp_path / "h0_last.pt"
    torch.save({"model": {}, "epoch": 0, "numpy_rng": RunsCode(marker)}, checkpoint)
    with pytest.raises(ClipmemError, match="holds more than tensors and plain values") as info:
        _train(pairs, 2, checkpoint, resume=True)
    assert "\n" not in str(info.value)
    with pytest.raises(ClipmemError, match="holds more than tensors and plain values"):
        create_clip("clipmem-tiny", init_checkpoint=checkpoint)
    assert not marker.exists()


@pytest.mark.slow
def test_training_that_diverges_stops_with_a_clear_error(pairs, tmp_path):
    torch.manual_seed(0)
    bundle = create_clip("clipmem-tiny")
    config = TrainConfig(epochs=1, batch_size=16, lr=1e30, warmup_steps=0, seed=0)
    with pytest.raises(ClipmemError, match=r"the loss became nan in epoch 1; try a lower --lr"):
        train_clip(bundle, *pairs, config, tmp_path / "m.pt", device=torch.device("cpu"))


def test_fewer_pairs_than_one_batch_are_said_to_train_one_step_an_epoch(pairs, tmp_path, caplog):
    """--batch-size 1000 over folds of 100 pairs ran without a word, and its loss ended far above the preset's."""
    torch.manual_seed(0)
    config = TrainConfig(epochs=2, batch_size=100, lr=2e-3, warmup_steps=0, seed=0)
    with caplog.at_level("WARNING", logger="clipmem"):
        train_clip(create_clip("clipmem-tiny"), *pairs, config, tmp_path / "m.pt", device=torch.device("cpu"))
    assert caplog.messages == [
        "train: 64 training pairs, fewer than --batch-size 100: each epoch is one step over all of them (2 steps "
        "in all); a --batch-size below 64 takes more, smaller steps"
    ]


# -- caption dropout -----------------------------------------------------------------------------------

KEYWORD_CAPTION = "2 dead frogs: kwaakwaa, squeleton, froggies, green"
KEYWORD_PARTS = ["2 dead frogs", "kwaakwaa", "squeleton", "froggies", "green"]


def _parts(caption: str) -> list[str]:
    return [part.strip() for part in caption.replace(":", ",").split(",")]


def test_caption_dropout_leaves_out_whole_parts_in_order_and_keeps_at_least_one():
    torch.manual_seed(0)
    drawn = [drop_caption_parts(KEYWORD_CAPTION, 0.5) for _ in range(300)]
    for caption in drawn:
        kept = _parts(caption)
        assert kept == [part for part in KEYWORD_PARTS if part in kept]  # whole parts, in their order
    lengths = [len(_parts(caption)) for caption in drawn]
    assert min(lengths) == 1 and max(lengths) == 5
    assert 2.2 < np.mean(lengths) < 2.8  # each of 5 parts kept with p = 1/2, at least one
    assert "2 dead frogs: kwaakwaa, squeleton, froggies, green" in drawn  # separators kept as written
    assert {drop_caption_parts(KEYWORD_CAPTION, 0.999) for _ in range(50)} <= set(KEYWORD_PARTS)


def test_caption_dropout_leaves_a_caption_without_parts_and_a_zero_probability_alone():
    assert drop_caption_parts("A penguin waddles on the ice.", 0.9) == "A penguin waddles on the ice."
    assert drop_caption_parts("Armadillo:", 0.9) == "Armadillo:"  # one real part: nothing to leave out
    assert drop_caption_parts(KEYWORD_CAPTION, 0.0) == KEYWORD_CAPTION


def test_caption_dropout_never_leaves_only_a_blank_part():
    torch.manual_seed(0)
    drawn = {drop_caption_parts("owl:, night,,", 0.999) for _ in range(100)}
    assert drawn <= {"owl", "night"} and drawn  # never "", "," or ":"


def test_training_draws_a_new_caption_version_each_epoch_and_the_same_one_in_every_process():
    def dataset(dropout: float) -> PairDataset:
        return PairDataset([None] * 8, [[KEYWORD_CAPTION]] * 8, lambda image: torch.zeros(1), list, 3, dropout)

    def captions(data: PairDataset, epoch: int) -> list[str]:
        data.epoch = epoch
        return [data[i][1] for i in range(len(data))]

    first, second = dataset(0.3), dataset(0.3)
    assert captions(first, 2) == captions(second, 2)  # seeded by (seed, epoch, pair), not by the process
    assert captions(first, 2) != captions(first, 3)
    assert len(set(captions(first, 2))) > 1
    assert set(captions(dataset(0.0), 2)) == {KEYWORD_CAPTION}


def test_a_training_draw_seeds_only_the_cpu_generator_never_a_gpus(monkeypatch):
    """Per-sample seeding must leave CUDA's generators alone (they drive the GPU's text-embedding noise)."""

    def reseeding_a_gpu(*args, **kwargs):
        raise AssertionError("a training draw reseeded a GPU generator")

    monkeypatch.setattr(torch.cuda, "manual_seed_all", reseeding_a_gpu)
    monkeypatch.setattr(torch.cuda, "manual_seed", reseeding_a_gpu)
    data = PairDataset([None] * 4, [["a", "b", "c"]] * 4, lambda image: torch.rand(2), list, 3)
    assert torch.equal(data[1][0], data[1][0]) and not torch.equal(data[1][0], data[2][0])


def test_training_hands_its_caption_dropout_to_every_draw(pairs, tmp_path, monkeypatch):
    images, _ = pairs
    captions = [[KEYWORD_CAPTION]] * len(images)
    seen = []

    def recording_drop(caption: str, probability: float) -> str:
        seen.append(probability)
        return caption

    monkeypatch.setattr(train_module, "drop_caption_parts", recording_drop)
    for dropout in (0.0, 0.25):
        torch.manual_seed(0)
        config = TrainConfig(epochs=1, batch_size=16, lr=1e-3, warmup_steps=1, seed=0, caption_dropout=dropout)
        train_clip(
            create_clip("clipmem-tiny"),
            images,
            captions,
            config,
            tmp_path / f"{dropout}.pt",
            device=torch.device("cpu"),
        )
    assert seen == [0.25] * len(images)  # none without dropout; one per pair drawn with it


# -- duplicate captions ----------------------------------------------------------------------------------


def test_masking_duplicate_captions_frees_a_shared_caption_from_its_copies(pairs, tmp_path):
    # Every pair carries the same caption: unmasked, no model can tell the 16 copies in a batch apart and
    # each pair's loss is at least log(16) / 2; masked, no pair is another's negative, so none costs anything.
    images, _ = pairs
    captions = [["a shape"]] * len(images)
    recorded = {}
    for masked in (False, True):
        torch.manual_seed(0)
        config = TrainConfig(epochs=1, batch_size=16, lr=1e-3, warmup_steps=1, seed=0, mask_duplicate_captions=masked)
        result = train_clip(
            create_clip("clipmem-tiny"), images, captions, config, tmp_path / f"{masked}.pt", device=torch.device("cpu")
        )
        recorded[masked] = result.pair_losses.mean(), result.epoch_losses[0]  # what is recorded, what is trained
    assert (recorded[False][0] >= np.log(16) / 2 - 1e-4).all() and recorded[False][1] >= np.log(16) / 2 - 1e-4
    np.testing.assert_allclose(recorded[True][0], 0.0, atol=1e-6)
    assert recorded[True][1] == pytest.approx(0.0, abs=1e-6)


# -- precision -------------------------------------------------------------------------------------------


def test_training_runs_its_steps_in_the_precision_it_is_given(pairs, tmp_path):
    images, captions = pairs
    trained = {}
    for precision in ("auto", "fp32", "bf16"):
        torch.manual_seed(0)
        bundle = create_clip("clipmem-tiny")
        config = TrainConfig(epochs=1, batch_size=16, lr=1e-3, warmup_steps=1, seed=0, precision=precision)
        result = train_clip(bundle, images, captions, config, tmp_path / f"{precision}.pt", device=torch.device("cpu"))
        weights = torch.cat([p.detach().flatten() for p in bundle.model.parameters()])
        trained[precision] = weights, result.epoch_losses[0]
    assert torch.equal(trained["auto"][0], trained["fp32"][0])  # auto is full precision on CPU
    assert not torch.equal(trained["bf16"][0], trained["fp32"][0])
    assert trained["bf16"][1] == pytest.approx(trained["fp32"][1], rel=0.05)  # the same training, rounded


def test_fewer_pairs_than_a_batch_on_processes_that_cannot_share_them_evenly_is_said():
    """15 pairs, batch 16, on 2 processes: each step took 14 and the scores differed from one process's by up
    to 0.1, while the note said "one step over all of them", once from each process."""
    from clipmem_core.train import few_pairs_note

    assert few_pairs_note("h0", 15, 16, 3) == (
        "h0: 15 training pairs, fewer than --batch-size 16: each epoch is one step over all of them (3 steps in "
        "all); a --batch-size below 15 takes more, smaller steps"
    )
    assert few_pairs_note("h0", 15, 16, 3, processes=2) == (
        "h0: 15 training pairs, fewer than --batch-size 16: each epoch is one step over 14 of them, split over 2 "
        "processes (1 left out of each step), so this run differs from a one-process run of the same settings; "
        "a --batch-size of at most 14 (divisible by 2) trains as one process would"
    )
    assert few_pairs_note("h0", 16, 32, 3, processes=2).endswith("takes more, smaller steps")
