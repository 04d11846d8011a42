"""Contrastive training of one CLIP model: open_clip's ClipLoss (or, with ``mask_duplicate_captions``, the
same loss with same-caption pairs left out of each other's negatives: loss.py), AdamW, warm-up + cosine schedule.

f and g are trained by the same function with the same config and seed, so that the only
difference between them is their data (S_C or S_I). A checkpoint is written every epoch; with
``resume`` training continues from the last one, so a killed run loses at most one epoch.

Under torchrun the model is wrapped in DistributedDataParallel and ``batch_size`` stays the global
batch: each of the P processes takes batch_size / P pairs a step, and the loss gathers every process's
embeddings (open_clip's ClipLoss with ``gather_with_grad``), so each step sees the same global batch of
negatives as a single process. The data order comes from a DistributedSampler in every case (one replica
in a single process) and each pair's augmentation and caption draw are seeded by (seed, epoch, index), so
a step trains on the same pairs, with the same views, whatever the number of processes.
"""

from __future__ import annotations

import errno
import logging
import math
import os
import re
import shutil
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
from open_clip.loss import ClipLoss
from PIL import Image
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader, Dataset, DistributedSampler
from tqdm.auto import tqdm

from . import distributed
from .atomic import atomic_path
from .config import CHECKPOINT_EVERY_S
from .device import autocast, seed_cpu_draws
from .errors import ClipmemError
from .loss import duplicate_captions, masked_clip_loss, pair_losses
from .models import ClipBundle, read_checkpoint

log = logging.getLogger("clipmem")


@dataclass(frozen=True)
class TrainConfig:
    epochs: int
    batch_size: int
    lr: float
    weight_decay: float = 0.1
    warmup_steps: int = 50
    seed: int = 0
    num_workers: int = 0
    text_noise: float = 0.0  # σ of the Gaussian noise on the normalised text embeddings (see add_text_noise)
    caption_dropout: float = 0.0  # chance that each part of a caption is left out of a draw (drop_caption_parts)
    mask_duplicate_captions: bool = False  # same-caption pairs of a batch are not each other's negatives (loss.py)
    checkpoint_every: float = CHECKPOINT_EVERY_S  # seconds between resume checkpoints; 0: every epoch
    precision: str = "auto"  # the forward passes' precision (device.autocast): auto, fp32 or bf16


@dataclass
class PairLosses:
    """Each training pair's loss summed over the steps that drew it, and how many did: two numbers a pair,
    whatever the number of epochs, so that it fits in memory and in the checkpoint at any scale."""

    sums: np.ndarray  # float64, one per pair
    counts: np.ndarray  # int32, one per pair

    @classmethod
    def empty(cls, pairs: int) -> PairLosses:
        return cls(np.zeros(pairs, np.float64), np.zeros(pairs, np.int32))

    def add(self, rows: np.ndarray, losses: np.ndarray) -> None:
        """One step's losses; ``rows`` are distinct within a step (a sampler draws each pair once an epoch)."""
        self.sums[rows] += losses
        self.counts[rows] += 1

    def mean(self) -> np.ndarray:
        """Each pair's mean loss over the epochs that drew it; NaN for a pair never drawn."""
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(self.counts > 0, self.sums / self.counts, np.nan).astype(np.float32)


# Called after an epoch: (epoch, the model, each pair's losses so far; the sums and counts are cumulative).
EpochCallback = Callable[[int, torch.nn.Module, PairLosses], None]


@dataclass
class TrainResult:
    epoch_losses: list[float] = field(default_factory=list)
    seconds: float = 0.0  # the whole training's, a resumed one's earlier sessions included
    earlier_seconds: float = 0.0  # what the epochs a resume skipped took in earlier sessions
    resumed_from_epoch: int | None = None
    pair_losses: PairLosses | None = None  # set by train_clip


class PairDataset(Dataset):
    """Image–caption pairs; each draw picks one of the sample's captions (multi-caption sampling), and
    leaves parts of it out when ``caption_dropout`` is set.

    The random crop and the caption of pair ``i`` in epoch ``epoch`` are drawn from an RNG seeded by
    (seed, epoch, i), not from the process's RNG stream: which process (rank, loader worker) draws a pair
    then does not change what it draws, so runs on 1 and on P processes train on the same views.
    """

    def __init__(
        self,
        images: Sequence[Image.Image],
        captions: Sequence[Sequence[str]],
        transform: Callable,
        tokenizer: Callable,
        seed: int = 0,
        caption_dropout: float = 0.0,
    ):
        self.images, self.captions = images, captions
        self.caption_dropout = caption_dropout
        self.transform, self.tokenizer = transform, tokenizer
        self.seed, self.epoch = seed, 0

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor, int]:
        """The pair's view, its tokenised caption, and ``i`` (which pair it was, for its per-pair loss)."""
        with torch.random.fork_rng(devices=[]):
            seed_cpu_draws(((self.seed * 1_000_003 + self.epoch) * 1_000_003 + i) % 2**63)
            options = self.captions[i]
            caption = options[int(torch.randint(len(options), ()))] if len(options) > 1 else options[0]
            if self.caption_dropout:
                caption = drop_caption_parts(caption, self.caption_dropout)
            return self.transform(self.images[i]), self.tokenizer([caption])[0], i


_PART_SEPARATOR = re.compile(r"([,;:])")


def drop_caption_parts(caption: str, probability: float) -> str:
    """Leave each separated part of ``caption`` (its title, each keyword) out with ``probability``; at
    least one part stays, and the kept ones keep their order and separators. Blank parts ("a,,b", a
    trailing colon) are never the one kept. Uses torch's RNG.

    Why: a caption drawn differently every epoch is harder to memorize as a whole. The idea is that a
    correct caption's parts each still describe the image, so the model still learns the pair, while a
    wrong caption has to be memorized in many versions and stays harder to fit, so that its training
    loss and training-side scores set it apart more clearly. On openclipart every signal gained
    (docs/detection.md, "Caption dropout"). It is the paper's "several captions per image" made from one.
    """
    pieces = _PART_SEPARATOR.split(caption)
    parts, separators = pieces[0::2], ["", *pieces[1::2]]
    candidates = [i for i, part in enumerate(parts) if part.strip()]
    if len(candidates) < 2:
        return caption
    keep = torch.rand(len(candidates)) >= probability
    if not keep.any():
        keep[int(torch.randint(len(candidates), ()))] = True
    kept = [i for i, kept_it in zip(candidates, keep.tolist()) if kept_it]
    return (parts[kept[0]] + "".join(separators[i] + parts[i] for i in kept[1:])).strip()


def add_text_noise(text_features: torch.Tensor, sigma: float) -> torch.Tensor:
    """The text-noise mitigation: L2-normalised text embeddings plus N(0, σ²) noise on every coordinate.

    Added after normalisation and not normalised again, so σ means the same in every model and at every
    step: the image embedding has unit norm, so each image–text cosine the loss sees moves by exactly
    N(0, σ²), whatever the embedding width. Before normalisation the raw norms drift during training and
    differ between architectures, so a fixed σ would be a different strength each time. Training only.
    """
    if sigma <= 0:
        return text_features
    return text_features + sigma * torch.randn_like(text_features)


def warmup_cosine(warmup_steps: int, total_steps: int) -> Callable[[int], float]:
    """LR multiplier: linear warm-up, then cosine decay to zero."""

    def factor(step: int) -> float:
        if step < warmup_steps:
            return (step + 1) / max(1, warmup_steps)
        progress = (step - warmup_steps) / max(1, total_steps - warmup_steps)
        return 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))

    return factor


def _numpy_rng_state() -> dict[str, torch.Tensor]:
    """numpy's global RNG state as tensors, so a checkpoint loads with ``weights_only=True``."""
    _, keys, pos, has_gauss, cached_gaussian = np.random.get_state()
    return {
        "keys": torch.from_numpy(keys.astype(np.int64)),
        "pos": torch.tensor(pos, dtype=torch.int64),
        "has_gauss": torch.tensor(has_gauss, dtype=torch.int64),
        "cached_gaussian": torch.tensor(cached_gaussian, dtype=torch.float64),
    }


def _set_numpy_rng_state(state: dict[str, torch.Tensor]) -> None:
    keys = state["keys"].numpy().astype(np.uint32)
    np.random.set_state(("MT19937", keys, int(state["pos"]), int(state["has_gauss"]), float(state["cached_gaussian"])))


def build_optimizer(model: torch.nn.Module, *, lr: float, weight_decay: float) -> torch.optim.AdamW:
    """AdamW as every clipmem training uses it, fused into one kernel per step.

    Why fused: unfused, each step runs a dozen tensor operations per parameter, each allocating a temporary
    as large as the parameter; the 49,408-token embedding table makes those 25 MB each, and on CPU the
    optimizer took a tenth of a training step (docs/benchmarks.md, "Fused AdamW"). The update is the same
    formula, rounded differently in the last bit.
    """
    return torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=weight_decay, fused=True)


def _save_checkpoint(
    path: Path,
    model,
    optimizer,
    scheduler,
    epoch: int,
    result: TrainResult,
    config: TrainConfig,
    seconds: float,
) -> None:
    """Everything a resume needs, as tensors and plain values only (no pickled objects): the file loads
    with ``weights_only=True``, so a tampered checkpoint cannot run code, and it doubles as an
    ``--init-checkpoint`` (its ``model`` entry is a plain state dict)."""
    state = {
        "model": model.state_dict(),
        "optimizer": optimizer.state_dict(),
        "scheduler": scheduler.state_dict(),
        "epoch": epoch,
        "seconds": float(seconds),  # training time up to here, over every session: a resumed run reports it all
        "losses": [float(x) for x in result.epoch_losses],
        "pair_loss_sums": torch.from_numpy(result.pair_losses.sums),
        "pair_loss_counts": torch.from_numpy(result.pair_losses.counts),
        "config": asdict(config),
        "torch_rng": torch.get_rng_state(),
        "numpy_rng": _numpy_rng_state(),
    }
    with atomic_path(path) as tmp:
        try:
            torch.save(state, tmp)
        except RuntimeError:  # its C++ writer's words: "basic_ios::clear: iostream error", "unexpected pos"
            if shutil.disk_usage(tmp.parent).free >= FULL_DISK_BYTES:
                raise
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path)) from None


FULL_DISK_BYTES = 16 * 2**20  # torch.save's failure is the disk's when less than this is left beside the file


def _restore(path: Path, model, optimizer, scheduler, result: TrainResult) -> int:
    """Load a checkpoint into the model, optimizer, scheduler, RNGs and ``result``; return its epoch."""
    state = read_checkpoint(path)
    try:
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        torch.set_rng_state(state["torch_rng"])
        _set_numpy_rng_state(state["numpy_rng"])
        result.epoch_losses = [float(x) for x in state["losses"]]
        sums, counts = state["pair_loss_sums"].numpy(), state["pair_loss_counts"].numpy()
        if sums.shape != result.pair_losses.sums.shape or counts.shape != sums.shape:
            raise ValueError(f"it holds losses of {len(sums)} pairs, not {len(result.pair_losses.sums)}")
        result.pair_losses = PairLosses(sums, counts)
        result.earlier_seconds = float(state.get("seconds", 0.0))  # checkpoints before 2026-12-06 lack it
        return int(state["epoch"])
    except (KeyError, TypeError, ValueError, RuntimeError, AttributeError) as exc:
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise ClipmemError(
            f"checkpoint {path} cannot resume this training ({first}); delete it to train this model again"
        ) from None


def _loader(dataset: PairDataset, config: TrainConfig) -> DataLoader:
    """This process's share of every global batch: batch_size / P pairs a step from a seeded
    DistributedSampler (P = 1 in a single process), dropping the last incomplete global batch."""
    processes, n = distributed.world_size(), len(dataset)
    distributed.check_batch_size(config.batch_size, processes)
    global_batch = min(config.batch_size, n - n % processes)  # fewer pairs than one batch: one step of all
    if global_batch == 0:
        raise ClipmemError(f"{n} training pairs cannot be split over {processes} processes")
    sampler = DistributedSampler(
        dataset, num_replicas=processes, rank=distributed.rank(), shuffle=True, seed=config.seed, drop_last=True
    )
    return DataLoader(
        dataset,
        batch_size=global_batch // processes,
        sampler=sampler,
        drop_last=True,
        num_workers=config.num_workers,
    )


def few_pairs_note(label: str, pairs: int, batch_size: int, steps: int, processes: int = 1) -> str:
    """Said when a model has fewer pairs than one batch: every epoch is then a single step over all of them,
    and a run took --batch-size 1000 over folds of 100 pairs without a word (its loss ended at 2.96, not 1.69
    at the preset's size). On P processes a step takes a multiple of P pairs, so the rest are left out of
    each step, and such a run differs from a one-process run, which the README otherwise promises it does
    not: that is said too."""
    left_out = pairs % processes
    if not left_out:
        return (
            f"{label}: {pairs:,} training pairs, fewer than --batch-size {batch_size:,}: each epoch is one step "
            f"over all of them ({steps:,} steps in all); a --batch-size below {pairs:,} takes more, smaller steps"
        )
    return (
        f"{label}: {pairs:,} training pairs, fewer than --batch-size {batch_size:,}: each epoch is one step over "
        f"{pairs - left_out:,} of them, split over {processes} processes ({left_out:,} left out of each step), so "
        f"this run differs from a one-process run of the same settings; a --batch-size of at most "
        f"{pairs - left_out:,} (divisible by {processes}) trains as one process would"
    )


def _start_epoch(loader: DataLoader, epoch: int) -> None:
    """A new permutation and new views each epoch, the same on every rank."""
    loader.sampler.set_epoch(epoch)
    loader.dataset.epoch = epoch


def train_clip(
    bundle: ClipBundle,
    images: Sequence[Image.Image],
    captions: Sequence[Sequence[str]],
    config: TrainConfig,
    checkpoint: Path,
    *,
    device: torch.device,
    resume: bool = False,
    label: str = "train",
    on_epoch: EpochCallback | None = None,
) -> TrainResult:
    """Train ``bundle.model`` in place on the given pairs; return per-epoch mean losses.

    Under torchrun every rank calls it with the same pairs; only rank 0 writes the checkpoint, and on
    resume every rank reads it. ``on_epoch``, if given, is called on rank 0 after each epoch this call
    trains (not the epochs a resume skips), with the epoch, the model and the pair losses so far: what a
    study of training dynamics records (bench/bench_dynamics.py), at no cost to a run without it.
    """
    started = time.perf_counter()
    model = bundle.model.to(device).train()
    loader = _loader(
        PairDataset(images, captions, bundle.train_transform, bundle.tokenizer, config.seed, config.caption_dropout),
        config,
    )
    total_steps = config.epochs * len(loader)
    if config.batch_size > len(images) and distributed.is_main():  # one process says it, not each
        log.warning(few_pairs_note(label, len(images), config.batch_size, total_steps, distributed.world_size()))
    optimizer = build_optimizer(model, lr=config.lr, weight_decay=config.weight_decay)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, warmup_cosine(config.warmup_steps, total_steps))
    loss_fn = ClipLoss(
        local_loss=False,
        gather_with_grad=True,
        cache_labels=True,
        rank=distributed.rank(),
        world_size=distributed.world_size(),
    )
    result, first_epoch = TrainResult(pair_losses=PairLosses.empty(len(images))), 0
    distributed.barrier()  # every rank sees the same checkpoint, or none
    if resume and checkpoint.exists():
        last_epoch = _restore(checkpoint, model, optimizer, scheduler, result)
        first_epoch = result.resumed_from_epoch = last_epoch + 1
        if first_epoch < config.epochs:
            log.info("%s: resuming after epoch %d of %d", label, last_epoch + 1, config.epochs)
        else:  # trained in another process (--parallel-models) or an earlier session: a fresh run said "resuming"
            log.info("%s: all %d epochs trained; loaded from %s", label, config.epochs, checkpoint.name)
    network, last_checkpoint = _network(model, device), time.monotonic()
    bar = _training_bar(label, total_steps, first_epoch * len(loader))
    for epoch in range(first_epoch, config.epochs):
        _start_epoch(loader, epoch)
        losses = []
        bar.set_description(f"{label} epoch {epoch + 1}/{config.epochs}", refresh=False)
        for image, text, index in loader:
            image, text = image.to(device, non_blocking=True), text.to(device, non_blocking=True)
            not_negatives = _not_negatives(text, config)
            with autocast(device, config.precision):
                image_features, text_features, logit_scale = network(image, text)[:3]
                noisy_text = add_text_noise(text_features, config.text_noise)
                if not_negatives is None:
                    loss = loss_fn(image_features, noisy_text, logit_scale)
                else:
                    loss = masked_clip_loss(image_features, noisy_text, logit_scale, not_negatives)
            _record_pair_losses(result.pair_losses, index, image_features, text_features, logit_scale, not_negatives)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            scheduler.step()
            with torch.no_grad():  # as in CLIP: keep the temperature in a sane range
                model.logit_scale.clamp_(0, math.log(100))
            # the loss is over the global batch, so every rank sees the same value and stops together
            losses.append(float(loss.detach()))
            if not math.isfinite(losses[-1]):
                raise ClipmemError(f"{label}: the loss became {losses[-1]} in epoch {epoch + 1}; try a lower --lr")
            bar.set_postfix(loss=f"{losses[-1]:.3f}", refresh=False)
            bar.update()
        result.epoch_losses.append(float(np.mean(losses)))
        if distributed.is_main():
            if _checkpoint_due(epoch, config, seconds_since_last=time.monotonic() - last_checkpoint):
                spent = result.earlier_seconds + time.perf_counter() - started
                _save_checkpoint(checkpoint, model, optimizer, scheduler, epoch, result, config, spent)
                last_checkpoint = time.monotonic()
            if on_epoch is not None:
                on_epoch(epoch, model, result.pair_losses)
    bar.close()
    model.eval()
    result.seconds = result.earlier_seconds + time.perf_counter() - started
    return result


def _training_bar(label: str, total_steps: int, done_steps: int) -> tqdm:
    """One bar for a model's whole training, so its ETA is the model's, not one epoch's; its description
    names the epoch ("train h1 epoch 3/15"), which the Compute page reads from the log."""
    return tqdm(total=total_steps, initial=done_steps, leave=False, unit="batch", disable=not distributed.is_main())


def _checkpoint_due(epoch: int, config: TrainConfig, *, seconds_since_last: float) -> bool:
    """After the last epoch always (a run killed while scoring resumes from the trained model), otherwise
    once ``checkpoint_every`` seconds have passed since the last checkpoint was written (or training began)."""
    return epoch == config.epochs - 1 or seconds_since_last >= config.checkpoint_every


def _not_negatives(tokens: torch.Tensor, config: TrainConfig) -> torch.Tensor | None:
    """The pairs of this step's global batch that are not each other's negatives, or None (all are)."""
    if not config.mask_duplicate_captions:
        return None
    return duplicate_captions(distributed.gather_batch(tokens))


def _record_pair_losses(
    record: PairLosses,
    index: torch.Tensor,
    image_features: torch.Tensor,
    text_features: torch.Tensor,
    logit_scale: torch.Tensor,
    not_negatives: torch.Tensor | None,
) -> None:
    """Add this step's per-pair losses (with the step's own ``not_negatives``); under torchrun against the
    global batch, so that every rank records every pair of the step, exactly as a single process would."""
    with torch.no_grad():
        image_all = distributed.gather_batch(image_features.detach().float())
        text_all = distributed.gather_batch(text_features.detach().float())
        rows = distributed.gather_batch(index.to(image_features.device))
        losses = pair_losses(image_all, text_all, logit_scale.detach().float(), not_negatives)
        record.add(rows.cpu().numpy(), losses.cpu().numpy().astype(np.float64))


def _network(model: torch.nn.Module, device: torch.device) -> torch.nn.Module:
    """What the training step calls: the model itself, or under torchrun the model wrapped in
    DistributedDataParallel, whose constructor broadcasts rank 0's weights and whose backward
    all-reduces the gradients. open_clip's ``forward`` returns the normalised image and text embeddings
    and exp(logit_scale), exactly what the loss takes."""
    if not distributed.active():
        return model
    return DistributedDataParallel(model, device_ids=[device] if device.type == "cuda" else None)
