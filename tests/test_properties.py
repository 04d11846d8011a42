"""Property tests of every reader and of ``review import``: whatever the bytes, the answer is a valid
dataset (or import) or a ClipmemError, never another exception.

Inputs mix raw bytes with generated near-valid files (real image names, quotes, separators, ``..``,
absolute paths, NUL bytes, truncated and bit-flipped tars), which reach far deeper than random bytes.
The fast suite runs 200 examples per reader; the slow one 2,000.
"""

from __future__ import annotations

import csv
import io
import json
import tarfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from clipmem_core.data import Dataset, read_dataset
from clipmem_core.errors import ClipmemError
from clipmem_core.shards import image_exists

FAST = settings(
    max_examples=100,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
SLOW = settings(FAST, max_examples=2_000)
IMAGES = ["img/0.png", "img/1.png", "img/2.jpg"]


@pytest.fixture(scope="module")
def folder(tmp_path_factory) -> Path:
    """A dataset folder with a few real images, shared by every example (each writes its own input file)."""
    from corpus.workspace import image_bytes

    root = tmp_path_factory.mktemp("properties")
    for name in IMAGES:
        (root / name).parent.mkdir(exist_ok=True)
        (root / name).write_bytes(image_bytes("JPEG" if name.endswith(".jpg") else "PNG"))
    (root / "img" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\nbroken")
    return root


def read_or_refuse(path: Path) -> Dataset | None:
    """The property: a valid Dataset or a ClipmemError; anything else fails the test."""
    try:
        dataset = read_dataset(path, progress=False)
    except ClipmemError as exc:
        assert str(exc).strip(), "an error without a message"
        event("refused")
        return None
    event(f"a dataset of {min(len(dataset), 3)}{'+' if len(dataset) >= 3 else ''} samples")
    samples = dataset.samples
    assert len(samples) > 0 and samples["sample_id"].is_unique
    assert all(isinstance(c, list) and c and c[0] == first for c, first in zip(samples["captions"], samples["caption"]))
    for filepath in samples["filepath"]:
        assert Path(filepath).is_absolute() or ".." not in Path(filepath).parts  # a stored path never escapes
        assert image_exists(dataset.root / filepath)  # a file, or a member of a shard read in place
    assert list(dataset.skipped.columns) == ["row", "line", "filepath", "caption", "reason"]
    return dataset


# --- inputs -------------------------------------------------------------------------------------------

_FIELD_PIECES = st.sampled_from(
    [
        *IMAGES,
        "img/broken.png",
        "../x.png",
        "/etc/passwd",
        "",
        " ",
        '"',
        '""',
        ",",
        "\t",
        "\n",
        "\r\n",
        "\x00",
        "a cat",
        "id",
        "true",
        "maybe",
        "=1+2",
        "é",
        "\ufeff",
        "img/../img/0.png",
        "x" * 50,
    ]
)
_FIELD = st.lists(_FIELD_PIECES, max_size=4).map("".join)
_HEADER = st.lists(st.sampled_from(["filepath", "caption", "id", "is_miscaptioned", "other", ""]), max_size=5)


_PATH = st.one_of(st.sampled_from(IMAGES), _FIELD)  # mostly real images, so many examples read as datasets
_CAPTION = st.one_of(st.text(max_size=12), _FIELD)
_ROW = st.one_of(st.tuples(_PATH, _CAPTION).map(list), st.lists(_FIELD, max_size=4))


@st.composite
def tables(draw, sep: str) -> bytes:
    """Near-valid CSV/TSV: a header of known and odd columns, rows of tricky fields, odd line endings."""
    header = draw(st.one_of(st.just(["filepath", "caption"]), st.just(["filepath", "caption"]), _HEADER))
    rows = draw(st.lists(_ROW, max_size=8))
    newline = draw(st.sampled_from(["\n", "\r\n", "\r"]))
    text = newline.join(sep.join(fields) for fields in [header, *rows])
    return draw(st.sampled_from(["", "\ufeff"])).encode() + text.encode("utf-8", errors="surrogatepass")


def anything(structured: st.SearchStrategy[bytes]) -> st.SearchStrategy[bytes]:
    return st.one_of(st.binary(max_size=300), structured)


_JSON_LEAF = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(), st.sampled_from([*IMAGES, "../x.png"]))
_JSON = st.recursive(
    st.one_of(_JSON_LEAF, st.text(max_size=10)),
    lambda inner: st.one_of(st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=8), inner, max_size=4)),
    max_leaves=8,
)


@st.composite
def coco_files(draw) -> bytes:
    """COCO-shaped JSON whose entries are right, wrong or missing in every field."""
    good_image = st.fixed_dictionaries({"id": st.integers(0, 3), "file_name": st.sampled_from(IMAGES)})
    odd_image = st.fixed_dictionaries(
        {}, optional={"id": st.one_of(st.integers(0, 3), st.text(max_size=3), _JSON), "file_name": _JSON}
    )
    good_annotation = st.fixed_dictionaries({"image_id": st.integers(0, 3), "caption": st.text(max_size=8)})
    odd_annotation = st.fixed_dictionaries(
        {}, optional={"image_id": st.one_of(st.integers(0, 3), _JSON), "caption": st.one_of(st.text(max_size=8), _JSON)}
    )
    data = {
        "images": draw(st.lists(st.one_of(good_image, good_image, odd_image, _JSON), max_size=5)),
        "annotations": draw(st.lists(st.one_of(good_annotation, good_annotation, odd_annotation, _JSON), max_size=6)),
    }
    for key in draw(st.lists(st.sampled_from(["images", "annotations"]), max_size=1)):
        data[key] = draw(_JSON)
    return json.dumps(data).encode()


_MEMBER_NAMES = st.tuples(
    st.sampled_from(["a", "b", "a", "b", "dir/c", "../up", "/abs", ".", "a.b", ""]),
    st.sampled_from(["png", "txt", "png", "txt", "jpg", "json", "cls", "PNG", "txt.gz", ""]),
).map(lambda parts: ".".join(p for p in parts if p))


@st.composite
def shards(draw) -> bytes:
    """A tar of real images, captions and JSON under tricky names, then maybe cut short or bit-flipped."""
    from corpus.workspace import image_bytes

    contents = st.one_of(
        st.just(image_bytes()),
        st.just(image_bytes()),
        st.text(max_size=20).map(str.encode),
        _JSON.map(lambda v: json.dumps(v).encode()),
    )
    members = []
    for key in draw(st.lists(st.sampled_from(["k0", "k1", "dir/k2", "k3"]), max_size=3, unique=True)):
        members += [(f"{key}.png", image_bytes()), (f"{key}.txt", draw(st.text(max_size=10)).encode())]
    members += draw(st.lists(st.tuples(_MEMBER_NAMES, contents), max_size=4))
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for name, content in draw(st.permutations(members)):
            info = tarfile.TarInfo(name or "x")
            info.size = len(content)
            tar.addfile(info, io.BytesIO(content))
    data = bytearray(buf.getvalue())
    if draw(st.integers(0, 3)) == 0:
        data = data[: draw(st.integers(0, len(data)))]
    for offset in draw(st.lists(st.integers(0, max(0, len(data) - 1)), max_size=2)):
        if data:
            data[offset] ^= 0xFF
    return bytes(data)


# --- the readers ----------------------------------------------------------------------------------------


def check_file(folder: Path, name: str, data: bytes) -> None:
    path = folder / name
    path.write_bytes(data)
    read_or_refuse(path)


@FAST
@given(anything(tables(",")))
def test_csv_reader_gives_a_dataset_or_a_clipmem_error(folder, data):
    check_file(folder, "data.csv", data)


@FAST
@given(anything(tables("\t")))
def test_tsv_reader_gives_a_dataset_or_a_clipmem_error(folder, data):
    check_file(folder, "data.tsv", data)


@FAST
@given(anything(coco_files()))
def test_coco_reader_gives_a_dataset_or_a_clipmem_error(folder, data):
    check_file(folder, "captions.json", data)


@FAST
@given(anything(shards()))
def test_webdataset_reader_gives_a_dataset_or_a_clipmem_error(folder, monkeypatch, data):
    monkeypatch.setenv("CLIPMEM_DATA_CACHE", str(folder / "extracted"))
    check_file(folder, "shard.tar", data)
    assert all(p.is_relative_to(folder) for p in folder.rglob("*"))  # nothing escaped the extraction cache


@pytest.mark.slow
@SLOW
@given(anything(tables(",")), anything(tables("\t")), anything(coco_files()), anything(shards()))
def test_every_reader_over_many_more_inputs(folder, monkeypatch, csv_data, tsv_data, coco_data, tar_data):
    monkeypatch.setenv("CLIPMEM_DATA_CACHE", str(folder / "extracted"))
    for name, data in [("data.csv", csv_data), ("data.tsv", tsv_data), ("c.json", coco_data), ("s.tar", tar_data)]:
        check_file(folder, name, data)


# --- review import ----------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def review(tmp_path_factory):
    """A run of 12 samples and a SQLite review store, shared by every example."""
    from clipmem_core.review.store import open_store
    from clipmem_core.testing import fake_run

    root = tmp_path_factory.mktemp("review-properties")
    run = fake_run(root / "cache", "run1", n=12)
    store = open_store(url=f"sqlite:///{root / 'review.sqlite'}")
    yield run, store, root
    store.close()


_CELL = st.one_of(
    st.sampled_from(["s00001", "s00002", "nope", "", "correct", "mis-captioned", "unsure", "Miscaptioned", "x" * 250]),
    st.text(max_size=12),
)
_VERDICT_ROW = st.one_of(
    st.tuples(
        st.sampled_from(["s00001", "s00002", "s00003"]),
        st.text(min_size=1, max_size=8),
        st.sampled_from(["correct", "mis-captioned", "unsure", "Miscaptioned"]),
        _CELL,
        _CELL,
    ).map(list),
    st.lists(_CELL, max_size=6),
)


@st.composite
def verdict_files(draw) -> bytes:
    header = draw(
        st.one_of(
            st.just(["sample_id", "reviewer", "verdict", "suggested_caption", "note"]),
            st.just(["sample_id", "reviewer", "verdict", "suggested_caption", "note"]),
            st.lists(st.sampled_from(["sample_id", "reviewer", "verdict", "note", "other"]), max_size=5),
        )
    )
    rows = draw(st.lists(_VERDICT_ROW, max_size=6))
    buf = io.StringIO()
    csv.writer(buf).writerows([header, *rows])
    return buf.getvalue().encode("utf-8", errors="surrogatepass")


def stored_verdicts(store) -> int:
    from sqlalchemy import func, select

    from clipmem_core.review.store import Verdict

    with store._transaction() as conn:
        return conn.execute(select(func.count()).select_from(Verdict)).scalar_one()


def import_or_refuse(review, data: bytes) -> None:
    from clipmem_core.review.cli import import_verdict_file

    run, store, root = review
    path = root / "verdicts.csv"
    path.write_bytes(data)
    before = stored_verdicts(store)
    try:
        done = import_verdict_file(store, run, path)
    except ClipmemError as exc:
        assert str(exc).strip()
        assert stored_verdicts(store) == before, "a refused import wrote something"
        event("refused")
        return
    event("imported")
    assert stored_verdicts(store) == before + done.count and done.left_out == 0  # all or nothing, no skip option


@FAST
@given(anything(verdict_files()))
def test_review_import_imports_all_or_refuses_with_a_clipmem_error(review, data):
    import_or_refuse(review, data)


@pytest.mark.slow
@SLOW
@given(anything(verdict_files()))
def test_review_import_over_many_more_inputs(review, data):
    import_or_refuse(review, data)
