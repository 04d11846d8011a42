import faiss
import numpy as np
import pytest

from clipmem_core.errors import ClipmemError
from clipmem_core.index import (
    MODES,
    Neighbour,
    NeighbourSearch,
    build_index,
    captions_of_similar_images,
    load_index,
    neighbours,
    save_index,
)
from clipmem_core.testing import fake_run


def normalise(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.float32)
    return x / np.linalg.norm(x, axis=-1, keepdims=True)


def clustered(n: int, dim: int, clusters: int = 50, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    centres = normalise(rng.standard_normal((clusters, dim)))
    return normalise(centres[rng.integers(clusters, size=n)] + rng.standard_normal((n, dim)) * 0.15)


def exact_top(vectors: np.ndarray, queries: np.ndarray, k: int) -> np.ndarray:
    return np.argsort(-(queries @ vectors.T), axis=1)[:, :k]


def test_flat_index_matches_brute_force():
    vectors = normalise(np.random.default_rng(1).standard_normal((2000, 32)))
    index = build_index(vectors, progress=False)
    assert index.ntotal == 2000 and type(index).__name__ == "IndexFlatIP"
    queries = vectors[:25]
    sims, rows = index.search(queries, 10)
    np.testing.assert_array_equal(rows, exact_top(vectors, queries, 10))
    np.testing.assert_allclose(sims[:, 0], 1.0, atol=1e-5)


def test_auto_switches_to_ivf_above_threshold():
    vectors = clustered(3000, 16)
    assert type(build_index(vectors, exact_threshold=3001, progress=False)).__name__ == "IndexFlatIP"
    assert type(build_index(vectors, exact_threshold=3000, progress=False)).__name__ == "IndexIVFFlat"


def test_unknown_kind_and_bad_shape_are_refused():
    with pytest.raises(ClipmemError, match="unknown index kind"):
        build_index(np.zeros((3, 4), np.float32), kind="lsh")
    with pytest.raises(ClipmemError, match="2-D"):
        build_index(np.zeros(4, np.float32))


@pytest.mark.parametrize("kind", ["ivf", "hnsw"])
def test_approximate_index_recall_at_10(kind):
    vectors = clustered(20_000, 32, clusters=100)
    index = build_index(vectors, kind=kind, progress=False)
    queries = normalise(vectors[:200] + np.random.default_rng(2).standard_normal((200, 32)) * 0.02)
    _, rows = index.search(queries, 10)
    truth = exact_top(vectors, queries, 10)
    recall = np.mean([len(set(r) & set(t)) / 10 for r, t in zip(rows, truth)])
    assert recall >= 0.9


@pytest.mark.parametrize("kind", ["flat", "ivf", "hnsw"])
def test_save_load_round_trip(tmp_path, kind):
    vectors = clustered(2000, 16)
    index = build_index(vectors, kind=kind, progress=False)
    path = tmp_path / "sub" / "image.faiss"
    save_index(index, path)
    loaded = load_index(path)
    assert loaded.ntotal == 2000 and type(loaded) is type(index)
    if kind == "ivf":
        assert loaded.nprobe == index.nprobe > 1
    np.testing.assert_array_equal(loaded.search(vectors[:5], 5)[1], index.search(vectors[:5], 5)[1])
    assert [p.name for p in path.parent.iterdir()] == ["image.faiss"]  # no temp file left behind


def test_load_missing_or_corrupt_index_raises(tmp_path):
    with pytest.raises(ClipmemError, match="missing"):
        load_index(tmp_path / "none.faiss")
    bad = tmp_path / "bad.faiss"
    bad.write_bytes(b"not a faiss index at all")
    with pytest.raises(ClipmemError, match="corrupt"):
        load_index(bad)


# A run whose answers are known: e_i are unit axes; for sample s0 the nearest image is row 1,
# the nearest caption row 2, the caption nearest its image row 3, the image nearest its caption row 4.
def e(i: int, dim: int = 8) -> np.ndarray:
    v = np.zeros(dim, np.float32)
    v[i] = 1
    return v


IMAGES = normalise([e(0), e(0) + 0.3 * e(2), e(3), e(4), e(1) + 0.3 * e(2), e(5)])
TEXTS = normalise([e(1), e(6), e(1) + 0.3 * e(7), e(0) + 0.3 * e(7), e(7), e(5)])
CAPTIONS = ["a dog", "a dog", "a cat", "a car", "a dog on grass", "a tree"]


def write_run(folder, images=IMAGES, texts=TEXTS):
    ids = [f"s{i}" for i in range(len(images))]
    return fake_run(
        folder.parent,
        folder.name,
        len(images),
        captions=CAPTIONS,
        sample_ids=ids,
        image_embeddings=images,
        text_embeddings=texts,
    )


@pytest.fixture
def search(tmp_path):
    return NeighbourSearch(write_run(tmp_path / "run"))


@pytest.mark.parametrize(
    "mode, expected", [("image", "s1"), ("text", "s2"), ("image2text", "s3"), ("text2image", "s4")]
)
def test_each_mode_searches_the_right_modality(search, mode, expected):
    assert mode in MODES
    top = search.query("s0", k=3, mode=mode)[0]
    assert top.sample_id == expected
    assert top.similarity == pytest.approx(float(1 / np.sqrt(1.09)), abs=1e-5)


def test_same_modality_excludes_self_cross_modality_keeps_it(search):
    for mode in ("image", "text"):
        hits = search.query("s0", k=10, mode=mode)
        assert len(hits) == 5 and all(h.row != 0 for h in hits)
    assert search.query("s5", k=1, mode="image2text")[0].sample_id == "s5"
    assert len(search.query("s5", k=10, mode="text2image")) == 6


def test_neighbour_carries_row_caption_and_split(search):
    assert search.query("s0", k=1, mode="text2image") == [
        Neighbour(
            row=4,
            sample_id="s4",
            similarity=pytest.approx(0.9578, abs=1e-4),
            caption="a dog on grass",
            split="fold0",
        )
    ]


def test_query_vector_normalises_and_ranks(search):
    hits = search.query_vector(3 * e(5), k=2, modality="text")
    assert hits[0].sample_id == "s5" and hits[0].similarity == pytest.approx(1.0, abs=1e-6)
    assert len(hits) == 2


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"mode": "audio"}, "unknown neighbour mode"),
        ({"k": 0}, "positive integer"),
        ({"sample_id": "nope"}, "not in run"),
    ],
)
def test_bad_queries_raise(search, kwargs, message):
    args = {"sample_id": "s0", "k": 3, "mode": "image", **kwargs}
    with pytest.raises(ClipmemError, match=message):
        search.query(**args)


def test_query_vector_rejects_bad_modality_and_dimension(search):
    with pytest.raises(ClipmemError, match="modality"):
        search.query_vector(e(0), modality="audio")
    with pytest.raises(ClipmemError, match="dimension"):
        search.query_vector(np.ones(3, np.float32))


def test_index_loaded_once(search):
    search.query("s0", mode="image")
    first = search.index("image")
    search.query("s1", mode="text2image")
    assert search.index("image") is first


def test_stale_index_is_refused(tmp_path):
    run = write_run(tmp_path / "run")
    save_index(build_index(IMAGES[:4], progress=False), run.index_path("image"))
    with pytest.raises(ClipmemError, match="rebuild"):
        neighbours(run, "s0", k=2, mode="image")


def test_neighbours_convenience(search):
    assert [h.sample_id for h in neighbours(search.run, "s0", k=1, mode="image2text")] == ["s3"]


def test_captions_of_similar_images_are_distinct_and_not_own(search):
    # images nearest s4 (e1 + 0.3 e2): s1 ("a dog"), s0 ("a dog"), then the orthogonal rest
    hints = captions_of_similar_images(search, "s4", k=3)
    assert hints[0] == "a dog"
    assert len(hints) == len(set(hints)) and "a dog on grass" not in hints


def test_query_leaves_faiss_thread_count_alone(search):
    before = faiss.omp_get_max_threads()
    search.query("s0", k=2, mode="image")
    assert faiss.omp_get_max_threads() == before


def test_a_full_disk_while_writing_an_index_leaves_the_previous_one(tmp_path):
    """faiss printed 'close error' and returned; the truncated index was renamed into place."""
    import resource
    import signal

    path = tmp_path / "text.faiss"
    small = normalise(np.random.default_rng(0).standard_normal((10, 8)))
    save_index(build_index(small, progress=False), path)
    before = path.read_bytes()
    big = build_index(normalise(np.random.default_rng(1).standard_normal((5000, 64))), progress=False)
    previous_handler = signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    resource.setrlimit(resource.RLIMIT_FSIZE, (100_000, hard))  # the kernel refuses to grow any file past this
    try:
        with pytest.raises(OSError):
            save_index(big, path)
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
        signal.signal(signal.SIGXFSZ, previous_handler)
    assert path.read_bytes() == before and [p.name for p in tmp_path.iterdir()] == ["text.faiss"]
    assert load_index(path).ntotal == 10


def test_a_failed_flush_at_close_is_caught(tmp_path, monkeypatch):
    """ENOSPC reported only when the last buffer is flushed, as faiss's stdio writer met it."""
    import builtins
    import errno

    real_open = builtins.open

    class FlushFails:
        def __init__(self, fh):
            self.fh = fh

        def __getattr__(self, name):
            return getattr(self.fh, name)

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            self.fh.close()
            raise OSError(errno.ENOSPC, "No space left on device")

    def failing_open(file, mode="r", *args, **kwargs):
        handle = real_open(file, mode, *args, **kwargs)
        return FlushFails(handle) if str(file).endswith(".tmp") and "w" in mode else handle

    path = tmp_path / "image.faiss"
    monkeypatch.setattr(builtins, "open", failing_open)
    with pytest.raises(OSError, match="No space left"):
        save_index(build_index(normalise(np.ones((3, 4))), progress=False), path)
    monkeypatch.undo()
    assert not path.exists() and list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    "offset, value",
    [(8, 2**40), (8, -5), (4, 0), (4, 2**20), (37, 2**33)],
    ids=["huge n", "negative n", "zero d", "huge d", "huge vector"],
)
def test_an_index_header_announcing_more_than_the_file_holds_is_refused(tmp_path, offset, value):
    """A damaged size field made faiss allocate and zero-fill gigabytes before failing."""
    import struct

    path = tmp_path / "i.faiss"
    save_index(build_index(normalise(np.random.default_rng(0).standard_normal((50, 16))), progress=False), path)
    data = bytearray(path.read_bytes())
    fmt = "<i" if offset == 4 else "<q"
    data[offset : offset + struct.calcsize(fmt)] = struct.pack(fmt, value)
    path.write_bytes(bytes(data))
    with pytest.raises(ClipmemError, match="is corrupt"):
        load_index(path)
