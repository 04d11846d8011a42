"""The run cache: one folder per run, written atomically, loaded as a typed `Run`.

Layout of ``cache/<name>/`` (row i of every array is row i of ``scores.parquet``)::

    manifest.json            config, dataset (path, hash), versions, timings, utility; written LAST
    scores.parquet           one row per sample (see SCORE_COLUMNS)
    image_embeddings.npy     (N, D) float32, L2-normalised, from model f
    text_embeddings.npy      (N, D) float32, L2-normalised, from model f
    view_alignments.npy      (N, 2, K) float32: per-view cosines under f ([:, 0]) and g ([:, 1]); NaN if unscored
    index/image.faiss, index/text.faiss
    checkpoints/{f,g}_last.pt
    thumbs/<row>.jpg         small thumbnails for the dashboard
    skipped.csv              every input row that was skipped, and why

The manifest is written last, so a folder whose manifest says ``status: complete``
holds every file it lists; anything else is refused with a clear reason.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from .errors import ClipmemError

SCHEMA_VERSION = 1
MANIFEST = "manifest.json"
SCORES = "scores.parquet"
IMAGE_EMBEDDINGS = "image_embeddings.npy"
TEXT_EMBEDDINGS = "text_embeddings.npy"
VIEW_ALIGNMENTS = "view_alignments.npy"
INDEX_DIR = "index"
CHECKPOINT_DIR = "checkpoints"
THUMB_DIR = "thumbs"
SKIPPED = "skipped.csv"
SPLITS = ("shared", "candidate", "independent", "extra")
SCORE_COLUMNS = (
    "sample_id",
    "split",
    "filepath",
    "caption",
    "align_f",
    "align_g",
    "clipmem",
    "clipmem_norm",
    "clip_score_f",
    "clip_score_g",
)
REQUIRED_FILES = (SCORES,)


@contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temp path beside ``path``; rename it over ``path`` only if the block succeeds.

    A crash mid-write leaves a ``*.tmp`` file, never a truncated file under the real name.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        with open(tmp_path, "rb+") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp_path, path)
    finally:
        if tmp_path.exists():
            tmp_path.unlink()


def write_json(path: str | os.PathLike, obj: Any) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(obj, indent=2, sort_keys=True, default=str), encoding="utf-8")


def write_parquet(path: str | os.PathLike, frame: pd.DataFrame) -> None:
    with atomic_path(path) as tmp:
        frame.to_parquet(tmp, index=False)


def write_npy(path: str | os.PathLike, array: np.ndarray) -> None:
    with atomic_path(path) as tmp, open(tmp, "wb") as fh:
        np.save(fh, np.ascontiguousarray(array))


def write_bytes(path: str | os.PathLike, data: bytes) -> None:
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


def relative_if_inside(path: str | os.PathLike, base: str | os.PathLike) -> str:
    """``path`` relative to ``base`` when it lies inside it (so the pair can move together), else absolute."""
    path, base = Path(path).resolve(), Path(base).resolve()
    return path.relative_to(base).as_posix() if path.is_relative_to(base) else str(path)


@dataclass
class Run:
    """A complete run loaded from ``cache/<name>/``. Arrays are memory-mapped, not read into RAM."""

    path: Path
    manifest: dict
    scores: pd.DataFrame = field(repr=False)

    @property
    def name(self) -> str:
        return self.path.name

    @property
    def has_ground_truth(self) -> bool:
        return "is_miscaptioned" in self.scores.columns

    @cached_property
    def row_of(self) -> dict[str, int]:
        """sample_id -> row in scores and in every array."""
        return {sid: i for i, sid in enumerate(self.scores["sample_id"])}

    def row(self, sample_id: str) -> int:
        try:
            return self.row_of[sample_id]
        except KeyError:
            raise ClipmemError(f"sample_id {sample_id!r} is not in run {self.name}") from None

    def _array(self, name: str) -> np.ndarray:
        path = self.path / name
        if not path.exists():
            raise ClipmemError(f"run {self.name} has no {name}")
        return np.load(path, mmap_mode="r")

    @cached_property
    def image_embeddings(self) -> np.ndarray:
        return self._array(IMAGE_EMBEDDINGS)

    @cached_property
    def text_embeddings(self) -> np.ndarray:
        return self._array(TEXT_EMBEDDINGS)

    @cached_property
    def view_alignments(self) -> np.ndarray | None:
        return self._array(VIEW_ALIGNMENTS) if (self.path / VIEW_ALIGNMENTS).exists() else None

    @property
    def dataset_root(self) -> Path | None:
        """Folder that image paths are confined to; relative manifests resolve against the run."""
        root = self.manifest.get("dataset", {}).get("root")
        if not root:
            return None
        root_path = Path(root)
        return root_path if root_path.is_absolute() else (self.path / root_path).resolve()

    def image_path(self, row: int) -> Path | None:
        """The full-size image of a row, or None if it lies outside the dataset root or is gone."""
        root = self.dataset_root
        if root is None:
            return None
        candidate = (root / str(self.scores["filepath"].iat[row])).resolve()
        if not candidate.is_relative_to(root) or not candidate.is_file():
            return None
        return candidate

    def thumbnail_path(self, row: int) -> Path | None:
        path = self.path / THUMB_DIR / f"{row}.jpg"
        return path if path.exists() else None

    def index_path(self, modality: str) -> Path:
        return self.path / INDEX_DIR / f"{modality}.faiss"


def _read_manifest(run_dir: Path) -> dict:
    manifest_path = run_dir / MANIFEST
    if not run_dir.is_dir():
        raise ClipmemError(f"{run_dir} is not a directory")
    if not manifest_path.exists():
        raise ClipmemError(f"{run_dir} is not a clipmem run (no {MANIFEST}; incomplete or not a run)")
    try:
        manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise ClipmemError(f"{manifest_path} is unreadable: {exc}") from None
    if not isinstance(manifest, dict):
        raise ClipmemError(f"{manifest_path} is not a clipmem manifest")
    return manifest


def check_manifest(run_dir: Path, manifest: dict) -> None:
    """Raise ClipmemError if the manifest is of another schema, incomplete or missing files."""
    version = manifest.get("schema_version")
    if version != SCHEMA_VERSION:
        raise ClipmemError(
            f"{run_dir} has cache schema version {version!r}; this clipmem reads version {SCHEMA_VERSION}"
        )
    if manifest.get("status") != "complete":
        raise ClipmemError(f"{run_dir} is incomplete (status {manifest.get('status')!r})")
    for name in list(REQUIRED_FILES) + list(manifest.get("files", [])):
        if not (run_dir / name).exists():
            raise ClipmemError(f"{run_dir} is incomplete: {name} is missing")


def load_run(path: str | os.PathLike) -> Run:
    """Load a complete run, or raise ClipmemError saying why it cannot be used."""
    run_dir = Path(path)
    manifest = _read_manifest(run_dir)
    check_manifest(run_dir, manifest)
    try:
        scores = pd.read_parquet(run_dir / SCORES)
    except Exception as exc:  # pyarrow raises many types for a damaged file
        raise ClipmemError(f"{run_dir / SCORES} is unreadable: {exc}") from None
    missing = [c for c in SCORE_COLUMNS if c not in scores.columns]
    if missing:
        raise ClipmemError(f"{run_dir / SCORES} lacks columns {missing}")
    return Run(path=run_dir, manifest=manifest, scores=scores)


@dataclass(frozen=True)
class RunInfo:
    """One entry of the cache listing; ``error`` says why an unusable run cannot be loaded."""

    name: str
    path: Path
    manifest: dict | None
    error: str | None

    @property
    def ok(self) -> bool:
        return self.error is None


def list_runs(cache_root: str | os.PathLike) -> list[RunInfo]:
    """Every sub-folder of the cache, usable or not, newest first."""
    root = Path(cache_root)
    if not root.is_dir():
        return []
    infos = []
    for run_dir in sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")):
        try:
            manifest = _read_manifest(run_dir)
            check_manifest(run_dir, manifest)
            infos.append(RunInfo(run_dir.name, run_dir, manifest, None))
        except ClipmemError as exc:
            infos.append(RunInfo(run_dir.name, run_dir, None, str(exc)))
    infos.sort(key=lambda i: (i.manifest or {}).get("created", ""), reverse=True)
    return infos
