"""What models see of a sample: alignment over K augmented views, and centre-view embeddings.

A(h, x, y) = mean_k cos(h_img(x'_k), h_txt(y'_k)) on L2-normalised embeddings, where x'_k is a random
resized crop + flip of the image and y'_k one of the sample's captions. Every model sees exactly the
same K views of a sample, so differences such as A(f) - A(g) reflect the models, not the dice. The
scores built on these live in ``clipmem_core.scores``.

Under ``torchrun`` the batches are dealt out to the processes (batch b to process b mod P). Each batch's
views are drawn from its own seed, (run seed, b), so a sample gets the same views whatever the number of
processes, and P processes compute exactly what one computes.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, NamedTuple

import numpy as np
import torch
from PIL import Image
from tqdm.auto import tqdm

from . import distributed
from .device import autocast, seed_cpu_draws

if TYPE_CHECKING:  # an annotation only: importing models would load open_clip wherever scoring is imported
    from .models import ClipBundle


def _batches(n: int, batch_size: int, desc: str, rank: int = 0, world: int = 1):
    """Start rows of this process's batches (batch b belongs to process b mod world), with a progress bar."""
    starts = range(rank * batch_size, n, world * batch_size)
    return tqdm(starts, desc=desc, unit="batch", leave=False, disable=rank != 0)


def shard_rows(n: int, batch_size: int, rank: int, world: int) -> np.ndarray:
    """The rows process ``rank`` of ``world`` computes: those of its batches (see `_batches`)."""
    return (np.arange(n) // batch_size) % world == rank


@torch.no_grad()
def _encode(
    model: torch.nn.Module,
    images: torch.Tensor | None,
    tokens: torch.Tensor | None,
    device: torch.device,
    precision: str = "auto",
) -> tuple[torch.Tensor | None, torch.Tensor | None]:
    with autocast(device, precision):
        img = model.encode_image(images.to(device), normalize=True).float() if images is not None else None
        txt = model.encode_text(tokens.to(device), normalize=True).float() if tokens is not None else None
    return img, txt


EMBED_BATCH = 256  # rows per batch of centre-view embeddings (under torchrun, dealt out to the ranks)


@torch.no_grad()
def embed_pairs(
    model: torch.nn.Module,
    images: Sequence[Image.Image],
    captions: Sequence[str],
    transform: Callable,
    tokenizer: Callable,
    *,
    device: torch.device,
    precision: str = "auto",
    batch_size: int = EMBED_BATCH,
    desc: str = "embed",
    rank: int = 0,
    world: int = 1,
) -> tuple[np.ndarray, np.ndarray]:
    """Un-augmented, L2-normalised image and text embeddings, one row per pair.

    With ``world`` > 1 only the rows of ``shard_rows(len(images), batch_size, rank, world)`` are computed;
    the others are left as zeros for `distributed.gather_rows` to fill.
    """
    model.eval()
    image_rows: np.ndarray | None = None
    text_rows: np.ndarray | None = None
    for start in _batches(len(images), batch_size, desc, rank, world):
        stop = start + batch_size
        pixels = torch.stack([transform(im) for im in images[start:stop]])
        img, txt = _encode(model, pixels, tokenizer(list(captions[start:stop])), device, precision)
        if image_rows is None:
            image_rows = np.zeros((len(images), img.shape[1]), dtype=np.float32)
            text_rows = np.zeros((len(images), txt.shape[1]), dtype=np.float32)
        image_rows[start:stop], text_rows[start:stop] = img.cpu().numpy(), txt.cpu().numpy()
    if image_rows is None:  # this process got no batch: the right widths, all zeros
        img, txt = _encode(model, torch.stack([transform(images[0])]), tokenizer([captions[0]]), device, precision)
        image_rows = np.zeros((len(images), img.shape[1]), dtype=np.float32)
        text_rows = np.zeros((len(images), txt.shape[1]), dtype=np.float32)
    return image_rows, text_rows


def embed_gathered(
    bundle: ClipBundle,
    images: Sequence[Image.Image],
    captions: Sequence[str],
    *,
    device: torch.device,
    desc: str,
    precision: str = "auto",
) -> tuple[np.ndarray, np.ndarray] | tuple[None, None]:
    """`embed_pairs` of the bundle's model over every process of a torchrun, each embedding its share of the
    batches: rank 0 gets every row, the other ranks (None, None). One process embeds them all."""
    world = distributed.world_size()
    pairs = embed_pairs(
        bundle.model,
        images,
        captions,
        bundle.eval_transform,
        bundle.tokenizer,
        device=device,
        precision=precision,
        desc=desc,
        rank=distributed.rank(),
        world=world,
    )
    shards = [shard_rows(len(images), EMBED_BATCH, r, world) for r in range(world)]
    return tuple(distributed.gather_rows(part, shards) for part in pairs)


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
    precision: str = "auto",
    batch_size: int = 64,
    rank: int = 0,
    world: int = 1,
) -> ViewScores:
    """Per-view cosines (n, views) for every model, all models scoring the same augmented views.

    The mean view embedding of each image comes for free: on openclipart it made every neighbourhood
    signal more accurate than the single centre view (a crop-averaged image is less sensitive to layout).
    With ``world`` > 1 only this process's batches are computed (`shard_rows`); other rows stay NaN.
    """
    for model in models.values():
        model.eval()
    cosines = {name: np.full((len(images), views), np.nan, dtype=np.float32) for name in models}
    image_means: dict[str, np.ndarray] = {}
    for start in _batches(len(images), batch_size, f"score {views} views", rank, world):
        batch = start // batch_size
        seed_cpu_draws(seed * 1_000_003 + batch)  # the transforms draw from torch's CPU generator
        rng = np.random.default_rng((seed, batch))
        batch_images, batch_captions = images[start : start + batch_size], captions[start : start + batch_size]
        pixels = torch.stack([transform(im) for im in batch_images for _ in range(views)])
        chosen = [opts[rng.integers(len(opts))] for opts in batch_captions for _ in range(views)]
        # A sample with one caption has the same text in all K views: encode each distinct text once.
        tokens, text_of_view = torch.unique(tokenizer(chosen), dim=0, return_inverse=True)
        for name, model in models.items():
            img, distinct_txt = _encode(model, pixels, tokens, device, precision)
            txt = distinct_txt[text_of_view.to(distinct_txt.device)]
            cos = (img * txt).sum(dim=1).view(len(batch_images), views)
            cosines[name][start : start + len(batch_images)] = cos.cpu().numpy()
            mean = torch.nn.functional.normalize(img.view(len(batch_images), views, -1).mean(dim=1), dim=-1)
            if name not in image_means:
                image_means[name] = np.full((len(images), mean.shape[1]), np.nan, dtype=np.float32)
            image_means[name][start : start + len(batch_images)] = mean.cpu().numpy()
    for name, model in models.items():
        if name not in image_means:  # this process got no batch: the right width, all NaN
            width = _encode(model, torch.stack([transform(images[0])]), None, device, precision)[0].shape[1]
            image_means[name] = np.full((len(images), width), np.nan, dtype=np.float32)
    return ViewScores(cosines, image_means)


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
