"""compute_clipmem: a whole run, stage by stage, into ``cache/<name>/``.

Stages: ingest -> splits (paper) or folds (full) -> train each model -> retain (full: each model goes on to
its held-out fold, clipmem_core.retention) -> score K views -> embed -> fingerprint the images ->
signals (the score registry) -> index -> project -> thumbnails -> manifest. Every file is written
atomically and the manifest last, so an interrupted run never looks complete; ``resume=True`` picks up
the per-epoch checkpoints of every model.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import pickle
import platform
import resource
import signal
import subprocess
import sys
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, fields, replace
from importlib import metadata
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from PIL import Image

from . import cache, distributed
from .atomic import remove_stale_temps, write_json
from .config import SPEED_ONLY, RunConfig, option_flag
from .data import Dataset, read_dataset, skip_summary, write_skip_report
from .device import pick_device, resolved_precision, slow_precision_warning
from .droplist import Exclusion, apply_drop_list, read_drop_list
from .errors import ClipmemError
from .fingerprints import FINGERPRINT_COLUMN, image_fingerprints
from .formatting import fmt_count
from .image_list import ImageList
from .metrics import MIN_RECALL_PAIRS, retrieval_recall
from .models import ClipBundle, create_clip, cut_captions_note, image_size_of
from .retention import continued_config, retained_alignment
from .scores import ScoringContext, compute_scores
from .scoring import embed_gathered, mean_over_views, normalised, pair_cosines, shard_rows, view_alignments
from .splits import EXTRA, PAPER_MODELS, SHARED, UNUSED, assign_folds, assign_splits, membership
from .stopwatch import Stopwatch
from .train import EpochCallback, PairLosses, TrainConfig, train_clip

log = logging.getLogger("clipmem")
DOWNSCALE_FACTOR = 4  # images are kept at most this many times the model's input size


def versions() -> dict[str, str]:
    names = (
        "clipmem",
        "torch",
        "torchvision",
        "open_clip_torch",
        "faiss-cpu",
        "faiss-gpu-cu12",
        "numpy",
        "pandas",
        "pyarrow",
    )
    found = {"python": platform.python_version()}
    for name in names:
        try:
            found[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return found


def _check_out(out: Path, config: RunConfig, resume: bool) -> cache.Run | None:
    """Cheap checks of ``--out`` before any data is read: the finished run if resuming one, else None."""
    if problem := cache.run_name_problem(out):
        raise ClipmemError(f"--out {out}: {problem}; choose another folder name")
    if out.exists() and not out.is_dir():
        raise ClipmemError(f"--out {out} is a file, not a folder")
    blocking = next((parent for parent in out.parents if parent.exists() and not parent.is_dir()), None)
    if blocking is not None:
        raise ClipmemError(f"--out {out} cannot be made: {blocking} is a file, not a folder")
    if not (out / cache.MANIFEST).exists():
        return None
    if not resume:
        raise ClipmemError(f"{out} already holds a complete run; choose another --out or delete it")
    run = cache.load_run(out)  # killed after the manifest was written: the run is done
    changed = settings_that_differ(run.manifest.config, config.to_dict())
    if changed:
        raise ClipmemError(f"{out} holds a complete run made with other settings ({changed}); choose another --out")
    data_now, data_then = Path(config.data).expanduser().resolve(), Path(run.manifest.dataset.path)
    if data_now != data_then:
        raise ClipmemError(f"{out} holds a complete run made from {data_then}, not {data_now}; choose another --out")
    return run


# Settings a resumed or finished run is not compared on: where it is written and how fast it runs, and the
# data's path (as typed, relative to where it was typed: the data are compared by their content instead)
_NOT_COMPARED = ("out", "device", *SPEED_ONLY, "data", "exclude")


def settings_that_differ(before: dict, now: dict) -> str:
    """ "--epochs 12 then, 10 now; …" for each setting that changes a run's result and differs, else "".
    Why: a refused resume said only "other data or settings", and the user had to guess which."""
    flags = {spec.name: option_flag(spec) for spec in fields(RunConfig)}
    keys = sorted((set(before) | set(now)) - set(_NOT_COMPARED))
    return "; ".join(
        f"{flags.get(key, key)} {before.get(key)!r} then, {now.get(key)!r} now"
        for key in keys
        if json.dumps(before.get(key), default=str) != json.dumps(now.get(key), default=str)
    )


class ResumeMismatch(ClipmemError):
    """A run folder started with other data or settings than the run that would continue it."""


def _refuse_anothers_run(out: Path, state: dict) -> None:
    """Refuse a run with other settings into a folder an experiment made (its state's ``made_by``), even one
    that trained nothing yet: `clipmem run --resume`, as an unfinished run advised, wrote its own settings
    over the experiment's, and the experiment could then never finish it."""
    previous = cache.read_run_state(out)
    owner = previous.get(cache.MADE_BY)
    if owner and previous.get("fingerprint") != state["fingerprint"]:
        raise ClipmemError(f"{out} is a run of {owner}; continue it that way, or choose another --out")


def _prepare_out_dir(out: Path, resume: bool, state: dict) -> None:
    """Refuse to clobber a foreign or unfinished run; on resume, check the data and config are unchanged.

    A folder holding only the run state (a run that failed before training anything) is started afresh,
    so a run refused for its data or options never blocks the corrected rerun.
    """
    state_path = out / cache.STATE_FILE
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ClipmemError(f"cannot make {out}: {exc.strerror or exc}") from None
    locked = cache.claim_run_folder(out)
    running = cache.still_computing(out) if state_path.exists() and not locked else None
    if running:  # asked before anything else: a run still reading its data or in its first minute of training
        # has trained nothing yet, and a second run into the folder started over it, and both said "written"
        raise ClipmemError(f"{out} is still being computed ({running}): wait for it, or stop it first")
    if resume and state_path.exists():
        remove_stale_temps(out)
    _refuse_anothers_run(out, state)
    if not cache.trained_nothing(out):
        if not state_path.exists():
            raise ClipmemError(f"{out} exists and is not a clipmem run; choose another --out")
        if not resume:
            raise ClipmemError(f"{out} holds an unfinished run; add --resume to continue it, or delete it")
        try:
            previous = json.loads(state_path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, ValueError, RecursionError) as exc:
            raise ClipmemError(f"{state_path} is unreadable ({exc}); delete {out} and start again") from None
        if not isinstance(previous, dict) or previous.get("fingerprint") != state["fingerprint"]:
            raise ResumeMismatch(f"{out} was started with {_what_changed(previous, state)}; --resume needs the same")
    try:
        write_json(state_path, state)
    except OSError as exc:
        raise ClipmemError(f"cannot write to {out}: {exc.strerror or exc}") from None


def _report_skipped(dataset: Dataset, out: Path) -> None:
    summary = skip_summary(dataset)
    if summary:
        log.warning("%s; every one is listed in %s", summary, out / cache.SKIPPED)


def _rows_or_why(dataset: Dataset, config: RunConfig) -> tuple[pd.DataFrame, dict[str, np.ndarray]]:
    """``assign_rows``, its refusal (too few samples for the splits) saying what was skipped: "the dataset
    has 1" alone hid that 4 of its 5 rows had been left out, and why."""
    try:
        rows, masks = assign_rows(dataset.samples, config, dataset.root)
    except ClipmemError as exc:
        summary = skip_summary(dataset)
        raise ClipmemError(f"{exc} ({summary})" if summary else str(exc)) from None
    unused = len(dataset.samples) - len(rows)
    if unused:  # 234 samples read and 232 scored, and nothing said of the 2
        note = (
            f"{fmt_count(unused, 'sample')} of {len(dataset.samples):,} fell outside the four --split-sizes "
            "(fractions are rounded down) and were left out of every split, unscored; --protocol full scores "
            "every sample"
        )
        log.warning("%s", note)
        dataset.warnings.append(note)  # with the run's other notes on its data: summary and the Overview
    return rows, masks


def _what_changed(previous: object, state: dict) -> str:
    """What a refused resume names: the settings that differ, else the data or the drop list."""
    before = previous.get("config") if isinstance(previous, dict) else None
    if not isinstance(before, dict):
        return "other data or settings (delete the folder to start again)"
    changed = settings_that_differ(before, state["config"])
    if changed:
        return f"other settings: {changed}"
    checkpoint = " or --init-checkpoint file" if state["config"].get("init_checkpoint") else ""
    return (
        f"other data, another --exclude list{checkpoint}: a sample, a caption or a file's size or modification "
        "time differs (a copy made without keeping the times, such as `cp -r` rather than `cp -a`, counts)"
    )


def _read_data(config: RunConfig) -> Dataset:
    return read_dataset(
        config.data,
        progress=distributed.is_main(),
        img_key=config.img_key,
        caption_key=config.caption_key,
        on_error=config.on_error,
        allow_outside_root=config.allow_outside_root,
        extract_shards=config.extract_shards,
    )


def _check_finished_inputs(run: cache.Run, config: RunConfig) -> None:
    """Refuse to hand back a finished run for ``--resume`` when its data or drop list have changed since: it
    said "already complete" and returned the run made without the --exclude list just added (or from the
    captions before an edit), as if it were the run asked for. Reads the data again to tell."""
    excluded = read_drop_list(config.exclude) if config.exclude else None
    dataset = _read_data(config)
    exclusion = select_samples(dataset, config, excluded)
    then = run.manifest.dataset
    digest_now = exclusion.digest if exclusion else ""
    recorded = bool(then.exclude_digest) or not run.manifest.config.get("exclude")  # older runs kept no digest
    if recorded and then.exclude_digest != digest_now:
        made_with = (
            "another --exclude list"
            if then.exclude_digest and digest_now
            else ("an --exclude list, and none is given now" if then.exclude_digest else "no --exclude list")
        )
        raise ClipmemError(f"{run.path} holds a complete run made with {made_with}; choose another --out")
    if then.content_hash and then.content_hash != dataset.content_hash:
        raise ClipmemError(
            f"{run.path} holds a complete run made from other data: a sample, a caption or an image file's size or "
            "modification time differs since; choose another --out"
        )


def _fingerprint(config: RunConfig, dataset: Dataset, exclusion: Exclusion | None) -> str:
    """The data's content, the settings and the drop list's ids (not their paths): what a resumed run must
    share. Not the data's path as typed: the same data named from another folder is the same run."""
    settings = {key: value for key, value in config.to_dict().items() if key not in _NOT_COMPARED}
    excluded = exclusion.digest if exclusion else "-"
    fingerprint = f"{dataset.content_hash}:{excluded}:{sorted(settings.items())}"
    if config.init_checkpoint:  # its path alone let a resumed run start its other models from new weights
        found = Path(config.init_checkpoint).expanduser().stat()
        fingerprint += f":{found.st_size}:{found.st_mtime_ns}"
    return fingerprint


def select_samples(dataset: Dataset, config: RunConfig, excluded: frozenset[str] | None) -> Exclusion | None:
    """Apply the run's sample-level options to ``dataset.samples`` in place: drop the ``--exclude`` list's ids
    (``excluded``, read before the data: a bad list was refused only after a long ingest), before folds or
    splits are drawn, and keep the first ``--max-captions`` captions of each sample."""
    exclusion = None
    if excluded is not None:
        dataset.samples, exclusion = apply_drop_list(dataset.samples, excluded, f"--exclude {config.exclude}")
    if config.max_captions:
        dataset.samples["captions"] = [list(c[: config.max_captions]) for c in dataset.samples["captions"]]
    return exclusion


def image_files(samples: pd.DataFrame, root: Path | None) -> pd.Series:
    """Each row's image file as the file system knows it (device and inode under ``root``), so that rows
    naming one file by two paths share it: through a symbolic link to the images folder, or a hard link, an
    image's rows had gone to both folds. A path that cannot be asked so (a shard's member, a missing file)
    stands for itself."""
    paths = samples["filepath"].astype(str)
    if root is None:
        return paths
    identity = {}
    for path in paths.unique():
        try:
            found = os.stat(root / path)
            identity[path] = f"{found.st_dev}:{found.st_ino}"
        except (OSError, ValueError):
            identity[path] = path
    return paths.map(identity)


def assign_rows(
    samples: pd.DataFrame, config: RunConfig, root: Path | None = None
) -> tuple[pd.DataFrame, dict[str, np.ndarray]]:
    """The run's rows with their split, and which rows each model trains on (model tag -> mask). Rows that
    share an image file (``image_files`` under ``root``) stay in one split or fold (a table with a row per
    caption lists an image on several rows, and a held-out model had trained on the image under another
    caption)."""
    n = len(samples)
    images = image_files(samples, root)
    repeated = int(images.duplicated(keep=False).sum())
    if repeated:
        log.info("%d rows share their image with another row: each image's rows are kept together", repeated)
    if config.protocol == "paper":
        labels = assign_splits(n, config.split_sizes, config.seed, groups=images)
    else:
        labels = assign_folds(n, config.folds, config.seed, groups=images)
    frame = samples.loc[labels != UNUSED].reset_index(drop=True)
    frame.insert(1, "split", labels[labels != UNUSED])
    return frame, membership(frame["split"].to_numpy(), config.protocol)


def train_config(config: RunConfig) -> TrainConfig:
    """The training settings of each of the run's models."""
    return TrainConfig(
        epochs=config.epochs,
        batch_size=config.batch_size,
        lr=config.lr,
        warmup_steps=config.warmup_steps,
        seed=config.seed,
        num_workers=config.num_workers,
        text_noise=config.text_noise,
        caption_dropout=config.caption_dropout,
        mask_duplicate_captions=config.mask_duplicate_captions,
        checkpoint_every=config.checkpoint_every,
        precision=config.precision,
    )


def _train_one(
    tag: str,
    config: RunConfig,
    images: list[Image.Image],
    captions: list[list[str]],
    out: Path,
    device: torch.device,
    on_epoch: EpochCallback | None = None,
):
    torch.manual_seed(config.seed)  # every model starts from the same weights
    bundle = create_clip(config.model, init_checkpoint=config.init_checkpoint, device=device)
    checkpoint = out / cache.CHECKPOINT_DIR / f"{tag}_last.pt"
    result = train_clip(
        bundle,
        images,
        captions,
        train_config(config),
        checkpoint,
        device=device,
        resume=True,
        label=f"train {tag}",
        on_epoch=on_epoch,
    )
    log.info("train %s: %d pairs, final loss %.4f", tag, len(images), result.epoch_losses[-1])
    return bundle, result


@dataclass(frozen=True)
class EpochEnd:
    """What an observer of a run's training sees after each epoch of one model (bench/bench_dynamics.py)."""

    tag: str  # the model, e.g. "h0"
    rows: np.ndarray  # the run's rows it trains on, in the order of ``pair_losses``
    epoch: int  # from 0
    model: torch.nn.Module
    pair_losses: PairLosses  # each pair's losses summed over the epochs so far, and how many


def _epoch_callback(on_epoch: Callable[[EpochEnd], None] | None, tag: str, rows: np.ndarray) -> EpochCallback | None:
    if on_epoch is None:
        return None
    return lambda epoch, model, pair_losses: on_epoch(EpochEnd(tag, rows, epoch, model, pair_losses))


def model_devices(device: torch.device, count: int) -> list[torch.device]:
    """One device per model trained in parallel: CUDA GPUs in turn when no GPU was named, else ``device``."""
    if device.type == "cuda" and device.index is None and torch.cuda.device_count() > 1:
        return [torch.device("cuda", i % torch.cuda.device_count()) for i in range(count)]
    return [device] * count


def _train_in_parallel(
    config: RunConfig, models: dict[str, np.ndarray], images: ImageList, captions: list[list[str]], device: torch.device
) -> dict[str, dict]:
    """Train every model at once, each in its own process that writes its checkpoints; what each reported.

    The models are independent (the paper's f and g, or the full protocol's K), so this is the cheapest
    scale-out there is: on a machine with several GPUs each trains on its own. Each process
    (`clipmem_core.train_worker`) decodes its own images. A process that fails leaves the others to
    finish and the run stops with an error; every finished epoch is in the checkpoints, so ``--resume``
    continues. Under torchrun the processes already share each model (DDP), so the two do not mix.
    """
    devices = model_devices(device, len(models))
    threads = max(1, torch.get_num_threads() // len(models)) if device.type == "cpu" else torch.get_num_threads()
    log.info("training %d models in parallel on %s", len(models), ", ".join(map(str, devices)))
    package_parent = str(Path(__file__).resolve().parents[1])
    env = os.environ | {
        "OMP_NUM_THREADS": str(threads),
        "PYTHONPATH": os.pathsep.join(p for p in (package_parent, os.environ.get("PYTHONPATH")) if p),
    }
    with tempfile.TemporaryDirectory(prefix="clipmem-parallel-") as tmp:
        workers = {}
        for (tag, rows), model_device in zip(models.items(), devices):
            picked = np.flatnonzero(rows)
            job = Path(tmp) / f"{tag}.pickle"
            job.write_bytes(
                pickle.dumps(
                    {
                        "tag": tag,
                        "config": config,
                        "root": images.root,
                        "filepaths": [images.filepaths[r] for r in picked],
                        "captions": [captions[r] for r in picked],
                        "max_side": images.max_side,
                        "device": str(model_device),
                        "threads": threads,
                    }
                )
            )
            command = [sys.executable, "-m", "clipmem_core.train_worker", str(job)]
            workers[tag] = (job, subprocess.Popen(command, env=env))
        codes = {tag: process.wait() for tag, (_, process) in workers.items()}
        failed = [_worker_failure(tag, code) for tag, code in codes.items() if code != 0]
        if failed:
            raise ClipmemError(
                f"training {'; '.join(failed)}; the epochs that finished are in the checkpoints: rerun with --resume"
            )
        return {
            tag: json.loads(job.with_suffix(".json").read_text(encoding="utf-8")) for tag, (job, _) in workers.items()
        }


def _worker_failure(tag: str, code: int) -> str:
    """How a model's training process ended: "its error is above" where it printed one, its signal where it
    was killed (a kill -9 said "its error is above", with nothing above)."""
    if code < 0:
        try:
            name = signal.Signals(-code).name
        except ValueError:
            name = f"signal {-code}"
        return f"{tag} in its own process was stopped by {name}"
    return f"{tag} in its own process failed (its error is above)"


def _retained(
    config: RunConfig,
    models: dict[str, np.ndarray],
    images: ImageList,
    captions: list[list[str]],
    first_captions: list[str],
    bundles: dict[str, ClipBundle],
    out: Path,
    device: torch.device,
    timer: Stopwatch,
) -> np.ndarray | None:
    """(M, N) each model's retained alignment of the rows it trained on (NaN elsewhere; clipmem_core.retention),
    or None: measured under the full protocol only, where each model holds out a fold to go on to."""
    if config.protocol != "full" or not config.retain_epochs:
        return None
    continued = continued_config(train_config(config), config.retain_epochs)
    retained = np.full((len(models), len(images)), np.nan, np.float32)
    for m, (tag, rows_mask) in enumerate(models.items()):
        own, held_out = np.flatnonzero(rows_mask), np.flatnonzero(~rows_mask)
        with timer.stage(f"retain_{tag}"):
            values = retained_alignment(
                bundles[tag],
                (images.subset(own), [first_captions[r] for r in own]),
                (images.subset(held_out), [captions[r] for r in held_out]),
                continued,
                out / cache.CHECKPOINT_DIR,
                tag=tag,
                device=device,
            )
        if values is not None:  # rank 0
            retained[m, own] = values
    return retained


def _peak_memory_mb() -> float:
    scale = 1024 if sys.platform != "darwin" else 1024 * 1024
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / scale, 1)


def _warn_of_undrawn_pairs(trained: np.ndarray, fit_loss: np.ndarray, tags: list[str]) -> None:
    """Say how many pairs of a model's folds no training step drew: each epoch leaves out its last, incomplete
    batch, drawn anew each epoch, and with few epochs some pairs are never drawn at all (8 of 120 at --epochs 3,
    batch 32 over folds of 60). Their CLIPMem and training-side scores then come from a model that had them in
    its folds but never trained on them, and nothing said so."""
    never = trained & np.isnan(fit_loss)
    for m in np.flatnonzero(never.any(axis=1)):
        count = int(never[m].sum())
        log.warning(
            "%s: %s of its %s training pairs %s never drawn in training (each epoch leaves out its last, "
            "incomplete batch), so %s training-side scores and CLIPMem come from a model that never saw %s; "
            "train more --epochs, or give a --batch-size that divides the pairs",
            tags[m],
            f"{count:,}",
            f"{int(trained[m].sum()):,}",
            "was" if count == 1 else "were",
            "its" if count == 1 else "their",
            "it" if count == 1 else "them",
        )


def _scored_rows(trained: np.ndarray, protocol: str, splits: np.ndarray) -> np.ndarray:
    """Rows whose alignment A is computed: every row under the full protocol; under the paper
    protocol S_C, S_I and S_E (on S_S both models trained, so A gives no memorization there)."""
    if protocol == "paper":
        return np.flatnonzero(splits != SHARED)
    return np.arange(trained.shape[1])


def _score_views(
    rows: np.ndarray,
    images: ImageList,
    captions: list[list[str]],
    bundles: dict[str, ClipBundle],
    config: RunConfig,
    device: torch.device,
) -> tuple[np.ndarray, dict[str, tuple[np.ndarray, np.ndarray]]]:
    """Per-view cosines (M, N, K) of every model on ``rows`` (NaN elsewhere), all models on the same views;
    and each model's mean view image embedding of those rows, as (rows, embeddings)."""
    first = next(iter(bundles.values()))
    scored = view_alignments(
        {tag: bundle.model for tag, bundle in bundles.items()},
        images.subset(rows),
        [captions[r] for r in rows],
        first.train_transform,
        first.tokenizer,
        views=config.augmentations,
        seed=config.seed,
        device=device,
        precision=config.precision,
        batch_size=config.score_batch_size,
        rank=distributed.rank(),
        world=distributed.world_size(),
    )
    shards = _shards(len(rows), config.score_batch_size)
    views = np.full((len(bundles), len(images), config.augmentations), np.nan, dtype=np.float32)
    means = {}
    for m, tag in enumerate(bundles):
        cosines = distributed.gather_rows(scored.cosines[tag], shards)
        means[tag] = distributed.gather_rows(scored.image_means[tag], shards)
        if cosines is not None:  # rank 0
            views[m, rows] = cosines
    return views, {tag: (rows, mean) for tag, mean in means.items()}


def _shards(n: int, batch_size: int) -> list[np.ndarray]:
    """Each rank's rows of a batched pass over ``n`` rows (the batches are dealt out in turn)."""
    return [shard_rows(n, batch_size, r, distributed.world_size()) for r in range(distributed.world_size())]


def _signal_images(embeddings: dict, image_means: dict) -> list[np.ndarray]:
    """The image embeddings the neighbourhood signals use: the mean view where a row was scored over K
    views (every row under the full protocol), else the centre view."""
    result = []
    for tag, (centre, _) in embeddings.items():
        rows, mean = image_means[tag]
        images = centre.copy()
        images[rows] = mean
        result.append(images)
    return result


def _embed(
    frame: pd.DataFrame, images: ImageList, bundles: dict[str, ClipBundle], device: torch.device, precision: str
) -> dict:
    """Centre-view, L2-normalised (image, text) embeddings of every row under every model."""
    first_captions = frame["caption"].tolist()
    return {
        tag: embed_gathered(b, images, first_captions, device=device, desc=f"embed {tag}", precision=precision)
        for tag, b in bundles.items()
    }


def _measurements(frame: pd.DataFrame, ctx: ScoringContext, protocol: str) -> None:
    """Stored beside the scores: A on each side, and under the paper protocol the per-model columns."""
    frame["align_train"], frame["align_heldout"] = ctx.training(ctx.align), ctx.heldout(ctx.align)
    if protocol == "paper":
        for m, tag in enumerate(PAPER_MODELS):
            frame[f"align_{tag}"] = ctx.align[m].astype(np.float32)
            frame[f"clip_score_{tag}"] = ctx.pair_cosine[m].astype(np.float32)
        frame["clipmem_from_f"] = (frame["align_f"] - frame["align_g"]).astype(np.float32)


def _utility(embeddings: dict, trained: np.ndarray, frame: pd.DataFrame, protocol: str) -> dict | None:
    """Retrieval R@1/R@5 of each model on samples it never saw (paper: S_E, as in the paper)."""
    utility = {}
    for m, (tag, (img, txt)) in enumerate(embeddings.items()):
        held = (frame["split"].to_numpy() == EXTRA) if protocol == "paper" else ~trained[m]
        if held.sum() >= MIN_RECALL_PAIRS:
            utility[tag] = retrieval_recall(img[held], txt[held])
    return utility or None


def compute_clipmem(
    config: RunConfig,
    *,
    resume: bool = False,
    on_epoch: Callable[[EpochEnd], None] | None = None,
    made_by: str | None = None,
) -> cache.Run:
    """Train the protocol's models, score every registered signal, and write a complete run folder.

    Args:
        config: the run's settings; unset fields come from ``config.preset``.
        resume: continue an interrupted run in ``config.out`` from its per-epoch checkpoints.
        on_epoch: called after every epoch each model trains in this process (`EpochEnd`); not with
            ``parallel_models``, whose models train in other processes.
        made_by: what makes the run and continues it when it is not `clipmem run`, e.g. "experiment 'nz'
            (rerun the same `clipmem experiment noise` command)": recorded in its state, an unfinished run
            says so, and a run with other settings into its folder is refused.

    Returns:
        The written run, loaded (`Run`).

    Example::

        run = compute_clipmem(RunConfig(data="noisy.csv", out="cache/mydata", preset="tiny"))
        run.scores.sort_values("combined", ascending=False).head(48)

    Under ``torchrun`` every process calls it: all of them train each model together (DDP, ``batch_size``
    the global batch) and share out the scoring and embedding batches; rank 0 alone computes the signals
    and indexes and writes the run folder while the others wait, then every process returns the written run.
    """
    config = config.resolved()
    if config.exclude:  # recorded absolute: the manifest is read from elsewhere (Compare, a teammate's shell)
        config = replace(config, exclude=str(Path(config.exclude).expanduser().resolve()))
    distributed.check_batch_size(config.batch_size)  # before any data is read
    with distributed.session(pick_device(config.device)) as device:
        try:
            run = _compute(config, device, resume, on_epoch, made_by)
        except BaseException:
            _let_go_of_a_stopped_run(Path(config.out))
            raise
        distributed.on_main(lambda: cache.release_run_folder(Path(config.out)))
        return run


def _let_go_of_a_stopped_run(out: Path) -> None:
    """After a stop or a failure, rank 0 alone marks the run stopped and releases its folder, waiting for no
    other process. Why: under torchrun a Ctrl-C reaches the processes one after another, and the first to
    stop left the others in a collective here that could not finish: tracebacks from every other process,
    and a 30 s wait before torchrun killed them. A folder that cannot take the mark keeps the first error."""
    if distributed.is_main():
        with contextlib.suppress(OSError):
            cache.mark_stopped(out)
        cache.release_run_folder(out)


def _compute(
    config: RunConfig,
    device: torch.device,
    resume: bool,
    on_epoch: Callable[[EpochEnd], None] | None,
    made_by: str | None = None,
) -> cache.Run:
    if config.parallel_models and distributed.active():
        raise ClipmemError(distributed.PARALLEL_MODELS_UNDER_TORCHRUN)
    if config.parallel_models and on_epoch is not None:
        raise ClipmemError("on_epoch sees the models this process trains: it cannot follow --parallel-models")
    out, timer = Path(config.out), Stopwatch()
    if (slow := slow_precision_warning(device, config.precision)) and distributed.is_main():
        log.warning(slow)
    finished = _check_out(out, config, resume)
    if finished is not None:
        _check_finished_inputs(finished, config)
        log.info("%s is already complete; nothing to resume", out)
        return finished
    with timer.stage("ingest"):
        # the small inputs first: a bad drop list or checkpoint was refused only after the data was read
        excluded = read_drop_list(config.exclude) if config.exclude else None
        bundle = create_clip(config.model, init_checkpoint=config.init_checkpoint)
        dataset = _read_data(config)
        if cut := cut_captions_note(bundle, dataset.samples["captions"].tolist()):
            if distributed.is_main():
                log.warning(cut)
            dataset.warnings.append(cut)  # with the data's other notes: `summary` and the Overview show it
        exclusion = select_samples(dataset, config, excluded)  # before folds or splits are drawn
        frame, models = _rows_or_why(dataset, config)  # fail fast on splits the data cannot fill
        _report_skipped(dataset, out)
    state = {"fingerprint": _fingerprint(config, dataset, exclusion), "config": config.to_dict()}
    state |= cache.computing_process() | ({cache.MADE_BY: made_by} if made_by else {})
    distributed.on_main(lambda: _prepare_out_dir(out, resume, state))
    distributed.on_main(lambda: write_skip_report(dataset, out / cache.SKIPPED))  # the log names it now
    with timer.stage("splits"):
        log.info("%s protocol: %s", config.protocol, frame["split"].value_counts().sort_index().to_dict())
        max_side = DOWNSCALE_FACTOR * image_size_of(config.model)
        images = ImageList(dataset.root, frame["filepath"], max_side, progress=distributed.is_main())
        captions = [list(c) for c in frame["captions"]]
    trained = np.stack(list(models.values()))
    fit_loss = np.full(trained.shape, np.nan, np.float32)
    bundles, training, in_parallel = {}, {}, {}
    if config.parallel_models:
        with timer.stage("train_parallel"):
            in_parallel = _train_in_parallel(config, models, images, captions, device)
    for m, (tag, rows_mask) in enumerate(models.items()):
        with timer.stage(f"train_{tag}"):  # after training in parallel: loads the finished checkpoint
            rows = np.flatnonzero(rows_mask)
            bundles[tag], result = _train_one(
                tag,
                config,
                images.subset(rows),
                [captions[r] for r in rows],
                out,
                device,
                _epoch_callback(on_epoch, tag, rows),
            )
            fit_loss[m, rows] = result.pair_losses.mean()
            training[tag] = {
                "pairs": len(rows),
                "processes": distributed.world_size(),
                "epoch_losses": result.epoch_losses,
                "resumed_from_epoch": result.resumed_from_epoch,
                **in_parallel.get(tag, {}),
            }
        if tag not in in_parallel:  # in parallel, train_parallel timed it; here the checkpoint was only loaded
            # a resumed model's stage holds its earlier sessions too: a resumed run reported only its last
            # session's minutes, and the Compute page's estimates, which read them, came out short
            timer.seconds[f"train_{tag}"] = round(timer.seconds[f"train_{tag}"] + result.earlier_seconds, 3)
    _warn_of_undrawn_pairs(trained, fit_loss, list(models))
    retained = _retained(config, models, images, captions, frame["caption"].tolist(), bundles, out, device, timer)
    with timer.stage("score"):  # every rank scores its share of the batches; rank 0 gathers them
        views, image_means = _score_views(
            _scored_rows(trained, config.protocol, frame["split"].to_numpy()), images, captions, bundles, config, device
        )
    with timer.stage("embed"):
        embeddings = _embed(frame, images, bundles, device, config.precision)
    if not distributed.is_main():  # the signals and the run folder are rank 0's
        distributed.barrier()
        return cache.load_run(out)
    reference = next(iter(embeddings.values()))  # the reference model's: the run stores them
    with timer.stage("fingerprint"):  # which samples show the same picture (agreement_duplicate_images)
        frame[FINGERPRINT_COLUMN] = image_fingerprints(images)
    with timer.stage("signals"):
        ctx = ScoringContext(
            frame=frame,
            trained=trained,
            align=mean_over_views(views),
            pair_cosine=np.stack([pair_cosines(img, txt) for img, txt in embeddings.values()]),
            image=_signal_images(embeddings, image_means),
            text=[txt for _, txt in embeddings.values()],
            fit_loss=fit_loss,
            retained=retained,
            reference_images=reference[0],
        )
        _measurements(frame, ctx, config.protocol)
        compute_scores(ctx)
        frame["clipmem_norm"] = normalised(frame["clipmem"].to_numpy(np.float32))
    manifest = cache.Manifest(
        name=out.name,
        protocol=config.protocol,
        config=config.to_dict(),
        dataset=cache.DatasetInfo(
            path=str(dataset.source),
            root=str(dataset.root),
            format=dataset.format,
            content_hash=dataset.content_hash,
            n_samples=len(dataset.samples),
            n_skipped=len(dataset.skipped),
            n_excluded=exclusion.removed if exclusion else 0,
            n_exclude_not_found=exclusion.not_found if exclusion else 0,
            exclude_digest=exclusion.digest if exclusion else "",
            warnings=list(dataset.warnings),
        ),
        models=list(models),
        versions=versions(),
        compute={"device": str(device), "precision": resolved_precision(device, config.precision)},
        utility=_utility(embeddings, trained, frame, config.protocol),
        training=training,
        timings=timer.seconds,  # the same dict: write_run's stages land in it before the manifest is written
        peak_memory_mb=_peak_memory_mb(),
    )
    # The manifest is written once, last, by write_run: a run killed at any earlier point is resumable,
    # and one killed after it is complete.
    run = cache.write_run(
        out,
        frame,
        manifest,
        image_embeddings=reference[0],
        text_embeddings=reference[1],
        view_alignments=views,
        images=images,
        thumbnail_size=config.thumbnail_size,
        stage=timer.stage,
    )
    distributed.barrier()  # the run is written: the waiting ranks may read it
    return run
