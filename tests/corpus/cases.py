"""The classes of the bad-input corpus, by area: ingest, options, run folders, review.

A class is a function that builds its input in a `Workspace` and returns the command line, registered
with what must happen. Ingest classes that succeed go through ``inject-miscaptions``, which writes one
row per usable sample, so ``valid`` checks that no good row was lost next to the bad ones.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from .workspace import GOOD_ROWS, RunsCode, Workspace, image_bytes, noisy_jpeg, png_claiming


@dataclass(frozen=True)
class Case:
    """One class of bad input and what clipmem must do with it."""

    name: str
    area: str
    build: Callable[[Workspace], list[str]]
    error: str | None = None  # a fragment of the one error line; None: the command succeeds
    valid: int | None = None  # ingest that succeeds: how many samples must be kept
    check: Callable[[Workspace, str, str], None] | None = None  # more checks: (workspace, stdout, stderr)


CASES: list[Case] = []


def case(area: str, *, error: str | None = None, valid: int | None = None, check=None):
    def register(build: Callable[[Workspace], list[str]]):
        CASES.append(Case(build.__name__, area, build, error, valid, check))
        return build

    return register


def no_code_ran(ws: Workspace, _stdout: str, _stderr: str) -> None:
    assert not ws.marker.exists(), "a pickled payload ran"


def nothing_imported(ws: Workspace, _stdout: str, _stderr: str) -> None:
    from clipmem_core.review.store import open_store

    store = open_store(url=ws.db_url)
    try:
        assert store.verdicts("run1").empty
    finally:
        store.close()


def loss_reported(_ws: Workspace, stdout: str, stderr: str) -> None:
    """A damaged shard's lost tail is a skipped row and a warning, never a silent shortfall."""
    assert json.loads(stdout)["n_skipped"] >= 1, stdout
    assert "is truncated or damaged" in stderr, stderr


def listed_unusable(fragment: str):
    def check(_ws: Workspace, stdout: str, _stderr: str) -> None:
        assert "UNUSABLE" in stdout and fragment in stdout, stdout

    return check


# --- ingest: CSV and TSV ---------------------------------------------------------------------------


@case("ingest", error="does not exist")
def csv_missing_file(ws):
    return ws.inject(ws.inputs / "missing.csv")


@case("ingest", error="is empty")
def csv_empty_file(ws):
    return ws.inject(ws.write("data.csv", ""))


@case("ingest", error="holds no samples")
def csv_header_only(ws):
    return ws.inject(ws.write("data.csv", "filepath,caption\n"))


@case("ingest", error="lacks the column(s) 'caption'")
def csv_missing_caption_column(ws):
    return ws.inject(ws.table([{"filepath": r["filepath"], "text": r["caption"]} for r in ws.rows()]))


@case("ingest", error="more than once")
def csv_repeated_column(ws):
    return ws.inject(ws.write("data.csv", "filepath,caption,caption\nimages/0.png,a,b\n"))


@case("ingest", error="is a link to")
def csv_linked_in_beside_its_images(ws):
    target = ws.table(ws.rows(), name="elsewhere/data.csv")  # its paths are relative to in/, not in/elsewhere/
    (ws.inputs / "data.csv").symlink_to(target)
    return ws.inject(ws.inputs / "data.csv")


@case("ingest", error="is not UTF-8 text")
def csv_not_utf8(ws):
    ws.images(1)
    return ws.inject(ws.write("data.csv", b"filepath,caption\nimages/0.png,caf\xe9 au lait\n"))


@case("ingest", valid=GOOD_ROWS)  # Excel's "Unicode Text": UTF-16 with a byte-order mark, tab-separated
def tsv_utf16_with_byte_order_mark(ws):
    rows = ws.rows()
    body = "filepath\tcaption\r\n" + "".join(f"{r['filepath']}\tcafé {r['caption']}\r\n" for r in rows)
    return ws.inject(ws.write("data.tsv", body.encode("utf-16")))


@case("ingest", error="is not valid UTF-16 text")
def csv_utf16_mark_on_other_bytes(ws):
    ws.images(1)
    return ws.inject(ws.write("data.csv", b"\xff\xfef\x00i\x00\x00\xd8"))  # a lone surrogate half


@case("ingest", error="is a folder")
def csv_out_is_a_folder(ws):
    data = ws.table(ws.rows())
    argv = ws.inject(data)
    argv[argv.index("--out") + 1] = str(ws.out)
    return argv


@case("ingest", valid=GOOD_ROWS)
def csv_byte_order_mark_and_crlf(ws):
    rows = ws.rows()
    body = "filepath,caption\r\n" + "".join(f"{r['filepath']},{r['caption']}\r\n" for r in rows)
    return ws.inject(ws.write("data.csv", "\ufeff" + body + "\r\n\r\n"))


@case("ingest", valid=GOOD_ROWS)
def csv_quoted_commas_quotes_and_newlines(ws):
    rows = ws.rows()
    rows[0]["caption"] = 'a "quoted", comma\nand a second line'
    return ws.inject(ws.table(rows))


@case("ingest", valid=GOOD_ROWS - 1)
def csv_unquoted_comma_splits_a_row(ws):
    rows = ws.rows()
    body = "filepath,caption\n" + "".join(f"{r['filepath']},{r['caption']}\n" for r in rows[1:])
    return ws.inject(ws.write("data.csv", body + f"{rows[0]['filepath']},red, blue car\n"))


@case("ingest", valid=GOOD_ROWS)
def csv_trailing_empty_fields_and_short_rows(ws):
    rows = ws.rows()
    body = "filepath,caption,id\n" + "".join(f"{r['filepath']},{r['caption']},{i},,\n" for i, r in enumerate(rows))
    return ws.inject(ws.write("data.csv", body))


@case("ingest", valid=GOOD_ROWS + 1)  # the quote runs to the end of the file: nothing after it is lost
def csv_unterminated_quote_in_the_last_row(ws):
    rows = ws.rows()
    body = "filepath,caption\n" + "".join(f"{r['filepath']},{r['caption']}\n" for r in rows)
    return ws.inject(ws.write("data.csv", body + 'images/0.png,"never closed\n'))


@case("ingest", valid=GOOD_ROWS)
def csv_nul_and_control_characters_in_captions(ws):
    rows = ws.rows()
    rows[0]["caption"] = "nul\x00inside"
    rows[1]["caption"] = "bell\x07 and \x1b[31mred"
    return ws.inject(ws.table(rows))


@case("ingest", valid=GOOD_ROWS)
def csv_html_markdown_and_formula_captions(ws):
    rows = ws.rows()
    for row, text in zip(rows, ["<script>alert(1)</script>", "[x](http://e.vil) ![](http://e.vil/a.png)", "=1+2"]):
        row["caption"] = text
    return ws.inject(ws.table(rows))


@case("ingest", valid=GOOD_ROWS)
def csv_nul_byte_in_a_filepath(ws):
    rows = ws.rows()
    return ws.inject(ws.table([*rows, {"filepath": "images/0.png\x00.txt", "caption": "nul path"}]))


@case("ingest", valid=GOOD_ROWS)
def csv_duplicate_ids_and_rows(ws):
    rows = [{**r, "id": f"id{i}"} for i, r in enumerate(ws.rows())]
    return ws.inject(ws.table([*rows, dict(rows[0]), {**rows[1], "caption": "other", "id": "id2"}]))


@case("ingest", valid=GOOD_ROWS)
def csv_ids_too_long_or_with_control_characters(ws):
    rows = [{**r, "id": f"id{i}"} for i, r in enumerate(ws.rows())]
    extra = [{"filepath": rows[0]["filepath"], "caption": "long id", "id": "x" * 301}]
    extra += [{"filepath": rows[1]["filepath"], "caption": "tab id", "id": "a\tb"}]
    return ws.inject(ws.table(rows + extra))


@case("ingest", valid=GOOD_ROWS)
def csv_empty_and_blank_captions_and_paths(ws):
    rows = ws.rows()
    extra = [
        {"filepath": rows[0]["filepath"], "caption": ""},
        {"filepath": rows[1]["filepath"], "caption": "   "},
        {"filepath": "", "caption": "no path"},
    ]
    return ws.inject(ws.table(rows + extra))


@case("ingest", valid=GOOD_ROWS + 1)  # the empty label is a row without ground truth, kept
def csv_bad_and_empty_ground_truth_values(ws):
    rows = [{**r, "is_miscaptioned": "false"} for r in ws.rows()]
    extra = [{"filepath": rows[0]["filepath"], "caption": "maybe", "is_miscaptioned": "maybe"}]
    extra += [{"filepath": rows[1]["filepath"], "caption": "blank", "is_miscaptioned": ""}]
    return ws.inject(ws.table(rows + extra))


@case("ingest", valid=GOOD_ROWS + 1)  # Python's CSV reader refused the whole table over one field of 131,072+
def csv_caption_of_200k_characters(ws):
    rows = ws.rows()
    return ws.inject(ws.table([*rows, {"filepath": rows[0]["filepath"], "caption": "a long " * 30_000}]))


@case("ingest", valid=GOOD_ROWS)
def csv_missing_images_and_folders_as_images(ws):
    rows = ws.rows()
    (ws.inputs / "a_folder.png").mkdir()
    extra = [{"filepath": "images/gone.png", "caption": "gone"}, {"filepath": "a_folder.png", "caption": "folder"}]
    return ws.inject(ws.table(rows + extra))


@case("ingest", valid=GOOD_ROWS)
def csv_symlink_loop(ws):
    rows = ws.rows()
    os.symlink(ws.inputs / "loop.png", ws.inputs / "loop.png")
    return ws.inject(ws.table([*rows, {"filepath": "loop.png", "caption": "loop"}]))


@case("ingest", valid=GOOD_ROWS)
def csv_relative_paths_leaving_the_root(ws):
    rows = ws.rows()
    ws.write("../outside.png", image_bytes())  # exists: still refused, and never opened
    extra = [{"filepath": "../outside.png", "caption": "escapes"}]
    extra += [{"filepath": "images/../../../../../../etc/passwd", "caption": "escapes far"}]
    return ws.inject(ws.table(rows + extra))


@case("ingest", valid=GOOD_ROWS + 1)
def csv_relative_path_leaving_the_root_allowed(ws):
    rows = ws.rows()
    ws.write("../outside.png", image_bytes())
    return ws.inject(ws.table([*rows, {"filepath": "../outside.png", "caption": "escapes"}]), "--allow-outside-root")


@case("ingest", valid=GOOD_ROWS + 1)
def csv_absolute_paths_are_accepted(ws):
    rows = ws.rows()
    outside = ws.write("../elsewhere/photo.png", image_bytes())
    return ws.inject(ws.table([*rows, {"filepath": str(outside.resolve()), "caption": "absolute"}]))


@case("ingest", valid=GOOD_ROWS)
def csv_absolute_paths_to_system_files(ws):
    rows = ws.rows()
    extra = [{"filepath": "/etc/passwd", "caption": "system"}, {"filepath": "/dev/zero", "caption": "device"}]
    extra += [{"filepath": "/proc/self/environ", "caption": "environment"}]
    return ws.inject(ws.table(rows + extra))


@case("ingest", error="no usable samples: all 3 rows were skipped")
def csv_every_row_bad(ws):
    rows = [{"filepath": f"missing{i}.png", "caption": f"c{i}"} for i in range(3)]
    return ws.inject(ws.table(rows))


@case("ingest", error="row 7, line 8 of the file (images/broken.png): image is unreadable")
def csv_on_error_fail(ws):
    rows = ws.rows()
    ws.write("images/broken.png", b"not an image")
    return ws.inject(ws.table([*rows, {"filepath": "images/broken.png", "caption": "broken"}]), "--on-error", "fail")


# --- ingest: damaged and odd images --------------------------------------------------------------


def _one_image_class(name: str, content: bytes, valid: int):
    def build(ws):
        rows = ws.rows()
        ws.write(f"images/{name}", content)
        return ws.inject(ws.table([*rows, {"filepath": f"images/{name}", "caption": f"the odd one {name}"}]))

    build.__name__ = f"image_{name.replace('.', '_')}"
    case("ingest", valid=valid)(build)


_one_image_class("empty.png", b"", GOOD_ROWS)
_one_image_class("text.png", b"just some text, not an image", GOOD_ROWS)
_one_image_class("truncated.png", image_bytes("PNG", size=32)[:60], GOOD_ROWS)
_one_image_class("truncated.jpg", noisy_jpeg()[: len(noisy_jpeg()) // 2], GOOD_ROWS)  # passes PIL verify()
_one_image_class("bomb.png", png_claiming(30_000, 30_000), GOOD_ROWS)
_one_image_class("sixteen_bit.png", image_bytes("PNG", mode="I;16"), GOOD_ROWS + 1)
_one_image_class("cmyk.jpg", image_bytes("JPEG", mode="CMYK"), GOOD_ROWS + 1)
_one_image_class("palette.gif", image_bytes("GIF", mode="P"), GOOD_ROWS + 1)
_one_image_class("alpha.webp", image_bytes("WEBP", mode="RGBA"), GOOD_ROWS + 1)
_one_image_class("bilevel.tiff", image_bytes("TIFF", mode="1"), GOOD_ROWS + 1)
_one_image_class("grey_alpha.png", image_bytes("PNG", mode="LA"), GOOD_ROWS + 1)
_one_image_class("wrong_suffix.png", image_bytes("JPEG"), GOOD_ROWS + 1)


# --- ingest: TSV ----------------------------------------------------------------------------------


@case("ingest", valid=GOOD_ROWS)
def tsv_captions_starting_with_quotes(ws):
    rows = ws.rows()
    rows[1]["caption"] = '"Quoted" title'
    rows[3]["caption"] = '"an open quote'
    return ws.inject(ws.table(rows, "data.tsv"))


@case("ingest", valid=GOOD_ROWS - 1)
def tsv_row_with_a_stray_tab(ws):
    rows = ws.rows()
    rows[2]["caption"] = "a tab\there"
    return ws.inject(ws.table(rows, "data.tsv"))


@case("ingest", error="separates its columns with ',', not tabs (header: 'filepath,caption'): name it .csv")
def tsv_that_is_really_a_csv(ws):
    rows = ws.rows()
    ws.table(rows, "real.csv").rename(ws.inputs / "data.tsv")
    return ws.inject(ws.inputs / "data.tsv")


# --- ingest: COCO JSON ----------------------------------------------------------------------------


@case("ingest", error="is not valid JSON")
def coco_not_json(ws):
    return ws.inject(ws.write("captions.json", "{not json"))


@case("ingest", error="nested too deeply")
def coco_nested_too_deeply(ws):
    return ws.inject(ws.write("captions.json", '{"images": ' + "[" * 100_000 + "]" * 100_000 + ', "annotations": []}'))


@case("ingest", error="is not a COCO captions file")
def coco_wrong_shape(ws):
    return ws.inject(ws.write("captions.json", json.dumps([{"images": []}])))


@case("ingest", valid=GOOD_ROWS)
def coco_odd_entries(ws):
    names = ws.images()
    images = [{"id": i, "file_name": n} for i, n in enumerate(names)]
    images += ["not an object", {"id": 100, "file_name": 7}, {"id": 101}, {"id": 102, "file_name": "../x.png"}]
    images += [{"id": "x" * 400, "file_name": names[0]}, {"id": 103, "file_name": names[1]}]
    annotations = [{"image_id": i, "caption": f"caption {i}"} for i in range(len(names))]
    annotations += [{"image_id": 100, "caption": 5}, "junk", {"image_id": 101, "caption": "no file"}]
    annotations += [{"image_id": 102, "caption": "escapes"}, {"image_id": "x" * 400, "caption": "long id"}]
    return ws.inject(ws.coco(images, annotations))


@case("ingest", valid=GOOD_ROWS)
def coco_string_and_integer_ids_with_nan(ws):
    names = ws.images()
    images = [{"id": str(i) if i % 2 else i, "file_name": n} for i, n in enumerate(names)]
    annotations = [{"image_id": i if i % 2 else str(i), "caption": f"caption {i}"} for i in range(len(names))]
    text = json.dumps({"images": [*images, {"id": float("nan"), "file_name": names[0]}], "annotations": annotations})
    return ws.inject(ws.write("captions.json", text))


# --- ingest: image folder ---------------------------------------------------------------------------


@case("ingest", valid=GOOD_ROWS)
def folder_with_missing_huge_and_hidden_caption_files(ws):
    names = ws.images(GOOD_ROWS + 2, folder="pics")
    for i, name in enumerate(names[:GOOD_ROWS]):
        ws.write(name.rsplit(".", 1)[0] + ".txt", f"caption {i}\n\nsecond line")
    ws.write(names[-1].rsplit(".", 1)[0] + ".txt", "x" * 2_000_000)  # too large to be a caption file
    ws.write("pics/.hidden/0.png", b"not read")
    return ws.inject(ws.inputs / "pics")


@case("ingest", error="unknown dataset format '.xlsx'")
def unknown_extension(ws):
    return ws.inject(ws.write("data.xlsx", b"PK\x03\x04"))


# --- ingest: WebDataset -------------------------------------------------------------------------------


def _cut_shard(ws: Workspace, keep: Callable[[bytes], bytes]) -> Path:
    full = ws.good_shard("full.tar", n=39)
    cut = ws.write("cut.tar", keep(full.read_bytes()))
    full.unlink()
    return cut


@case("ingest", valid=5, check=loss_reported)
def wds_truncated_at_a_member_boundary(ws):
    return ws.inject(_cut_shard(ws, lambda data: data[: 5 * 2 * 1024]))


@case("ingest", valid=5, check=loss_reported)
def wds_truncated_inside_a_member(ws):
    return ws.inject(_cut_shard(ws, lambda data: data[: 5 * 2 * 1024 + 600]))


@case("ingest", valid=5, check=loss_reported)
def wds_garbage_after_five_samples(ws):
    return ws.inject(_cut_shard(ws, lambda data: data[: 5 * 2 * 1024] + b"\x01" * 4096))


@case("ingest", valid=2 * GOOD_ROWS)
def wds_one_unreadable_shard_among_good_ones(ws):
    ws.good_shard("shards/a.tar")
    ws.good_shard("shards/c.tar", first=GOOD_ROWS)
    ws.write("shards/b.tar", b"garbage" * 200)
    return ws.inject(ws.inputs / "shards")


@case("ingest", error="no usable samples")
def wds_not_a_tar(ws):
    return ws.inject(ws.write("shard.tar", b"garbage" * 200))


@case("ingest", valid=GOOD_ROWS)
def wds_hostile_member_names(ws):
    good = ws.good_shard("good.tar")
    members = [(m, image_bytes() if m.endswith(".png") else "escape") for m in ("../evil.png", "../evil.txt")]
    members += [("/tmp/absolute.png", image_bytes()), ("/tmp/absolute.txt", "absolute")]
    members += [("a/../../b.png", image_bytes()), ("a/../../b.txt", "dotdot")]
    ws.shard("shards/hostile.tar", members)
    good.rename(ws.inputs / "shards" / "good.tar")
    return ws.inject(ws.inputs / "shards")


@case("ingest", valid=GOOD_ROWS)
def wds_links_duplicates_and_several_images(ws):
    import io
    import tarfile

    path = ws.good_shard()
    with tarfile.open(path, "a") as tar:
        for kind in (tarfile.SYMTYPE, tarfile.LNKTYPE):
            link = tarfile.TarInfo(f"link{kind.decode()}.png")
            link.type, link.linkname = kind, "/etc/passwd"
            tar.addfile(link)
        for name in ("dup.png", "dup.png", "dup.txt", "two.png", "two.jpg", "two.txt"):
            data = image_bytes() if name.endswith((".png", ".jpg")) else b"text"
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return ws.inject(path)


@case("ingest", valid=GOOD_ROWS + 1)
def wds_partial_and_odd_labels(ws):
    members = []
    for i in range(GOOD_ROWS):
        members += [(f"{i}.png", image_bytes()), (f"{i}.txt", f"caption {i}")]
    members += [("0.json", {"is_miscaptioned": True}), ("1.json", {"is_miscaptioned": None})]
    members += [("bad.png", image_bytes()), ("bad.txt", "bad label"), ("bad.json", {"is_miscaptioned": "maybe"})]
    members += [("deep.png", image_bytes()), ("deep.txt", "deep"), ("deep.json", "[" * 100_000)]
    members += [("list.png", image_bytes()), ("list.json", {"caption": ["from json"], "id": {"nested": 1}})]
    return ws.inject(ws.shard("shard.tar", members))


@case("ingest", error="names 100,000,000 shards")
def wds_brace_range_too_wide(ws):
    return ws.inject(ws.inputs / "shard-{0..99999999}.tar")


@case("ingest", error="2 of 3 shards")
def wds_brace_range_with_missing_shards(ws):
    ws.good_shard("shard-0.tar")
    return ws.inject(ws.inputs / "shard-{0..2}.tar")


# --- options ------------------------------------------------------------------------------------------


def _option_class(name: str, flag_values: list[str], error: str):
    def build(ws):
        return ws.run_command(ws.table(ws.rows()), *flag_values)

    build.__name__ = f"option_{name}"
    case("options", error=error)(build)


for _name, _args, _error in [
    ("negative_seed", ["--seed", "-1"], "--seed must be a whole number from 0"),
    ("seed_too_large", ["--seed", str(2**32)], "--seed must be a whole number from 0"),
    ("nan_lr", ["--lr", "nan"], "--lr must be a positive finite number"),
    ("infinite_lr", ["--lr", "inf"], "--lr must be a positive finite number"),
    ("negative_lr", ["--lr", "-0.1"], "--lr must be a positive finite number"),
    ("negative_workers", ["--num-workers", "-2"], "--num-workers must be a whole number"),
    ("zero_epochs", ["--epochs", "0"], "--epochs must be a whole number from 1"),
    ("one_fold", ["--folds", "1"], "--folds must be a whole number from 2"),
    ("huge_augmentations", ["--augmentations", "1000000"], "--augmentations must be a whole number"),
    ("huge_thumbnails", ["--thumbnail-size", "100000"], "--thumbnail-size must be a whole number"),
    ("float_epochs", ["--epochs", "1.5"], "invalid int value"),
    ("nan_split_sizes", ["--split-sizes", "0.5,nan,0.1,0.1"], "finite"),
    ("three_split_sizes", ["--split-sizes", "0.5,0.2,0.2"], "expected four sizes"),
    ("unknown_preset", ["--preset", "huge"], "invalid choice"),
    ("unknown_protocol", ["--protocol", "other"], "invalid choice"),
    ("unknown_model", ["--model", "ViT-Nope"], "unknown model"),
    ("bad_device", ["--device", "gpu"], "is not a device"),
    ("empty_image_column", ["--csv-img-key", " "], "--img-key is empty"),
    ("missing_init_checkpoint", ["--init-checkpoint", "/nonexistent/ckpt.pt"], "does not exist"),
    ("too_many_folds_for_the_data", ["--folds", "20"], "20 folds need at least 40 samples"),
    ("split_counts_beyond_the_data", ["--protocol", "paper", "--split-sizes", "50,50,50,50"], "need 200 samples"),
]:
    _option_class(_name, _args, _error)


@case("options", error="is a file, not a folder")
def option_out_is_a_file(ws):
    argv = ws.run_command(ws.table(ws.rows()))
    (ws.out / "run").write_text("a file")
    return argv


@case("options", error="is a file, not a folder")
def option_out_under_a_file(ws):
    (ws.out / "file").write_text("a file")
    return ["run", "--data", str(ws.table(ws.rows())), "--out", str(ws.out / "file" / "run")]


@case("options", error="holds more than tensors and plain values", check=no_code_ran)
def option_tampered_init_checkpoint(ws):
    import torch

    torch.save({"model": RunsCode(ws.marker)}, ws.inputs / "evil.pt")
    return ws.run_command(ws.table(ws.rows()), "--init-checkpoint", str(ws.inputs / "evil.pt"))


@case("options", error="is a folder; give the file of sample ids")
def option_exclude_given_a_folder(ws):
    (ws.inputs / "drops").mkdir()
    return ws.run_command(ws.table(ws.rows()), "--exclude", str(ws.inputs / "drops"))


@case("ingest", error="clipmem does not expand * ? [ ] wildcards")
def data_given_as_a_quoted_glob(ws):
    ws.table(ws.rows())
    return ws.inject(ws.inputs / "*.csv")


@case("options", error="is unreadable")
def option_garbage_init_checkpoint(ws):
    return ws.run_command(ws.table(ws.rows()), "--init-checkpoint", str(ws.write("junk.pt", b"\x80\x04junk")))


@case("options", error="holds more than tensors and plain values", check=no_code_ran)
def option_resume_with_a_tampered_checkpoint(ws):
    """A run folder left by a killed run, whose checkpoint was swapped for a pickle that runs a command."""
    import torch

    from clipmem_core.atomic import write_json
    from clipmem_core.config import RunConfig
    from clipmem_core.data import read_dataset
    from clipmem_core.pipeline import _fingerprint

    argv = [*ws.run_command(ws.table(ws.rows())), "--augmentations", "1", "--resume"]
    config = RunConfig(data=argv[2], out=argv[4], epochs=1, augmentations=1).resolved()
    fingerprint = _fingerprint(config, read_dataset(config.data, progress=False), None)
    write_json(Path(config.out) / "run_state.json", {"fingerprint": fingerprint, "config": config.to_dict()})
    (Path(config.out) / "checkpoints").mkdir()
    torch.save({"model": RunsCode(ws.marker), "epoch": 0}, Path(config.out) / "checkpoints" / "h0_last.pt")
    return argv


@case("options", error="exists and is not a clipmem run")
def option_out_is_someone_elses_folder(ws):
    (ws.out / "run").mkdir()
    (ws.out / "run" / "notes.txt").write_text("mine")
    return ws.run_command(ws.table(ws.rows()))


@case("options", error="is unreadable")
def option_resume_with_a_garbage_state_file(ws):
    (ws.out / "run" / "checkpoints").mkdir(parents=True)
    (ws.out / "run" / "checkpoints" / "h0_last.pt").write_bytes(b"x")
    (ws.out / "run" / "run_state.json").write_bytes(b"\xff\xfe[[[")
    return [*ws.run_command(ws.table(ws.rows())), "--resume"]


@case("options", error="is the input itself")
def inject_out_is_the_input(ws):
    data = ws.table(ws.rows())
    argv = ws.inject(data)
    argv[argv.index("--out") + 1] = str(data)
    return argv


@case("options", error="already exists; add --force")
def inject_out_exists(ws):
    argv = [a for a in ws.inject(ws.table(ws.rows())) if a != "--force"]
    (ws.out / "noisy.csv").write_text("precious")
    return argv


@case("options", error="fraction must be between 0 and 1")
def inject_nan_fraction(ws):
    argv = ws.inject(ws.table(ws.rows()))
    argv[argv.index("--fraction") + 1] = "nan"
    return argv


@case("options", error="needs at least two different captions")
def inject_one_caption_for_all(ws):
    return ws.inject(ws.table([{**r, "caption": "same"} for r in ws.rows()]))


# --- run folders --------------------------------------------------------------------------------------


def _damaged_run(name: str, damage: Callable[[Path], None], command: str, error: str | None, check=None):
    def build(ws):
        run = ws.run()
        damage(run)
        if command == "list":
            return ["list", "--cache", str(run.parent)]
        if command == "neighbours":
            return ["neighbours", "--run", str(run), "--sample-id", "s00001", "--k", "3"]
        return ["summary", "--run", str(run)]

    build.__name__ = f"run_{name}"
    case("run folders", error=error, check=check)(build)


def _cut(relative: str, keep: float | int):
    def damage(run: Path) -> None:
        path = run / relative
        data = path.read_bytes()
        path.write_bytes(data[: int(len(data) * keep)] if isinstance(keep, float) else data[:keep])

    return damage


def _manifest(change: Callable[[dict], object]):
    def damage(run: Path) -> None:
        data = json.loads((run / "manifest.json").read_text())
        changed = change(data)
        text = changed if isinstance(changed, (str, bytes)) else json.dumps(data if changed is None else changed)
        (run / "manifest.json").write_bytes(text if isinstance(text, bytes) else text.encode())

    return damage


def _set(key, value):
    def change(data):
        data[key] = value

    return change


for _name, _damage, _command, _error, _check in [
    ("manifest_not_json", _manifest(lambda d: "{not json"), "summary", "manifest.json is unreadable", None),
    ("manifest_not_utf8", _manifest(lambda d: b"\xff\xfe{"), "summary", "manifest.json is unreadable", None),
    ("manifest_nested_deeply", _manifest(lambda d: "[" * 100_000), "summary", "manifest.json is unreadable", None),
    ("manifest_a_list", _manifest(lambda d: [1, 2]), "summary", "not a clipmem manifest", None),
    ("manifest_wrong_type", _manifest(_set("files", "x")), "summary", "'files' has the wrong type", None),
    ("manifest_future_schema", _manifest(_set("schema_version", 99)), "summary", "schema version 99", None),
    ("manifest_running", _manifest(_set("status", "running")), "summary", "is incomplete", None),
    ("manifest_missing", lambda run: (run / "manifest.json").unlink(), "summary", "not a clipmem run", None),
    ("parquet_truncated", _cut("scores.parquet", 0.5), "summary", "scores.parquet is unreadable", None),
    ("parquet_truncated_listed", _cut("scores.parquet", 0.5), "list", None, listed_unusable("scores.parquet")),
    ("npy_truncated", _cut("image_embeddings.npy", 0.5), "neighbours", "image_embeddings.npy is damaged", None),
    ("npy_header_cut", _cut("text_embeddings.npy", 20), "neighbours", "text_embeddings.npy is unreadable", None),
    ("npy_truncated_listed", _cut("view_alignments.npy", 0.7), "list", None, listed_unusable("view_alignments")),
    ("faiss_truncated", _cut("index/image.faiss", 0.5), "neighbours", "image.faiss is corrupt", None),
    ("faiss_empty", _cut("index/image.faiss", 0), "neighbours", "image.faiss is empty", None),
    ("faiss_missing", lambda run: (run / "index/image.faiss").unlink(), "neighbours", "image.faiss is missing", None),
]:
    _damaged_run(_name, _damage, _command, _error, _check)


def _huge_faiss_header(run: Path) -> None:
    path = run / "index" / "image.faiss"
    data = bytearray(path.read_bytes())
    data[37:45] = (2**33).to_bytes(8, "little")  # announces 32 GB of vectors
    path.write_bytes(bytes(data))


_damaged_run("faiss_header_announcing_gigabytes", _huge_faiss_header, "neighbours", "image.faiss is corrupt")


@case("run folders", error="is not a directory")
def run_folder_is_a_file(ws):
    return ["summary", "--run", str(ws.write("run.txt", "a file"))]


@case("run folders", error="is not in run")
def run_unknown_sample_id(ws):
    return ["neighbours", "--run", str(ws.run()), "--sample-id", "<script>", "--k", "3"]


@case("run folders", error="k must be a positive integer")
def run_neighbours_k_zero(ws):
    return ["neighbours", "--run", str(ws.run()), "--sample-id", "s00001", "--k", "0"]


def _import_class(name: str, make: Callable[[Workspace, Path], dict], error: str):
    """import-run of the template run's dataset with a damaged scores file or embeddings."""

    def build(ws):
        run = ws.run()
        scores = pd.read_parquet(run / "scores.parquet")[["sample_id", "split", "clipmem"]]
        files = {"scores": ws.inputs / "scores.parquet", "image": None, "text": None, **make(ws, run)}
        if files["scores"] == ws.inputs / "scores.parquet" and not files["scores"].exists():
            scores.to_parquet(files["scores"])
        argv = ["import-run", "--data", str(run / "dataset" / "captions.csv"), "--scores", str(files["scores"])]
        for modality in ("image", "text"):
            if files[modality] is not None:
                argv += [f"--{modality}-embeddings", str(files[modality])]
        return [*argv, "--out", str(files.get("out", ws.out / "imported"))]

    build.__name__ = f"import_{name}"
    case("run folders", error=error)(build)


def _npy(ws: Workspace, name: str, array) -> Path:
    path = ws.inputs / name
    np.save(path, array, allow_pickle=True)
    return path


def _parquet(ws: Workspace, columns: dict) -> Path:
    path = ws.inputs / "custom.parquet"
    pd.DataFrame(columns).to_parquet(path)
    return path


def _cut_npy(ws: Workspace) -> dict:
    path = ws.inputs / "img.npy"
    path.write_bytes(path.read_bytes()[:100])
    return {"image": path}


def _non_empty(ws: Workspace) -> Path:
    (ws.out / "imported").mkdir()
    (ws.out / "imported" / "keep.txt").write_text("mine")
    return ws.out / "imported"


def _both(ws: Workspace, array) -> dict:
    return {"image": _npy(ws, "img.npy", array), "text": _npy(ws, "txt.npy", np.ones((12, 4), np.float32))}


for _name, _make, _error in [
    ("scores_not_parquet", lambda ws, run: {"scores": ws.write("s.parquet", b"PAR1 nope")}, "not readable parquet"),
    (
        "scores_with_unknown_ids",
        lambda ws, run: {"scores": _parquet(ws, {"sample_id": ["nope"], "clipmem": [0.1]})},
        "not in the dataset",
    ),
    (
        "scores_with_infinities",
        lambda ws, run: {"scores": _parquet(ws, {"sample_id": ["s00001"], "clipmem": [np.inf]})},
        "holds infinite values",
    ),
    (
        "scores_with_repeated_ids",
        lambda ws, run: {"scores": _parquet(ws, {"sample_id": ["s00001"] * 2, "clipmem": [0.1, 0.2]})},
        "repeats sample_ids",
    ),
    ("nan_embeddings", lambda ws, run: _both(ws, np.full((12, 4), np.nan, np.float32)), "NaN or infinite"),
    ("zero_embeddings", lambda ws, run: _both(ws, np.zeros((12, 4), np.float32)), "all-zero rows"),
    ("short_embeddings", lambda ws, run: _both(ws, np.ones((3, 4), np.float32)), "has shape (3, 4)"),
    ("pickled_embeddings", lambda ws, run: _both(ws, np.array([object()] * 12)), "not a readable .npy"),
    ("truncated_embeddings", lambda ws, run: {**_both(ws, np.ones((12, 4), np.float32)), **_cut_npy(ws)}, "not a"),
    ("one_embedding_file", lambda ws, run: {"image": _npy(ws, "img.npy", np.ones((12, 4)))}, "give both"),
    ("out_not_empty", lambda ws, run: {"out": _non_empty(ws)}, "is not an empty folder"),
]:
    _import_class(_name, _make, _error)


# --- review import -------------------------------------------------------------------------------------


def _review_import(name: str, content: str | bytes | None, error: str | None, check=nothing_imported):
    def build(ws):
        run = ws.run()
        file = ws.inputs / "verdicts.csv"
        if content is not None:
            ws.write("verdicts.csv", content)
        return ["review", "import", "--run", str(run), "--file", str(file)]

    build.__name__ = f"review_import_{name}"
    case("review", error=error, check=check)(build)


_HEADER = "sample_id,reviewer,verdict,suggested_caption,note\n"
for _name, _content, _error in [
    ("missing_file", None, "does not exist"),
    ("empty_file", "", "is empty: expected a header with sample_id, verdict"),
    ("binary_garbage", b"\x89PNG\r\n\x1a\n\x00\x00\xff\xfe", "is not UTF-8 text (line 1, byte 0)"),
    ("missing_columns", "sample_id,verdict\ns00001,correct\n", "lacks columns ['reviewer']"),
    ("unknown_sample", _HEADER + "s00001,ann,correct,,\nnope,ann,correct,,\n", "'nope' is not in run run1"),
    ("bad_verdict", _HEADER + "s00001,ann,correct,,\ns00002,ann,dunno,,\n", "line 3"),
    ("empty_reviewer", _HEADER + "s00001,  ,correct,,\n", "line 2: reviewer name is empty"),
    ("reviewer_too_long", _HEADER + f"s00001,{'r' * 201},correct,,\n", "line 2: reviewer name is longer than 200"),
    ("nul_in_a_note", _HEADER + "s00001,ann,correct,,a\x00b\n", "line 2: note holds a NUL byte"),
    (
        "control_character_in_reviewer",
        _HEADER + "s00001,a\x07nn,correct,,\n",
        "line 2: reviewer name 'a\\x07nn' holds control",
    ),
    (
        "not_utf8",
        _HEADER.encode() + b"s00001,Ren\xe9,correct,,\n",
        "is not UTF-8 text (line 2, byte 60); save it as UTF-8",
    ),
]:
    _review_import(_name, _content, _error)

_review_import(
    "formulas_and_markup_are_plain_text",
    _HEADER + "s00001,=cmd|' /C calc'!A0,correct,<b>x</b>,[x](http://e.vil)\n",
    None,
    check=None,
)


@case("review", error="not a clipmem run")
def review_import_into_a_folder_that_is_not_a_run(ws):
    ws.write("verdicts.csv", _HEADER + "s00001,ann,correct,,\n")
    return ["review", "import", "--run", str(ws.inputs), "--file", str(ws.inputs / "verdicts.csv")]


@case("review", error="there is no review session 99")
def review_agreement_of_an_unknown_session(ws):
    return ["review", "agreement", "--run", str(ws.run()), "--session", "99"]
