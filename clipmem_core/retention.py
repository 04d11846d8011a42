"""Retained alignment: how much of a pair's fit survives once its model goes on to learn other pairs.

Under the full protocol model h_k trains on every fold but k. For this score a copy of h_k then trains a few
more epochs on fold k alone, the pairs it held out, and the cosine of each of its own pairs is measured
again (centre views). A clean pair is supported by the rest of the data: the new pairs teach the same
image–text rule, and its fit stays. A wrong caption was fitted by memorising that one pair: nothing in the
new pairs supports it, and its fit fades. It is second-split forgetting (Maini et al., NeurIPS 2022) applied
to image–caption pairs, but the score is the fit that is *left*, not how fast it went: on openclipart the
drop itself ranked near chance (AUROC 0.40–0.63) while the fit left ranked best of any single score, and in
the combined ranking in place of the training loss it found more mis-captions on every seed. It needs
models that have learned a rule to keep: on tuxpaint's 950 stamps, where a fold model finds the right
caption for 1 to 10 % of unseen images, it ranked near chance and the combined ranking found fewer with it.
So it is opt-in (``--retain-epochs``), for data of thousands of pairs (docs/detection.md, "Retained
alignment").

The copy trains on pairs that the held-out scores are about, so it never gives a held-out score: only the
training-side value of its own pairs is kept, and the copy is dropped.
"""

from __future__ import annotations

import copy
import dataclasses
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from . import distributed
from .atomic import write_npy
from .errors import ClipmemError
from .models import ClipBundle
from .scoring import embed_gathered, pair_cosines
from .train import TrainConfig, train_clip

WARMUP_STEPS = 10  # the continued training's own short warm-up: it starts from trained weights


def continued_config(training: TrainConfig, epochs: int) -> TrainConfig:
    """The continued training: the run's own settings (peak learning rate, batch, caption dropout, seed)
    over ``epochs`` epochs with their own warm-up and cosine decay."""
    if not (isinstance(epochs, int) and epochs >= 1):
        raise ClipmemError(f"retained alignment needs at least 1 epoch of continued training, not {epochs!r}")
    return dataclasses.replace(training, epochs=epochs, warmup_steps=WARMUP_STEPS)


def values_file(folder: Path, tag: str) -> Path:
    """Where a model's retained alignments are saved once measured (a run's checkpoints folder)."""
    return folder / f"{tag}_retained.npy"


def retained_alignment(
    bundle: ClipBundle,
    own: tuple[Sequence[Image.Image], list[str]],
    held_out: tuple[Sequence[Image.Image], list[list[str]]],
    config: TrainConfig,
    folder: Path,
    *,
    tag: str,
    device: torch.device,
) -> np.ndarray | None:
    """The cosine of each of the model's own pairs (images and first captions, ``own``) after a copy of it
    trains ``config.epochs`` epochs on the pairs it held out (``held_out``: images and caption lists).

    Resumable: the continued training checkpoints to ``folder/<tag>_retained.pt``; the result is saved to
    ``folder/<tag>_retained.npy`` and the checkpoint removed, so a resumed run reads the values back. Every
    process of a torchrun calls it; rank 0 gets the values, the others None.
    """
    saved, checkpoint = values_file(folder, tag), folder / f"{tag}_retained.pt"
    if saved.exists():  # a resumed run that measured it before it stopped
        return np.load(saved) if distributed.is_main() else None
    model = copy.deepcopy(bundle.model)
    continued = dataclasses.replace(bundle, model=model)
    train_clip(continued, *held_out, config, checkpoint, device=device, resume=True, label=f"retain {tag}")
    images, captions = own
    image_rows, text_rows = embed_gathered(
        continued, images, captions, device=device, desc=f"retained {tag}", precision=config.precision
    )
    values = None if image_rows is None else pair_cosines(image_rows, text_rows)
    if values is not None:
        write_npy(saved, values)
        checkpoint.unlink(missing_ok=True)
    distributed.barrier()
    return values
