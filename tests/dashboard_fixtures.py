"""A small but complete run folder, written with the cache writers, for the dashboard tests."""

from __future__ import annotations

import io
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image

from clipmem_core import cache
from clipmem_core.index import build_index, save_index
from clipmem_core.metrics import detection_summary, retrieval_recall, split_summary

WORDS = ("red", "blue", "green", "circle", "square", "star", "cat", "dog", "house", "tree")


def _png(colour: tuple[int, int, int], size: int) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (size, size), colour).save(buf, format="PNG")
    return buf.getvalue()


def _jpeg(colour: tuple[int, int, int], size: int) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (size, size), colour).save(buf, format="JPEG")
    return buf.getvalue()


def _unit(rng: np.random.Generator, n: int, dim: int) -> np.ndarray:
    vectors = rng.standard_normal((n, dim)).astype(np.float32)
    return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)


def scores_frame(n: int, seed: int = 0) -> pd.DataFrame:
    """Random but schema-complete scores: clipmem null on shared, align null on shared."""
    rng = np.random.default_rng(seed)
    split = np.array(cache.SPLITS)[np.arange(n) % 4]
    align_f = rng.uniform(0.1, 0.6, n)
    align_g = rng.uniform(0.1, 0.6, n)
    scored = split != "shared"
    from_f = np.where(scored, align_f - align_g, np.nan)
    clipmem = np.where(split == "candidate", from_f, np.where(split == "independent", -from_f, np.nan))
    span = np.nanmax(clipmem) - np.nanmin(clipmem)
    captions = [f"{WORDS[i % 10]} {WORDS[(i * 7 + 3) % 10]} number {i}" for i in range(n)]
    return pd.DataFrame(
        {
            "sample_id": [f"s{i:05d}" for i in range(n)],
            "split": split,
            "filepath": [f"images/{i}.png" for i in range(n)],
            "caption": captions,
            "captions": [[c] for c in captions],
            "align_f": np.where(scored, align_f, np.nan),
            "align_g": np.where(scored, align_g, np.nan),
            "clipmem": clipmem,
            "clipmem_norm": clipmem / span,
            "clipmem_from_f": from_f,
            "clip_score_f": rng.uniform(0.0, 0.5, n),
            "clip_score_g": rng.uniform(0.0, 0.5, n),
            "proj_x": rng.standard_normal(n),
            "proj_y": rng.standard_normal(n),
            "is_miscaptioned": (np.arange(n) % 10 == 1),
        }
    )


def write_run(cache_root: Path, name: str = "demo", n: int = 120, dim: int = 16, views: int = 4, seed: int = 0) -> Path:
    """Write ``cache_root/name`` (and its dataset under ``cache_root/name/dataset``); return its path."""
    rng = np.random.default_rng(seed)
    out = Path(cache_root) / name
    frame = scores_frame(n, seed)
    colours = rng.integers(0, 256, (n, 3))
    for i in range(n):
        colour = tuple(int(c) for c in colours[i])
        cache.write_bytes(out / "dataset" / frame["filepath"].iat[i], _png(colour, 48))
        cache.write_bytes(out / cache.THUMB_DIR / f"{i}.jpg", _jpeg(colour, 24))
    image_emb, text_emb = _unit(rng, n, dim), _unit(rng, n, dim)
    alignments = rng.uniform(0.0, 0.6, (n, 2, views)).astype(np.float32)
    alignments[frame["split"].to_numpy() == "shared"] = np.nan
    for modality, vectors in (("image", image_emb), ("text", text_emb)):
        save_index(build_index(vectors), out / cache.INDEX_DIR / f"{modality}.faiss")
    cache.write_npy(out / cache.IMAGE_EMBEDDINGS, image_emb)
    cache.write_npy(out / cache.TEXT_EMBEDDINGS, text_emb)
    cache.write_npy(out / cache.VIEW_ALIGNMENTS, alignments)
    cache.write_parquet(out / cache.SCORES, frame)
    extra = frame["split"].to_numpy() == "extra"
    recall = retrieval_recall(image_emb[extra], text_emb[extra])
    cache.write_json(
        out / cache.MANIFEST,
        {
            "schema_version": cache.SCHEMA_VERSION,
            "name": name,
            "status": "complete",
            "created": datetime.now(UTC).isoformat(timespec="seconds"),
            "config": {"model": "clipmem-tiny", "preset": "tiny", "seed": seed},
            "dataset": {
                "path": "dataset/captions.csv",
                "root": "dataset",
                "format": "csv",
                "content_hash": "0" * 16,
                "n_samples": n,
                "n_skipped": 0,
            },
            "splits": frame["split"].value_counts().to_dict(),
            "versions": {"clipmem": "test"},
            "timings": {"train_f": 1.0, "score": 0.5},
            "utility": {"f": recall, "g": recall},
            "summary": {"splits": split_summary(frame), "detection": detection_summary(frame)},
            "files": [
                cache.SCORES,
                cache.THUMB_DIR,
                cache.IMAGE_EMBEDDINGS,
                cache.TEXT_EMBEDDINGS,
                cache.VIEW_ALIGNMENTS,
                "index/image.faiss",
                "index/text.faiss",
            ],
        },
    )
    return out
