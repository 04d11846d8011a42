"""Retained alignment: a copy of each fold model trains on the fold it held out, and its own pairs are scored
again. It must change no other score (the held-out ones above all), keep the trained model as it was, resume
from what it saved, and exist only under the full protocol."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from clipmem_core import cache, retention
from clipmem_core.config import RunConfig
from clipmem_core.errors import ClipmemError
from clipmem_core.models import create_clip
from clipmem_core.pipeline import compute_clipmem
from clipmem_core.synthetic import make_shapes_dataset
from clipmem_core.train import TrainConfig

pytestmark = pytest.mark.slow
SMALL = dict(preset="tiny", epochs=2, batch_size=8, augmentations=2, seed=0)


@pytest.fixture(scope="module")
def shapes(tmp_path_factory) -> Path:
    return make_shapes_dataset(tmp_path_factory.mktemp("retain_shapes"), 40, seed=0, miscaption_fraction=0.1)


@pytest.fixture(scope="module")
def without_and_with(shapes, tmp_path_factory):
    out = tmp_path_factory.mktemp("retain_runs")
    return tuple(
        compute_clipmem(RunConfig(data=str(shapes), out=str(out / f"retain{epochs}"), retain_epochs=epochs, **SMALL))
        for epochs in (0, 2)
    )


def test_retained_alignment_changes_no_other_score(without_and_with):
    without, with_it = without_and_with
    assert "retained_alignment" not in without.scores and with_it.scores["retained_alignment"].notna().all()
    for column in without.scores.columns:
        if column in ("combined", "proj_x", "proj_y"):  # the fusion takes it; the map follows the fusion
            continue
        left, right = without.scores[column], with_it.scores[column]
        if left.dtype.kind == "f":
            np.testing.assert_array_equal(left.to_numpy(), right.to_numpy(), err_msg=column)
        else:
            assert left.astype(str).tolist() == right.astype(str).tolist(), column
    assert not np.allclose(without.scores["combined"], with_it.scores["combined"])
    # the continued models trained on more pairs, so their fit differs from the finished models'
    assert not np.allclose(with_it.scores["retained_alignment"], with_it.scores["clip_score_train"])
    assert with_it.manifest.config["retain_epochs"] == 2 and "retain_h0" in with_it.manifest.timings


def test_the_values_are_kept_and_the_continued_checkpoints_removed(without_and_with):
    _, run = without_and_with
    folder, fold0 = run.path / cache.CHECKPOINT_DIR, (run.scores["split"] == "fold0").to_numpy()
    assert not list(folder.glob("*_retained.pt"))
    # h1 trained on fold0: its saved values are fold0's rows, in row order
    np.testing.assert_array_equal(np.load(folder / "h1_retained.npy"), run.scores.loc[fold0, "retained_alignment"])
    np.testing.assert_array_equal(np.load(folder / "h0_retained.npy"), run.scores.loc[~fold0, "retained_alignment"])


def test_the_continued_copy_leaves_the_trained_model_as_it_was_and_a_resume_reads_the_values_back(
    shapes, tmp_path, monkeypatch
):
    torch.manual_seed(0)
    bundle = create_clip("clipmem-tiny")
    before = {k: v.clone() for k, v in bundle.model.state_dict().items()}
    image = np.zeros((32, 32, 3), np.uint8)
    from PIL import Image

    images = [Image.fromarray(image + 40 * i) for i in range(6)]
    own = (images[:3], ["a red square", "a blue circle", "a green star"])
    held_out = (images[3:], [["a red circle"], ["a blue star"], ["a green square"]])
    config = TrainConfig(epochs=1, batch_size=3, lr=1e-3)
    values = retention.retained_alignment(bundle, own, held_out, config, tmp_path, tag="h0", device=torch.device("cpu"))
    assert values.shape == (3,) and np.isfinite(values).all()
    after = bundle.model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)
    assert (tmp_path / "h0_retained.npy").exists() and not (tmp_path / "h0_retained.pt").exists()

    def no_training(*args, **kwargs):
        raise AssertionError("a resumed run reads its saved values; it does not train again")

    monkeypatch.setattr(retention, "train_clip", no_training)
    again = retention.retained_alignment(bundle, own, held_out, config, tmp_path, tag="h0", device=torch.device("cpu"))
    np.testing.assert_array_equal(values, again)


def test_the_paper_protocol_does_not_measure_it(shapes, tmp_path):
    config = RunConfig(data=str(shapes), out=str(tmp_path / "paper"), protocol="paper", retain_epochs=2, **SMALL)
    run = compute_clipmem(config)
    assert "retained_alignment" not in run.scores and not any("retain" in stage for stage in run.manifest.timings)


def test_a_negative_number_of_epochs_is_refused():
    with pytest.raises(ClipmemError, match="--retain-epochs must be a whole number from 0"):
        RunConfig(data="x.csv", out="out", retain_epochs=-1).resolved()
    with pytest.raises(ClipmemError, match="at least 1 epoch"):  # a continued training of none measures nothing
        retention.continued_config(TrainConfig(epochs=5, batch_size=8, lr=1e-3), 0)
    # opt-in: on small data it found fewer mis-captions (docs/detection.md, "Retained alignment")
    assert all(RunConfig(data="x.csv", out="out", preset=p).resolved().retain_epochs == 0 for p in ("tiny", "cpu"))


def test_the_benchmark_measures_a_finished_run_as_the_pipeline_would_have(without_and_with, monkeypatch):
    """bench/bench_retention.py continues a finished run's checkpoints: the values a run made with
    --retain-epochs stores, and its table holds the shipped ranking among the recipes."""
    from bench.bench_retention import measure, retained_values, table

    without, with_it = without_and_with
    values, _ = retained_values(without, epochs=2)
    np.testing.assert_allclose(values, with_it.scores["retained_alignment"], atol=1e-6)
    monkeypatch.setattr(retention, "train_clip", lambda *a, **k: pytest.fail("a second pass reads the saved values"))
    np.testing.assert_array_equal(retained_values(without, epochs=2)[0], values)
    printed = table(measure([with_it.path], epochs=2))
    assert "| retained alignment for the training loss (--retain-epochs) |" in printed and "| control:" in printed
