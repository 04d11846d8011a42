import gzip
import io
import json
import re
import shutil
import tarfile
from pathlib import Path

import pandas as pd
import pytest
from PIL import Image

from clipmem_core import shards
from clipmem_core.data import UNIDENTIFIED, load_image, read_dataset, skip_summary
from clipmem_core.errors import ClipmemError
from clipmem_core.image_list import ImageList


@pytest.fixture(autouse=True)
def data_cache(tmp_path, monkeypatch) -> Path:
    cache = tmp_path / "extracted"
    monkeypatch.setenv("CLIPMEM_DATA_CACHE", str(cache))
    return cache


def image_bytes(colour=(200, 30, 30), fmt="PNG") -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (8, 8), colour).save(buf, fmt)
    return buf.getvalue()


def shard(path: Path, members: list[tuple[str, bytes | str | dict]]) -> Path:
    """Write a tar whose members are (name, content); str is UTF-8 text, dict is JSON."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with tarfile.open(path, "w") as tar:
        for name, content in members:
            data = (
                json.dumps(content).encode()
                if isinstance(content, dict)
                else content.encode()
                if isinstance(content, str)
                else content
            )
            info = tarfile.TarInfo(name)
            info.size, info.mtime = len(data), 1_700_000_000
            tar.addfile(info, io.BytesIO(data))
    return path


def simple_shard(path: Path, n=3, first=0) -> Path:
    members = []
    for i in range(first, first + n):
        members += [(f"{i:06d}.png", image_bytes((i * 40 % 256, 0, 0))), (f"{i:06d}.txt", f"caption {i}")]
    return shard(path, members)


def read(path, **kw):
    return read_dataset(path, progress=False, **kw)


def extracted(path, **kw):
    """The old way, kept as an option: images extracted once into the data cache."""
    return read_dataset(path, progress=False, extract_shards=True, **kw)


def files_under(folder: Path) -> dict[Path, tuple[int, int]]:
    return {p: (p.stat().st_mtime_ns, p.stat().st_ino) for p in folder.rglob("*") if p.is_file()}


# --- readers -----------------------------------------------------------------------------------


def test_single_tar(tmp_path, data_cache):
    path = simple_shard(tmp_path / "shards" / "train-0000.tar")
    ds = read(path)
    assert ds.format == "webdataset" and len(ds) == 3 and ds.skipped.empty
    assert ds.source == path.resolve() and ds.root == path.parent.resolve()  # read in place: nothing extracted
    assert ds.samples["filepath"].tolist() == [f"train-0000.tar/{i:06d}.png" for i in range(3)]
    assert not data_cache.exists()
    assert ds.samples["captions"].tolist() == [[f"caption {i}"] for i in range(3)]
    assert all(re.fullmatch(r"[0-9a-f]{16}", sid) for sid in ds.samples["sample_id"])
    assert sorted(p.name for p in (tmp_path / "shards").iterdir()) == ["train-0000.tar"]


def test_directory_of_shards_is_read_in_sorted_order(tmp_path):
    simple_shard(tmp_path / "shards" / "b.tar", first=3)
    simple_shard(tmp_path / "shards" / "a.tar")
    (tmp_path / "shards" / "notes.md").write_text("not a shard")
    ds = read(tmp_path / "shards")
    assert ds.format == "webdataset"
    assert ds.samples["filepath"].tolist() == [f"a.tar/{i:06d}.png" for i in range(3)] + [
        f"b.tar/{i:06d}.png" for i in range(3, 6)
    ]


def test_compressed_shards_are_refused_with_the_way_out(tmp_path):
    folder = tmp_path / "gz"
    folder.mkdir()
    for name in ("a.tar.gz", "b.tar.gz"):
        plain = simple_shard(tmp_path / name.removesuffix(".gz"))
        (folder / name).write_bytes(gzip.compress(plain.read_bytes()))
    for source, named in ((folder, "a.tar.gz and 1 more"), (folder / "b.tar.gz", "b.tar.gz:")):
        with pytest.raises(ClipmemError, match="compressed shards are not read") as refused:
            read(source)
        assert named in str(refused.value) and "gunzip" in str(refused.value)


def test_a_compressed_shard_beside_plain_ones_is_listed_as_not_read(tmp_path):
    """Its samples were lost without a word: alone it is refused, beside plain shards it was passed over."""
    folder = tmp_path / "mixed"
    simple_shard(folder / "a.tar")
    (folder / "b.tar.gz").write_bytes(gzip.compress(simple_shard(tmp_path / "b.tar", first=3).read_bytes()))
    ds = read(folder)
    assert len(ds) == 3 and ds.skipped["filepath"].tolist() == ["b.tar.gz"]
    assert ds.skipped["reason"].tolist() == [
        "compressed shard, not read: decompress it into a plain .tar shard (e.g. gunzip)"
    ]
    assert "b.tar.gz: compressed shard, not read: decompress it into a plain .tar shard (e.g. gunzip)" in ds.warnings


def test_brace_pattern(tmp_path):
    for s in range(5):
        simple_shard(tmp_path / f"train-{s:04d}.tar", n=2, first=2 * s)
    ds = read(tmp_path / "train-{0001..0003}.tar")
    assert ds.format == "webdataset" and len(ds) == 6
    shards_read = ds.samples["filepath"].str.split("/").str[0].unique().tolist()
    assert shards_read == ["train-0001.tar", "train-0002.tar", "train-0003.tar"]
    with pytest.raises(ClipmemError, match=r"2 of 7 shards .* do not exist, e\.g\. .*train-0005\.tar"):
        read(tmp_path / "train-{0000..0006}.tar")


def test_a_brace_range_too_wide_is_refused_before_expanding(tmp_path):
    """'shard-{0..99999999}.tar' used to build 10^8 names before checking any, and hang."""
    with pytest.raises(ClipmemError, match=r"names 100,000,000 shards; at most 100,000"):
        read(tmp_path / "shard-{0..99999999}.tar")
    with pytest.raises(ClipmemError, match=r"names 1,000,000 shards"):
        read(tmp_path / "s-{0..999}-{0..999}.tar")


def test_multi_caption_and_json_captions(tmp_path):
    """A line repeated in a .txt (or a .json list) is one caption, as a CSV's or COCO file's repeat is: a
    shard kept it twice, and its run's own cleaned export re-ran on other data."""
    ds = read(
        shard(
            tmp_path / "s.tar",
            [
                ("a.jpg", image_bytes(fmt="JPEG")),
                ("a.txt", "one\n\n  two  \none\n"),
                ("b.webp", image_bytes(fmt="WEBP")),
                ("b.json", {"caption": " from json "}),
                ("c.png", image_bytes()),
                ("c.json", {"text": ["first", " ", "second", " first"]}),
                ("c.cls", "3"),
            ],
        )
    )
    assert ds.samples["filepath"].tolist() == ["s.tar/a.jpg", "s.tar/b.webp", "s.tar/c.png"]
    assert ds.samples["captions"].tolist() == [["one", "two"], ["from json"], ["first", "second"]]
    assert ds.samples["caption"].tolist() == ["one", "from json", "first"]


def test_json_id_and_label(tmp_path):
    path = shard(
        tmp_path / "s.tar",
        [
            ("a.png", image_bytes()),
            ("a.txt", "x"),
            ("a.json", {"id": 7, "is_miscaptioned": True}),
            ("b.png", image_bytes()),
            ("b.txt", "y"),
            ("b.json", {"id": "b-1", "is_miscaptioned": "no"}),
        ],
    )
    ds = read(path)
    assert ds.samples["sample_id"].tolist() == ["7", "b-1"]
    assert ds.samples["is_miscaptioned"].dtype == bool
    assert ds.samples["is_miscaptioned"].tolist() == [True, False]


def test_unlabelled_samples_beside_labelled_ones_are_kept_not_bad(tmp_path, caplog):
    """One labelled sample made every unlabelled one a 'bad is_miscaptioned value' skipped row."""
    members = [("a.png", image_bytes()), ("a.txt", "x"), ("a.json", {"is_miscaptioned": True})]
    for key in "bcd":
        members += [(f"{key}.png", image_bytes()), (f"{key}.txt", key)]
    members += [("e.png", image_bytes()), ("e.txt", "e"), ("e.json", {"is_miscaptioned": None})]
    with caplog.at_level("WARNING", logger="clipmem"):
        ds = read(shard(tmp_path / "s.tar", members))
    assert len(ds) == 5 and ds.skipped.empty
    assert "is_miscaptioned" not in ds.samples.columns  # a partial ground truth is left out, and said so
    assert any("is given for 1 of 5 samples" in w for w in ds.warnings)
    assert any("is given for 1 of 5 samples" in r.getMessage() for r in caplog.records)
    labelled = [("a.png", image_bytes()), ("a.txt", "x"), ("a.json", {"is_miscaptioned": "maybe"})]
    labelled += [("b.png", image_bytes()), ("b.txt", "y"), ("b.json", {"is_miscaptioned": 0})]
    bad = read(shard(tmp_path / "t.tar", labelled))
    assert ds.skipped.empty and bad.skipped["reason"].str.startswith("bad is_miscaptioned value").tolist() == [True]
    assert bad.samples["is_miscaptioned"].tolist() == [False]


def test_oversized_members_are_refused_without_extracting(tmp_path, data_cache, monkeypatch):
    import numpy as np

    import clipmem_core.data as data_module

    monkeypatch.setattr(data_module, "MAX_MEMBER_BYTES", 1000)
    monkeypatch.setattr(data_module, "MAX_TEXT_MEMBER_BYTES", 10)
    noise = io.BytesIO()
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (64, 64, 3), dtype=np.uint8)).save(noise, "PNG")
    members = [("a.png", noise.getvalue()), ("a.txt", "x"), ("b.png", image_bytes()), ("b.txt", "y" * 40)]
    members += [("c.png", image_bytes()), ("c.txt", "z")]
    ds = extracted(shard(tmp_path / "s.tar", members))
    assert ds.samples["filepath"].tolist() == ["s/c.png"]
    assert ds.skipped["reason"].tolist() == [
        "member is larger than 1,000 bytes: a.png",
        "member is larger than 10 bytes: b.txt",
    ]
    assert not list(data_cache.rglob("a.png"))


def test_derived_ids_are_stable_across_reads_and_cache_folders(tmp_path, monkeypatch):
    path = simple_shard(tmp_path / "s.tar")
    first = extracted(path)
    monkeypatch.setenv("CLIPMEM_DATA_CACHE", str(tmp_path / "other"))
    again = extracted(path)
    assert again.root != first.root
    assert first.samples["sample_id"].tolist() == again.samples["sample_id"].tolist()
    assert read(path).samples["sample_id"].tolist() == first.samples["sample_id"].tolist()  # in place: the same ids


def test_default_cache_folder_is_under_home(tmp_path, monkeypatch):
    monkeypatch.delenv("CLIPMEM_DATA_CACHE")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    ds = extracted(simple_shard(tmp_path / "s.tar"))
    assert ds.root.parent == (tmp_path / "home" / ".cache" / "clipmem" / "webdataset").resolve()


@pytest.mark.parametrize("how", [read, extracted])
def test_every_sample_opens_with_load_image(tmp_path, how):
    ds = how(
        shard(
            tmp_path / "s.tar",
            [
                ("x/a.jpg", image_bytes(fmt="JPEG")),
                ("x/a.txt", "a"),
                ("./b.png", image_bytes()),
                ("./b.txt", "b"),
            ],
        )
    )
    in_place = how is read
    assert ds.samples["filepath"].tolist() == (
        ["s.tar/x/a.jpg", "s.tar/b.png"] if in_place else ["s/x/a.jpg", "s/b.png"]
    )
    for filepath in ds.samples["filepath"]:
        image = load_image(ds.root, filepath)
        assert image.mode == "RGB" and image.size == (8, 8)


# --- bad samples -------------------------------------------------------------------------------


def bad_shard(tmp_path: Path) -> Path:
    """Sample 1 good, then one sample per defect (samples 2-9)."""
    return shard(
        tmp_path / "bad.tar",
        [
            ("ok.png", image_bytes()),
            ("ok.txt", "fine"),
            ("ok.json", {"id": "k"}),
            ("noimage.txt", "orphan caption"),
            ("nocaption.png", image_bytes()),
            ("broken.jpg", b"not an image"),
            ("broken.txt", "corrupt"),
            ("dupid.png", image_bytes()),
            ("dupid.txt", "other"),
            ("dupid.json", {"id": "k"}),
            ("twice.png", image_bytes()),
            ("twice.txt", "a"),
            ("twice.txt", "b"),
            ("badjson.png", image_bytes()),
            ("badjson.json", b"{nope"),
            ("two.png", image_bytes()),
            ("two.jpg", image_bytes(fmt="JPEG")),
            ("two.txt", "c"),
            ("empty.png", image_bytes()),
            ("empty.txt", "  \n"),
        ],
    )


EXPECTED_REASONS = {
    2: "image is missing",
    3: "caption is missing",
    4: "image is unreadable",
    5: "duplicate id: 'k' is also row 1",
    6: "duplicate member: twice.txt",
    7: "the .json member is not a JSON object: badjson.json",
    8: "several images: two.png, two.jpg",
    9: "caption is empty",
}


def test_bad_samples_are_skipped_with_reasons(tmp_path):
    ds = read(bad_shard(tmp_path))
    assert ds.samples["sample_id"].tolist() == ["k"]
    assert ds.skipped["row"].tolist() == list(EXPECTED_REASONS)
    for row, reason in zip(ds.skipped["row"], ds.skipped["reason"]):
        assert reason.startswith(EXPECTED_REASONS[row])
    # named as a scored sample's filepath is (shard/member), where "bad.tar:broken" matched nothing in the scores
    assert ds.skipped["filepath"].tolist()[:3] == ["bad.tar/noimage", "bad.tar/nocaption.png", "bad.tar/broken.jpg"]
    assert ds.skipped.loc[ds.skipped["row"] == 4, "reason"].item() == f"image is unreadable: {UNIDENTIFIED}"
    assert ds.samples["filepath"].tolist() == ["bad.tar/ok.png"]


def test_a_sample_whose_image_is_of_a_type_not_read_says_which_member_and_why(tmp_path):
    members = [("ok.png", image_bytes()), ("ok.txt", "fine"), ("photo.heic", b"x"), ("photo.txt", "a photo")]
    members += [("scan.v2.jpg", image_bytes(fmt="JPEG")), ("scan.txt", "a scan")]
    ds = read(shard(tmp_path / "odd.tar", members))
    assert ds.samples["filepath"].tolist() == ["odd.tar/ok.png"]
    reasons = dict(zip(ds.skipped["filepath"], ds.skipped["reason"]))
    assert reasons["odd.tar/photo"].startswith("image is missing: photo.heic (a member's type is everything after")
    assert reasons["odd.tar/scan"].startswith("image is missing: scan.v2.jpg (a member's type")
    assert "clipmem reads bmp, gif, jpeg, jpg, png, tif, tiff, webp)" in reasons["odd.tar/scan"]


def test_keys_with_dots_are_counted_as_one_reason_in_a_well_formed_skip_summary(tmp_path):
    """Members such as dir0/sample.000.jpg share the key dir0/sample (a type is everything after the first
    dot): the summary cut each sample's member list at its colon, "(1 row: image is missing (sample.000.jpg,
    sample.000.txt; 1 row: …", with unclosed parentheses and every list a reason of its own."""
    members = [
        (f"dir{d}/sample.{i:03d}.{ext}", image_bytes() if ext == "jpg" else "a cat")
        for d in range(3)
        for i in range(d + 2)
        for ext in ("jpg", "txt")
    ]
    members += [("ok.png", image_bytes()), ("ok.txt", "fine")]
    ds = read(shard(tmp_path / "s.tar", members))
    assert ds.skipped["reason"].iloc[0] == (
        "image is missing: sample.000.jpg, sample.001.jpg (a member's type is "  # the captions are no candidates
        "everything after the first dot of its name, and clipmem reads bmp, gif, jpeg, jpg, png, tif, tiff, webp)"
    )
    assert skip_summary(ds) == "skipped 3 of 4 rows (3 rows: image is missing)"
    # a colon inside a reason's parentheses is not where its detail starts
    unreadable = "shard b.tar is not a readable tar file ([Errno 13] Permission denied: 'b.tar')"
    ds.skipped = pd.DataFrame({"row": [1], "filepath": ["b.tar"], "caption": [""], "reason": [unreadable]})
    assert skip_summary(ds) == f"skipped 1 of 4 rows (1 row: {unreadable})"  # of the rows the input had


def test_an_empty_image_member_is_called_empty_not_damaged(tmp_path):
    members = [("ok.png", image_bytes()), ("ok.txt", "fine"), ("empty.png", b""), ("empty.txt", "nothing")]
    ds = read(shard(tmp_path / "s.tar", members))
    assert ds.skipped["reason"].tolist() == ["image is unreadable: empty file (0 bytes)"]
    with pytest.raises(ClipmemError, match=r"empty\.png is unreadable: empty file \(0 bytes\)$"):
        load_image(ds.root, "s.tar/empty.png")


def test_fail_mode_names_the_shard_and_key(tmp_path):
    with pytest.raises(ClipmemError, match=r"^row 2 \(bad\.tar/noimage\): image is missing$"):
        read(bad_shard(tmp_path), on_error="fail")


@pytest.mark.parametrize("how", [read, extracted])
def test_path_traversal_is_refused(tmp_path, data_cache, how):
    outside = tmp_path / "absolute.png"
    ds = how(
        shard(
            tmp_path / "shards" / "s.tar",
            [
                ("ok.png", image_bytes()),
                ("ok.txt", "fine"),
                ("../../evil.png", image_bytes()),
                ("../../evil.txt", "escape"),
                (f"{outside}", image_bytes()),
                (f"{outside.with_suffix('.txt')}", "absolute"),
            ],
        )
    )
    assert ds.samples["filepath"].tolist() == (["s.tar/ok.png"] if how is read else ["s/ok.png"])
    assert ds.skipped["reason"].str.contains("points outside the shard").tolist() == [True, True]
    assert not outside.exists()
    assert [p.name for p in tmp_path.rglob("*.png")] == ([] if how is read else ["ok.png"])
    assert all(p.is_relative_to(data_cache) for p in tmp_path.rglob("*.png"))


@pytest.mark.parametrize(
    "content, message",
    [
        (b"garbage" * 100, "invalid header"),
        (b"", "empty file"),
    ],
)
def test_unreadable_tar_is_one_clear_error(tmp_path, content, message):
    (tmp_path / "s.tar").write_bytes(content)
    with pytest.raises(ClipmemError, match=rf"shard s\.tar is not a readable tar file \({message}\)"):
        read(tmp_path / "s.tar")


def test_an_unreadable_shard_among_good_ones_is_skipped_not_fatal(tmp_path):
    simple_shard(tmp_path / "shards" / "a.tar")
    (tmp_path / "shards" / "b.tar").write_bytes(b"garbage" * 100)
    ds = read(tmp_path / "shards")
    assert len(ds) == 3 and ds.skipped["reason"].str.contains("b.tar is not a readable tar file").tolist() == [True]


def test_truncated_tar_and_missing_tar(tmp_path):
    data = simple_shard(tmp_path / "full.tar").read_bytes()
    (tmp_path / "cut.tar").write_bytes(data[:700])
    with pytest.raises(ClipmemError, match=r"no usable samples.*cut\.tar is truncated or damaged"):
        read(tmp_path / "cut.tar")
    with pytest.raises(ClipmemError, match="does not exist"):
        read(tmp_path / "nope.tar")


@pytest.mark.parametrize("where", ["at a member boundary", "inside a member", "in garbage"])
def test_a_truncated_shard_keeps_its_whole_samples_and_reports_the_loss(tmp_path, caplog, where):
    """Python's tarfile stops silently at a cut header: 5 of 39 samples with n_skipped 0 was the bug."""
    data = simple_shard(tmp_path / "full.tar", n=39).read_bytes()
    boundary = 5 * 2 * 1024  # each sample: a .png and a .txt member, each a header block plus one data block
    cut = {
        "at a member boundary": data[:boundary],
        "inside a member": data[: boundary + 512 + 100],
        "in garbage": data[:boundary] + b"\x01" * 2048,
    }[where]
    (tmp_path / "cut.tar").write_bytes(cut)
    with caplog.at_level("WARNING", logger="clipmem"):
        ds = read(tmp_path / "cut.tar")
    assert ds.samples["filepath"].tolist() == [f"cut.tar/{i:06d}.png" for i in range(5)]
    assert [load_image(ds.root, f).size for f in ds.samples["filepath"]] == [(8, 8)] * 5
    assert len(ds.skipped) >= 1 and ds.skipped["reason"].str.contains("cut.tar is truncated or damaged").any()
    assert any("truncated or damaged" in w for w in ds.warnings)
    assert any("cut.tar is truncated or damaged" in r.getMessage() for r in caplog.records)
    said = next(w for w in ds.warnings if "truncated" in w)
    assert re.search(r"is truncated or damaged after 5 samples \([^)]+\); the rest of it is lost", said), said


def test_a_whole_shard_has_no_warning(tmp_path):
    ds = read(simple_shard(tmp_path / "full.tar", n=39))
    assert len(ds) == 39 and ds.skipped.empty and ds.warnings == []


# --- the extraction cache ----------------------------------------------------------------------


def test_rereading_uses_the_cache(tmp_path, data_cache):
    path = simple_shard(tmp_path / "s.tar")
    first = extracted(path)
    written = files_under(data_cache)
    assert len(written) == 3
    again = extracted(path)
    assert files_under(data_cache) == written  # same mtimes and inodes: nothing was rewritten
    assert again.root == first.root and again.content_hash == first.content_hash


def test_content_hash_survives_re_extraction_and_follows_edits(tmp_path, data_cache):
    path = simple_shard(tmp_path / "s.tar")
    before = extracted(path)
    shutil.rmtree(data_cache)
    assert extracted(path).content_hash == before.content_hash
    shard(path, [("000000.png", image_bytes()), ("000000.txt", "edited")])
    edited = extracted(path)
    assert edited.root != before.root and edited.content_hash != before.content_hash


# --- images read in place ----------------------------------------------------------------------


def test_in_place_and_extracted_reads_agree_on_ids_captions_and_pixels(tmp_path, data_cache):
    path = simple_shard(tmp_path / "shards" / "s.tar", n=4)
    in_place, copied = read(path), extracted(path)
    for column in ("sample_id", "captions"):
        assert in_place.samples[column].tolist() == copied.samples[column].tolist()
    for mine, theirs in zip(in_place.samples["filepath"], copied.samples["filepath"]):
        assert load_image(in_place.root, mine).tobytes() == load_image(copied.root, theirs).tobytes()
    assert sorted(p.name for p in (tmp_path / "shards").iterdir()) == ["s.tar"]  # nothing beside the shard


def test_the_content_hash_of_shards_read_in_place_follows_edits(tmp_path):
    path = simple_shard(tmp_path / "s.tar")
    before = read(path)
    assert read(path).content_hash == before.content_hash
    shard(path, [("000000.png", image_bytes((1, 2, 3))), ("000000.txt", "caption 0")])
    assert read(path).content_hash != before.content_hash  # the member's size and time are hashed


@pytest.mark.parametrize("preload", [True, False])
def test_a_runs_image_list_reads_members_at_their_offsets(tmp_path, monkeypatch, preload):
    plain = tmp_path / "plain.png"
    Image.new("RGB", (8, 8), (9, 9, 9)).save(plain)
    ds = read(simple_shard(tmp_path / "s.tar", n=3))
    filepaths = [*ds.samples["filepath"], str(plain)]  # a shard's members beside a plain file
    images = ImageList(ds.root, filepaths, preload=preload)
    assert (images._cache is not None) == preload
    assert [images[i].getpixel((0, 0)) for i in range(4)] == [(0, 0, 0), (40, 0, 0), (80, 0, 0), (9, 9, 9)]
    where = images._where
    assert where.shard_of.tolist() == [0, 0, 0, -1] and where.member_bytes(3) is None


def test_a_member_that_is_gone_or_cut_short_is_a_clear_error(tmp_path):
    path = simple_shard(tmp_path / "s.tar")
    root = path.parent
    assert shards.image_exists(root / "s.tar" / "000001.png")
    assert not shards.image_exists(root / "s.tar" / "nope.png") and not shards.image_exists(root / "x.tar" / "a.png")
    with pytest.raises(ClipmemError, match=r"s\.tar has no member nope\.png"):
        shards.locate([root / "s.tar" / "nope.png"])
    with pytest.raises(ClipmemError, match=r"image .*s\.tar/nope\.png is unreadable|s\.tar has no member"):
        load_image(root, "s.tar/nope.png")
    where = shards.locate([root / "s.tar" / "000002.png"])
    path.write_bytes(path.read_bytes()[: int(where.offset[0]) + 10])  # cut inside the member
    with pytest.raises(ClipmemError, match=r"s\.tar ends inside a member"):
        where.member_bytes(0)


def test_a_shards_txt_member_is_utf8_its_bom_dropped_and_latin1_skipped(tmp_path, data_cache):
    members = [("0.png", image_bytes()), ("0.txt", "\ufeffa red square".encode("utf-8"))]
    members += [("1.png", image_bytes((0, 0, 200))), ("1.txt", "caf\xe9 cr\xe8me".encode("latin-1"))]
    ds = read(shard(tmp_path / "s.tar", members))
    assert ds.samples["caption"].tolist() == ["a red square"]
    assert ds.skipped["reason"].tolist() == ["caption file is not UTF-8 text (save it as UTF-8)"]
