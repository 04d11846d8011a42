import json
import os
from pathlib import Path

import faiss
import numpy as np
import pytest

from clipmem_core import load_run
from clipmem_core.cli import main
from clipmem_core.errors import ClipmemError
from clipmem_core.formatting import fmt_bytes
from clipmem_core.index import (
    MODES,
    PQ_ABOVE_BYTES,
    Neighbour,
    NeighbourSearch,
    build_index,
    captions_of_similar_images,
    captions_of_similar_images_many,
    describe,
    gpu_available,
    is_compressed,
    load_index,
    neighbours,
    plan_index,
    pq_subquantizers,
    save_index,
    search_many,
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


# --- scale: plans, IVF-PQ, memory-mapped loading, batched search ---------------------------------


@pytest.mark.parametrize(
    "n, dim, pq_above_bytes, kind",
    [
        (99_999, 512, PQ_ABOVE_BYTES, "flat"),
        (1_000_000, 512, PQ_ABOVE_BYTES, "ivf"),
        (1_100_000, 512, PQ_ABOVE_BYTES, "ivfpq"),
        (4_000_000, 128, PQ_ABOVE_BYTES, "ivf"),
        (10_000_000, 128, PQ_ABOVE_BYTES, "ivfpq"),
        (5000, 32, 1, "ivfpq"),
    ],
)
def test_auto_plan_moves_to_pq_when_raw_vectors_pass_the_byte_limit(n, dim, pq_above_bytes, kind):
    plan = plan_index(n, dim, pq_above_bytes=pq_above_bytes, exact_threshold=1000 if n == 5000 else 100_000)
    assert plan.kind == kind


@pytest.mark.parametrize("dim, m", [(128, 32), (512, 64), (768, 64), (64, 16), (100, 25), (6, 1)])
def test_pq_code_bytes_divide_the_dimension(dim, m):
    assert pq_subquantizers(dim) == m


def test_memory_formula_at_10m_x_128():
    plan = plan_index(10_000_000, 128)
    assert (plan.kind, plan.nlist, plan.pq_m) == ("ivfpq", 3162, 32)
    memory = plan.memory()
    assert memory["codes"] == 320_000_000 and memory["ids"] == 80_000_000
    assert memory["coarse_quantizer"] == 3162 * 128 * 4 and memory["pq_codebooks"] == 256 * 128 * 4
    assert plan_index(10_000_000, 128, opq=True).memory()["opq_rotation"] == 128 * 128 * 4
    assert plan_index(10_000_000, 128, kind="ivf").memory_bytes > 10 * plan.memory_bytes  # why PQ exists


def test_an_index_is_described_with_its_memory_in_a_readable_unit():
    """In GB alone a 100,000-sample IVF-PQ index read "~0.00 GB"."""
    assert describe(plan_index(10_000_000, 128)).endswith("32-byte codes, ~402 MB")
    assert describe(plan_index(100_000, 128, kind="ivfpq")).endswith(" MB")
    assert [fmt_bytes(n) for n in (512, 3_100_000, 4.02e8, 4.2e9, 42e9)] == [
        "512 bytes",
        "3.1 MB",
        "402 MB",
        "4.2 GB",
        "42 GB",
    ]


@pytest.fixture(scope="module")
def pq_case():
    vectors = clustered(3000, 32, clusters=30, seed=5)
    index = build_index(vectors, kind="ivfpq", progress=False)
    return vectors, index


def test_ivfpq_file_matches_the_memory_formula(tmp_path, pq_case):
    vectors, index = pq_case
    assert is_compressed(index) and type(index).__name__ == "IndexIVFPQ"
    save_index(index, tmp_path / "pq.faiss")
    plan = plan_index(len(vectors), 32, kind="ivfpq")
    assert (index.nlist, index.pq.M) == (plan.nlist, plan.pq_m)
    size = (tmp_path / "pq.faiss").stat().st_size
    assert plan.memory_bytes <= size <= 1.05 * plan.memory_bytes


def test_search_many_reranks_pq_candidates_exactly(pq_case):
    vectors, index = pq_case
    queries = normalise(vectors[:300] + np.random.default_rng(3).standard_normal((300, 32)) * 0.02)
    truth = exact_top(vectors, queries, 10)
    pq_sims, pq_rows = search_many(index, queries, 10)
    sims, rows = search_many(index, queries, 10, vectors=vectors, batch_size=64)
    recall = [np.mean([len(set(r) & set(t)) / 10 for r, t in zip(found, truth)]) for found in (pq_rows, rows)]
    assert recall[1] >= 0.95 and recall[1] >= recall[0]
    np.testing.assert_allclose(sims, np.einsum("qd,qkd->qk", queries, vectors[rows]), atol=1e-5)
    assert (np.diff(sims, axis=1) <= 1e-6).all()  # best first
    assert not np.allclose(pq_sims, np.einsum("qd,qkd->qk", queries, vectors[pq_rows]), atol=1e-4)  # PQ is lossy


def test_search_many_excludes_rows_batches_and_pads():
    vectors = normalise(np.random.default_rng(4).standard_normal((50, 8)))
    index = build_index(vectors, progress=False)
    sims, rows = search_many(index, vectors, 5, exclude=np.arange(50), batch_size=7)
    assert not (rows == np.arange(50)[:, None]).any()
    np.testing.assert_array_equal(rows, exact_top(vectors, vectors, 6)[:, 1:])
    sims, rows = search_many(index, vectors[:3], 60)
    assert (rows[:, 50:] == -1).all() and np.isneginf(sims[:, 50:]).all() and (rows[:, :50] >= 0).all()


def rss_bytes() -> tuple[int, int]:
    """(private memory, mapped file pages) of this process."""
    fields = dict(line.split(":", 1) for line in Path("/proc/self/status").read_text().splitlines())
    return tuple(int(fields[name].split()[0]) * 1024 for name in ("RssAnon", "RssFile"))


@pytest.mark.skipif(not os.path.exists("/proc/self/status"), reason="reads Linux /proc")
def test_load_maps_the_index_instead_of_copying_it(tmp_path):
    vectors = np.random.default_rng(6).standard_normal((80_000, 128), dtype=np.float32)  # 41 MB
    path = tmp_path / "flat.faiss"
    save_index(build_index(vectors, kind="flat", progress=False), path)
    anon_before, file_before = rss_bytes()
    index = load_index(path)
    _, rows = index.search(vectors[7:8], 5)  # a flat search reads every page of the index
    anon_after, file_after = rss_bytes()
    assert rows[0, 0] == 7
    size = path.stat().st_size
    assert anon_after - anon_before < 0.1 * size and file_after - file_before > 0.8 * size
    assert load_index(path, mmap=False).search(vectors[7:8], 5)[1].tolist() == rows.tolist()


@pytest.mark.slow  # trains an OPQ rotation: ~10 s on a busy 2-core box
def test_opq_variant_round_trips(tmp_path):
    vectors = clustered(1000, 8, clusters=10, seed=7)
    index = build_index(vectors, kind="ivfpq", opq=True, progress=False)
    assert type(index).__name__ == "IndexPreTransform" and is_compressed(index)
    save_index(index, tmp_path / "opq.faiss")
    loaded = load_index(tmp_path / "opq.faiss")
    assert is_compressed(loaded) and loaded.ntotal == 1000
    _, rows = search_many(loaded, vectors[:50], 10, vectors=vectors)
    np.testing.assert_array_equal(rows[:, 0], np.arange(50))


def test_pq_run_shows_exact_similarities_and_batches_queries(tmp_path):
    vectors = clustered(600, 16, clusters=20, seed=8)
    run = fake_run(tmp_path, "pq", 600, image_embeddings=vectors, text_embeddings=vectors, image_size=8)
    save_index(build_index(vectors, kind="ivfpq", progress=False), run.index_path("image"))
    search = NeighbourSearch(run)
    hits = search.query("s00005", k=5, mode="image")
    assert [h.similarity for h in hits] == pytest.approx([float(vectors[5] @ vectors[h.row]) for h in hits], abs=1e-5)
    ids = ["s00005", "s00100", "s00599"]
    assert search.query_many(ids, k=5, mode="image") == [search.query(i, k=5, mode="image") for i in ids]
    many = captions_of_similar_images_many(search, ids, k=5)
    assert many == {i: captions_of_similar_images(search, i, k=5) for i in ids}


@pytest.mark.skipif(not gpu_available(), reason="needs faiss-gpu and a CUDA device")
@pytest.mark.parametrize("kind", ["flat", "ivf", "ivfpq"])
def test_gpu_index_builds_searches_and_saves_for_cpu(tmp_path, kind):
    vectors = clustered(20_000, 32, clusters=100)
    index = build_index(vectors, kind=kind, use_gpu=True, progress=False)
    queries = vectors[:100]
    sims, rows = search_many(index, queries, 10, vectors=vectors)
    assert (rows[:, 0] == np.arange(100)).mean() > 0.95
    np.testing.assert_allclose(sims[:, 0], np.einsum("qd,qd->q", queries, vectors[rows[:, 0]]), atol=1e-4)
    save_index(index, tmp_path / "gpu.faiss")
    loaded = load_index(tmp_path / "gpu.faiss")
    assert loaded.ntotal == 20_000 and is_compressed(loaded) == (kind == "ivfpq")


def test_reindex_command_rebuilds_a_runs_indexes_as_ivfpq(tmp_path, capsys):
    vectors = clustered(600, 16, clusters=20, seed=9)
    run = fake_run(tmp_path, "re", 600, image_embeddings=vectors, text_embeddings=vectors, image_size=8)
    assert main(["reindex", "--run", str(run.path), "--kind", "ivfpq"]) == 0
    assert capsys.readouterr().out.startswith("image: ivfpq over 600 x 16: nlist 15")
    for modality in ("image", "text"):
        assert is_compressed(load_index(run.index_path(modality)))
    assert NeighbourSearch(run).query("s00003", k=1, mode="image2text")[0].sample_id == "s00003"
    assert main(["reindex", "--run", str(tmp_path / "none")]) == 2
    small = fake_run(tmp_path, "small", 120, image_size=8)
    before = small.index_path("image").read_bytes()
    capsys.readouterr()
    assert main(["reindex", "--run", str(small.path), "--kind", "ivfpq"]) == 2  # said in a line, no traceback
    err = capsys.readouterr().err
    assert "needs at least that many vectors; this one has 120: use flat" in err and "Traceback" not in err
    assert small.index_path("image").read_bytes() == before  # the run's index is kept


def test_neighbours_from_an_approximate_index_say_so(tmp_path, capsys):
    """At 100k rows the index is IVF, and on random embeddings a query found 4 of the true 10 nearest:
    the CLI and the inspector listed them as if exact."""
    vectors = clustered(1600, 16, clusters=20, seed=3)  # enough rows for more lists than a query searches
    run = fake_run(tmp_path, "approx", 1600, image_embeddings=vectors, text_embeddings=vectors, image_size=8)
    assert NeighbourSearch(run).approximation("image") is None  # flat below 100k rows
    assert main(["neighbours", "--run", str(run.path), "--sample-id", "s00003", "--k", "2"]) == 0
    assert "approximate" not in capsys.readouterr().err
    assert main(["reindex", "--run", str(run.path), "--kind", "ivf"]) == 0
    capsys.readouterr()
    search = NeighbourSearch(load_run(run.path))
    ivf = faiss.extract_index_ivf(search.index("text"))
    expected = f"approximate: an IVF index searches {ivf.nprobe} of its {ivf.nlist} lists"
    assert search.approximation("image2text").startswith(expected)
    assert main(["neighbours", "--run", str(run.path), "--sample-id", "s00003", "--k", "2", "--json"]) == 0
    out, err = capsys.readouterr()
    assert len(json.loads(out)) == 2 and err.startswith(f"note: {expected}")  # the JSON stays clean
    ivf.nprobe = ivf.nlist  # every list of uncompressed vectors: exact, and not called approximate
    assert search.approximation("image2text") is None


@pytest.mark.parametrize("opq", [False, True])
def test_an_ivfpq_index_of_few_vectors_says_so_once_instead_of_faiss_on_every_sub_vector(opq, capfd, caplog):
    """1,500 lines of "WARNING clustering 280 points to 256 centroids" buried the result of a reindex of 300
    rows; the codes had also been learned from the IVF lists' sample alone (280 of the 300 vectors)."""
    vectors = clustered(300, 32)
    with caplog.at_level("WARNING", logger="clipmem"):
        index = build_index(vectors, kind="ivfpq", opq=opq, progress=False)
    assert "WARNING clustering" not in capfd.readouterr().err
    assert [r.getMessage() for r in caplog.records] == [
        "ivfpq: 300 vectors to learn 256 codes a sub-vector from, where faiss asks for 9,984: its similarities "
        "are rough at this size (flat is exact, and fast here)"
    ]
    assert index.ntotal == 300 and (index.search(vectors[:20], 1)[1][:, 0] == np.arange(20)).mean() >= 0.9


def test_an_index_file_of_another_run_is_refused_and_reindex_mends_a_missing_one(tmp_path, capsys):
    """An index of another run with as many rows was searched without a word (its neighbours given as exact),
    and `reindex` refused a run whose index file was missing or empty: nothing could mend it."""
    run = fake_run(tmp_path, "mine", n=60, seed=0)
    other = fake_run(tmp_path, "other", n=60, seed=1)
    (run.path / "index" / "image.faiss").write_bytes((other.path / "index" / "image.faiss").read_bytes())
    with pytest.raises(ClipmemError, match="does not index run mine's image embeddings"):
        NeighbourSearch(load_run(run.path)).query(run.scores["sample_id"].iat[0], k=3)
    (run.path / "index" / "image.faiss").unlink()
    with pytest.raises(ClipmemError, match=r"index/image.faiss is missing; rebuild it with `clipmem reindex"):
        load_run(run.path)
    (run.path / "index" / "text.faiss").write_bytes(b"")
    assert main(["reindex", "--run", str(run.path)]) == 0
    found = NeighbourSearch(load_run(run.path)).query(run.scores["sample_id"].iat[0], k=3, mode="image2text")
    assert len(found) == 3
    assert main(["reindex", "--run", str(run.path), "--kind", "flat", "--opq"]) == 2
    assert "--opq rotates the vectors of an ivfpq index" in capsys.readouterr().err


def test_fewer_neighbours_than_asked_for_are_said_to_be_fewer(tmp_path, capsys):
    """k = 1000 on a run of 120 printed 119 lines without a word."""
    run = fake_run(tmp_path, "small", n=20)
    sample = run.scores["sample_id"].iat[0]
    assert main(["neighbours", "--run", str(run.path), "--sample-id", sample, "--k", "50"]) == 0
    out, err = capsys.readouterr()
    assert len(out.splitlines()) == 19
    assert "note: 19 neighbours, not the 50 asked for: the run has 19 to offer" in err
    assert main(["neighbours", "--run", str(run.path), "--sample-id", sample, "--k", "5"]) == 0
    assert "asked for" not in capsys.readouterr().err


def test_an_hnsw_index_over_repeated_vectors_is_warned_of(caplog):
    """Rows of one image under several captions: some HNSW queries missed all of their equal rows."""
    vectors = np.repeat(clustered(100, 16), 5, axis=0)
    with caplog.at_level("WARNING", logger="clipmem"):
        build_index(vectors, kind="hnsw", progress=False)
    assert "hnsw: 400 of 500 rows repeat another row's vector" in caplog.text
    caplog.clear()
    with caplog.at_level("WARNING", logger="clipmem"):
        build_index(clustered(500, 16), kind="hnsw", progress=False)
    assert "repeat" not in caplog.text


def test_neighbours_takes_the_start_of_an_id_as_the_inspector_does(tmp_path, capsys):
    """The dashboard shows ids cut short, and `neighbours` needed the whole id."""
    run = fake_run(tmp_path, "ids", n=20, sample_ids=[f"a{i:02d}x" for i in range(19)] + ["b00x"])
    assert main(["neighbours", "--run", str(run.path), "--sample-id", "B0", "--k", "2"]) == 0
    out, err = capsys.readouterr()
    assert "note: sample b00x, the one whose id starts with 'B0'" in err and len(out.splitlines()) == 2
    assert main(["neighbours", "--run", str(run.path), "--sample-id", "A01X", "--k", "2"]) == 0
    assert "note: sample a01x: 'A01X' differs from its id only in capitals" in capsys.readouterr().err
    assert main(["neighbours", "--run", str(run.path), "--sample-id", "a0", "--k", "2"]) == 2
    assert "10 samples' ids start with 'a0' in run ids: give more of it" in capsys.readouterr().err
    assert main(["neighbours", "--run", str(run.path), "--sample-id", "zz", "--k", "2"]) == 2
    assert "sample_id 'zz' is not in run ids; `clipmem suspects` lists ids" in capsys.readouterr().err
