import json
import logging
import os
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from clipmem_core.data import inject_miscaptions, load_image, read_dataset, skip_summary, write_skip_report
from clipmem_core.errors import ClipmemError


def png(path: Path, colour=(200, 30, 30), mode="RGB") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new(mode, (8, 8), colour if mode == "RGB" else 128).save(path)
    return path


def table(path: Path, rows: list[dict], sep=",") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    pd.DataFrame(rows).to_csv(path, sep=sep, index=False)
    return path


def simple_csv(tmp_path: Path, n=4, **extra) -> Path:
    rows = []
    for i in range(n):
        png(tmp_path / "images" / f"{i}.png", (i * 40, 0, 0))
        rows.append({"filepath": f"images/{i}.png", "caption": f"caption {i}", **{k: v[i] for k, v in extra.items()}})
    return table(tmp_path / "data.csv", rows)


def read(path, **kw):
    return read_dataset(path, progress=False, **kw)


# --- readers -----------------------------------------------------------------------------------


def test_csv_reader(tmp_path):
    ds = read(simple_csv(tmp_path))
    assert ds.format == "csv" and len(ds) == 4 and ds.root == tmp_path.resolve()
    assert list(ds.samples.columns) == ["sample_id", "filepath", "caption", "captions"]
    assert ds.samples["filepath"].tolist() == [f"images/{i}.png" for i in range(4)]
    assert ds.samples["captions"].tolist() == [[f"caption {i}"] for i in range(4)]
    assert ds.skipped.empty and list(ds.skipped.columns) == ["row", "line", "filepath", "caption", "reason"]
    assert ds.source == (tmp_path / "data.csv").resolve()
    assert all(re.fullmatch(r"[0-9a-f]{16}", sid) for sid in ds.samples["sample_id"])
    assert (ds.root / ds.samples["filepath"][0]).is_file()


def test_sample_id_and_hash_stable_across_reads_and_moves(tmp_path):
    first = read(simple_csv(tmp_path / "a"))
    again = read(tmp_path / "a" / "data.csv")
    elsewhere = read(simple_csv(tmp_path / "b"))
    assert first.samples["sample_id"].tolist() == again.samples["sample_id"].tolist()
    assert first.samples["sample_id"].tolist() == elsewhere.samples["sample_id"].tolist()
    assert first.content_hash == again.content_hash


def test_content_hash_follows_captions(tmp_path):
    path = simple_csv(tmp_path)
    before = read(path).content_hash
    frame = pd.read_csv(path)
    frame.loc[0, "caption"] = "changed"
    frame.to_csv(path, index=False)
    assert read(path).content_hash != before


def test_id_column_is_used(tmp_path):
    ds = read(simple_csv(tmp_path, id=["007", "a", "b", "c"]))
    assert ds.samples["sample_id"].tolist() == ["007", "a", "b", "c"]


@pytest.mark.parametrize("column", ["ID", "Id", "sample_id", "Sample_ID"])
def test_an_id_column_spelled_otherwise_is_read_as_the_ids(tmp_path, column):
    """A spreadsheet's "ID", or clipmem's own "sample_id": read as the ids, where every sample got a derived
    id and scores or drop lists keyed by the user's ids matched nothing."""
    ds = read(simple_csv(tmp_path, **{column: ["007", "a", "b", "c"]}))
    assert ds.samples["sample_id"].tolist() == ["007", "a", "b", "c"]


def test_id_wins_over_its_other_spellings_and_two_other_spellings_are_refused(tmp_path):
    ds = read(simple_csv(tmp_path / "one", id=["1", "2", "3", "4"], ID=["a", "b", "c", "d"]))
    assert ds.samples["sample_id"].tolist() == ["1", "2", "3", "4"]
    with pytest.raises(ClipmemError, match="'ID', 'sample_id': which holds the sample ids"):
        read(simple_csv(tmp_path / "two", ID=["a", "b", "c", "d"], sample_id=["1", "2", "3", "4"]))


def test_tsv_reader_and_custom_keys(tmp_path):
    png(tmp_path / "x.png")
    path = table(tmp_path / "d.tsv", [{"img": "x.png", "text": "a, with comma"}], sep="\t")
    ds = read(path, img_key="img", caption_key="text")
    assert ds.format == "tsv" and ds.samples["caption"].tolist() == ["a, with comma"]


def test_absolute_paths_are_kept_and_never_widen_the_root(tmp_path):
    inside = png(tmp_path / "data" / "in.png")
    outside = png(tmp_path / "elsewhere" / "out.png")
    path = table(
        tmp_path / "data" / "d.csv",
        [
            {"filepath": str(inside), "caption": "in"},
            {"filepath": str(outside), "caption": "out"},
        ],
    )
    ds = read(path)
    assert ds.root == (tmp_path / "data").resolve()
    assert ds.samples["filepath"].tolist() == ["in.png", outside.resolve().as_posix()]
    assert ds.skipped.empty


def test_a_relative_path_leaving_the_root_is_refused_unless_allowed(tmp_path):
    png(tmp_path / "data" / "in.png")
    outside = png(tmp_path / "outside" / "x.png")
    path = table(
        tmp_path / "data" / "d.csv",
        [
            {"filepath": "in.png", "caption": "in"},
            {"filepath": "../outside/x.png", "caption": "escapes"},
            {"filepath": "sub/../../outside/x.png", "caption": "escapes too"},
            {"filepath": "../outside/missing.png", "caption": "never looked up"},
        ],
    )
    ds = read(path)
    assert ds.root == (tmp_path / "data").resolve() and ds.samples["filepath"].tolist() == ["in.png"]
    assert ds.skipped["row"].tolist() == [2, 3, 4]
    assert all(r.startswith("image path leaves the dataset folder") for r in ds.skipped["reason"])
    assert all("--allow-outside-root" in r for r in ds.skipped["reason"])
    allowed = read(path, allow_outside_root=True)
    assert allowed.root == (tmp_path / "data").resolve()
    assert allowed.samples["filepath"].tolist() == ["in.png", *[outside.resolve().as_posix()] * 2]
    assert allowed.skipped["reason"].str.startswith("image file is missing").tolist() == [True]
    only_outside = table(tmp_path / "data" / "o.csv", [{"filepath": "../outside/x.png", "caption": "escapes"}])
    with pytest.raises(ClipmemError, match=r"leave .*data are refused unless you add --allow-outside-root"):
        read(only_outside)  # the error names the way out, as each row of skipped.csv does


def test_coco_multi_caption_and_images_folder(tmp_path):
    png(tmp_path / "images" / "a.jpg")
    png(tmp_path / "b.png")
    coco = {
        "images": [
            {"id": 1, "file_name": "a.jpg"},
            {"id": 2, "file_name": "b.png"},
            {"id": 3, "file_name": "b.png"},
        ],
        "annotations": [
            {"image_id": 1, "caption": " first "},
            {"image_id": 2, "caption": "only"},
            {"image_id": 1, "caption": "second"},
            {"image_id": 9, "caption": "an orphan"},
            {"image_id": 2, "caption": "  "},
            "not an annotation",
            {"image_id": 1, "caption": "first"},  # the same caption again: it was drawn twice as often in training
        ],
    }
    (tmp_path / "captions.json").write_text(json.dumps(coco))
    ds = read(tmp_path / "captions.json")
    assert ds.format == "coco" and ds.root == tmp_path.resolve()
    assert ds.samples["sample_id"].tolist() == ["1", "2"]
    assert ds.samples["filepath"].tolist() == ["images/a.jpg", "b.png"]
    assert ds.samples["caption"].tolist() == ["first", "only"]
    assert ds.samples["captions"].tolist() == [["first", "second"], ["only"]]
    # neither an uncaptioned image, nor an orphan caption, nor an annotation without one is lost silently;
    # rows number the images, so an annotation has none and its reason says which it is
    orphan = "annotation for an image_id that no image entry has: annotation without an id (the 4th), image_id 9"
    uncaptioned = "annotation has no caption (a non-empty string): annotation without an id"
    assert ds.skipped.drop(columns="line").to_dict("records") == [  # a COCO file has no table lines
        {"row": 3, "filepath": "b.png", "caption": "", "reason": "no annotation gives the image a caption: image id 3"},
        {
            "row": None,
            "filepath": "",
            "caption": "an orphan",
            "reason": orphan,
        },
        {
            "row": None,
            "filepath": "",
            "caption": "",
            "reason": f"{uncaptioned} (the 5th), image_id 2",
        },
        {
            "row": None,
            "filepath": "",
            "caption": "",
            "reason": f"{uncaptioned} (the 6th), image_id None",
        },
    ]
    write_skip_report(ds, tmp_path / "skipped.csv")
    assert (tmp_path / "skipped.csv").read_text().splitlines()[1:3] == [
        "3,,b.png,,no annotation gives the image a caption: image id 3",
        f',,,an orphan,"{orphan}"',
    ]
    coco["images"] = coco["images"][:2]
    (tmp_path / "captions.json").write_text(json.dumps(coco))
    with pytest.raises(ClipmemError, match=f"^{re.escape(orphan)}$"):
        read(tmp_path / "captions.json", on_error="fail")


def test_coco_ids_written_as_floats_match_and_a_summary_counts_each_problem_once(tmp_path):
    """A writer that stores 0 as 0.0: every annotation matched no image, 80 lines of one problem each."""
    images = [{"id": float(i), "file_name": f"{i}.png"} for i in range(3)] + [{"id": 7, "file_name": "7.png"}]
    for i in (0, 1, 2, 7):
        png(tmp_path / f"{i}.png")
    annotations = [{"image_id": float(i), "caption": f"shape {i}"} for i in range(3)]
    annotations += [{"image_id": 40.0, "caption": "stray"}, {"image_id": 41, "caption": "stray"}]
    (tmp_path / "c.json").write_text(json.dumps({"images": images, "annotations": annotations}))
    ds = read(tmp_path / "c.json")
    assert ds.samples["sample_id"].tolist() == ["0", "1", "2"]
    assert ds.samples["caption"].tolist() == ["shape 0", "shape 1", "shape 2"]
    assert ds.skipped["reason"].tolist() == [
        "no annotation gives the image a caption: image id 7",
        "annotation for an image_id that no image entry has: annotation without an id (the 4th), image_id 40",
        "annotation for an image_id that no image entry has: annotation without an id (the 5th), image_id 41",
    ]
    (tmp_path / "c.json").write_text(json.dumps({"images": images, "annotations": annotations[3:]}))
    with pytest.raises(
        ClipmemError, match=r"\(4 rows: no annotation gives the image a caption; 2 rows: annotation for an"
    ):
        read(tmp_path / "c.json")  # each problem counted once, not once per image id


def test_coco_images_that_share_an_id_are_skipped_with_their_captions_not_paired_with_the_first(tmp_path):
    """Two image entries with id 8: the first kept id 8's captions ("a blue square" on a green square), the
    second was skipped as a duplicate, and the first's own captions were reported as orphans."""
    images = [{"id": i, "file_name": f"{i}.png"} for i in range(3)] + [{"id": 1, "file_name": "green.png"}]
    for name in ("0", "1", "2", "green"):
        png(tmp_path / f"{name}.png")
    annotations = [{"image_id": i, "caption": f"shape {i}"} for i in range(3)]
    (tmp_path / "c.json").write_text(json.dumps({"images": images, "annotations": annotations}))
    ds = read(tmp_path / "c.json")
    assert ds.samples["filepath"].tolist() == ["0.png", "2.png"]
    shared = "image id shared by several image entries, so which one its captions describe is unknown"
    assert ds.skipped["reason"].tolist() == [f"{shared}: image id 1, rows 2 and 4"] * 2


def test_a_coco_image_listed_twice_as_the_same_file_keeps_its_first_entry(tmp_path):
    """Both entries of an image listed twice (same id, same file) were skipped as "shared by several image
    entries", and the image and its captions were lost: nothing is unknown when both name one file."""
    images = [{"id": i, "file_name": f"{i}.png"} for i in range(3)] + [{"id": 1, "file_name": "1.png"}]
    for i in range(3):
        png(tmp_path / f"{i}.png")
    annotations = [{"image_id": i, "caption": f"shape {i}"} for i in range(3)]
    (tmp_path / "c.json").write_text(json.dumps({"images": images, "annotations": annotations}))
    ds = read(tmp_path / "c.json")
    assert ds.samples["filepath"].tolist() == ["0.png", "1.png", "2.png"]
    assert ds.samples["caption"].tolist() == ["shape 0", "shape 1", "shape 2"]
    assert ds.skipped["reason"].tolist() == ["duplicate row: same filepath and caption as row 2"]


def test_a_missing_coco_image_names_every_place_it_was_looked_for(tmp_path):
    """A file_name is looked for beside the JSON, then under images/; "image file is missing" named only the
    first, and the user did not know images/ had been searched too."""
    png(tmp_path / "images" / "a.png")
    png(tmp_path / "b.png")
    images = [{"id": 1, "file_name": "a.png"}, {"id": 2, "file_name": "b.png"}, {"id": 3, "file_name": "gone.png"}]
    images.append({"id": 4, "file_name": str(tmp_path / "nowhere.png")})  # absolute: looked for there only
    annotations = [{"image_id": i, "caption": f"shape {i}"} for i in range(1, 5)]
    (tmp_path / "c.json").write_text(json.dumps({"images": images, "annotations": annotations}))
    ds = read(tmp_path / "c.json")
    assert ds.samples["filepath"].tolist() == ["images/a.png", "b.png"]
    assert ds.skipped["reason"].tolist() == [
        f"image file is missing: {tmp_path / 'gone.png'} or {tmp_path / 'images' / 'gone.png'}",
        f"image file is missing: {tmp_path / 'nowhere.png'}",
    ]


def test_a_skipped_coco_annotation_is_named_by_its_id_and_its_place_counted_from_one(tmp_path):
    """ "annotation 3" was a 1-based position, and ``jq .annotations[3]`` (0-based) showed the next one: the
    reason gives the annotation's own id, and its place as an ordinal that cannot be read as an index."""
    png(tmp_path / "a.png")
    annotations = [
        {"id": 501, "image_id": 1, "caption": "a cat"},
        {"id": 502, "image_id": 1, "caption": "  "},
        {"id": 720, "image_id": 9, "caption": "an orphan"},
        {"image_id": 1},
    ]
    coco = {"images": [{"id": 1, "file_name": "a.png"}], "annotations": annotations}
    (tmp_path / "c.json").write_text(json.dumps(coco))
    assert read(tmp_path / "c.json").skipped["reason"].tolist() == [
        "annotation has no caption (a non-empty string): annotation id 502 (the 2nd), image_id 1",
        "annotation for an image_id that no image entry has: annotation id 720 (the 3rd), image_id 9",
        "annotation has no caption (a non-empty string): annotation without an id (the 4th), image_id 1",
    ]


def test_folder_reader(tmp_path):
    png(tmp_path / "a.png")
    (tmp_path / "a.txt").write_text("one\n\n  two  \ntwo\n")  # a repeated line is one caption, as in a CSV
    png(tmp_path / "sub" / "b.jpg")
    (tmp_path / "sub" / "b.txt").write_text("three")
    png(tmp_path / "c.png")
    ds = read(tmp_path)
    assert ds.format == "folder" and ds.root == tmp_path.resolve()
    assert ds.samples["filepath"].tolist() == ["a.png", "sub/b.jpg"]
    assert ds.samples["captions"].tolist() == [["one", "two"], ["three"]]
    assert ds.skipped["reason"].tolist() == ["caption file is missing: c.txt"]
    png(tmp_path / "d.png")
    png(tmp_path / "e.png")  # one reason, however many files: it listed each missing file's name as its own
    assert skip_summary(read(tmp_path)) == "skipped 3 of 5 rows (3 rows: caption file is missing)"


def test_a_caption_file_named_in_capitals_or_written_as_utf16_is_read(tmp_path):
    """x.TXT beside x.png was "caption file is missing" (and itself listed nowhere); a UTF-16 .txt with its
    byte-order mark, Notepad's "Unicode", was "not UTF-8", although a UTF-16 CSV is read."""
    png(tmp_path / "upper.png")
    (tmp_path / "upper.TXT").write_text("shouted name")
    png(tmp_path / "wide.png")
    (tmp_path / "wide.txt").write_bytes("café au lait".encode("utf-16"))
    ds = read(tmp_path)
    assert ds.samples["filepath"].tolist() == ["upper.png", "wide.png"] and ds.skipped.empty
    assert ds.samples["captions"].tolist() == [["shouted name"], ["café au lait"]]


def test_a_caption_file_without_an_image_is_listed_as_skipped_and_names_an_unreadable_image_beside_it(tmp_path):
    """A sample whose image is missing, or of a type clipmem cannot read, vanished without a word."""
    png(tmp_path / "a.png")
    (tmp_path / "a.txt").write_text("a caption")
    (tmp_path / "orphan.txt").write_text("its image was never copied")
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "photo.heic").write_bytes(b"not read")
    (tmp_path / "sub" / "photo.txt").write_text("a phone photo")
    ds = read(tmp_path)
    assert ds.samples["filepath"].tolist() == ["a.png"]
    assert sorted(ds.skipped["reason"]) == [
        "caption file has no image of a readable type: sub/photo.txt (beside photo.heic; images are "
        ".bmp, .gif, .jpeg, .jpg, .png, .tif, .tiff, .webp)",
        "caption file has no image: orphan.txt",
    ]
    with pytest.raises(ClipmemError, match="caption file has no image"):
        read(tmp_path, on_error="fail")


def test_folder_captions_are_utf8_a_notepad_bom_dropped_and_latin1_skipped_with_its_reason(tmp_path):
    png(tmp_path / "a.png")
    (tmp_path / "a.txt").write_bytes("\ufeffa caption saved by Notepad".encode("utf-8"))
    png(tmp_path / "b.png")
    (tmp_path / "b.txt").write_bytes("café crème".encode("latin-1"))  # read as "caf� cr�me" before
    ds = read(tmp_path)
    assert ds.samples["caption"].tolist() == ["a caption saved by Notepad"]
    assert ds.skipped["reason"].tolist() == ["caption file is not UTF-8 text (save it as UTF-8): b.txt"]


def test_a_folder_of_images_and_a_caption_table_points_to_the_table(tmp_path):
    """Given the dataset's folder, clipmem reads images with .txt captions; the user meant the table in it."""
    simple_csv(tmp_path, n=3)
    with pytest.raises(
        ClipmemError, match=r"no usable samples.*; the folder holds data\.csv: to read a table, pass that file$"
    ):
        read(tmp_path)


def test_is_miscaptioned_values_are_parsed(tmp_path):
    ds = read(simple_csv(tmp_path, n=6, is_miscaptioned=["true", "False", "1", "0", "YES", "no"]))
    assert ds.samples["is_miscaptioned"].dtype == bool
    assert ds.samples["is_miscaptioned"].tolist() == [True, False, True, False, True, False]


def test_load_image_is_rgb(tmp_path):
    png(tmp_path / "g.png", mode="L")
    image = load_image(tmp_path, "g.png")
    assert image.mode == "RGB" and image.size == (8, 8)
    with pytest.raises(ClipmemError, match="unreadable"):
        load_image(tmp_path, "missing.png")


def test_a_phone_photo_is_loaded_upright_and_transparency_is_drawn_on_white(tmp_path):
    """Orientation 6 (rotate 90° clockwise to view) and a transparent icon: as a viewer or a web page shows them."""
    from PIL import Image

    stored = Image.new("RGB", (64, 32), "white")
    stored.paste((255, 0, 0), (0, 0, 8, 32))  # a red band on the stored left edge: the top once upright
    exif = Image.Exif()
    exif[0x0112] = 6
    stored.save(tmp_path / "phone.jpg", exif=exif, quality=95)
    upright = load_image(tmp_path, "phone.jpg")
    assert upright.size == (32, 64)
    assert upright.getpixel((16, 2))[0] > 200 and upright.getpixel((16, 2))[1] < 80  # red on top
    icon = Image.new("RGBA", (8, 8), (0, 0, 0, 0))
    icon.putpixel((4, 4), (0, 0, 255, 255))
    icon.save(tmp_path / "icon.png")
    icon.convert("P").save(tmp_path / "palette.png", transparency=0)
    for name in ("icon.png", "palette.png"):
        drawn = load_image(tmp_path, name)
        assert drawn.mode == "RGB" and drawn.getpixel((0, 0)) == (255, 255, 255), name  # not black


# --- bad rows ----------------------------------------------------------------------------------


def bad_rows_csv(tmp_path: Path) -> Path:
    """Row 1 good, then one row per defect (rows 2-7)."""
    png(tmp_path / "ok.png")
    png(tmp_path / "ok2.png")
    (tmp_path / "broken.png").write_bytes(b"not an image")
    return table(
        tmp_path / "d.csv",
        [
            {"filepath": "ok.png", "caption": "fine", "is_miscaptioned": "false"},
            {"filepath": "gone.png", "caption": "missing", "is_miscaptioned": "false"},
            {"filepath": "broken.png", "caption": "corrupt", "is_miscaptioned": "false"},
            {"filepath": "ok2.png", "caption": "   ", "is_miscaptioned": "false"},
            {"filepath": "ok.png", "caption": "fine", "is_miscaptioned": "false"},
            {"filepath": "ok2.png", "caption": "label", "is_miscaptioned": "maybe"},
            {"filepath": "", "caption": "no path", "is_miscaptioned": "true"},
        ],
    )


EXPECTED_REASONS = {
    2: "image file is missing",
    3: "image is unreadable",
    4: "caption is empty",
    5: "duplicate row: same filepath and caption as row 1",
    6: "bad is_miscaptioned value",
    7: "filepath is empty",
}


def test_bad_rows_are_skipped_with_reasons(tmp_path):
    ds = read(bad_rows_csv(tmp_path))
    assert ds.samples["caption"].tolist() == ["fine"]
    assert ds.skipped["row"].tolist() == list(EXPECTED_REASONS)
    for row, reason in zip(ds.skipped["row"], ds.skipped["reason"]):
        assert reason.startswith(EXPECTED_REASONS[row])
    assert ds.skipped["filepath"].tolist()[:2] == ["gone.png", "broken.png"]
    assert ds.skipped["caption"].tolist()[:2] == ["missing", "corrupt"]
    out = tmp_path / "report" / "skipped.csv"
    write_skip_report(ds, out)
    assert pd.read_csv(out)["row"].tolist() == list(EXPECTED_REASONS)


@pytest.mark.parametrize("row", list(EXPECTED_REASONS))
def test_fail_mode_raises_at_first_bad_row(tmp_path, row):
    path = bad_rows_csv(tmp_path)
    frame = pd.read_csv(path, dtype=str, keep_default_na=False)
    frame.drop(index=[r - 1 for r in EXPECTED_REASONS if r != row]).to_csv(path, index=False)
    with pytest.raises(ClipmemError) as info:
        read(path, on_error="fail")
    assert re.match(rf"row 2, line 3 of the file \([^)]*\): {re.escape(EXPECTED_REASONS[row])}", str(info.value))


def test_fail_mode_names_a_tables_row_and_the_line_it_starts_on(tmp_path):
    """ "row 2" counts data rows (as skipped.csv does) and was read as an editor's line 2, the header's next."""
    png(tmp_path / "ok.png")
    (tmp_path / "d.csv").write_text('filepath,caption\nok.png,"two\nlines"\n\ngone.png,missing\n')
    with pytest.raises(ClipmemError, match=r"^row 2, line 5 of the file \(gone\.png\): image file is missing: "):
        read(tmp_path / "d.csv", on_error="fail")


def test_the_skip_report_gives_the_line_a_tables_row_starts_on(tmp_path):
    """A caption over two lines and a blank line put row 2 on line 5: the report gives both numbers."""
    png(tmp_path / "ok.png")
    (tmp_path / "d.csv").write_text('filepath,caption\nok.png,"two\nlines"\n\ngone.png,missing\n')
    write_skip_report(read(tmp_path / "d.csv"), tmp_path / "skipped.csv")
    report = pd.read_csv(tmp_path / "skipped.csv")
    assert report.columns.tolist() == ["row", "line", "filepath", "caption", "reason"]
    assert report[["row", "line", "filepath"]].values.tolist() == [[2, 5, "gone.png"]]


def test_an_image_path_that_is_a_link_loop_a_broken_link_or_a_pipe_is_called_what_it_is(tmp_path):
    """Each was "image file is missing", and sent the user looking for a file that is there, in a way."""
    png(tmp_path / "ok.png")
    (tmp_path / "loop.png").symlink_to(tmp_path / "loop.png")
    (tmp_path / "broken.png").symlink_to(tmp_path / "gone.png")
    os.mkfifo(tmp_path / "pipe.png")
    rows = ["ok.png,fine", "loop.png,a", "broken.png,b", "pipe.png,c", "absent.png,d"]
    (tmp_path / "d.csv").write_text("filepath,caption\n" + "\n".join(rows) + "\n")
    reasons = [r.split(":")[0] for r in read(tmp_path / "d.csv").skipped["reason"]]
    assert reasons == [
        "image path is a symbolic link to itself (a loop)",
        "image path is a broken symbolic link",
        "image path is a pipe",
        "image file is missing",
    ]


def test_duplicate_ids_are_bad_rows(tmp_path):
    ds = read(simple_csv(tmp_path, id=["a", "b", "a", "c"]))
    assert ds.samples["sample_id"].tolist() == ["a", "b", "c"]
    assert ds.skipped["reason"].tolist() == ["duplicate id: 'a' is also row 1"]


def test_check_images_off_still_checks_existence(tmp_path):
    ds = read(bad_rows_csv(tmp_path), check_images=False)
    assert "broken.png" in ds.samples["filepath"].tolist()
    assert "gone.png" in ds.skipped["filepath"].tolist()


# --- whole-file problems -----------------------------------------------------------------------


def test_missing_columns_message(tmp_path):
    path = table(tmp_path / "d.csv", [{"image": "x.png", "text": "t"}])
    with pytest.raises(
        ClipmemError, match=r"lacks the column\(s\) 'filepath', 'caption' \(columns: 'image', 'text'\).*--csv-img-key"
    ):
        read(path)
    (tmp_path / "s.csv").write_text("filepath, caption\nx.png,a cat\n")  # the space is invisible unquoted
    with pytest.raises(ClipmemError, match=r"the header has ' caption', with spaces: remove them"):
        read(tmp_path / "s.csv")
    (tmp_path / "eu.csv").write_text("filepath;caption;label\nx.png;a cat;0\n")  # a European spreadsheet's CSV
    with pytest.raises(ClipmemError, match=r"separates its columns with ';', not commas .*save it comma-separated"):
        read(tmp_path / "eu.csv")
    (tmp_path / "commas.tsv").write_text("filepath,caption\nx.png,a cat\n")  # named .tsv, written as a CSV
    with pytest.raises(ClipmemError, match=r"separates its columns with ',', not tabs .*: name it \.csv"):
        read(tmp_path / "commas.tsv")


def test_a_windows_path_is_said_to_need_slashes(tmp_path):
    png(tmp_path / "images" / "a.png")
    png(tmp_path / "b.png")
    (tmp_path / "d.csv").write_text("filepath,caption\nimages\\a.png,a cat\nb.png,a dog\n")
    assert read(tmp_path / "d.csv").skipped["reason"].iloc[0].endswith("(write paths with /, not \\)")


@pytest.mark.parametrize(
    "name, content, message",
    [
        ("d.xlsx", "x", "unknown dataset format '.xlsx'"),
        ("d.json", "{not json", "is not valid JSON"),
        ("d.json", '{"images": []}', "is not a COCO captions file"),
        ("d.csv", "", "is empty"),
        ("d.csv", "filepath,caption\n", "holds no samples"),
    ],
)
def test_whole_file_problems(tmp_path, name, content, message):
    (tmp_path / name).write_text(content)
    with pytest.raises(ClipmemError, match=re.escape(message)):
        read(tmp_path / name)


def test_a_txt_table_is_refused_with_the_rename_that_reads_it(tmp_path):
    """Excel's "Unicode Text" is a tab-separated UTF-16 table saved as .txt; a .txt is as often a drop list or
    one image's captions, so it is not guessed at: the refusal says to name it .tsv, and the renamed file reads."""
    png(tmp_path / "a.png")
    (tmp_path / "data.txt").write_text("filepath\tcaption\r\na.png\ta red square\r\n", encoding="utf-16")
    with pytest.raises(ClipmemError, match=r"data\.txt is a \.txt file.*Unicode Text.*rename it data\.tsv"):
        read(tmp_path / "data.txt")
    (tmp_path / "data.txt").rename(tmp_path / "data.tsv")
    assert read(tmp_path / "data.tsv").samples["caption"].tolist() == ["a red square"]


@pytest.mark.parametrize(
    ("name", "content", "advice"),
    [
        ("cap.txt", "filepath\tcaption\na.png\tx\n".encode("utf-16"), r"holds tabs.*rename it cap\.tsv\. "),
        ("cap.txt", b"\xef\xbb\xbffilepath,caption\na.png,x\n", r"holds commas.*rename it cap\.csv\. "),
        ("cap.csv.txt", b"\n\nfilepath,caption\na.png,x\n", r"holds commas.*rename it cap\.csv\. "),
        ("cap.csv.txt", b"filepath\tcaption\na.png\tx\n", r"holds tabs.*rename it cap\.tsv\. "),
        ("ids.txt", b"s01\ns02\n", None),
        ("empty.txt", b"", None),
    ],
)
def test_the_txt_refusal_advises_the_rename_its_first_line_calls_for(tmp_path, name, content, advice):
    """Every .txt was told to be renamed .tsv: a comma-separated one (which the rename would not read) and a
    list of ids (no table at all) included. The advice now follows the first line, read as UTF-8 or UTF-16,
    and the name it gives reads the table."""
    png(tmp_path / "a.png")
    (tmp_path / name).write_bytes(content)
    with pytest.raises(ClipmemError, match=rf"{name.replace('.', '[.]')} is a \.txt file") as refused:
        read(tmp_path / name)
    said = str(refused.value)
    assert "\n" not in said and "pass the folder" in said
    if advice is None:
        assert "rename" not in said and "Its first line" not in said
    else:
        assert re.search(advice, said), said
        renamed = tmp_path / re.search(r"rename it (\S+)\. ", said).group(1)
        (tmp_path / name).rename(renamed)
        assert read(renamed).samples["caption"].tolist() == ["x"]


def test_an_empty_image_is_called_empty_not_damaged(tmp_path):
    """A 0-byte file (a failed download or copy) was "not an image file PIL can read (… damaged)"."""
    png(tmp_path / "ok.png")
    (tmp_path / "empty.png").write_bytes(b"")
    (tmp_path / "junk.png").write_bytes(b"not an image")
    rows = [{"filepath": name, "caption": name} for name in ("ok.png", "empty.png", "junk.png")]
    ds = read(table(tmp_path / "d.csv", rows))
    assert ds.skipped["reason"].tolist() == [
        "image is unreadable: empty file (0 bytes)",
        "image is unreadable: not an image file PIL can read (unknown format, or the start of the file is damaged)",
    ]
    with pytest.raises(ClipmemError, match=r"empty\.png is unreadable: empty file \(0 bytes\)$"):
        load_image(tmp_path, "empty.png")


def test_missing_path_and_bad_on_error(tmp_path):
    with pytest.raises(ClipmemError, match="does not exist"):
        read(tmp_path / "nope.csv")
    with pytest.raises(ClipmemError, match="on_error"):
        read(simple_csv(tmp_path), on_error="ignore")


def test_empty_after_skipping_names_counts_and_reasons(tmp_path):
    path = table(
        tmp_path / "d.csv",
        [
            {"filepath": "a.png", "caption": "x"},
            {"filepath": "b.png", "caption": "y"},
            {"filepath": "c.png", "caption": ""},
        ],
    )
    with pytest.raises(
        ClipmemError, match=r"all 3 rows were skipped \(2 rows: image file is missing; 1 row: caption is empty\)"
    ):
        read(path)


def test_a_table_whose_images_are_all_missing_names_the_folder_its_paths_were_read_against(tmp_path):
    """An export saved away from its images: "all rows skipped" must say where the images were looked for."""
    (tmp_path / "elsewhere").mkdir()
    path = table(tmp_path / "elsewhere" / "d.csv", [{"filepath": "img/a.png", "caption": "x"}])
    with pytest.raises(ClipmemError) as raised:
        read(path)
    message = str(raised.value)
    assert "(1 row: image file is missing)" in message
    assert f"relative to {tmp_path / 'elsewhere'}" in message
    assert f"looked for at {tmp_path / 'elsewhere' / 'img' / 'a.png'}" in message


def test_coco_in_its_own_layout_is_told_the_link_and_an_image_without_id_or_a_folder_says_so(tmp_path):
    """COCO's own layout named one place looked in, not the images/ folder tried too nor the README's link;
    an image entry without an id read "no annotation gives the image a caption: image id None"; a folder
    named as an image read "image file is missing" although it exists."""
    (tmp_path / "annotations").mkdir()
    png(tmp_path / "train2017" / "1.png")
    coco = {"images": [{"id": 1, "file_name": "1.png"}], "annotations": [{"image_id": 1, "caption": "a cat"}]}
    (tmp_path / "annotations" / "captions_train2017.json").write_text(json.dumps(coco))
    with pytest.raises(ClipmemError) as raised:
        read(tmp_path / "annotations" / "captions_train2017.json")
    looked_at = f"{tmp_path / 'annotations' / '1.png'} or {tmp_path / 'annotations' / 'images' / '1.png'}."
    assert f"looked for at {looked_at}" in str(raised.value)
    assert "ln -s ../train2017 annotations/images" in str(raised.value)
    coco["images"].append({"file_name": "1.png"})
    (tmp_path / "annotations" / "images").symlink_to("../train2017")
    (tmp_path / "annotations" / "captions_train2017.json").write_text(json.dumps(coco))
    ds = read(tmp_path / "annotations" / "captions_train2017.json")
    assert ds.skipped["reason"].tolist() == ["image entry has no id"]
    png(tmp_path / "images" / "a.png")
    table(tmp_path / "d.csv", [{"filepath": "images/a.png", "caption": "x"}, {"filepath": "images", "caption": "y"}])
    reasons = read(tmp_path / "d.csv").skipped["reason"].tolist()
    assert reasons == [f"image path is a folder, not a file: {tmp_path / 'images'}"]


# --- inject_miscaptions ------------------------------------------------------------------------


def test_inject_miscaptions(tmp_path):
    src = simple_csv(tmp_path / "src", n=20)
    out = tmp_path / "elsewhere" / "noisy.csv"
    summary = inject_miscaptions(src, out, fraction=0.25, seed=3, progress=False)
    assert summary["n"] == 20 and summary["n_injected"] == 5 and summary["out"] == str(out.resolve())
    written = pd.read_csv(out)
    assert list(written.columns) == ["id", "filepath", "caption", "is_miscaptioned"]
    original, noisy = read(src), read(out)
    assert noisy.samples["sample_id"].tolist() == original.samples["sample_id"].tolist()
    flagged = noisy.samples["is_miscaptioned"]
    assert flagged.sum() == 5
    assert (noisy.samples["caption"] != original.samples["caption"]).tolist() == flagged.tolist()
    assert set(noisy.samples["caption"]) <= set(original.samples["caption"])


def test_inject_lists_the_rows_it_leaves_out_beside_the_copy(tmp_path):
    """Its summary said only "n_skipped": 4; which rows, and why, were lost to the copy."""
    src = simple_csv(tmp_path / "src", n=12)
    with open(src, "a") as fh:
        fh.write("missing.png,a lost row\n")
    out = tmp_path / "noisy.csv"
    summary = inject_miscaptions(src, out, fraction=0.25, seed=0, progress=False)
    assert summary["n_skipped"] == 1 and summary["skipped_report"] == str(tmp_path / "noisy.skipped.csv")
    report = pd.read_csv(tmp_path / "noisy.skipped.csv")
    assert report["filepath"].tolist() == ["missing.png"] and report["reason"].iloc[0].startswith(
        "image file is missing"
    )
    assert "skipped_report" not in inject_miscaptions(
        simple_csv(tmp_path / "ok", n=12), tmp_path / "ok.csv", fraction=0.25, seed=0, progress=False
    )


def test_inject_is_deterministic_per_seed(tmp_path):
    src = simple_csv(tmp_path, n=30)
    texts = {}
    for name, seed in [("a", 1), ("b", 1), ("c", 2)]:
        inject_miscaptions(src, tmp_path / f"{name}.csv", fraction=0.3, seed=seed, progress=False)
        texts[name] = (tmp_path / f"{name}.csv").read_text()
    assert texts["a"] == texts["b"] != texts["c"]


def test_inject_never_keeps_the_caption_with_repeated_captions(tmp_path):
    captions = ["cat"] * 8 + ["dog"] * 2
    src = simple_csv(tmp_path, n=10, caption=captions)
    inject_miscaptions(src, tmp_path / "o.csv", fraction=0.5, seed=0, progress=False)
    out = pd.read_csv(tmp_path / "o.csv")
    assert out["is_miscaptioned"].sum() == 5
    assert (out["caption"] != captions).tolist() == out["is_miscaptioned"].tolist()


def test_inject_keeps_a_clean_samples_captions_and_gives_a_mis_captioned_one_the_donors(tmp_path):
    png(tmp_path / "a.png")
    png(tmp_path / "b.png")
    (tmp_path / "a.txt").write_text("apple\nred fruit")
    (tmp_path / "b.txt").write_text("banana\nyellow fruit")
    inject_miscaptions(tmp_path, tmp_path / "out" / "o.csv", fraction=0.5, seed=0, progress=False)
    ds = read(tmp_path / "out" / "o.csv")
    assert sorted(ds.samples["caption"]) in (["apple", "apple"], ["banana", "banana"])
    by_flag = {bool(f): list(c) for f, c in zip(ds.samples["is_miscaptioned"], ds.samples["captions"])}
    assert by_flag[False] in (["apple", "red fruit"], ["banana", "yellow fruit"])  # they were dropped
    assert by_flag[True] == by_flag[False]  # the donor's whole set: the captions study trains on 1…n wrong ones
    assert ds.samples["is_miscaptioned"].sum() == 1


def test_inject_leaves_out_a_donor_caption_the_victim_already_has(tmp_path):
    for name, lines in {"a": "apple\nfruit", "b": "banana\nfruit\nyellow"}.items():
        png(tmp_path / f"{name}.png")
        (tmp_path / f"{name}.txt").write_text(lines)
    for seed in range(4):
        inject_miscaptions(tmp_path, tmp_path / "out" / f"o{seed}.csv", fraction=0.5, seed=seed, progress=False)
        victim = read(tmp_path / "out" / f"o{seed}.csv").samples.query("is_miscaptioned").iloc[0]
        assert list(victim["captions"]) in (["apple"], ["banana", "yellow"])  # never "fruit", its own


def test_inject_writes_a_csv_named_csv(tmp_path):
    """A copy named noisy.json held CSV, and a run on it failed as broken JSON."""
    src = simple_csv(tmp_path / "src", n=12)
    with pytest.raises(ClipmemError, match=r"written as CSV: name it \.csv, not noisy\.json"):
        inject_miscaptions(src, tmp_path / "noisy.json", fraction=0.25, seed=0, progress=False)
    assert not (tmp_path / "noisy.json").exists()


def test_inject_clustered_fills_whole_classes(tmp_path):
    classes = [f"class{i % 6}" for i in range(30)]  # six classes of five, interleaved in the file
    src = simple_csv(tmp_path, n=30, label=classes)
    for seed in range(5):
        out = tmp_path / f"c{seed}.csv"
        summary = inject_miscaptions(src, out, fraction=0.2, seed=seed, progress=False, clustered=True)
        flagged = pd.read_csv(out).query("is_miscaptioned")
        assert summary["clustered"] and len(flagged) == 6
        # six victims from classes of five: one whole class and one sample of a second
        assert sorted(flagged["label"].value_counts().tolist()) == [1, 5]


def test_a_second_round_of_injection_draws_new_samples_and_says_which_it_keeps(tmp_path, caplog):
    """The same seed on a copy that already holds mis-captions swapped the same samples again: the second
    copy held no more than the first, while its summary said 5 were injected."""
    src = simple_csv(tmp_path / "src", n=20)
    first = inject_miscaptions(src, tmp_path / "one.csv", fraction=0.25, seed=3, progress=False)
    with caplog.at_level(logging.WARNING, logger="clipmem"):
        second = inject_miscaptions(tmp_path / "one.csv", tmp_path / "two.csv", fraction=0.25, seed=3, progress=False)
    assert (first["n_miscaptioned"], second["n_injected"], second["n_miscaptioned"]) == (5, 5, 10)
    one, two = pd.read_csv(tmp_path / "one.csv"), pd.read_csv(tmp_path / "two.csv")
    assert (
        two["is_miscaptioned"].sum() == 10
        and (two["caption"][one["is_miscaptioned"]] == one["caption"][one["is_miscaptioned"]]).all()
    )
    assert "5 samples are already flagged is_miscaptioned: kept as they are, and not drawn again" in caplog.text
    third = inject_miscaptions(tmp_path / "two.csv", tmp_path / "three.csv", fraction=0.9, seed=0, progress=False)
    assert (third["n_injected"], third["n_miscaptioned"]) == (10, 20)  # at most every sample still clean


def test_clustered_injection_draws_no_unlabelled_sample_and_says_so(tmp_path, caplog):
    """Samples without a class were drawn as one class named ""."""
    classes = ["" if i % 5 == 0 else f"class{i % 3}" for i in range(30)]
    src = simple_csv(tmp_path, n=30, label=classes)
    with caplog.at_level(logging.WARNING, logger="clipmem"):
        for seed in range(6):
            inject_miscaptions(src, tmp_path / f"c{seed}.csv", fraction=0.4, seed=seed, progress=False, clustered=True)
            flagged = pd.read_csv(tmp_path / f"c{seed}.csv", keep_default_na=False).query("is_miscaptioned")
            assert len(flagged) == 12 and "" not in set(flagged["label"])
    assert "6 samples have no 'label': not drawn, since --clustered mis-captions whole classes" in caplog.text


def test_inject_spread_is_unchanged_by_the_clustered_option(tmp_path):
    src = simple_csv(tmp_path, n=30, label=[f"class{i % 6}" for i in range(30)])
    inject_miscaptions(src, tmp_path / "a.csv", fraction=0.2, seed=1, progress=False)
    inject_miscaptions(src, tmp_path / "b.csv", fraction=0.2, seed=1, progress=False, clustered=False)
    spread = pd.read_csv(tmp_path / "a.csv").query("is_miscaptioned")
    assert (tmp_path / "a.csv").read_text() == (tmp_path / "b.csv").read_text()
    assert spread["label"].nunique() > 2  # without the option the victims spread over the classes


def test_permuted_injection_mis_captions_the_same_samples_and_copies_no_caption(tmp_path):
    """Every copy-made mis-caption left a twin of the wrong caption on its donor, a trace the benchmark's
    detectors could read; permuted, the victims trade captions and the data's captions stay the same set."""
    captions = [f"caption {i % 15}" for i in range(40)]  # repeated captions, as openclipart's templates
    src = simple_csv(tmp_path, n=40, caption=captions)
    source = pd.read_csv(src)
    for seed in range(6):
        copied = inject_miscaptions(src, tmp_path / f"c{seed}.csv", fraction=0.3, seed=seed, progress=False)
        summary = inject_miscaptions(
            src, tmp_path / f"p{seed}.csv", fraction=0.3, seed=seed, progress=False, permuted=True
        )
        copy, permuted = pd.read_csv(tmp_path / f"c{seed}.csv"), pd.read_csv(tmp_path / f"p{seed}.csv")
        assert summary["permuted"] and not copied["permuted"] and summary["n_injected"] == 12
        assert permuted["is_miscaptioned"].tolist() == copy["is_miscaptioned"].tolist()
        victims = permuted["is_miscaptioned"].to_numpy()
        assert (permuted["caption"][victims].to_numpy() != source["caption"][victims].to_numpy()).all()
        assert sorted(permuted["caption"]) == sorted(source["caption"])  # no caption copied, none lost
        assert sorted(copy["caption"]) != sorted(source["caption"])  # as the copy does


def test_permuted_injection_gives_a_victim_with_several_captions_its_donors_less_its_own(tmp_path):
    sets = {"a": "apple\nfruit", "b": "banana\nfruit\nyellow", "c": "cherry\nred"}
    for name, lines in sets.items():
        png(tmp_path / f"{name}.png")
        (tmp_path / f"{name}.txt").write_text(lines)
    for seed in range(4):
        inject_miscaptions(tmp_path, tmp_path / "out" / f"o{seed}.csv", fraction=0.99, seed=seed, permuted=True)
        given = {
            Path(fp).stem: list(caps)
            for fp, caps in read(tmp_path / "out" / f"o{seed}.csv")
            .samples[["filepath", "captions"]]
            .itertuples(index=False)
        }
        assert sorted(caps[0] for caps in given.values()) == ["apple", "banana", "cherry"]
        assert all(caps[0] != sets[name].split("\n")[0] for name, caps in given.items())
        assert "fruit" not in given["a"] and "fruit" not in given["b"]  # never a caption it carries


def test_permuted_injection_refuses_what_no_permutation_can_do(tmp_path):
    """Nine victims, eight or nine with one caption: no trade among them gives each a caption of its own."""
    src = simple_csv(tmp_path, n=10, caption=["same"] * 9 + ["other"])
    with pytest.raises(ClipmemError, match="share their captions too much"):
        inject_miscaptions(src, tmp_path / "o.csv", fraction=0.9, seed=0, progress=False, permuted=True)
    with pytest.raises(ClipmemError, match="at least two"):
        inject_miscaptions(src, tmp_path / "o.csv", fraction=0.05, seed=0, progress=False, permuted=True)
    labelled = simple_csv(tmp_path / "l", n=10, label=[f"c{i % 2}" for i in range(10)])
    with pytest.raises(ClipmemError, match="cannot be permuted"):
        inject_miscaptions(
            labelled, tmp_path / "o.csv", fraction=0.2, seed=0, clustered=True, one_donor_class=True, permuted=True
        )
    assert not (tmp_path / "o.csv").exists()


def test_inject_one_donor_class_gives_each_victim_class_one_other_class_captions(tmp_path):
    classes = [f"class{i % 6}" for i in range(30)]
    src = simple_csv(tmp_path, n=30, label=classes)
    class_of_caption = dict(zip(pd.read_csv(src)["caption"], classes))
    for seed in range(5):
        out = tmp_path / f"d{seed}.csv"
        summary = inject_miscaptions(
            src, out, fraction=0.2, seed=seed, progress=False, clustered=True, one_donor_class=True
        )
        flagged = pd.read_csv(out).query("is_miscaptioned")
        assert summary["one_donor_class"] and len(flagged) == 6
        donors = flagged.assign(donor=flagged["caption"].map(class_of_caption)).groupby("label")["donor"].unique()
        assert all(len(d) == 1 for d in donors)  # one donor class per victim class
        assert not set(donors.map(lambda d: d[0])) & set(flagged["label"])  # never a victim class itself


def test_inject_one_donor_class_when_every_class_is_mis_captioned_takes_another_victim_class(tmp_path):
    classes = [f"c{i % 2}" for i in range(10)]
    src = simple_csv(tmp_path, n=10, label=classes)
    class_of_caption = dict(zip(pd.read_csv(src)["caption"], classes))
    inject_miscaptions(src, tmp_path / "o.csv", fraction=0.9, seed=0, clustered=True, one_donor_class=True)
    flagged = pd.read_csv(tmp_path / "o.csv").query("is_miscaptioned")
    assert len(flagged) == 9 and flagged["label"].nunique() == 2
    assert (flagged["caption"].map(class_of_caption) != flagged["label"]).all()  # the other class's captions


def test_inject_one_donor_class_needs_clustered(tmp_path):
    src = simple_csv(tmp_path, n=10, label=[f"c{i % 2}" for i in range(10)])
    with pytest.raises(ClipmemError, match="--clustered"):
        inject_miscaptions(src, tmp_path / "o.csv", fraction=0.2, seed=0, one_donor_class=True)


def test_inject_clustered_needs_classes(tmp_path):
    with pytest.raises(ClipmemError, match="no 'label' column"):
        inject_miscaptions(simple_csv(tmp_path, n=10), tmp_path / "o.csv", fraction=0.2, seed=0, clustered=True)


@pytest.mark.parametrize("fraction", [0, 1, -0.1, 1.5])
def test_inject_rejects_bad_fraction(tmp_path, fraction):
    with pytest.raises(ClipmemError, match="fraction"):
        inject_miscaptions(simple_csv(tmp_path), tmp_path / "o.csv", fraction=fraction, seed=0)


def test_inject_needs_two_distinct_captions(tmp_path):
    src = simple_csv(tmp_path, n=3)
    frame = pd.read_csv(src)
    frame["caption"] = "same"
    frame.to_csv(src, index=False)
    with pytest.raises(ClipmemError, match="two different captions"):
        inject_miscaptions(src, tmp_path / "o.csv", fraction=0.5, seed=0, progress=False)


# --- hardening (issue 12) ----------------------------------------------------------------------


def test_tsv_caption_starting_with_a_quote_stays_one_row(tmp_path):
    """pandas' default quoting made a caption starting with '"' swallow the following rows."""
    for i in range(4):
        png(tmp_path / f"{i}.png")
    lines = ["filepath\tcaption", '0.png\t"Quoted" title', "1.png\tplain", '2.png\t"open quote', "3.png\tlast"]
    (tmp_path / "d.tsv").write_text("\n".join(lines) + "\n")
    ds = read(tmp_path / "d.tsv")
    assert ds.samples["caption"].tolist() == ['"Quoted" title', "plain", '"open quote', "last"]


@pytest.mark.parametrize("encoding, line_end", [("utf-8", "\n"), ("utf-16", "\r\n")])
def test_a_tsv_that_excel_or_pandas_quoted_is_read_as_written(tmp_path, encoding, line_end):
    """Read literally, a caption with a line break was cut at it (the rest became rows of their own, skipped),
    a quoted one kept its quotes doubled, and one holding a tab was skipped."""
    captions = ["line one\nline two\nline three", 'the sign says "STOP", ok', "a\ttab", '"STOP"', "plain"]
    for i in range(len(captions)):
        png(tmp_path / f"{i}.png")
    frame = pd.DataFrame({"filepath": [f"{i}.png" for i in range(len(captions))], "caption": captions})
    frame.to_csv(tmp_path / "d.tsv", sep="\t", index=False, encoding=encoding, lineterminator=line_end)  # as Excel
    ds = read(tmp_path / "d.tsv")
    assert ds.samples["caption"].tolist() == captions and ds.skipped.empty
    assert ds.samples["filepath"].tolist() == frame["filepath"].tolist()


def test_a_csv_caption_written_on_windows_keeps_no_carriage_return(tmp_path):
    for i in range(2):
        png(tmp_path / f"{i}.png")
    (tmp_path / "d.csv").write_bytes(b'filepath,caption\r\n0.png,"first line\r\nsecond line"\r\n1.png,b\r\n')
    assert read(tmp_path / "d.csv").samples["caption"].tolist() == ["first line\nsecond line", "b"]


@pytest.mark.parametrize(
    "bad_row, line",
    [
        ('1.png,"a caption that opens a quote and never closes it', 3),  # swallowed every row after it
        ('1.png,"He said "hi" to the cat"', 3),  # the stray quote was dropped from the caption
    ],
)
def test_a_csv_quote_that_does_not_close_names_its_line_and_loses_no_row(tmp_path, bad_row, line):
    for i in range(4):
        png(tmp_path / f"{i}.png")
    rows = ["filepath,caption", '0.png,"a cat, sitting"', bad_row, "2.png,a dog", '3.png,"a ""quoted"" word"']
    (tmp_path / "d.csv").write_text("\n".join(rows) + "\n")
    with pytest.raises(
        ClipmemError, match=f"d.csv is not a readable CSV table: line {line}: .*A quoted field must close"
    ):
        read(tmp_path / "d.csv")
    rows[2] = '1.png,"He said ""hi"" to the cat"'  # as CSV writes a quote inside a quoted field
    (tmp_path / "d.csv").write_text("\n".join(rows) + "\n")
    assert read(tmp_path / "d.csv").samples["caption"].tolist() == [
        "a cat, sitting",
        'He said "hi" to the cat',
        "a dog",
        'a "quoted" word',
    ]


def test_a_csv_cut_off_inside_its_last_rows_quote_is_refused_unless_the_row_is_whole(tmp_path):
    """A copy that stopped mid-caption was read: the cut caption trained, and the row's missing label took the
    whole file's ground truth with it. A last quote that runs to the end of a whole row is still read."""
    for i in range(2):
        png(tmp_path / f"{i}.png")
    head = "filepath,caption,is_miscaptioned\n0.png,a cat,false\n"
    (tmp_path / "cut.csv").write_text(head + '1.png,"a red square on\n')
    with pytest.raises(ClipmemError, match=r"cut.csv ends inside a quoted field of the row on line 3, which has 2 of"):
        read(tmp_path / "cut.csv")
    (tmp_path / "whole.csv").write_text(head + '1.png,a red square,"false\n')
    assert read(tmp_path / "whole.csv").samples["caption"].tolist() == ["a cat", "a red square"]


def test_csv_row_with_an_unquoted_comma_is_skipped_and_the_rest_kept(tmp_path):
    for i in range(3):
        png(tmp_path / f"{i}.png")
    (tmp_path / "d.csv").write_text("filepath,caption\n0.png,a cat\n1.png,red, blue car\n2.png,a dog,\n")
    ds = read(tmp_path / "d.csv")
    assert ds.samples["caption"].tolist() == ["a cat", "a dog"]
    assert ds.skipped["reason"].tolist() == [
        "row has 3 fields but the header has 2 (quote fields that hold the separator)"
    ]


@pytest.mark.parametrize(
    "content, message",
    [
        (b"filepath,caption\n0.png,caf\xe9\n", r"is not UTF-8 text \(line 2, byte 26\)"),
        (b"filepath,filepath,caption\nx.png,y.png,c\n", "has the column 'filepath' more than once"),
    ],
)
def test_table_problems_are_one_clear_error(tmp_path, content, message):
    (tmp_path / "d.csv").write_bytes(content)
    with pytest.raises(ClipmemError, match=message):
        read(tmp_path / "d.csv")


def test_deeply_nested_coco_json_is_a_clear_error(tmp_path):
    (tmp_path / "d.json").write_text('{"images": ' + "[" * 100_000 + "]" * 100_000 + ', "annotations": []}')
    with pytest.raises(ClipmemError, match="nested too deeply"):
        read(tmp_path / "d.json")


def test_sixteen_bit_and_float_images_keep_their_contrast(tmp_path):
    """A 16-bit grayscale PNG trained as a white image: convert('RGB') clips it to 255."""
    ramp = np.linspace(0, 65535, 64 * 64).reshape(64, 64).astype(np.uint16)
    Image.fromarray(ramp).save(tmp_path / "g16.png")
    assert Image.open(tmp_path / "g16.png").mode == "I;16"
    pixels = np.asarray(load_image(tmp_path, "g16.png"))
    assert pixels.shape == (64, 64, 3) and pixels.min() == 0 and pixels.max() == 255
    assert abs(pixels.mean() - 127.5) < 2
    Image.fromarray(np.linspace(0, 1, 64).reshape(8, 8).astype(np.float32), "F").save(tmp_path / "f.tif")
    floats = np.asarray(load_image(tmp_path, "f.tif"))
    assert floats.min() == 0 and floats.max() == 255


def test_a_truncated_jpeg_is_skipped_at_validation(tmp_path):
    """verify() passes a JPEG cut in its scan data; the run then died at 'load images'."""
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 255, (64, 64, 3), dtype=np.uint8)).save(tmp_path / "full.jpg", quality=90)
    data = (tmp_path / "full.jpg").read_bytes()
    (tmp_path / "cut.jpg").write_bytes(data[: len(data) // 2])
    with Image.open(tmp_path / "cut.jpg") as image:
        image.verify()  # the old check passes it
    path = table(
        tmp_path / "d.csv", [{"filepath": "full.jpg", "caption": "a"}, {"filepath": "cut.jpg", "caption": "b"}]
    )
    ds = read(path)
    assert ds.samples["filepath"].tolist() == ["full.jpg"]
    assert ds.skipped["reason"].str.startswith("image is unreadable").tolist() == [True]


def png_header_only(path: Path, width: int, height: int) -> Path:
    """A PNG that claims a size without the pixels: enough to trip a decompression-bomb check."""
    import struct
    import zlib

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    path.write_bytes(
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"")) + chunk(b"IEND", b"")
    )
    return path


def test_decompression_bombs_are_skip_reasons_not_crashes(tmp_path):
    png(tmp_path / "ok.png")
    png_header_only(tmp_path / "bomb.png", 20_000, 20_000)
    path = table(tmp_path / "d.csv", [{"filepath": "ok.png", "caption": "a"}, {"filepath": "bomb.png", "caption": "b"}])
    ds = read(path)
    assert ds.samples["filepath"].tolist() == ["ok.png"]
    [reason] = ds.skipped["reason"].tolist()
    assert reason.startswith("image is unreadable") and "exceeds limit of 178956970 pixels" in reason
    with pytest.raises(ClipmemError, match="exceeds limit"):
        load_image(tmp_path, "bomb.png")


def test_ids_that_no_review_database_could_hold_are_skipped(tmp_path):
    ds = read(simple_csv(tmp_path, n=4, id=["ok", "x" * 301, "tab\there", "fine"]))
    assert ds.samples["sample_id"].tolist() == ["ok", "fine"]
    assert ds.skipped["reason"].tolist() == ["id is longer than 300 characters", "id holds control characters"]


def test_inject_refuses_to_overwrite_its_input_or_an_existing_file(tmp_path):
    src = simple_csv(tmp_path, n=6)
    before = src.read_bytes()
    with pytest.raises(ClipmemError, match="is the input itself"):
        inject_miscaptions(src, src, fraction=0.5, seed=0, progress=False)
    with pytest.raises(ClipmemError, match="is the input itself"):
        inject_miscaptions(src, src, fraction=0.5, seed=0, progress=False, force=True)
    assert src.read_bytes() == before
    out = tmp_path / "noisy.csv"
    out.write_text("precious")
    with pytest.raises(ClipmemError, match="already exists; add --force"):
        inject_miscaptions(src, out, fraction=0.5, seed=0, progress=False)
    assert out.read_text() == "precious"
    inject_miscaptions(src, out, fraction=0.5, seed=0, progress=False, force=True)
    assert len(pd.read_csv(out)) == 6
    with pytest.raises(ClipmemError, match="is a folder"):
        inject_miscaptions(src, tmp_path / "images", fraction=0.5, seed=0, progress=False)
    with pytest.raises(ClipmemError, match="is a file, not a folder"):
        inject_miscaptions(src, out / "x.csv", fraction=0.5, seed=0, progress=False)


def test_inject_output_reads_back_wherever_it_is_written(tmp_path):
    src = simple_csv(tmp_path / "src", n=6)
    out = tmp_path / "elsewhere" / "deep" / "noisy.csv"
    inject_miscaptions(src, out, fraction=0.5, seed=0, progress=False)
    assert all(Path(p).is_absolute() for p in pd.read_csv(out)["filepath"])
    assert len(read(out)) == 6


def test_a_dataset_of_one_caption_is_read_with_a_warning(tmp_path, caplog):
    for i in range(3):
        png(tmp_path / f"{i}.png")
    (tmp_path / "d.csv").write_text("filepath,caption\n0.png,clip art\n1.png,clip art\n2.png,clip art\n")
    with caplog.at_level("WARNING", logger="clipmem"):
        ds = read(tmp_path / "d.csv")
    assert len(ds) == 3 and ds.warnings == [
        "every sample has the same caption ('clip art'): no ranking can tell a wrong caption from a right one"
    ]
    assert any("every sample has the same caption" in r.getMessage() for r in caplog.records)


def test_a_ground_truth_given_for_some_rows_keeps_every_row(tmp_path):
    """Curators mark the known mis-captions and leave the rest empty, and pandas writes a bool column with
    gaps as 1.0/0.0: each of those rows was skipped as a "bad is_miscaptioned value", and the run trained on
    the few marked ones. Empty cells are unlabelled samples now; the partial ground truth is left out."""
    for name in ("a.png", "b.png", "c.png", "d.png"):
        png(tmp_path / name)
    marked = [{"filepath": "a.png", "caption": "a", "is_miscaptioned": "true"}]
    marked += [{"filepath": f"{k}.png", "caption": k, "is_miscaptioned": ""} for k in "bcd"]
    ds = read(table(tmp_path / "marked.csv", marked))
    assert len(ds) == 4 and ds.skipped.empty and "is_miscaptioned" not in ds.samples.columns
    assert any("is given for 1 of 4 samples" in w for w in ds.warnings)
    forms = [("a.png", "1.0"), ("b.png", "0.0"), ("c.png", "T"), ("d.png", "n")]
    rows = [{"filepath": f, "caption": f, "is_miscaptioned": v} for f, v in forms]
    ds = read(table(tmp_path / "forms.csv", rows))
    assert ds.skipped.empty and ds.samples["is_miscaptioned"].tolist() == [True, False, True, False]


def test_an_id_column_with_empty_cells_keeps_those_rows_under_derived_ids(tmp_path):
    for name in ("a.png", "b.png"):
        png(tmp_path / name)
    rows = [{"filepath": "a.png", "caption": "a", "id": "first"}, {"filepath": "b.png", "caption": "b", "id": ""}]
    ds = read(table(tmp_path / "ids.csv", rows))
    without = read(table(tmp_path / "noids.csv", [{"filepath": "b.png", "caption": "b"}]))
    assert ds.skipped.empty and ds.samples["sample_id"].tolist() == ["first", without.samples["sample_id"].iloc[0]]
