"""What models see of a sample: alignment over K augmented views, and centre-view embeddings.

A(h, x, y) = mean_k cos(h_img(x'_k), h_txt(y'_k)) on L2-normalised embeddings, where x'_k is a random
resized crop + flip of the image and y'_k one of the sample's captions. Every model sees exactly the
same K views of a sample, so differences such as A(f) - A(g) reflect the models, not the dice. The
scores built on these live in ``clipmem_core.scores``.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Mapping, Sequence
from typing import NamedTuple

import numpy as np
import torch
from PIL import Image
from tqdm.auto import tqdm

from .device import autocast


def _batches(n: int, batch_size: int, desc: str):
    return tqdm(range(0, n, batch_size), desc=desc, unit="batch", leave=False, total=(n + batch_size - 1) // batch_size)


@torch.no_grad()
def _encode(
    model: torch.nn.Module, images: torch.Tensor | None, tokens: torch.Tensor | None, device: torch.device
) -> tuple[torch.Tensor | None, torch.Tensor | None]:
    with autocast(device):
        img = model.encode_image(images.to(device), normalize=True).float() if images is not None else None
        txt = model.encode_text(tokens.to(device), normalize=True).float() if tokens is not None else None
    return img, txt


@torch.no_grad()
def embed_pairs(
    model: torch.nn.Module,
    images: Sequence[Image.Image],
    captions: Sequence[str],
    transform: Callable,
    tokenizer: Callable,
    *,
    device: torch.device,
    batch_size: int = 256,
    desc: str = "embed",
) -> tuple[np.ndarray, np.ndarray]:
    """Un-augmented, L2-normalised image and text embeddings, one row per pair."""
    model.eval()
    image_rows, text_rows = [], []
    for start in _batches(len(images), batch_size, desc):
        stop = start + batch_size
        pixels = torch.stack([transform(im) for im in images[start:stop]])
        img, txt = _encode(model, pixels, tokenizer(list(captions[start:stop])), device)
        image_rows.append(img.cpu().numpy())
        text_rows.append(txt.cpu().numpy())
    return np.concatenate(image_rows).astype(np.float32), np.concatenate(text_rows).astype(np.float32)


def pair_cosines(image_embeddings: np.ndarray, text_embeddings: np.ndarray) -> np.ndarray:
    """Row-wise cosine of already-normalised pairs: the plain CLIP score."""
    return np.einsum("ij,ij->i", image_embeddings, text_embeddings).astype(np.float32)


class ViewScores(NamedTuple):
    """What K augmented views give per model: the cosines behind A, and the image's mean view embedding."""

    cosines: dict[str, np.ndarray]  # model -> (n, views)
    image_means: dict[str, np.ndarray]  # model -> (n, dim): mean of the K view embeddings, re-normalised


@torch.no_grad()
def view_alignments(
    models: Mapping[str, torch.nn.Module],
    images: Sequence[Image.Image],
    captions: Sequence[Sequence[str]],
    transform: Callable,
    tokenizer: Callable,
    *,
    views: int,
    seed: int,
    device: torch.device,
    batch_size: int = 64,
) -> ViewScores:
    """Per-view cosines (n, views) for every model, all models scoring the same augmented views.

    The mean view embedding of each image comes for free: on openclipart it made every neighbourhood
    signal more accurate than the single centre view (a crop-averaged image is less sensitive to layout).
    """
    for model in models.values():
        model.eval()
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    cosines = {name: np.empty((len(images), views), dtype=np.float32) for name in models}
    image_means: dict[str, list[np.ndarray]] = {name: [] for name in models}
    for start in _batches(len(images), batch_size, f"score {views} views"):
        batch_images, batch_captions = images[start : start + batch_size], captions[start : start + batch_size]
        pixels = torch.stack([transform(im) for im in batch_images for _ in range(views)])
        chosen = [opts[rng.integers(len(opts))] for opts in batch_captions for _ in range(views)]
        tokens = tokenizer(chosen)
        for name, model in models.items():
            img, txt = _encode(model, pixels, tokens, device)
            cos = (img * txt).sum(dim=1).view(len(batch_images), views)
            cosines[name][start : start + len(batch_images)] = cos.cpu().numpy()
            mean = torch.nn.functional.normalize(img.view(len(batch_images), views, -1).mean(dim=1), dim=-1)
            image_means[name].append(mean.cpu().numpy())
    return ViewScores(cosines, {name: _concat(parts) for name, parts in image_means.items()})


def _concat(parts: list[np.ndarray]) -> np.ndarray:
    return np.concatenate(parts).astype(np.float32) if parts else np.empty((0, 0), dtype=np.float32)


def mean_over_views(views: np.ndarray) -> np.ndarray:
    """A = the mean over the last axis (the K views); rows never scored stay NaN, without a warning."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        return np.nanmean(views, axis=-1)


def normalised(clipmem: np.ndarray) -> np.ndarray:
    """clipmem / (max - min) over its known values (as SSLMem normalises); 0 where all are equal."""
    scored = clipmem[~np.isnan(clipmem)]
    spread = float(scored.max() - scored.min()) if scored.size else 0.0
    result = clipmem / spread if spread > 0 else np.where(np.isnan(clipmem), np.nan, 0.0)
    return result.astype(np.float32)
