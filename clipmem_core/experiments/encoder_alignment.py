"""The encoders study's measurement: each tower's self-alignment under the models that did and did not
train on a sample (see ``encoders`` for the method).

Apart from ``encoders`` because it needs torch: the CLI builds its parser from the experiments package,
and a command such as ``clipmem summary`` should not wait seconds for torch and open_clip to import.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import torch

from ..cache import Run
from ..data import load_image
from ..device import autocast
from ..errors import ClipmemError
from ..models import ClipBundle
from ..scores import ScoringContext
from ..splits import membership
from .utility import load_models

MAX_CAPTIONS = 5  # captions per sample the text side compares
BATCH = 64


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
