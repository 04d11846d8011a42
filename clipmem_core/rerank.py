"""Re-rank a finished run with this version's recipe for "Likely mis-captioned", without training.

The combined ranking is a pure function of a run's stored signal columns and image embeddings
(``combined.fuse``), so when the recipe changes (a new member, each fold on its own scale) a run made
before can take it up in seconds, where a re-run would train its models again. The run's other scores, its
embeddings and its indexes stay as they are; its summary (detection table, per-split means) is made again,
since the combined ranking is part of it.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from .atomic import write_json, write_parquet
from .cache import IMAGE_EMBEDDINGS, MANIFEST, SCORES, Run, load_run
from .errors import ClipmemError
from .fingerprints import FINGERPRINT_COLUMN, image_fingerprints
from .metrics import run_summary
from .scores.agreement_duplicate_images import DuplicateImageAgreement, same_picture_agreement
from .scores.combined import SIGNALS, Combined, fuse, members


@dataclass(frozen=True)
class Reranked:
    """What a re-rank changed: how many samples it scored, and how many of them moved in the first ``top``."""

    run: Run
    samples: int
    top: int
    new_in_top: int
    without: str | None = None  # why a member of the recipe is missing from the new ranking, if one is


def rerank_run(run_dir: str | Path, top: int = 100) -> Reranked:
    """Recompute the run's combined ranking from its files and write it back, scores first, the manifest
    last (so a run stopped between the two writes still loads, and the next re-rank finishes it)."""
    run = load_run(run_dir)
    if IMAGE_EMBEDDINGS not in run.manifest.files:
        raise ClipmemError(
            f"run {run.name} stores no image embeddings (imported, or made by an older clipmem): its ranking "
            "cannot be remade from its files; run it again"
        )
    scores = run.scores.copy()
    if not members(scores):  # the ranking would rest on whatever else the run has, e.g. CLIPMem alone
        raise ClipmemError(
            f"run {run.name} has none of the signals the combined ranking is made of ({', '.join(SIGNALS)}); "
            "its ranking is kept"
        )
    missing = add_duplicate_images(run, scores)
    fused = fuse(scores, images=np.asarray(run.image_embeddings))
    before = _top_rows(scores[Combined.name].to_numpy(np.float64), top) if Combined.name in scores else set()
    scores[Combined.name] = fused
    write_parquet(run.path / SCORES, scores)
    manifest = run.manifest
    manifest.summary = run_summary(scores, manifest.protocol)
    write_json(run.path / MANIFEST, manifest.to_dict())
    after = _top_rows(np.asarray(fused, np.float64), top)
    return Reranked(load_run(run.path), len(scores), min(top, len(scores)), len(after - before), missing)


def add_duplicate_images(run: Run, scores: pd.DataFrame) -> str | None:
    """Give a run made before runs fingerprinted their images its fingerprints and the member that reads them
    (``agreement_duplicate_images``), from its images where they can be read; else None is added and the
    returned sentence says why the ranking lacks that member."""
    if FINGERPRINT_COLUMN in scores.columns:
        return None
    try:
        scores[FINGERPRINT_COLUMN] = fingerprints_of_run(run)
    except (OSError, ClipmemError) as err:
        return f'its images could not be read ({err}), so it is ranked without "{DuplicateImageAgreement.label}"'
    scores[DuplicateImageAgreement.name] = np.asarray(same_picture_agreement(scores), np.float32)
    return None


def fingerprints_of_run(run: Run) -> np.ndarray:
    """The fingerprints of a finished run's images, as its run would have taken them: each image downscaled to
    the size a run of its model held it at, and an import's (no model) as it is. Raises OSError or
    ClipmemError for an image that cannot be read."""
    from .image_list import ImageList

    root, model = run.dataset_root or Path("/"), run.manifest.config.get("model")
    max_side = None
    if model:  # importing the model's config loads torch: only for a run that trained one
        from .models import image_size_of
        from .pipeline import DOWNSCALE_FACTOR

        max_side = DOWNSCALE_FACTOR * image_size_of(str(model))
    return image_fingerprints(ImageList(root, run.scores["filepath"].astype(str), max_side, preload=False))


def _top_rows(suspicion: np.ndarray, top: int) -> set[int]:
    """The rows of the ``top`` most suspicious samples (unscored ones last)."""
    ranked = np.where(np.isnan(suspicion), -np.inf, suspicion)
    return set(np.argsort(-ranked, kind="stable")[:top].tolist())
