"""Fake runs for tests and benchmarks: schema-complete, written by the real run writer, in milliseconds.

One builder serves the test suite and ``bench/``: a fake run has every registered score (random values
unless given), real image files and thumbnails, unit embeddings, FAISS indexes and a valid manifest,
so the dashboard, the review store and the exports see exactly what a computed run gives them.
Nothing here is a result: values are random by construction.

Example::

    from clipmem_core.testing import fake_run
    run = fake_run("/tmp/cache", "demo", n=120)          # a loadable Run
    run = fake_run("/tmp/cache", "paper", n=60, protocol="paper", scores={"clipmem": np.linspace(1, -1, 60)})
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image

from .cache import GROUND_TRUTH, DatasetInfo, Manifest, Run, write_run
from .fingerprints import FINGERPRINT_COLUMN, image_fingerprints
from .metrics import retrieval_recall
from .scores import MEASUREMENTS, registry
from .scores.agreement_duplicate_images import DuplicateImageAgreement, same_picture_agreement
from .splits import CANDIDATE, INDEPENDENT, SHARED, SPLITS, fold_split, membership

WORDS = np.array(["red", "blue", "green", "circle", "square", "star", "cat", "dog", "house", "tree", "car", "bird"])


def fake_captions(n: int, seed: int = 0) -> list[str]:
    """Distinct, readable captions: three words and the row number."""
    words = WORDS[np.random.default_rng(seed).integers(0, len(WORDS), (n, 3))]
    return [f"{a} {b} {c} number {i}" for i, (a, b, c) in enumerate(words)]


def fake_splits(n: int, protocol: str = "full", folds: int = 2) -> np.ndarray:
    """Paper splits in turn (shared, candidate, independent, extra, …) or folds in turn."""
    names = SPLITS if protocol == "paper" else [fold_split(k) for k in range(folds)]
    return np.array(names, dtype=object)[np.arange(n) % len(names)]


def fake_scores(
    n: int,
    *,
    seed: int = 0,
    protocol: str = "full",
    captions: Sequence[str] | None = None,
    scores: Mapping[str, Sequence[float]] | None = None,
    sample_ids: Sequence[str] | None = None,
    ground_truth: bool = True,
) -> pd.DataFrame:
    """A scores frame with the base columns, every registered score and the stored measurements.

    Values are random (uniform in [-1, 1]; under the paper protocol the scores that need a held-out
    and a training-side model are NaN on S_S and S_E, as in a computed run) unless ``scores`` gives them.
    Every tenth sample (rows 1, 11, 21 …) is marked mis-captioned when ``ground_truth``.
    """
    rng = np.random.default_rng(seed)
    captions = list(captions) if captions is not None else fake_captions(n, seed)
    frame = pd.DataFrame(
        {
            "sample_id": list(sample_ids) if sample_ids is not None else [f"s{i:05d}" for i in range(n)],
            "split": fake_splits(n, protocol),
            "filepath": [f"images/{i}.png" for i in range(n)],
            "caption": captions,
            "captions": [[c] for c in captions],
        }
    )
    both_sides = np.isin(frame["split"], (CANDIDATE, INDEPENDENT)) if protocol == "paper" else np.ones(n, bool)
    for name in [*registry(), *MEASUREMENTS]:
        values = rng.uniform(-1, 1, n).astype(np.float32)
        if name in ("clipmem", "clipmem_norm", "align_heldout", "align_train") and protocol == "paper":
            values[~both_sides] = np.nan
        frame[name] = values
    for name, values in (scores or {}).items():
        frame[name] = np.asarray(values, dtype=np.float32)
    if ground_truth:
        frame[GROUND_TRUTH] = np.arange(n) % 10 == 1
    return frame


def _unit(rng: np.random.Generator, n: int, dim: int) -> np.ndarray:
    vectors = rng.standard_normal((n, dim)).astype(np.float32)
    return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)


def fake_run(
    cache_root: str | os.PathLike,
    name: str = "demo",
    n: int = 120,
    *,
    seed: int = 0,
    protocol: str = "full",
    dim: int = 16,
    views: int = 4,
    captions: Sequence[str] | None = None,
    scores: Mapping[str, Sequence[float]] | None = None,
    sample_ids: Sequence[str] | None = None,
    image_embeddings: np.ndarray | None = None,
    text_embeddings: np.ndarray | None = None,
    image_size: int = 48,
    dataset_dir: str | os.PathLike | None = None,
    config: Mapping[str, object] | None = None,
) -> Run:
    """Write ``<cache_root>/<name>`` with real images (solid colours) and return the loaded run.

    Args:
        dataset_dir: where the images go; default ``<run>/dataset`` (travels with the run). Give a folder
            outside the run to test runs whose dataset lives elsewhere.
        image_embeddings, text_embeddings: (n, D) vectors to store instead of random unit vectors.
        config: run settings to record beside the defaults (e.g. ``{"exclude": "drop.csv"}``).
    """
    rng = np.random.default_rng(seed)
    out = Path(cache_root) / name
    dataset = Path(dataset_dir) if dataset_dir is not None else out / "dataset"
    frame = fake_scores(n, seed=seed, protocol=protocol, captions=captions, scores=scores, sample_ids=sample_ids)
    colours = rng.integers(0, 256, (n, 3))
    images = [Image.new("RGB", (image_size, image_size), tuple(int(c) for c in colour)) for colour in colours]
    for filepath, image in zip(frame["filepath"], images):
        (dataset / filepath).parent.mkdir(parents=True, exist_ok=True)
        image.save(dataset / filepath)
    frame[FINGERPRINT_COLUMN] = image_fingerprints(images, progress=False)  # as a run takes them
    if DuplicateImageAgreement.name not in (scores or {}):  # the score its pictures give, not noise
        frame[DuplicateImageAgreement.name] = same_picture_agreement(frame)
    frame[["filepath", "caption"]].assign(id=frame["sample_id"]).to_csv(dataset / "captions.csv", index=False)
    image_embeddings = _unit(rng, n, dim) if image_embeddings is None else image_embeddings
    text_embeddings = _unit(rng, n, dim) if text_embeddings is None else text_embeddings
    models = membership(frame["split"].to_numpy(), protocol)
    view_alignments = rng.uniform(-0.2, 0.6, (len(models), n, views)).astype(np.float32)
    held = frame["split"].to_numpy() != SHARED
    manifest = Manifest(
        name=name,
        protocol=protocol,
        config={"model": "clipmem-tiny", "preset": "tiny", "protocol": protocol, "seed": seed, **(config or {})},
        dataset=DatasetInfo(path=str(dataset / "captions.csv"), root=str(dataset), format="csv", content_hash="0" * 16),
        models=list(models),
        versions={"clipmem": "fake"},
        timings={"train": 1.0, "score": 0.5},
        utility={tag: retrieval_recall(image_embeddings[held], text_embeddings[held]) for tag in models},
    )
    return write_run(
        out,
        frame,
        manifest,
        image_embeddings=image_embeddings,
        text_embeddings=text_embeddings,
        view_alignments=view_alignments,
        images=images,
        thumbnail_size=24,
    )


def fake_experiment(
    cache_root: str | os.PathLike,
    name: str,
    runs: Sequence[str],
    *,
    study: str = "removal",
    seeds: Sequence[int] = (0, 1, 2),
    seed: int = 0,
) -> Path:
    """Write ``<cache_root>/experiments/<name>`` with random results for ``runs`` (taken in turn as the
    study's conditions over ``seeds``) through the experiments' own writer; returns its folder."""
    from .experiments.base import ExperimentSettings, write_records

    rng = np.random.default_rng(seed)
    rows = []
    for i, run in enumerate(runs):
        group, value = ("baseline", 0.0) if study == "removal" and i % 3 == 0 else ("combined", float(i % 3))
        rows.append(
            {
                "experiment": name,
                "study": study,
                "seed": int(seeds[i % len(seeds)]),
                "condition": f"{group}-{value:g}",
                "group": group if study == "removal" else "",
                "value": value,
                "run": run,
                **{key: float(rng.uniform(0, 1)) for key in ("mean_clipmem", "r1", "r5", "probe_accuracy")},
                **{key: float(rng.uniform(-0.1, 0.1)) for key in ("image_mem", "text_mem")},
            }
        )
    settings = ExperimentSettings(study=study, name=name, data="fake.csv", cache=str(cache_root), seeds=tuple(seeds))
    folder = Path(cache_root) / "experiments" / name
    write_records(folder, settings, list(runs), pd.DataFrame(rows), complete=True)
    return folder


# How tests and benchmarks start Debian's chromium (headless, quiet: nothing reaches the network).
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


def modules_loaded_by(code: str, modules: Sequence[str], cwd: str | os.PathLike | None = None) -> list[str]:
    """Which of ``modules`` a fresh interpreter has imported after running ``code``.

    For start-up checks: torch, open_clip and scikit-learn each take seconds to import, so entry points
    that do not need them (the dashboard's first paint, the CLI's parser) must not load them.
    """
    probe = f"{code}\nimport json, sys\nprint(json.dumps(sorted(m for m in {tuple(modules)!r} if m in sys.modules)))"
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=300, cwd=cwd)
    if done.returncode:
        raise RuntimeError(f"the probe exited with {done.returncode}: {done.stderr.strip()[-2000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def free_port() -> int:
    """A TCP port free on localhost right now (for a test or benchmark server)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


_PRIVATE_ENV = ("CLIPMEM_DB_URL", "CLIPMEM_ACCESS_TOKEN", "CLIPMEM_LEADS", "CLIPMEM_LEAD_SECRETS", "CLIPMEM_DATA_ROOT")


@contextmanager
def serve_app(
    cache_root: Path,
    timeout_s: float = 90,
    app_dir: Path | None = None,
    launcher: str | None = None,
    port: int | None = None,
    **env_vars: str,
) -> Iterator[str]:
    """``streamlit run serve.py`` (as ``make demo`` starts the dashboard; ``app.py`` in a checkout without
    it) on a free port over ``cache_root`` (the caller's access, lead and database settings left out,
    ``env_vars`` added); yields its URL, and stops its process group on exit. The server's output goes to
    ``cache_root/streamlit.log``. ``app_dir``: another checkout's app (a benchmark comparing two
    revisions); default this one. ``launcher``: the script to run instead (``app.py``). ``port``: a given one
    (a server restarted under an open tab), else a free one."""
    env = {k: v for k, v in os.environ.items() if k not in _PRIVATE_ENV} | {"CLIPMEM_CACHE": str(cache_root)}
    env.update(env_vars)
    port = port or free_port()
    root = app_dir or Path(__file__).resolve().parents[1]
    launcher = launcher or ("serve.py" if (root / "serve.py").exists() else "app.py")
    args = ["--server.headless", "true", "--server.port", str(port), "--server.address", "127.0.0.1"]
    args += ["--browser.gatherUsageStats", "false", "--server.fileWatcherType", "none"]
    with open(Path(cache_root) / "streamlit.log", "ab") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "streamlit", "run", launcher, *args],
            cwd=root,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        url = f"http://127.0.0.1:{port}"
        try:
            wait_healthy(url, proc, timeout_s)
            yield url
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def wait_healthy(url: str, proc: subprocess.Popen, timeout_s: float = 90) -> None:
    """Wait until a ``streamlit run`` at ``url`` answers its health check; an error if it exits or times out."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"streamlit exited with {proc.returncode}")
        try:
            with urllib.request.urlopen(f"{url}/_stcore/health", timeout=2) as response:
                if response.status == 200:
                    return
        except OSError:
            time.sleep(0.3)
    raise TimeoutError("streamlit did not become healthy")


def assert_same_up_to_tied_neighbours(stored: Sequence[float], recomputed: Sequence[float]) -> None:
    """Two computations of the combined ranking agree, but for a few samples whose nearest images tie.

    Why: the ranking is made relative to each sample's 100 nearest images, and a dataset with duplicate
    pictures has exact ties at the hundredth place; BLAS rounds similarities differently with other thread
    counts, so a tie may fall the other way and move a sample's value by a hundredth. A change of the recipe
    moves most samples, far more than that.
    """
    stored, recomputed = np.asarray(stored, np.float64), np.asarray(recomputed, np.float64)
    moved = ~np.isclose(stored, recomputed, rtol=1e-5, atol=1e-5)
    assert moved.mean() <= 0.01, f"{moved.sum()} of {len(moved)} samples differ: not the same recipe"
    np.testing.assert_allclose(stored, recomputed, atol=0.02)
