"""import-run: build a run from scores (and embeddings) computed elsewhere, e.g. on a cluster."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from . import cache
from .data import read_dataset
from .errors import ClipmemError
from .pipeline import STATE_FILE, ImageList, Stopwatch, finish_run
from .scoring import clipmem_columns, normalised
from .splits import SPLIT_NAMES


def _read_scores(path: Path) -> pd.DataFrame:
    if not path.is_file():
        raise ClipmemError(f"scores file {path} does not exist")
    try:
        scores = pd.read_parquet(path)
    except Exception as exc:  # pyarrow raises many types for a foreign file
        raise ClipmemError(f"scores file {path} is not readable parquet: {exc}") from None
    if "sample_id" not in scores.columns:
        raise ClipmemError(f"scores file {path} has no sample_id column (columns: {', '.join(scores.columns)})")
    if not ({"align_f", "align_g"} <= set(scores.columns) or "clipmem" in scores.columns):
        raise ClipmemError(f"scores file {path} needs align_f and align_g, or clipmem")
    scores = scores.assign(sample_id=scores["sample_id"].astype(str))
    if scores["sample_id"].duplicated().any():
        raise ClipmemError(
            f"scores file {path} repeats sample_ids, e.g. "
            f"{scores['sample_id'][scores['sample_id'].duplicated()].iloc[0]!r}"
        )
    return scores


def _read_embeddings(path: str | None, rows: int, label: str) -> np.ndarray | None:
    if path is None:
        return None
    try:
        vectors = np.load(path, mmap_mode="r")
    except (OSError, ValueError) as exc:
        raise ClipmemError(f"{label} {path} is not a readable .npy file: {exc}") from None
    if vectors.ndim != 2 or vectors.shape[0] != rows:
        raise ClipmemError(f"{label} {path} has shape {vectors.shape}; expected ({rows}, D), one row per score")
    vectors = np.asarray(vectors, dtype=np.float32)
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    return vectors / np.maximum(norms, 1e-12)


def _merge(dataset_samples: pd.DataFrame, scores: pd.DataFrame) -> pd.DataFrame:
    known = set(dataset_samples["sample_id"])
    unknown = [s for s in scores["sample_id"] if s not in known]
    if unknown:
        raise ClipmemError(f"{len(unknown)} sample_ids in the scores are not in the dataset, e.g. {unknown[0]!r}")
    own = [c for c in scores.columns if c == "sample_id" or c not in dataset_samples.columns]
    frame = scores[own].merge(dataset_samples, on="sample_id", how="left", validate="one_to_one")
    if "split" not in frame.columns:
        frame["split"] = "candidate"
    bad = sorted(set(frame["split"]) - set(SPLIT_NAMES))
    if bad:
        raise ClipmemError(f"unknown split values {bad}; use {', '.join(SPLIT_NAMES)}")
    return frame


def _complete_columns(frame: pd.DataFrame) -> pd.DataFrame:
    """Derive what the scores did not carry, so the run has every column the dashboard reads."""
    split = frame["split"].to_numpy()
    for name in ("align_f", "align_g", "clip_score_f", "clip_score_g"):
        if name not in frame.columns:
            frame[name] = np.nan
    if frame[["align_f", "align_g"]].notna().any().all():
        derived = clipmem_columns(split, frame["align_f"].to_numpy(np.float32), frame["align_g"].to_numpy(np.float32))
        for name, values in derived.items():
            if name not in frame.columns:
                frame[name] = values
    else:
        clipmem = frame["clipmem"].to_numpy(np.float32)
        if "clipmem_norm" not in frame.columns:
            frame["clipmem_norm"] = normalised(clipmem)
        if "clipmem_from_f" not in frame.columns:
            frame["clipmem_from_f"] = np.where(split == "independent", -clipmem, clipmem)
    return frame


def import_run(
    data: str,
    scores_path: str,
    out: str,
    *,
    image_embeddings: str | None = None,
    text_embeddings: str | None = None,
    img_key: str = "filepath",
    caption_key: str = "caption",
    on_error: str = "skip",
) -> cache.Run:
    """Join externally computed scores to a dataset and write a complete run."""
    out_dir = Path(out)
    if out_dir.exists() and any(out_dir.iterdir()):
        raise ClipmemError(f"{out_dir} already exists and is not empty; choose another --out")
    if (image_embeddings is None) != (text_embeddings is None):
        raise ClipmemError("give both --image-embeddings and --text-embeddings, or neither")
    timer = Stopwatch()
    with timer.stage("ingest"):
        dataset = read_dataset(data, img_key=img_key, caption_key=caption_key, on_error=on_error)
        scores = _read_scores(Path(scores_path))
        image_vectors = _read_embeddings(image_embeddings, len(scores), "--image-embeddings")
        text_vectors = _read_embeddings(text_embeddings, len(scores), "--text-embeddings")
        frame = _complete_columns(_merge(dataset.samples, scores))
        images = ImageList(dataset.root, frame["filepath"])
    out_dir.mkdir(parents=True, exist_ok=True)
    cache.write_json(out_dir / STATE_FILE, {"imported_from": str(scores_path)})
    config = {
        "imported": True,
        "data": data,
        "scores": scores_path,
        "image_embeddings": image_embeddings,
        "text_embeddings": text_embeddings,
    }
    return finish_run(
        out_dir,
        frame,
        dataset,
        images,
        image_embeddings=image_vectors,
        text_embeddings=text_vectors,
        view_align=None,
        config=config,
        timer=timer,
        utility=None,
        thumbnail_size=96,
    )
