"""End to end: real runs on generated data under both protocols, the leak test, and resuming."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from clipmem_core import cache, load_run
from clipmem_core.config import RunConfig
from clipmem_core.data import load_image
from clipmem_core.errors import ClipmemError
from clipmem_core.fingerprints import image_fingerprint
from clipmem_core.pipeline import compute_clipmem
from clipmem_core.scores import registry
from clipmem_core.scores.combined import fuse
from clipmem_core.testing import assert_same_up_to_tied_neighbours

pytestmark = pytest.mark.slow


def _cos(run) -> np.ndarray:
    return np.einsum("ij,ij->i", run.image_embeddings, run.text_embeddings)


def test_full_protocol_scores_every_sample_with_every_score(tiny_run):
    scores = tiny_run.scores
    assert tiny_run.manifest.protocol == "full" and tiny_run.manifest.models == ["h0", "h1"]
    assert set(scores["split"]) == {"fold0", "fold1"}
    shared = scores["caption"].duplicated(keep=False).to_numpy()
    same_picture = scores["image_fingerprint"].duplicated(keep=False).to_numpy()
    for name in registry():
        if name == "agreement_caption_twins":  # by definition, only a caption that another sample carries
            assert (scores[name].notna().to_numpy() == shared).all() and shared.any(), name
        elif name == "agreement_duplicate_images":  # only a picture that another sample shows
            assert (scores[name].notna().to_numpy() == same_picture).all(), name
        else:
            assert scores[name].notna().all(), name
    first_image = load_image(tiny_run.dataset_root, scores["filepath"].iat[0])
    assert scores["image_fingerprint"].iat[0] == image_fingerprint(first_image)  # the pixels' own fingerprint


def test_no_held_out_value_comes_from_a_model_that_trained_on_the_sample(tiny_run):
    # the stored embeddings are h0's; h0 held fold0 out and trained on fold1
    scores, views = tiny_run.scores, tiny_run.view_alignments
    fold0 = (scores["split"] == "fold0").to_numpy()
    np.testing.assert_allclose(scores.loc[fold0, "clip_score_heldout"], _cos(tiny_run)[fold0], atol=1e-4)
    np.testing.assert_allclose(scores.loc[~fold0, "clip_score_train"], _cos(tiny_run)[~fold0], atol=1e-4)
    np.testing.assert_allclose(scores.loc[fold0, "align_heldout"], views[0, fold0].mean(axis=1), atol=1e-5)
    np.testing.assert_allclose(scores.loc[fold0, "align_train"], views[1, fold0].mean(axis=1), atol=1e-5)
    np.testing.assert_allclose(scores["clipmem"], scores["align_train"] - scores["align_heldout"], atol=1e-5)
    training = tiny_run.manifest.training
    assert training["h0"]["pairs"] == (~fold0).sum() and training["h1"]["pairs"] == fold0.sum()
    # the training loss of a fold0 sample is h1's record of it (h1 trained on fold0), in row order
    h1 = torch.load(tiny_run.path / cache.CHECKPOINT_DIR / "h1_last.pt", weights_only=True)
    mean_loss = (h1["pair_loss_sums"] / h1["pair_loss_counts"]).numpy()
    np.testing.assert_allclose(scores.loc[fold0, "fit_loss"], mean_loss, rtol=1e-5)


def test_pairs_that_no_training_step_drew_are_counted_in_a_warning(tmp_path, caplog):
    """Each epoch leaves out its last, incomplete batch: at one epoch of batch 32 over folds of 60, 28 pairs
    a model were never trained on, and their training-side scores came from a model that never saw them,
    without a word."""
    from clipmem_core.synthetic import make_shapes_dataset

    data = make_shapes_dataset(tmp_path / "shapes", 120, seed=0)
    config = RunConfig(data=str(data), out=str(tmp_path / "r"), preset="tiny", epochs=1, augmentations=1)
    with caplog.at_level("WARNING", logger="clipmem"):
        run = compute_clipmem(RunConfig(**{**config.to_dict(), "batch_size": 32}))
    assert run.scores["fit_loss"].isna().sum() == 2 * 28
    for tag in ("h0", "h1"):
        assert f"{tag}: 28 of its 60 training pairs were never drawn in training" in caplog.text


def test_the_combined_ranking_finds_the_generated_mis_captions(tiny_run):
    detection = tiny_run.manifest.summary["detection"]
    assert detection["n_samples"] == len(tiny_run.scores)
    assert detection["detectors"]["combined"]["auroc"] > 0.75


def test_a_finished_run_can_be_re_ranked_from_its_files(tiny_run):
    """The combined ranking is made relative to the nearest images in the run's stored embeddings, so its
    stored signals and embeddings give it back (bench_detection re-ranks old runs so)."""
    scores = tiny_run.scores
    from_files = fuse(scores, images=np.asarray(tiny_run.image_embeddings))
    assert_same_up_to_tied_neighbours(scores["combined"], from_files)
    assert np.abs(from_files - fuse(scores)).max() > 0.05  # the neighbourhood is part of it


def test_paper_protocol_mis_captioned_candidates_are_the_most_memorized(paper_run):
    scores = paper_run.scores
    candidates = scores[scores["split"] == "candidate"]
    flagged = candidates["is_miscaptioned"].astype(bool)
    assert flagged.sum() > 0 and (~flagged).sum() > 0
    assert candidates.loc[flagged, "clipmem"].mean() > candidates.loc[~flagged, "clipmem"].mean()
    assert scores.loc[scores["split"] == "candidate", "clipmem_from_f"].mean() > 0
    assert scores.loc[scores["split"] == "independent", "clipmem_from_f"].mean() < 0


def test_paper_protocol_clipmem_definitions_hold_row_by_row(paper_run):
    scores = paper_run.scores
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
    views = paper_run.view_alignments
    np.testing.assert_allclose(views[0, cand.to_numpy()].mean(axis=1), scores.loc[cand, "align_f"], atol=1e-5)
    np.testing.assert_allclose(_cos(paper_run), scores["clip_score_f"], atol=1e-4)
    assert set(paper_run.manifest.summary["detection_candidates"]["detectors"]) >= {"clipmem", "combined"}


def test_run_folder_is_complete_and_consistent(tiny_run):
    n = len(tiny_run.scores)
    assert tiny_run.image_embeddings.shape[0] == n == tiny_run.text_embeddings.shape[0]
    np.testing.assert_allclose(np.linalg.norm(tiny_run.image_embeddings, axis=1), 1, atol=1e-4)
    assert tiny_run.thumbnail_path(n - 1) is not None
    assert tiny_run.image_path(0) is not None
    manifest = tiny_run.manifest
    assert manifest.splits["fold0"] == (tiny_run.scores["split"] == "fold0").sum()
    assert {"train_h0", "train_h1", "score", "embed", "signals", "index", "write"} <= set(manifest.timings)
    assert set(manifest.utility) == {"h0", "h1"}
    assert manifest.compute == {"device": "cpu", "precision": "fp32"}  # what --precision auto became here
    assert manifest.summary["detection"]["n_miscaptioned"] == int(tiny_run.scores["is_miscaptioned"].sum())
    assert (tiny_run.path / cache.CHECKPOINT_DIR / "h1_last.pt").exists()
    assert not (tiny_run.path / cache.STATE_FILE).exists()
    assert not list(tiny_run.path.rglob("*.tmp"))


def test_a_finished_run_is_never_overwritten(tiny_run, noisy_shapes):
    with pytest.raises(ClipmemError, match="already holds a complete run"):
        compute_clipmem(RunConfig(data=str(noisy_shapes), out=str(tiny_run.path), preset="tiny"))


def test_resuming_a_finished_run_compares_where_its_data_is_not_how_it_was_typed(tiny_run, noisy_shapes, monkeypatch):
    config = load_run(tiny_run.path).manifest.config
    monkeypatch.chdir(noisy_shapes.parent)
    same = RunConfig(**{**config, "data": noisy_shapes.name})
    assert compute_clipmem(same, resume=True).path == tiny_run.path  # done already: nothing to do
    elsewhere = noisy_shapes.parent / "copy" / noisy_shapes.name
    with pytest.raises(ClipmemError, match=f"made from {noisy_shapes}, not {elsewhere}; choose another --out"):
        compute_clipmem(RunConfig(**{**config, "data": str(elsewhere)}), resume=True)
    with pytest.raises(ClipmemError, match=r"other settings \(--epochs 30 then, 3 now\)"):
        compute_clipmem(RunConfig(**{**config, "epochs": 3}), resume=True)


def test_captions_cut_by_the_text_encoder_are_among_the_runs_notes_on_its_data(tmp_path):
    """Only logged: `summary` and the Overview, which show what reading the data warned about, said nothing."""
    from clipmem_core.synthetic import make_shapes_dataset

    data = make_shapes_dataset(tmp_path / "shapes", 24, seed=0)
    table = pd.read_csv(data)
    table.loc[2, "caption"] = "a very long caption " * 20
    table.to_csv(data, index=False)
    run = compute_clipmem(RunConfig(data=str(data), out=str(tmp_path / "r"), preset="tiny", epochs=1, augmentations=1))
    assert any("1 of 24 captions are longer than" in note for note in run.manifest.dataset.warnings)


@pytest.mark.parametrize("protocol", ["full", "paper"])
def test_one_image_file_named_by_two_paths_stays_in_one_fold(tmp_path, protocol):
    """Through a symbolic link to the images folder or a hard link, an image's rows went to both folds, and a
    held-out model had trained on the image under another caption."""
    import os

    from clipmem_core.data import read_dataset
    from clipmem_core.pipeline import assign_rows
    from clipmem_core.synthetic import make_shapes_dataset

    data = make_shapes_dataset(tmp_path / "shapes", 60, seed=0)
    (tmp_path / "shapes" / "alias").symlink_to("images", target_is_directory=True)
    (tmp_path / "shapes" / "hard").mkdir()
    table = pd.read_csv(data)
    extra = []
    for i, path in enumerate(table["filepath"].head(30)):
        name = Path(path).name
        os.link(tmp_path / "shapes" / path, tmp_path / "shapes" / "hard" / name)
        extra += [{"filepath": f"alias/{name}", "caption": f"another caption {i}"}]
        extra += [{"filepath": f"hard/{name}", "caption": f"a third caption {i}"}]
    pd.concat([table, pd.DataFrame(extra)]).to_csv(data, index=False)
    dataset = read_dataset(data, progress=False)
    config = RunConfig(data=str(data), out=str(tmp_path / "r"), preset="tiny", protocol=protocol).resolved()
    rows, _ = assign_rows(dataset.samples, config, dataset.root)
    names = rows["filepath"].map(lambda p: Path(p).name)
    assert len(rows) == 120 or protocol == "paper"
    assert (rows.groupby(names)["split"].nunique() == 1).all()


def test_a_finished_run_is_handed_back_only_for_the_same_data_and_drop_list(tmp_path):
    """--resume said "already complete" and returned the run made without the --exclude list just added, or
    from the captions before an edit, as if it were the run asked for."""
    from clipmem_core.data import read_dataset
    from clipmem_core.synthetic import make_shapes_dataset

    data = make_shapes_dataset(tmp_path / "shapes", 48, seed=0)
    drop = tmp_path / "drop.txt"
    ids = read_dataset(data).samples["sample_id"]
    drop.write_text("\n".join(ids.head(3)) + "\n")
    plain = RunConfig(data=str(data), out=str(tmp_path / "plain"), preset="tiny", epochs=1, augmentations=1)
    cleaned = RunConfig(**{**plain.to_dict(), "out": str(tmp_path / "cleaned"), "exclude": str(drop)})
    compute_clipmem(plain)
    compute_clipmem(cleaned)
    assert load_run(tmp_path / "cleaned").manifest.dataset.exclude_digest
    assert compute_clipmem(plain, resume=True).path == Path(plain.out)  # the same: nothing to do
    assert compute_clipmem(cleaned, resume=True).path == Path(cleaned.out)
    with pytest.raises(ClipmemError, match="complete run made with no --exclude list; choose another --out"):
        compute_clipmem(RunConfig(**{**plain.to_dict(), "exclude": str(drop)}), resume=True)
    with pytest.raises(ClipmemError, match="made with an --exclude list, and none is given now"):
        compute_clipmem(RunConfig(**{**cleaned.to_dict(), "exclude": None}), resume=True)
    drop.write_text("\n".join(ids.head(4)) + "\n")
    with pytest.raises(ClipmemError, match="made with another --exclude list"):
        compute_clipmem(cleaned, resume=True)
    table = pd.read_csv(data)
    table.loc[5, "caption"] = "a purple elephant"
    table.to_csv(data, index=False)
    with pytest.raises(ClipmemError, match="complete run made from other data: a sample, a caption"):
        compute_clipmem(plain, resume=True)


def test_an_interrupted_run_needs_resume_and_resumes_from_checkpoints(noisy_shapes, tmp_path, monkeypatch, caplog):
    out = tmp_path / "interrupted"
    config = RunConfig(data=str(noisy_shapes), out=str(out), preset="tiny", epochs=2, augmentations=2)
    import clipmem_core.pipeline as pipeline

    def crash(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(pipeline, "view_alignments", crash)
    with pytest.raises(KeyboardInterrupt):
        compute_clipmem(config)
    assert not (out / cache.MANIFEST).exists()
    assert (out / cache.CHECKPOINT_DIR / "h1_last.pt").exists()
    with pytest.raises(ClipmemError, match="--resume"):
        compute_clipmem(config)
    with pytest.raises(ClipmemError, match="other settings: --epochs 2 then, 3 now; --resume needs the same"):
        compute_clipmem(RunConfig(**{**config.to_dict(), "epochs": 3}), resume=True)
    monkeypatch.undo()
    monkeypatch.chdir(noisy_shapes.parent)  # the same data, typed from another folder: the same run
    trained_for = torch.load(out / cache.CHECKPOINT_DIR / "h0_last.pt", weights_only=True)["seconds"]
    with caplog.at_level("INFO", logger="clipmem"):
        run = compute_clipmem(RunConfig(**{**config.to_dict(), "data": noisy_shapes.name}), resume=True)
    assert run.manifest.training["h0"]["resumed_from_epoch"] == 2  # both epochs were already done
    assert "h0: all 2 epochs trained; loaded from h0_last.pt" in caplog.text  # not "resuming after epoch 2 of 2"
    assert "h0: resuming" not in caplog.text
    assert run.manifest.timings["train_h0"] >= trained_for > 0  # the first session's training time counts
    assert len(run.manifest.training["h1"]["epoch_losses"]) == 2
    assert json.loads((out / cache.MANIFEST).read_text())["status"] == "complete"


def test_the_runs_precision_reaches_training_scoring_and_retained_alignment(noisy_shapes, tmp_path, monkeypatch):
    import clipmem_core.scoring as scoring
    import clipmem_core.train as train

    asked: dict[str, set[str]] = {"train": set(), "score": set()}

    def recording(name, real):
        def autocast(device, precision="auto"):
            asked[name].add(precision)
            return real(device, precision)

        return autocast

    monkeypatch.setattr(train, "autocast", recording("train", train.autocast))
    monkeypatch.setattr(scoring, "autocast", recording("score", scoring.autocast))
    config = RunConfig(
        data=str(noisy_shapes),
        out=str(tmp_path / "bf16"),
        preset="tiny",
        epochs=1,
        augmentations=2,
        retain_epochs=1,
        precision="bf16",
    )
    run = compute_clipmem(config)
    assert asked == {"train": {"bf16"}, "score": {"bf16"}}
    assert run.manifest.config["precision"] == "bf16" and run.manifest.compute == {"device": "cpu", "precision": "bf16"}
    assert run.scores["combined"].notna().all()


def test_huge_images_are_downscaled_on_load_so_a_run_never_holds_them_full_size(tmp_path):
    """Four 12000-px PNGs raised peak memory from 1.15 to 3.9 GB when full-size images were kept."""
    from PIL import Image

    from clipmem_core.image_list import ImageList

    Image.new("RGB", (4000, 1000), "white").save(tmp_path / "wide.png")
    Image.new("RGB", (20, 10), "white").save(tmp_path / "small.png")
    images = ImageList(tmp_path, ["wide.png", "small.png"], max_side=128)
    assert images[0].size == (128, 32)
    assert images[1].size == (20, 10)  # never upscaled


def _pack_shards(csv_path: Path, out: Path, per_shard: int) -> list[Path]:
    """The CSV dataset as WebDataset shards: <key>.png, <key>.txt and <key>.json (id, ground truth)."""
    import io
    import tarfile

    frame = pd.read_csv(csv_path)
    paths = []
    for number, start in enumerate(range(0, len(frame), per_shard)):
        paths.append(out / f"shard-{number:04d}.tar")
        with tarfile.open(paths[-1], "w") as tar:
            for i, row in frame.iloc[start : start + per_shard].iterrows():
                meta = json.dumps({"id": f"s{i}", "is_miscaptioned": bool(row["is_miscaptioned"])}).encode()
                image = (csv_path.parent / row["filepath"]).read_bytes()
                for name, data in (
                    (f"{i:05d}.png", image),
                    (f"{i:05d}.txt", row["caption"].encode()),
                    (f"{i:05d}.json", meta),
                ):
                    info = tarfile.TarInfo(name)
                    info.size = len(data)
                    tar.addfile(info, io.BytesIO(data))
    return paths


def test_a_run_on_webdataset_shards_reads_images_in_place_and_the_dashboard_shows_them(
    noisy_shapes, tmp_path, monkeypatch
):
    from dashboard.review import REVIEW_IMAGE_PX, large_image, review_image

    monkeypatch.setenv("CLIPMEM_DATA_CACHE", str(tmp_path / "extraction-cache"))
    shards = tmp_path / "shards"
    shards.mkdir()
    _pack_shards(noisy_shapes, shards, per_shard=100)
    config = RunConfig(data=str(shards), out=str(tmp_path / "run"), preset="tiny", epochs=1, augmentations=2)
    run = compute_clipmem(config)
    assert not (tmp_path / "extraction-cache").exists()  # nothing extracted
    assert sorted(p.name for p in shards.iterdir()) == ["shard-0000.tar", "shard-0001.tar", "shard-0002.tar"]
    assert len(run.scores) == 240 and run.scores["filepath"].iat[0] == "shard-0000.tar/00000.png"
    assert run.scores["sample_id"].iat[0] == "s0" and run.scores["is_miscaptioned"].sum() == 24
    source = pd.read_csv(noisy_shapes)
    row = run.row("s150")
    assert run.image_path(row) == shards / "shard-0001.tar" / "00150.png"
    shown, _ = large_image(run, row)  # the inspector's and the review's image, read from inside the shard
    expected, _ = review_image(noisy_shapes.parent / source["filepath"].iat[150])
    assert np.array_equal(np.asarray(shown), np.asarray(expected))
    image, note = review_image(run.image_path(row))
    assert image.width >= REVIEW_IMAGE_PX and note is not None and "upscaled" in note
    # a cleaned CSV beside the shards points into them and reads back, still without extracting
    from clipmem_core.data import read_dataset
    from clipmem_core.review.export import cleaned_dataset

    dropped = pd.DataFrame({"sample_id": ["s3", "s150"], "verdict": "mis-captioned", "caption": ""})
    cleaned = cleaned_dataset(run, dropped, replace=False)
    cleaned.to_csv(shards / "cleaned.csv", index=False)
    again = read_dataset(shards / "cleaned.csv", progress=False)
    assert again.skipped.empty and len(again) == 238 and "s150" not in set(again.samples["sample_id"])
    assert again.samples["filepath"].iat[0] == "shard-0000.tar/00000.png"
    assert not (tmp_path / "extraction-cache").exists()


def test_the_skip_summary_counts_every_skipped_row(tmp_path, caplog):
    from clipmem_core.data import Dataset
    from clipmem_core.pipeline import _report_skipped

    reasons = ["caption is empty"] * 2 + ["image is unreadable: x"] * 2 + ["image file is missing"]
    reasons += ["duplicate row: same as row 3", "duplicate id: 'a'", "filepath is empty"]
    skipped = pd.DataFrame({"row": range(8), "filepath": "x", "caption": "y", "reason": reasons})
    dataset = Dataset(pd.DataFrame({"sample_id": ["a"] * 10}), tmp_path, "csv", skipped, "h", tmp_path / "d.csv")
    with caplog.at_level("WARNING", logger="clipmem"):
        _report_skipped(dataset, tmp_path)
    (line,) = [r.getMessage() for r in caplog.records]
    assert line.startswith("skipped 8 of 18 rows (2 rows: caption is empty; 2 rows: image is unreadable; 1 row: ")
    assert line.partition(" (")[2].partition(")")[0].count("; ") == 4 and "; 2 rows for 2 other reasons); every" in line
    # 2 + 2 + 1 + 1 + 2 = 8
    dataset.skipped = skipped.iloc[1:7]  # five reasons: all shown, never "1 row: 1 other reason"
    with caplog.at_level("WARNING", logger="clipmem"):
        caplog.clear()
        _report_skipped(dataset, tmp_path)
    assert "1 row: duplicate row; 1 row: duplicate id); every" in caplog.records[0].getMessage()


def test_the_skip_summary_counts_the_files_rows_after_a_drop_list_left_some_out(tmp_path):
    """ "skipped 2 of 17 rows" for a file of 22 rows, 5 of them in the drop list."""
    from clipmem_core.data import read_dataset, skip_summary
    from clipmem_core.pipeline import select_samples
    from clipmem_core.synthetic import make_shapes_dataset

    data = make_shapes_dataset(tmp_path / "shapes", 20, seed=0)
    table = pd.read_csv(data)
    extra = pd.DataFrame({"filepath": ["images/gone.png", table["filepath"][0]], "caption": ["a", ""]})
    pd.concat([table, extra]).to_csv(data, index=False)
    dataset = read_dataset(data, progress=False)
    config = RunConfig(data=str(data), out=str(tmp_path / "r"), preset="tiny", exclude="drop.txt").resolved()
    select_samples(dataset, config, frozenset(dataset.samples["sample_id"].head(5)))
    assert len(dataset.samples) == 15 and skip_summary(dataset).startswith("skipped 2 of 22 rows (")


def test_too_few_rows_for_the_folds_says_what_was_skipped(tmp_path):
    """Five rows, four of them unusable: "the dataset has 1" alone did not say why."""
    from PIL import Image

    from clipmem_core.config import RunConfig

    png_dir = tmp_path / "d"
    png_dir.mkdir()
    Image.new("RGB", (8, 8), "red").save(png_dir / "a.png")
    rows = ["filepath,caption", "a.png,a red square", "b.png,gone", "c.png,gone", "d.png,gone", "a.png,"]
    (png_dir / "captions.csv").write_text("\n".join(rows) + "\n")
    config = RunConfig(data=str(png_dir / "captions.csv"), out=str(tmp_path / "out"), preset="tiny")
    with pytest.raises(
        ClipmemError,
        match=r"the dataset has 1 \(skipped 4 of 5 rows "
        r"\(3 rows: image file is missing; 1 row: caption is empty\)\)",
    ):
        compute_clipmem(config)


def test_samples_the_paper_splits_leave_out_are_said_and_kept_with_the_runs_data_notes(tmp_path, caplog):
    """234 samples read and 232 scored under the paper protocol, and nothing said of the other 2."""
    from clipmem_core.data import read_dataset
    from clipmem_core.pipeline import _rows_or_why
    from clipmem_core.synthetic import make_shapes_dataset

    dataset = read_dataset(make_shapes_dataset(tmp_path / "shapes", 23, seed=1), progress=False)
    config = RunConfig(
        data=str(tmp_path), out=str(tmp_path / "run"), protocol="paper", split_sizes=(0.5, 0.2, 0.2, 0.1)
    )
    with caplog.at_level("WARNING", logger="clipmem"):
        rows, _ = _rows_or_why(dataset, config)
    assert len(rows) == 11 + 4 + 4 + 2  # each fraction of 23 rounded down
    said = "2 samples of 23 fell outside the four --split-sizes (fractions are rounded down)"
    assert said in caplog.text and any(said in note for note in dataset.warnings)
    full = RunConfig(data=str(tmp_path), out=str(tmp_path / "full"), protocol="full", folds=2)
    fresh = read_dataset(tmp_path / "shapes" / "captions.csv", progress=False)
    assert len(_rows_or_why(fresh, full)[0]) == 23 and not fresh.warnings  # every sample in a fold


def test_a_parallel_training_process_killed_by_a_signal_is_named_so():
    """A kill -9 of one --parallel-models worker said "its error is above", with nothing above."""
    from clipmem_core.pipeline import _worker_failure

    assert _worker_failure("h1", -9) == "h1 in its own process was stopped by SIGKILL"
    assert _worker_failure("h0", 1) == "h0 in its own process failed (its error is above)"
