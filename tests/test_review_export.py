import csv
import json

import pandas as pd
import pytest
from review_fixtures import make_run

from clipmem_core.cache import SCORES, load_run, write_parquet
from clipmem_core.cli import main
from clipmem_core.data import read_dataset
from clipmem_core.errors import ClipmemError
from clipmem_core.review.export import (
    escape_cell,
    export,
    export_frame,
    final_labels,
    left_out_notes,
    table_bytes,
    unescape_cell,
    write_table,
)
from clipmem_core.review.store import open_store

RUN = "run1"


@pytest.fixture
def reviewed(tmp_path, monkeypatch):
    """A 6-sample run: s00 dropped by majority, s01 resolved mis-captioned with a caption,
    s02 a tie (kept) resolved by nobody, s03 resolved correct over a mis-captioned majority, s04 majority
    without suggestion, s05 one reviewer's correct."""
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
    assert labels.loc["s02", "verdict"] is None  # the tie stays undecided
    assert labels.loc["s00", "caption"] == "a red square" and labels.loc["s01", "caption"] == "the lead's caption"
    assert labels.loc["s01", "source"] == "resolved" and labels.loc["s00", "source"] == "majority"


def test_unresolved_disagreements_stop_the_cleaned_export_and_the_droplist(reviewed, tmp_path):
    run, store = reviewed
    for what in ("cleaned", "droplist"):
        with pytest.raises(ClipmemError, match=r"1 sample with unresolved disagreements \(s02\).*--allow-unresolved"):
            export(store, run, what, tmp_path / f"{what}.csv")
        assert not (tmp_path / f"{what}.csv").exists()
    export(store, run, "verdicts", tmp_path / "verdicts.csv")  # the raw verdicts need no decision
    store.resolve(RUN, "s02", "correct", "lead")
    assert export_frame(store, run, "droplist")["sample_id"].tolist() == ["s00", "s01", "s04"]


@pytest.mark.parametrize(
    "replace, expected",
    [
        (False, {"s02": None, "s03": None, "s05": None}),
        (True, {"s00": "a red square", "s01": "the lead's caption", "s02": None, "s03": None, "s05": None}),
    ],
)
def test_cleaned_csv_ingests_again_beside_the_input_with_its_paths_ids_and_ground_truth(reviewed, replace, expected):
    run, store = reviewed
    out = run.dataset_root / "clean.csv"
    export(store, run, "cleaned", out, "csv", replace=replace, allow_unresolved=True)
    written = pd.read_csv(out, dtype=str)
    assert list(written.columns) == ["filepath", "caption", "id", "is_miscaptioned"]
    assert written["filepath"].tolist() == [f"images/{sid[1:].lstrip('0') or '0'}.png" for sid in expected]

    dataset = read_dataset(out, progress=False)
    assert dataset.skipped.empty and dataset.root == run.dataset_root
    original = dict(zip(run.scores["sample_id"], run.scores["caption"]))
    got = dict(zip(dataset.samples["sample_id"], dataset.samples["caption"]))
    assert got == {sid: caption or original[sid] for sid, caption in expected.items()}  # ids are the stable ids
    truth = dict(zip(run.scores["sample_id"], run.scores["is_miscaptioned"]))
    read_back = dict(zip(dataset.samples["sample_id"], dataset.samples["is_miscaptioned"]))
    # a row kept under the team's caption is no known mis-caption: the flag was about the caption it replaced
    assert read_back == {s: False if expected[s] else truth[s] for s in got}


def test_cleaned_csv_keeps_the_class_label_and_every_caption_of_a_sample_with_several(reviewed):
    """COCO data has several captions per image, tuxpaint a class: both survive the export and read back."""
    run, store = reviewed
    scores = run.scores.copy()
    scores["label"] = ["animal", "food", "shape", "shape", "food", "animal"]
    scores["captions"] = [[c] for c in scores["caption"]]
    scores.at[2, "captions"] = [scores.at[2, "caption"], "a second, with a comma", 'a "quoted" third']
    scores.at[1, "captions"] = [scores.at[1, "caption"], "judged with the wrong caption"]
    write_parquet(run.path / SCORES, scores)
    run = load_run(run.path)
    out = run.dataset_root / "clean.csv"
    export(store, run, "cleaned", out, "csv", replace=True, allow_unresolved=True)
    assert list(pd.read_csv(out).columns) == ["filepath", "caption", "id", "label", "is_miscaptioned", "captions"]
    dataset = read_dataset(out, progress=False).samples.set_index("sample_id")
    assert dataset.at["s02", "captions"] == [scores.at[2, "caption"], "a second, with a comma", 'a "quoted" third']
    assert dataset.at["s01", "captions"] == ["the lead's caption"]  # replaced: the old captions are not kept
    assert dataset.at["s05", "captions"] == [scores.at[5, "caption"]]
    kept = {"s00": "animal", "s01": "food", "s02": "shape", "s03": "shape", "s05": "animal"}
    assert dataset["label"].to_dict() == kept


def test_a_captions_cell_is_read_as_a_json_or_python_list_and_anything_else_is_a_skipped_row(tmp_path):
    (tmp_path / "a.png").write_bytes(b"")  # the row is refused before its image is read
    frame = pd.DataFrame(
        {
            "filepath": ["a.png"] * 5,
            "caption": ["a cat", "a dog", "a cow", "a hen", "an owl"],
            "captions": ["not json", "", ["a cow", "a cow's calf"], '["a hen", "grass"]', "__import__('os')"],
        }
    )
    frame.to_csv(tmp_path / "d.csv", index=False)  # pandas writes the list as ['a cow', "a cow's calf"]
    dataset = read_dataset(tmp_path / "d.csv", progress=False, check_images=False)
    assert dataset.samples["captions"].tolist() == [["a dog"], ["a cow", "a cow's calf"], ["a hen", "grass"]]
    assert dataset.skipped["row"].tolist() == [1, 5]  # neither a list: the code is text, never run
    assert set(dataset.skipped["reason"]) == {"captions is not a list of strings (JSON or Python)"}


def test_cleaned_data_keeps_formula_like_cells_verbatim_and_round_trips(tmp_path, monkeypatch):
    """Training data is not a spreadsheet: a caption "'-5 degrees" must not gain a quote, "=x.png" must stay found."""
    monkeypatch.delenv("CLIPMEM_DB_URL", raising=False)
    captions = ["-5 degrees outside", "=x marks the spot", "+1 for this", "@home", "plain"]
    run = load_run(make_run(tmp_path / "cache", RUN, n=5, captions=captions))
    renamed = run.scores.copy()
    renamed.loc[1, "filepath"] = "images/=x.png"
    (run.dataset_root / "images" / "1.png").rename(run.dataset_root / "images" / "=x.png")
    write_parquet(run.path / SCORES, renamed)
    run = load_run(run.path)
    store = open_store(tmp_path / "cache")
    store.add_verdict(RUN, "s04", "ann", "mis-captioned", note="=not a formula")
    out = run.dataset_root / "clean.csv"
    export(store, run, "cleaned", out)
    dataset = read_dataset(out, progress=False)
    assert dataset.skipped.empty
    assert dataset.samples["caption"].tolist() == captions[:4]
    assert dataset.samples["filepath"].tolist()[1] == "images/=x.png"
    export(store, run, "verdicts", tmp_path / "v.csv")
    with open(tmp_path / "v.csv", newline="") as fh:
        assert next(csv.DictReader(fh))["note"] == "'=not a formula"  # the spreadsheet export is escaped


def test_cleaned_tsv_keeps_the_tab_format(reviewed):
    run, store = reviewed
    out = run.dataset_root / "clean.tsv"
    export(store, run, "cleaned", out, "csv", allow_unresolved=True)
    assert "\t" in out.read_text().splitlines()[0]
    assert len(read_dataset(out, progress=False).samples) == 3


def test_a_cleaned_tsv_gives_back_captions_with_quotes_and_line_breaks(reviewed):
    """The export quotes such a caption (as pandas does); read back literally it came back with its quotes
    doubled, or cut at its line break."""
    run, store = reviewed
    caption = 'the sign says "STOP"\nand a second line'
    store.add_verdict(run.name, "s05", "ann", "mis-captioned", suggested_caption=caption)  # ann's alone: it stands
    out = run.dataset_root / "clean_quoted.tsv"
    export(store, run, "cleaned", out, "csv", replace=True, allow_unresolved=True)
    assert read_dataset(out, progress=False).samples.set_index("sample_id").loc["s05", "caption"] == caption


def test_droplist_and_verdicts_in_both_formats(reviewed, tmp_path):
    run, store = reviewed
    export(store, run, "droplist", tmp_path / "drop.csv", "csv", allow_unresolved=True)
    export(store, run, "droplist", tmp_path / "drop.parquet", "parquet", allow_unresolved=True)
    assert pd.read_csv(tmp_path / "drop.csv")["sample_id"].tolist() == ["s00", "s01", "s04"]
    assert pd.read_parquet(tmp_path / "drop.parquet")["sample_id"].tolist() == ["s00", "s01", "s04"]
    export(store, run, "verdicts", tmp_path / "v.parquet", "parquet")
    export(store, run, "verdicts", tmp_path / "v.csv", "csv")
    verdicts = pd.read_parquet(tmp_path / "v.parquet")
    assert len(verdicts) == 12 and {"reviewer", "verdict", "suggested_caption", "created_at"} <= set(verdicts)
    assert len(pd.read_csv(tmp_path / "v.csv")) == 12


@pytest.mark.parametrize(
    "cell", ["=1+1", "+1", "-2", "@SUM(A1)", "\tx", "\rx", '=HYPERLINK("http://x")', "'+' sign", "'quoted'"]
)
def test_formula_cells_and_cells_starting_with_a_quote_are_escaped_and_come_back_whole(cell):
    """A cell that starts with a quote is escaped too: "'-' means none" came back from an export as "-' …"."""
    assert escape_cell(cell) == "'" + cell and unescape_cell(escape_cell(cell)) == cell


@pytest.mark.parametrize("cell", ["a cat", "", "1 = 1", 5, None])
def test_plain_cells_are_untouched(cell):
    assert escape_cell(cell) == cell


def test_only_the_spreadsheet_export_escapes(tmp_path, monkeypatch):
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
        assert [r["caption"] for r in csv.DictReader(fh)] == ["=cmd|' /C calc'!A0", "fine"]


def test_exports_refuse_to_replace_a_file_unless_forced_and_are_atomic(reviewed, tmp_path):
    run, store = reviewed
    out = tmp_path / "v.csv"
    out.write_text("old")
    with pytest.raises(ClipmemError, match="already exists; add --force"):
        export(store, run, "verdicts", out)
    with pytest.raises(ClipmemError, match="unknown export"):
        export(store, run, "everything", out, "csv", force=True)
    with pytest.raises(ClipmemError, match="format"):
        write_table(pd.DataFrame({"a": [1]}), out, "xlsx", force=True)
    assert out.read_text() == "old" and not [p for p in tmp_path.iterdir() if p.suffix == ".tmp"]
    export(store, run, "verdicts", out, force=True)
    assert len(pd.read_csv(out)) == 12


def test_a_device_a_pipe_or_a_link_to_one_is_never_replaced_by_a_file_even_forced(reviewed, tmp_path, capsys):
    """`--out /dev/stdout --force`, as root, turned the machine's /dev/stdout into a 54-byte file."""
    import os

    run, _ = reviewed
    fifo, link = tmp_path / "pipe", tmp_path / "stdout"
    os.mkfifo(fifo)
    link.symlink_to(fifo)
    for target in (fifo, link):
        argv = ["review", "export", "--run", str(run.path), "--what", "droplist", "--out", str(target), "--force"]
        assert main(argv) == 2
        assert "is not a regular file (a device, a pipe, or a link to one)" in capsys.readouterr().err
        with pytest.raises(ClipmemError, match="is not a regular file"):  # the writer itself refuses too
            write_table(pd.DataFrame({"sample_id": ["s00"]}), target, "csv", force=True)
    assert not fifo.is_file() and link.is_symlink() and not link.is_file()  # both as they were


def test_a_cleaned_export_says_which_source_columns_and_skipped_rows_it_leaves_out(reviewed, tmp_path, capsys):
    """It said only "wrote clean.csv": a curator's license and attribution columns, and rows the run had
    skipped, were gone without a word."""
    run, _ = reviewed
    source = run.dataset_source
    frame = pd.read_csv(source).assign(license="CC0", photographer="ann")
    frame.to_csv(source, index=False)
    manifest = json.loads((run.path / "manifest.json").read_text())
    manifest["dataset"]["n_skipped"] = 2
    (run.path / "manifest.json").write_text(json.dumps(manifest))
    out = tmp_path / "clean.csv"
    argv = ["review", "export", "--run", str(run.path), "--what", "cleaned", "--out", str(out), "--allow-unresolved"]
    assert main(argv) == 0
    err = capsys.readouterr().err
    assert (
        f"note: the cleaned file has the columns clipmem reads; {source.name}'s other columns (license, "
        "photographer) are not in it: join them back on the id"
    ) in err
    assert f"note: 2 rows of the source were skipped when the run read it ({run.path / 'skipped.csv'} says why)" in err
    assert [f"note: {note}" for note in left_out_notes(load_run(run.path))] == err.splitlines()[:2]
    frame.drop(columns=["id"]).to_csv(source, index=False)  # no id column: the ids were derived
    assert left_out_notes(load_run(run.path))[0].endswith(
        "join them back on filepath and caption (its ids were derived from them)"
    )
    frame.drop(columns=["license", "photographer"]).to_csv(source, index=False)
    manifest["dataset"]["n_skipped"] = 0
    (run.path / "manifest.json").write_text(json.dumps(manifest))
    assert left_out_notes(load_run(run.path)) == []  # nothing left out, nothing said


def test_table_bytes_is_what_the_dashboard_offers_for_download(reviewed):
    run, store = reviewed
    frame = export_frame(store, run, "cleaned", allow_unresolved=True)
    assert table_bytes(frame, "csv").decode().splitlines()[0] == "filepath,caption,id,is_miscaptioned"


def test_cli_export_exits_2_on_unresolved_disagreements_and_on_an_existing_file(reviewed, tmp_path, capsys):
    run, _ = reviewed
    out = tmp_path / "clean.csv"
    argv = ["review", "export", "--run", str(run.path), "--what", "cleaned", "--out", str(out)]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "unresolved disagreements (s02)" in err and err.count("\n") == 1 and not out.exists()
    assert main([*argv, "--allow-unresolved"]) == 0
    assert "relative to the dataset root" in capsys.readouterr().err  # written outside the dataset root
    assert main([*argv, "--allow-unresolved"]) == 2
    assert "already exists; add --force" in capsys.readouterr().err
    assert main([*argv, "--allow-unresolved", "--force"]) == 0
    source = run.dataset_source  # --force wrote over the user's own CSV, its other columns lost
    before = source.read_bytes()
    assert main([*argv[:-1], str(source), "--allow-unresolved", "--force"]) == 2
    assert "is the input itself; writing it would destroy the input" in capsys.readouterr().err
    assert source.read_bytes() == before
