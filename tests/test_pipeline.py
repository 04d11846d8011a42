"""End-to-end: a real run on generated data, and the direction of the CLIPMem effect."""

from __future__ import annotations

import json

import numpy as np
import pytest

from clipmem_core import cache
from clipmem_core.config import RunConfig
from clipmem_core.errors import ClipmemError
from clipmem_core.pipeline import STATE_FILE, compute_clipmem

pytestmark = pytest.mark.slow


def test_mis_captioned_candidates_are_the_most_memorized(tiny_run):
    scores = tiny_run.scores
    candidates = scores[scores["split"] == "candidate"]
    flagged = candidates["is_miscaptioned"].astype(bool)
    assert flagged.sum() > 0 and (~flagged).sum() > 0
    assert candidates.loc[flagged, "clipmem"].mean() > candidates.loc[~flagged, "clipmem"].mean()


def test_memorization_is_positive_on_candidates_and_negative_on_independents_seen_from_f(tiny_run):
    scores = tiny_run.scores
    assert scores.loc[scores["split"] == "candidate", "clipmem_from_f"].mean() > 0
    assert scores.loc[scores["split"] == "independent", "clipmem_from_f"].mean() < 0


def test_clipmem_definitions_hold_row_by_row(tiny_run):
    scores = tiny_run.scores
    cand, ind = scores["split"] == "candidate", scores["split"] == "independent"
    np.testing.assert_allclose(
        scores.loc[cand, "clipmem"], scores.loc[cand, "align_f"] - scores.loc[cand, "align_g"], atol=1e-5
    )
    np.testing.assert_allclose(
        scores.loc[ind, "clipmem"], scores.loc[ind, "align_g"] - scores.loc[ind, "align_f"], atol=1e-5
    )
    assert scores.loc[~(cand | ind), "clipmem"].isna().all()
    scored = scores.loc[cand | ind, "clipmem"]
    np.testing.assert_allclose(
        scores.loc[cand | ind, "clipmem_norm"], scored / (scored.max() - scored.min()), atol=1e-5
    )
    views = tiny_run.view_alignments
    np.testing.assert_allclose(views[cand.to_numpy(), 0].mean(axis=1), scores.loc[cand, "align_f"], atol=1e-5)


def test_run_folder_is_complete_and_consistent(tiny_run):
    n = len(tiny_run.scores)
    assert set(tiny_run.scores["split"]) == {"shared", "candidate", "independent", "extra"}
    assert not set(cache.SCORE_COLUMNS) - set(tiny_run.scores.columns)
    assert tiny_run.image_embeddings.shape[0] == n == tiny_run.text_embeddings.shape[0]
    np.testing.assert_allclose(np.linalg.norm(tiny_run.image_embeddings, axis=1), 1, atol=1e-4)
    scores = tiny_run.scores
    np.testing.assert_allclose(
        np.einsum("ij,ij->i", tiny_run.image_embeddings, tiny_run.text_embeddings), scores["clip_score_f"], atol=1e-4
    )
    assert tiny_run.thumbnail_path(n - 1) is not None
    assert tiny_run.image_path(0) is not None
    manifest = tiny_run.manifest
    assert manifest["splits"]["candidate"] == (scores["split"] == "candidate").sum()
    assert {"train_f", "train_g", "score", "embed"} <= set(manifest["timings"])
    assert set(manifest["utility"]) == {"f", "g"}
    assert manifest["summary"]["detection"]["n_miscaptioned"] == int(
        scores.loc[scores["split"] == "candidate", "is_miscaptioned"].sum()
    )
    assert (tiny_run.path / cache.CHECKPOINT_DIR / "f_last.pt").exists()
    assert not (tiny_run.path / STATE_FILE).exists()
    assert not list(tiny_run.path.rglob("*.tmp"))


def test_a_finished_run_is_never_overwritten(tiny_run, noisy_shapes):
    with pytest.raises(ClipmemError, match="already holds a complete run"):
        compute_clipmem(RunConfig(data=str(noisy_shapes), out=str(tiny_run.path), preset="tiny"))


def test_an_interrupted_run_needs_resume_and_resumes_from_checkpoints(noisy_shapes, tmp_path, monkeypatch):
    out = tmp_path / "interrupted"
    config = RunConfig(data=str(noisy_shapes), out=str(out), preset="tiny", epochs=2, augmentations=2)
    import clipmem_core.pipeline as pipeline

    def crash(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(pipeline, "view_alignments", crash)
    with pytest.raises(KeyboardInterrupt):
        compute_clipmem(config)
    assert not (out / cache.MANIFEST).exists()
    assert (out / cache.CHECKPOINT_DIR / "g_last.pt").exists()
    with pytest.raises(ClipmemError, match="--resume"):
        compute_clipmem(config)
    with pytest.raises(ClipmemError, match="other data or settings"):
        compute_clipmem(RunConfig(**{**config.to_dict(), "epochs": 3}), resume=True)
    monkeypatch.undo()
    run = compute_clipmem(config, resume=True)
    assert run.manifest["training"]["f"]["resumed_from_epoch"] == 2  # both epochs were already done
    assert len(run.manifest["training"]["g"]["epoch_losses"]) == 2
    assert json.loads((out / cache.MANIFEST).read_text())["status"] == "complete"
