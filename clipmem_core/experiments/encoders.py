"""The encoders study: which encoder memorizes more, the image or the text one? SSLMem-style.

SSLMem measures memorization in a self-supervised encoder as how much better the model that trained on
a sample aligns two augmentations of it than a model that did not. Applied to each tower of CLIP, per
sample and per model:

- image side: the mean cosine, under the image encoder, between K augmented views of the image (the
  training crops and flips; every model sees the same views);
- text side: the mean cosine, under the text encoder, between the sample's captions, taken pairwise
  (only samples with two or more captions: a caption has no other augmentation here).

Each is turned into memorization as CLIPMem is: the mean over the models that trained on the sample
minus the mean over those that did not (``ScoringContext.training`` / ``heldout``). The paper argues
the text encoder contributes more (its Table 1: more captions per image lower CLIPMem at least as much
as more generated images). Caveat: views and paraphrases are different augmentations, so the two
figures share a unit (a cosine difference) but not a difficulty; the study reports both, their
SSLMem-normalised forms, and a paired test on the samples that have both.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pandas as pd
import torch
from scipy import stats

from ..atomic import write_parquet
from ..cache import Run
from ..data import Dataset, load_image
from ..device import autocast
from ..errors import ClipmemError
from ..models import ClipBundle
from ..scores import ScoringContext
from ..splits import membership
from .base import Condition, Experiment, ExperimentSettings, Study
from .utility import load_models

MAX_CAPTIONS = 5
BATCH = 64


class EncodersStudy(Study):
    name = "encoders"
    axis = "run"
    description = "per-encoder memorization (image views, caption paraphrases), SSLMem-style"

    def check(self, settings: ExperimentSettings, dataset: Dataset) -> None:
        if max(len(c) for c in dataset.samples["captions"]) < 2:
            raise ClipmemError(
                f"{settings.data} has one caption per sample: the text side needs two or more captions per sample"
            )

    def conditions(self, experiment: Experiment, seed: int) -> list[Condition]:
        return [Condition("base", 0)]

    def measure(self, experiment: Experiment, seed: int, condition: Condition, run: Run) -> dict[str, Any]:
        per_sample = encoder_memorization(run, experiment.device)
        write_parquet(experiment.folder / "encoders" / f"{run.name}.parquet", per_sample)
        return summarise_encoders(per_sample)


def encoder_memorization(run: Run, device: torch.device) -> pd.DataFrame:
    """Per sample: image-side and text-side memorization (NaN where a side cannot be measured)."""
    root = run.dataset_root
    if root is None:
        raise ClipmemError(f"run {run.name} does not record where its images are")
    scores = run.scores
    images = [load_image(root, p) for p in scores["filepath"]]
    captions = [list(c)[:MAX_CAPTIONS] for c in scores["captions"]]
    views = max(2, int(run.manifest.config.get("augmentations") or 2))
    seed = int(run.manifest.config.get("seed") or 0)
    bundles = load_models(run, device)
    image_align = np.stack([_image_self_alignment(b, images, views, seed, device) for b in bundles.values()])
    text_align = np.stack([_text_self_alignment(b, captions, device) for b in bundles.values()])
    trained = np.stack(list(membership(scores["split"].to_numpy(), run.manifest.protocol).values()))
    nan = np.full(trained.shape, np.nan)
    ctx = ScoringContext(frame=scores, trained=trained, align=nan, pair_cosine=nan)
    return pd.DataFrame(
        {
            "sample_id": scores["sample_id"],
            "image_mem": ctx.training(image_align) - ctx.heldout(image_align),
            "text_mem": ctx.training(text_align) - ctx.heldout(text_align),
        }
    )


def _mean_pairwise_cosine(embeddings: torch.Tensor) -> torch.Tensor:
    """(n, k, d) unit vectors -> (n,) mean cosine over the k(k-1) ordered pairs of distinct rows."""
    k = embeddings.shape[1]
    total = embeddings.sum(dim=1)
    return ((total * total).sum(dim=1) - k) / (k * (k - 1))


@torch.no_grad()
def _image_self_alignment(bundle: ClipBundle, images: list, views: int, seed: int, device: torch.device) -> np.ndarray:
    bundle.model.eval()
    torch.manual_seed(seed)  # every model sees the very same views
    result = np.empty(len(images), dtype=np.float32)
    for start in range(0, len(images), BATCH):
        batch = images[start : start + BATCH]
        pixels = torch.stack([bundle.train_transform(im) for im in batch for _ in range(views)])
        with autocast(device):
            embedded = bundle.model.encode_image(pixels.to(device), normalize=True).float()
        result[start : start + len(batch)] = _mean_pairwise_cosine(embedded.view(len(batch), views, -1)).cpu().numpy()
    return result


@torch.no_grad()
def _text_self_alignment(bundle: ClipBundle, captions: list[list[str]], device: torch.device) -> np.ndarray:
    """Mean pairwise cosine between a sample's captions; NaN for samples with a single caption."""
    bundle.model.eval()
    result = np.full(len(captions), np.nan, dtype=np.float32)
    by_count: dict[int, list[int]] = {}
    for row, options in enumerate(captions):
        if len(options) >= 2:
            by_count.setdefault(len(options), []).append(row)
    for count, rows in by_count.items():
        for start in range(0, len(rows), BATCH):
            chunk = rows[start : start + BATCH]
            tokens = bundle.tokenizer([c for r in chunk for c in captions[r]])
            with autocast(device):
                embedded = bundle.model.encode_text(tokens.to(device), normalize=True).float()
            result[chunk] = _mean_pairwise_cosine(embedded.view(len(chunk), count, -1)).cpu().numpy()
    return result


def summarise_encoders(per_sample: pd.DataFrame) -> dict[str, float]:
    """Mean memorization per encoder, SSLMem-normalised means, and a paired test where both are measured."""
    image, text = per_sample["image_mem"].to_numpy(np.float64), per_sample["text_mem"].to_numpy(np.float64)
    both = np.isfinite(image) & np.isfinite(text)
    test = stats.ttest_rel(text[both], image[both]) if both.sum() >= 2 else None
    return {
        "image_mem": _mean(image),
        "text_mem": _mean(text),
        "image_mem_norm": _mean(_normalised(image)),
        "text_mem_norm": _mean(_normalised(text)),
        "image_mem_paired": _mean(image[both]),
        "n_text_samples": int(both.sum()),
        "text_minus_image_t": float(test.statistic) if test is not None else math.nan,
        "text_minus_image_p": float(test.pvalue) if test is not None else math.nan,
    }


def _normalised(values: np.ndarray) -> np.ndarray:
    """values / (max − min) over the finite ones, as SSLMem normalises."""
    finite = values[np.isfinite(values)]
    spread = float(finite.max() - finite.min()) if finite.size else 0.0
    return values / spread if spread > 0 else np.full_like(values, np.nan)


def _mean(values: np.ndarray) -> float:
    finite = values[np.isfinite(values)]
    return float(finite.mean()) if finite.size else math.nan
