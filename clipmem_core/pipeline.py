"""compute_clipmem: a whole run, stage by stage, into ``cache/<name>/``.

Stages: ingest -> splits -> train f -> train g -> score K views -> embed -> index -> project ->
thumbnails -> summary -> manifest. Every file is written atomically and the manifest last, so an
interrupted run never looks complete; ``resume=True`` picks up the per-epoch checkpoints.
"""

from __future__ import annotations

import json
import logging
import platform
import resource
import shutil
import sys
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from PIL import Image
from tqdm.auto import tqdm

from . import cache
from .config import RunConfig
from .data import Dataset, load_image, read_dataset, write_skip_report
from .device import pick_device
from .errors import ClipmemError
from .index import build_index, save_index
from .metrics import detection_summary, retrieval_recall, split_summary
from .models import create_clip
from .projection import project_2d
from .scoring import clipmem_columns, embed_pairs, pair_cosines, view_alignments
from .splits import assign_splits
from .train import TrainConfig, train_clip

log = logging.getLogger("clipmem")
STATE_FILE = "run_state.json"
PRELOAD_LIMIT = 50_000  # below this many images, decode them once and keep them in memory


class Stopwatch:
    """Per-stage wall-clock seconds, logged as each stage starts so long runs show where they are."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}

    @contextmanager
    def stage(self, name: str) -> Iterator[None]:
        log.info("stage: %s", name)
        started = time.perf_counter()
        yield
        self.seconds[name] = round(time.perf_counter() - started, 3)


class ImageList(Sequence):
    """Images of a dataset by row: decoded once if the dataset is small, read on demand otherwise."""

    def __init__(self, root: Path, filepaths: Sequence[str]):
        self.root, self.filepaths = root, list(filepaths)
        self._cache: list[Image.Image] | None = None
        if len(self.filepaths) <= PRELOAD_LIMIT:
            self._cache = [
                load_image(root, p) for p in tqdm(self.filepaths, desc="load images", unit="img", leave=False)
            ]

    def __len__(self) -> int:
        return len(self.filepaths)

    def __getitem__(self, item):
        if isinstance(item, slice):
            return [self[i] for i in range(*item.indices(len(self)))]
        return self._cache[item] if self._cache is not None else load_image(self.root, self.filepaths[item])

    def subset(self, rows: np.ndarray) -> list[Image.Image]:
        return [self[int(r)] for r in rows]


def versions() -> dict[str, str]:
    names = ("torch", "torchvision", "open_clip_torch", "faiss-cpu", "faiss-gpu-cu12", "numpy", "pandas", "pyarrow")
    found = {"python": platform.python_version()}
    for name in names:
        try:
            found[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return found


def _prepare_out_dir(out: Path, resume: bool, state: dict) -> None:
    """Refuse to clobber a finished or foreign run; on resume, check the config is unchanged."""
    if (out / cache.MANIFEST).exists():
        raise ClipmemError(f"{out} already holds a complete run; choose another --out or delete it")
    state_path = out / STATE_FILE
    if out.exists() and any(out.iterdir()):
        if not state_path.exists():
            raise ClipmemError(f"{out} exists and is not a clipmem run; choose another --out")
        if not resume:
            raise ClipmemError(f"{out} holds an unfinished run; add --resume to continue it, or delete it")
        previous = json.loads(state_path.read_text(encoding="utf-8"))
        if previous.get("fingerprint") != state["fingerprint"]:
            raise ClipmemError(f"{out} was started with other data or settings; --resume needs the same ones")
    cache.write_json(state_path, state)


def _report_skipped(dataset: Dataset, out: Path) -> None:
    if len(dataset.skipped):
        reasons = dataset.skipped["reason"].str.split(":").str[0].value_counts().head(3)
        summary = ", ".join(f"{count} {reason}" for reason, count in reasons.items())
        log.warning(
            "skipped %d of %d rows (%s); every one is listed in %s",
            len(dataset.skipped),
            len(dataset.skipped) + len(dataset.samples),
            summary,
            out / cache.SKIPPED,
        )


def _fingerprint(config: RunConfig, dataset: Dataset) -> str:
    settings = config.to_dict()
    for volatile in ("out", "device", "num_workers"):
        settings.pop(volatile)
    return f"{dataset.content_hash}:{sorted(settings.items())}"


def _train_one(
    tag: str, config: RunConfig, images: list[Image.Image], captions: list[list[str]], out: Path, device: torch.device
):
    torch.manual_seed(config.seed)  # f and g start from the same weights
    bundle = create_clip(config.model, init_checkpoint=config.init_checkpoint, device=device)
    train_config = TrainConfig(
        epochs=config.epochs,
        batch_size=config.batch_size,
        lr=config.lr,
        warmup_steps=config.warmup_steps,
        seed=config.seed,
        num_workers=config.num_workers,
    )
    result = train_clip(
        bundle,
        images,
        captions,
        train_config,
        out / cache.CHECKPOINT_DIR / f"{tag}_last.pt",
        device=device,
        resume=True,
        label=f"train {tag}",
    )
    log.info("train %s: %d pairs, final loss %.4f", tag, len(images), result.epoch_losses[-1])
    return bundle, result


def _write_thumbnails(out: Path, images: ImageList, size: int) -> None:
    """Write every thumbnail into a temp folder, then swap it in whole."""
    final, staging = out / cache.THUMB_DIR, out / f".{cache.THUMB_DIR}.tmp"
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    for row in tqdm(range(len(images)), desc="thumbnails", unit="img", leave=False):
        thumb = images[row].copy()
        thumb.thumbnail((size, size))
        thumb.save(staging / f"{row}.jpg", quality=85)
    shutil.rmtree(final, ignore_errors=True)
    staging.rename(final)


def _peak_memory_mb() -> float:
    scale = 1024 if sys.platform != "darwin" else 1024 * 1024
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / scale, 1)


def finish_run(
    out: Path,
    frame: pd.DataFrame,
    dataset: Dataset,
    images: ImageList,
    *,
    image_embeddings: np.ndarray | None,
    text_embeddings: np.ndarray | None,
    view_align: np.ndarray | None,
    config: dict,
    timer: Stopwatch,
    utility: dict | None,
    thumbnail_size: int,
    training: dict | None = None,
) -> cache.Run:
    """The stages every run shares, computed or imported: index, projection, thumbnails, summary, files."""
    files = [cache.SCORES, cache.THUMB_DIR]
    if image_embeddings is not None and text_embeddings is not None:
        with timer.stage("index"):
            for modality, vectors in (("image", image_embeddings), ("text", text_embeddings)):
                save_index(build_index(vectors), out / cache.INDEX_DIR / f"{modality}.faiss")
                files.append(f"{cache.INDEX_DIR}/{modality}.faiss")
        with timer.stage("projection"):
            xy = project_2d(image_embeddings, seed=int(config.get("seed", 0)))
            frame["proj_x"], frame["proj_y"] = xy[:, 0], xy[:, 1]
    else:
        frame["proj_x"] = frame["proj_y"] = np.nan
    with timer.stage("thumbnails"):
        _write_thumbnails(out, images, thumbnail_size)
    with timer.stage("write"):
        if image_embeddings is not None and text_embeddings is not None:
            cache.write_npy(out / cache.IMAGE_EMBEDDINGS, image_embeddings.astype(np.float32))
            cache.write_npy(out / cache.TEXT_EMBEDDINGS, text_embeddings.astype(np.float32))
            files += [cache.IMAGE_EMBEDDINGS, cache.TEXT_EMBEDDINGS]
        if view_align is not None:
            cache.write_npy(out / cache.VIEW_ALIGNMENTS, view_align.astype(np.float32))
            files.append(cache.VIEW_ALIGNMENTS)
        cache.write_parquet(out / cache.SCORES, frame)
        write_skip_report(dataset, out / cache.SKIPPED)
    manifest = {
        "schema_version": cache.SCHEMA_VERSION,
        "name": out.name,
        "status": "complete",
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
        "config": config,
        "dataset": {
            "path": cache.relative_if_inside(dataset.source, out),
            "root": cache.relative_if_inside(dataset.root, out),
            "format": dataset.format,
            "content_hash": dataset.content_hash,
            "n_samples": len(dataset.samples),
            "n_skipped": len(dataset.skipped),
        },
        "splits": frame["split"].value_counts().to_dict(),
        "versions": versions(),
        "timings": timer.seconds,
        "peak_memory_mb": _peak_memory_mb(),
        "utility": utility,
        "training": training,
        "summary": {"splits": split_summary(frame), "detection": detection_summary(frame)},
        "files": files,
    }
    cache.write_json(out / cache.MANIFEST, manifest)
    (out / STATE_FILE).unlink(missing_ok=True)
    log.info("run written to %s", out)
    return cache.load_run(out)


def _score_views(
    frame: pd.DataFrame,
    images: ImageList,
    captions: list[list[str]],
    models: dict,
    config: RunConfig,
    device: torch.device,
) -> np.ndarray:
    """Per-view alignments (N, 2, K) under f and g on S_C, S_I and S_E; fills the CLIPMem columns."""
    split = frame["split"].to_numpy()
    scored = np.flatnonzero(np.isin(split, ("candidate", "independent", "extra")))
    f = models["f"]
    per_view = view_alignments(
        {"f": f.model, "g": models["g"].model},
        images.subset(scored),
        [captions[r] for r in scored],
        f.train_transform,
        f.tokenizer,
        views=config.augmentations,
        seed=config.seed,
        device=device,
    )
    view_align = np.full((len(frame), 2, config.augmentations), np.nan, dtype=np.float32)
    view_align[scored, 0], view_align[scored, 1] = per_view["f"], per_view["g"]
    align = np.full((len(frame), 2), np.nan, dtype=np.float32)
    align[scored] = view_align[scored].mean(axis=2)
    frame["align_f"], frame["align_g"] = align[:, 0], align[:, 1]
    for name, values in clipmem_columns(split, align[:, 0], align[:, 1]).items():
        frame[name] = values
    return view_align


def _embed_and_baselines(
    frame: pd.DataFrame, images: ImageList, models: dict, device: torch.device
) -> tuple[dict, dict | None]:
    """Un-augmented embeddings under f and g, the CLIP-score columns, and R@k of each model on S_E."""
    first = frame["caption"].tolist()
    embeddings = {
        tag: embed_pairs(b.model, images, first, b.eval_transform, b.tokenizer, device=device, desc=f"embed {tag}")
        for tag, b in models.items()
    }
    frame["clip_score_f"] = pair_cosines(*embeddings["f"])
    frame["clip_score_g"] = pair_cosines(*embeddings["g"])
    extra = frame["split"].to_numpy() == "extra"
    if extra.sum() < 5:
        return embeddings, None
    return embeddings, {tag: retrieval_recall(img[extra], txt[extra]) for tag, (img, txt) in embeddings.items()}


def compute_clipmem(config: RunConfig, *, resume: bool = False) -> cache.Run:
    """Train f and g, score CLIPMem and baselines, and write a complete run folder."""
    config = config.resolved()
    device = pick_device(config.device)
    out, timer = Path(config.out), Stopwatch()
    with timer.stage("ingest"):
        dataset = read_dataset(
            config.data, img_key=config.img_key, caption_key=config.caption_key, on_error=config.on_error
        )
        create_clip(config.model, init_checkpoint=config.init_checkpoint)  # fail fast on a bad model
        _report_skipped(dataset, out)
    _prepare_out_dir(out, resume, {"fingerprint": _fingerprint(config, dataset), "config": config.to_dict()})
    with timer.stage("splits"):
        labels = assign_splits(len(dataset.samples), config.split_sizes, config.seed)
        frame = dataset.samples.loc[labels != "unused"].reset_index(drop=True)
        frame.insert(1, "split", labels[labels != "unused"])
        log.info("splits: %s", frame["split"].value_counts().to_dict())
        images = ImageList(dataset.root, frame["filepath"])
        captions = [list(c) for c in frame["captions"]]
    split = frame["split"].to_numpy()
    models, training = {}, {}
    for tag, own in (("f", "candidate"), ("g", "independent")):
        with timer.stage(f"train_{tag}"):
            rows = np.flatnonzero((split == "shared") | (split == own))
            models[tag], result = _train_one(tag, config, images.subset(rows), [captions[r] for r in rows], out, device)
            training[tag] = {
                "pairs": len(rows),
                "epoch_losses": result.epoch_losses,
                "resumed_from_epoch": result.resumed_from_epoch,
            }
    with timer.stage("score"):
        view_align = _score_views(frame, images, captions, models, config, device)
    with timer.stage("embed"):
        embeddings, utility = _embed_and_baselines(frame, images, models, device)
    return finish_run(
        out,
        frame,
        dataset,
        images,
        image_embeddings=embeddings["f"][0],
        text_embeddings=embeddings["f"][1],
        view_align=view_align,
        config=config.to_dict(),
        timer=timer,
        utility=utility,
        thumbnail_size=config.thumbnail_size,
        training=training,
    )
