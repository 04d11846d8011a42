"""clipmem rerank: a finished run takes up today's recipe for "Likely mis-captioned" without training."""

from __future__ import annotations

import json
import logging

import numpy as np
import pandas as pd
import pytest

from clipmem_core import load_run
from clipmem_core.cache import MANIFEST, SCORES
from clipmem_core.cli import main
from clipmem_core.errors import ClipmemError
from clipmem_core.metrics import auroc
from clipmem_core.rerank import rerank_run
from clipmem_core.scores.combined import RECIPE, fuse
from clipmem_core.testing import fake_run
from dashboard.overview import rerank_command, rerank_note


def _with_an_old_ranking(run_dir) -> np.ndarray:
    """The stored combined column as an older recipe left it (here, today's reversed); today's ranking."""
    run = load_run(run_dir)
    today = fuse(run.scores, images=np.asarray(run.image_embeddings))
    run.scores.assign(combined=-today).to_parquet(run_dir / SCORES)
    return today


def test_a_run_takes_up_the_recipe_and_its_summary_follows(tmp_path):
    run_dir = fake_run(tmp_path, "old", n=80).path
    today = _with_an_old_ranking(run_dir)
    done = rerank_run(run_dir, top=10)
    np.testing.assert_allclose(done.run.scores["combined"], today, rtol=1e-6)
    assert done.samples == 80 and done.top == 10 and done.new_in_top == 10  # the old top 10 was the bottom
    written = json.loads((run_dir / MANIFEST).read_text())
    detected = written["summary"]["detection"]["detectors"]["combined"]["auroc"]
    truth = done.run.scores["is_miscaptioned"].to_numpy(bool)
    assert detected == pytest.approx(auroc(today, truth))
    assert rerank_run(run_dir, top=10).new_in_top == 0  # a second time: nothing moves
    rewritten = pd.read_parquet(run_dir / SCORES)  # plain pandas reads the rewritten table, lists and all
    assert rewritten["captions"].map(list).tolist() == done.run.scores["captions"].map(list).tolist()
    assert rewritten["captions"].map(len).min() >= 1


def test_the_cli_says_what_moved_and_a_run_without_embeddings_is_refused(tmp_path, capsys):
    run_dir = fake_run(tmp_path, "old", n=150).path
    _with_an_old_ranking(run_dir)  # its top 100 is today's bottom 100: half of today's top 100 is new
    assert main(["rerank", "--run", str(run_dir)]) == 0
    assert capsys.readouterr().out.strip() == "re-ranked 150 samples of run old: 50 of the first 100 are new to them"
    manifest = json.loads((run_dir / MANIFEST).read_text())
    manifest["files"] = [name for name in manifest["files"] if name != "image_embeddings.npy"]
    (run_dir / MANIFEST).write_text(json.dumps(manifest))
    with pytest.raises(ClipmemError, match="stores no image embeddings"):
        rerank_run(run_dir)
    assert main(["rerank", "--run", str(tmp_path / "none")]) == 2


def _made_before_fingerprints(run) -> None:
    run.scores.drop(columns=["image_fingerprint", "agreement_duplicate_images"]).to_parquet(run.path / SCORES)


def test_a_run_made_before_fingerprints_gets_them_from_its_images_or_is_told_why_not(tmp_path, capsys):
    import shutil

    run = fake_run(tmp_path, "old", n=60, captions=["red rose", "computer icon"] + [f"thing {i}" for i in range(58)])
    _made_before_fingerprints(run)
    dataset = run.path / "dataset"
    shutil.copy(dataset / run.scores["filepath"].iat[0], dataset / run.scores["filepath"].iat[1])  # one picture twice
    done = rerank_run(run.path)
    fingerprints = done.run.scores["image_fingerprint"]
    assert done.without is None and fingerprints.iat[0] == fingerprints.iat[1] and fingerprints.nunique() == 59
    duplicates = done.run.scores["agreement_duplicate_images"]
    assert duplicates.notna().tolist() == [True, True] + [False] * 58 and duplicates.iat[0] == 0.0

    again = fake_run(tmp_path, "moved", n=20)
    _made_before_fingerprints(again)
    shutil.rmtree(again.path / "dataset")  # its images are gone: ranked without the member, and told so
    assert main(["rerank", "--run", str(again.path)]) == 0
    assert rerank_command(load_run(again.path)) is None  # not offered again: it could not add them
    said = capsys.readouterr().out.strip().splitlines()
    assert said[-1].startswith("note: its images could not be read (") and said[-1].endswith(
        'so it is ranked without "Words shared with the same picture\'s other captions"'
    )
    assert "image_fingerprint" not in load_run(again.path).scores.columns


def test_the_overview_offers_the_command_to_a_run_ranked_by_an_earlier_recipe(tmp_path):
    run_dir = fake_run(tmp_path, "old", n=40).path
    assert rerank_command(load_run(run_dir)) is None  # made today: stamped with today's recipe
    manifest = json.loads((run_dir / MANIFEST).read_text())
    manifest["summary"]["recipe"] = "2026-11-30: an earlier one"
    (run_dir / MANIFEST).write_text(json.dumps(manifest))
    assert rerank_command(load_run(run_dir)) == f"clipmem rerank --run {run_dir}"
    assert main(["rerank", "--run", str(run_dir)]) == 0
    assert rerank_command(load_run(run_dir)) is None
    manifest = json.loads((run_dir / MANIFEST).read_text())
    manifest["summary"].pop("recipe")  # a run from before the stamp, and imported: no embeddings to re-rank from
    manifest["files"] = [name for name in manifest["files"] if name != "image_embeddings.npy"]
    (run_dir / MANIFEST).write_text(json.dumps(manifest))
    assert rerank_command(load_run(run_dir)) is None


def _import(source, tmp_path, name: str, columns: list[str], split: bool = True):
    """Import ``source``'s own dataset, ``columns`` of its scores (with its splits) and its embeddings as a
    new run."""
    from clipmem_core.importer import import_run

    scores_path = tmp_path / f"{name}.parquet"
    keys = ["sample_id", "split", "is_miscaptioned"] if split else ["sample_id", "is_miscaptioned"]
    source.scores[[*keys, *columns]].to_parquet(scores_path)
    np.save(tmp_path / "img.npy", np.asarray(source.image_embeddings))
    np.save(tmp_path / "txt.npy", np.asarray(source.text_embeddings))
    return import_run(
        str(source.path / "dataset" / "captions.csv"),
        str(scores_path),
        str(tmp_path / "cache" / name),
        image_embeddings=str(tmp_path / "img.npy"),
        text_embeddings=str(tmp_path / "txt.npy"),
    )


def test_an_import_with_embeddings_is_ranked_by_the_recipe_and_an_imported_ranking_is_not_stamped(tmp_path):
    source = load_run(fake_run(tmp_path, "source", n=120).path)
    signals = ["csls_heldout", "csls_train", "agreement_image_neighbours", "fit_loss"]
    derived = _import(source, tmp_path, "derived", signals)
    images = np.asarray(source.image_embeddings)
    expected = fuse(source.scores[["split", *signals]], images=images)
    assert not np.allclose(expected, fuse(source.scores[["split", *signals]]))  # the neighbourhood step counts
    np.testing.assert_allclose(derived.scores["combined"], expected, rtol=1e-5, atol=1e-6)
    assert derived.manifest.summary["recipe"] == RECIPE
    # today's recipe, but its images were never fingerprinted: offered the command that adds them
    assert rerank_command(derived) is not None and "never fingerprinted" in rerank_note(derived)
    assert rerank_run(derived.path).without is None and rerank_command(load_run(derived.path)) is None
    assert "clipmem" not in derived.scores.columns  # no A(f), A(g) to derive it from: no column of "–"
    theirs = _import(source, tmp_path, "theirs", [*signals, "combined"])  # a ranking made elsewhere, kept as it is
    np.testing.assert_allclose(theirs.scores["combined"], source.scores["combined"])
    assert "recipe" not in theirs.manifest.summary and rerank_command(theirs) is not None
    assert "this command replaces the imported ranking" in rerank_note(theirs)
    assert "from the run's csls_heldout, csls_train, agreement_image_neighbours, fit_loss and" in rerank_note(theirs)
    done = rerank_run(theirs.path)
    assert load_run(theirs.path).manifest.summary["recipe"] == RECIPE
    # an import has no model: its images are fingerprinted as they are, and the ranking takes the member
    assert (
        done.without is None
        and done.run.scores["image_fingerprint"].tolist() == source.scores["image_fingerprint"].tolist()
    )


def test_an_import_of_a_f_and_a_g_alone_is_ranked_by_clipmem_and_says_every_sample_is_a_candidate(tmp_path, caplog):
    """CLIPMem, derived from the file's A(f) and A(g), was made after the ranking had found nothing to rank by:
    the import said "not made", and that every sample was labelled a candidate went unsaid."""
    source = load_run(fake_run(tmp_path, "source", n=60).path)
    with caplog.at_level(logging.INFO, logger="clipmem"):
        imported = _import(source, tmp_path, "fg", ["align_f", "align_g"], split=False)
    expected = source.scores["align_f"] - source.scores["align_g"]
    np.testing.assert_allclose(imported.scores["clipmem"], expected, rtol=1e-5, atol=1e-6)
    assert (imported.scores["split"] == "candidate").all()
    assert "but no split column: every sample is taken as a candidate" in caplog.text
    assert "Likely mis-captioned: made from clipmem, relative to the nearest images" in caplog.text
    expected = fuse(imported.scores[["split", "clipmem"]], images=np.asarray(source.image_embeddings))
    np.testing.assert_allclose(imported.scores["combined"], expected, rtol=1e-5, atol=1e-6)


def test_an_imported_ranking_beside_none_of_the_recipes_members_is_never_offered_a_rerank(tmp_path):
    """Re-ranked by what the run happened to have (CLIPMem alone), the team's own ranking was replaced."""
    source = load_run(fake_run(tmp_path, "source", n=60).path)
    theirs = _import(source, tmp_path, "theirs", ["combined", "clipmem"])
    assert "recipe" not in theirs.manifest.summary and rerank_command(theirs) is None
    with pytest.raises(ClipmemError, match=r"has none of the signals .*\); its ranking is kept"):
        rerank_run(theirs.path)
    np.testing.assert_allclose(load_run(theirs.path).scores["combined"], source.scores["combined"])


def test_an_imported_run_has_a_summary_and_no_held_out_rows_to_compare(tmp_path, capsys):
    """Which pairs an imported run's models saw is not known: no model strength, no recall to compare."""
    from dashboard.compare import reference_heldout_rows

    source = load_run(fake_run(tmp_path, "source", n=60).path)
    imported = _import(source, tmp_path, "imported", ["csls_heldout", "fit_loss"])
    assert main(["summary", "--run", str(imported.path)]) == 0
    assert "Likely mis-captioned" in capsys.readouterr().out
    assert reference_heldout_rows(imported).size == 0


def test_an_import_with_only_held_out_clip_scores_is_ranked_by_them_and_says_so(tmp_path, caplog):
    """The training-side CLIP score, derived as all NaN from such a file, stood in for the recipe's members,
    and the import got no ranking and said nothing."""
    source = load_run(fake_run(tmp_path, "source", n=120).path)
    with caplog.at_level(logging.INFO, logger="clipmem"):
        imported = _import(source, tmp_path, "heldout", ["clip_score_heldout"])
    images = np.asarray(source.image_embeddings)
    expected = fuse(source.scores[["split", "clip_score_heldout"]], images=images)
    np.testing.assert_allclose(imported.scores["combined"], expected, rtol=1e-5, atol=1e-6)
    assert imported.scores["combined"].notna().all() and "clip_score_train" not in imported.scores.columns
    assert "Likely mis-captioned: made from clip_score_heldout, relative to the nearest images" in caplog.text


def test_an_import_refuses_embeddings_of_two_widths_and_lists_the_samples_it_has_no_scores_for(tmp_path):
    from clipmem_core.importer import import_run

    source = load_run(fake_run(tmp_path, "source", n=40).path)
    source.scores[["sample_id", "split", "csls_heldout"]].iloc[:35].to_parquet(tmp_path / "part.parquet")
    np.save(tmp_path / "img.npy", np.asarray(source.image_embeddings)[:35])
    np.save(tmp_path / "txt8.npy", np.asarray(source.text_embeddings)[:35, :8])
    dataset = str(source.path / "dataset" / "captions.csv")
    with pytest.raises(ClipmemError, match="have 16 dimensions and --text-embeddings 8"):
        import_run(
            dataset,
            str(tmp_path / "part.parquet"),
            str(tmp_path / "c" / "w"),
            image_embeddings=str(tmp_path / "img.npy"),
            text_embeddings=str(tmp_path / "txt8.npy"),
        )
    run = import_run(dataset, str(tmp_path / "part.parquet"), str(tmp_path / "c" / "part"))
    assert len(run.scores) == 35 and run.manifest.dataset.n_skipped == 5  # the 5 without scores, said
    assert run.manifest.dataset.n_samples == 35  # what `clipmem list` shows
    report = pd.read_csv(run.path / "skipped.csv")
    assert report["reason"].tolist() == [
        f"no row in the scores file for sample_id {sid!r}" for sid in source.scores["sample_id"].iloc[35:]
    ]


def test_an_imported_score_written_as_text_is_a_number_and_one_that_is_no_number_is_refused(tmp_path):
    from clipmem_core.importer import import_run

    source = load_run(fake_run(tmp_path, "source", n=30).path)
    frame = source.scores[["sample_id", "split", "csls_heldout"]].copy()
    frame["csls_heldout"] = frame["csls_heldout"].map(lambda v: f"{v:.6f}")  # "0.123456", as text
    frame.to_parquet(tmp_path / "text.parquet")
    dataset = str(source.path / "dataset" / "captions.csv")
    run = import_run(dataset, str(tmp_path / "text.parquet"), str(tmp_path / "c" / "text"))
    assert run.scores["csls_heldout"].dtype.kind == "f"
    np.testing.assert_allclose(run.scores["csls_heldout"], source.scores["csls_heldout"], atol=1e-6)
    frame.loc[3, "csls_heldout"] = "n/a"
    frame.to_parquet(tmp_path / "bad.parquet")
    with pytest.raises(ClipmemError, match=r"column csls_heldout holds values that are not numbers, e\.g\. 'n/a'"):
        import_run(dataset, str(tmp_path / "bad.parquet"), str(tmp_path / "c" / "bad"))
