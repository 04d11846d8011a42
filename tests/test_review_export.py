import csv

import pandas as pd
import pytest
from review_fixtures import make_run

from clipmem_core.cache import load_run
from clipmem_core.data import read_dataset
from clipmem_core.errors import ClipmemError
from clipmem_core.review.export import escape_cell, export, final_labels, write_table
from clipmem_core.review.store import open_store

RUN = "run1"


@pytest.fixture
def reviewed(tmp_path, monkeypatch):
    """A 6-sample run: s00 dropped by majority, s01 resolved mis-captioned with a caption,
    s02 a tie (kept), s03 resolved correct over a mis-captioned majority, s04 majority without suggestion."""
    monkeypatch.delenv("CLIPMEM_DB_URL", raising=False)
    monkeypatch.delenv("CLIPMEM_LEADS", raising=False)
    run = load_run(make_run(tmp_path / "cache", RUN, n=6))
    store = open_store(tmp_path / "cache")
    for reviewer, sid, verdict, suggestion in [
        ("ann", "s00", "mis-captioned", "a red square"),
        ("bob", "s00", "mis-captioned", "a red square"),
        ("cy", "s00", "mis-captioned", "a square"),
        ("ann", "s01", "correct", None),
        ("bob", "s01", "mis-captioned", "bob's idea"),
        ("ann", "s02", "mis-captioned", "x"),
        ("bob", "s02", "correct", None),
        ("ann", "s03", "mis-captioned", "y"),
        ("bob", "s03", "mis-captioned", None),
        ("ann", "s04", "mis-captioned", None),
        ("bob", "s04", "mis-captioned", None),
        ("ann", "s05", "correct", None),
    ]:
        store.add_verdict(RUN, sid, reviewer, verdict, suggested_caption=suggestion)
    store.resolve(RUN, "s01", "mis-captioned", "lead", caption="the lead's caption")
    store.resolve(RUN, "s03", "correct", "lead")
    return run, store


def test_final_labels_prefer_resolutions_over_majority(reviewed):
    _, store = reviewed
    labels = final_labels(store, RUN).set_index("sample_id")
    assert labels["verdict"].dropna().to_dict() == {
        "s00": "mis-captioned",
        "s01": "mis-captioned",
        "s03": "correct",
        "s04": "mis-captioned",
        "s05": "correct",
    }
    assert labels.loc["s00", "caption"] == "a red square" and labels.loc["s01", "caption"] == "the lead's caption"
    assert labels.loc["s01", "source"] == "resolution" and labels.loc["s00", "source"] == "majority"


@pytest.mark.parametrize(
    "replace, expected",
    [
        (False, {"2.png": None, "3.png": None, "5.png": None}),
        (True, {"0.png": "a red square", "1.png": "the lead's caption", "2.png": None, "3.png": None, "5.png": None}),
    ],
)
def test_cleaned_csv_ingests_again_with_exactly_the_expected_rows(reviewed, tmp_path, replace, expected):
    run, store = reviewed
    out = tmp_path / "elsewhere" / "deep" / "clean.csv"
    export(store, run, "cleaned", out, "csv", replace=replace)
    assert list(pd.read_csv(out).columns) == ["filepath", "caption"]

    dataset = read_dataset(out, progress=False)
    assert dataset.skipped.empty
    got = {fp.rsplit("/", 1)[-1]: cap for fp, cap in zip(dataset.samples["filepath"], dataset.samples["caption"])}
    original = dict(zip(run.scores["filepath"].str.rsplit("/", n=1).str[-1], run.scores["caption"]))
    assert got == {name: cap or original[name] for name, cap in expected.items()}
    images = {(dataset.root / fp).resolve() for fp in dataset.samples["filepath"]}
    assert images == {(run.dataset_root / "images" / name).resolve() for name in expected}


def test_cleaned_csv_beside_the_images_uses_relative_paths(reviewed, tmp_path):
    run, store = reviewed
    out = run.dataset_root / "clean.csv"
    export(store, run, "cleaned", out, "csv")
    assert pd.read_csv(out)["filepath"].tolist() == ["images/2.png", "images/3.png", "images/5.png"]
    assert len(read_dataset(out, progress=False).samples) == 3


def test_cleaned_tsv_keeps_the_tab_format(reviewed, tmp_path):
    run, store = reviewed
    export(store, run, "cleaned", tmp_path / "clean.tsv", "csv")
    assert "\t" in (tmp_path / "clean.tsv").read_text().splitlines()[0]
    assert len(read_dataset(tmp_path / "clean.tsv", progress=False).samples) == 3


def test_droplist_and_verdicts_in_both_formats(reviewed, tmp_path):
    run, store = reviewed
    export(store, run, "droplist", tmp_path / "drop.csv", "csv")
    export(store, run, "droplist", tmp_path / "drop.parquet", "parquet")
    assert pd.read_csv(tmp_path / "drop.csv")["sample_id"].tolist() == ["s00", "s01", "s04"]
    assert pd.read_parquet(tmp_path / "drop.parquet")["sample_id"].tolist() == ["s00", "s01", "s04"]
    export(store, run, "verdicts", tmp_path / "v.parquet", "parquet")
    export(store, run, "verdicts", tmp_path / "v.csv", "csv")
    verdicts = pd.read_parquet(tmp_path / "v.parquet")
    assert len(verdicts) == 12 and {"reviewer", "verdict", "suggested_caption", "created_at"} <= set(verdicts)
    assert len(pd.read_csv(tmp_path / "v.csv")) == 12


@pytest.mark.parametrize("cell", ["=1+1", "+1", "-2", "@SUM(A1)", "\tx", "\rx", '=HYPERLINK("http://x")'])
def test_formula_cells_are_escaped(cell):
    assert escape_cell(cell) == "'" + cell


@pytest.mark.parametrize("cell", ["a cat", "", "1 = 1", 5, None])
def test_plain_cells_are_untouched(cell):
    assert escape_cell(cell) == cell


def test_csv_exports_escape_captions_and_notes(tmp_path, monkeypatch):
    monkeypatch.delenv("CLIPMEM_DB_URL", raising=False)
    run = load_run(make_run(tmp_path / "cache", RUN, n=2, captions=["=cmd|' /C calc'!A0", "fine"]))
    store = open_store(tmp_path / "cache")
    store.add_verdict(RUN, "s01", "@evil", "correct", note="+1 and more", suggested_caption="-minus")
    export(store, run, "verdicts", tmp_path / "v.csv", "csv")
    export(store, run, "cleaned", tmp_path / "c.csv", "csv")
    with open(tmp_path / "v.csv", newline="") as fh:
        row = next(csv.DictReader(fh))
    assert (row["reviewer"], row["note"], row["suggested_caption"]) == ("'@evil", "'+1 and more", "'-minus")
    with open(tmp_path / "c.csv", newline="") as fh:
        assert [r["caption"] for r in csv.DictReader(fh)] == ["'=cmd|' /C calc'!A0", "fine"]


def test_exports_are_atomic_and_refuse_unknown_kinds(reviewed, tmp_path):
    run, store = reviewed
    out = tmp_path / "v.csv"
    out.write_text("old")
    with pytest.raises(ClipmemError, match="unknown export"):
        export(store, run, "everything", out, "csv")
    with pytest.raises(ClipmemError, match="format"):
        write_table(pd.DataFrame({"a": [1]}), out, "xlsx")
    assert out.read_text() == "old" and sorted(p.name for p in tmp_path.iterdir() if p.suffix == ".tmp") == []
