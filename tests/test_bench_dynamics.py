"""bench/bench_dynamics.py: per-epoch losses from cumulative sums, the rankings of a recorded run."""

from __future__ import annotations

import numpy as np
import pytest

from bench.bench_dynamics import (
    EpochRecorder,
    RecordedRun,
    _early_epochs,
    epoch_losses,
    loss_variants,
    main,
    measure,
)
from clipmem_core.config import RunConfig
from clipmem_core.errors import ClipmemError
from clipmem_core.metrics import detection_scores

THREE_EPOCHS = dict(preset="tiny", epochs=3, batch_size=8, augmentations=2, warmup_steps=1, thumbnail_size=16)


def test_epoch_losses_undo_the_cumulative_sums_and_leave_an_undrawn_pair_unknown():
    sums = [np.array([1.0, 2.0, 0.0]), np.array([4.0, 3.0, 5.0])]
    counts = [np.array([1, 1, 0]), np.array([2, 2, 1])]
    np.testing.assert_allclose(epoch_losses(sums, counts), [[1.0, 2.0, np.nan], [3.0, 1.0, 5.0]])


def test_loss_variants_average_the_epochs_they_name():
    losses = np.array([[float(e), 10.0 * e] for e in range(15)])  # (epochs, pairs)
    variants = loss_variants(losses)
    np.testing.assert_allclose(variants["loss over epochs 11–15"], [12.0, 120.0])
    np.testing.assert_allclose(variants["loss over epochs 1–5"], [2.0, 20.0])
    np.testing.assert_allclose(variants["loss of the last epoch"], [14.0, 140.0])
    weights = np.arange(1, 16)
    np.testing.assert_allclose(variants["loss, weights rising with the epoch"][0], (weights * losses[:, 0]).sum() / 120)
    assert _early_epochs(15) == [4, 7, 10]  # checkpoints of epochs 5, 8 and 11 of the cpu preset


def test_on_epoch_cannot_follow_models_trained_in_other_processes(noisy_shapes, tmp_path):
    from clipmem_core.pipeline import compute_clipmem

    config = RunConfig(data=str(noisy_shapes), out=str(tmp_path / "run"), parallel_models=True, **THREE_EPOCHS)
    with pytest.raises(ClipmemError, match="parallel-models"):
        compute_clipmem(config, on_epoch=lambda end: None)
    assert not (tmp_path / "run").exists()


@pytest.mark.slow
def test_a_recorded_run_gives_back_its_own_loss_and_ranking(noisy_shapes, tmp_path):
    from clipmem_core.pipeline import compute_clipmem

    config = RunConfig(data=str(noisy_shapes), out=str(tmp_path / "run"), **THREE_EPOCHS)
    run = compute_clipmem(config, on_epoch=EpochRecorder(tmp_path / "recorded"))
    recorded = RecordedRun(run.path, tmp_path / "recorded")
    # 120 pairs a model in batches of 8: every pair once an epoch, so the mean of the epochs is the run's loss
    np.testing.assert_allclose(np.nanmean(recorded.training_losses(), axis=0), run.scores["fit_loss"], rtol=1e-5)
    found = measure(recorded, views=3)
    truth = run.scores["is_miscaptioned"].to_numpy(bool)
    assert found["shipped recipe (the run's own signals)"] == pytest.approx(
        detection_scores(run.scores["combined"], truth)
    )
    assert {
        "snapshot: weights of epochs 3–3 averaged",
        "training-side CSLS of epoch 1",
        "held-out members of epoch 1",
        "held-out CSLS alone, epoch 1",
        "held-out CSLS of epoch 1 (5th member)",
        "held-out CSLS alone, last epoch (centre views)",
    } <= found.keys()
    assert all(np.isfinite(scores["auroc"]) for scores in found.values())
    # the run's own views, scored again, give back the run's ranking; three views give another one
    assert found["members from 2 augmented views"] == pytest.approx(found["shipped recipe (the run's own signals)"])
    assert "members from 3 augmented views" in found
    with pytest.raises(ClipmemError, match="no recording of 6 model epochs"):
        RecordedRun(run.path, tmp_path / "elsewhere")


def test_the_benchmark_refuses_a_run_made_without_recording_in_one_line(tmp_path, capsys, monkeypatch):
    import json

    import pandas as pd

    import bench.bench_dynamics as dynamics

    run = tmp_path / "runs" / "shapes_s0_full"
    run.mkdir(parents=True)
    pd.DataFrame({"sample_id": ["a"]}).to_parquet(run / "scores.parquet")
    manifest = {"models": ["h0", "h1"], "config": {"model": "clipmem-tiny", "epochs": 2}, "dataset": {"root": "."}}
    (run / "manifest.json").write_text(json.dumps(manifest), encoding="utf-8")
    monkeypatch.setattr(dynamics, "make_run", lambda *args, **kwargs: None)  # the run is already made
    assert main(["--datasets", "shapes", "--seeds", "0", "--work", str(tmp_path)]) == 2
    error = capsys.readouterr().err.strip()
    assert error.startswith("shapes seed 0: ") and "no recording of 4 model epochs" in error
    assert "\n" not in error
