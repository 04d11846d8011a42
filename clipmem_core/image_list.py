"""A dataset's images by row, for training and for thumbnails; free of torch, so that `clipmem import-run`
(which trains nothing) does not load it: importing torch cost 0.5 GB of memory and seconds of start-up."""

from __future__ import annotations

import io
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image
from tqdm.auto import tqdm

from . import shards
from .data import decode_image

PRELOAD_LIMIT = 50_000  # below this many images, decode them once and keep them in memory


class ImageList(Sequence):
    """Images of a dataset by row: decoded once if the dataset is small, read on demand otherwise.

    Images are downscaled on load to ``max_side`` (a few times the model's input), so a folder of
    posters costs memory for what the model sees, not for their full size. Images inside WebDataset
    shards are found once (`shards.locate`: three integers a row, which forked loader workers share)
    and then read at their offsets.
    """

    def __init__(
        self,
        root: Path,
        filepaths: Sequence[str],
        max_side: int | None = None,
        *,
        preload: bool = True,
        progress: bool = True,
    ):
        """``preload``: decode a small dataset's images once and keep them (training reads each many
        times); off where each image is read once, as an import's thumbnails read it. ``progress``: show
        the loading bar (off on the workers of a distributed run)."""
        self.root, self.filepaths, self.max_side = root, list(filepaths), max_side
        self._where = shards.locate([root / p for p in self.filepaths])
        self._cache: list[Image.Image] | None = None
        if preload and len(self.filepaths) <= PRELOAD_LIMIT:
            bar = tqdm(range(len(self)), desc="load images", unit="img", leave=False, disable=not progress)
            self._cache = [self._load(row) for row in bar]

    def _load(self, row: int) -> Image.Image:
        path = self.root / self.filepaths[row]
        member = self._where.member_bytes(row)
        image = decode_image(path, lambda: path if member is None else io.BytesIO(member))
        if self.max_side and max(image.size) > self.max_side:
            image.thumbnail((self.max_side, self.max_side), Image.Resampling.BICUBIC)
        return image

    def __len__(self) -> int:
        return len(self.filepaths)

    def __getitem__(self, item):
        if isinstance(item, slice):
            return [self[i] for i in range(*item.indices(len(self)))]
        return self._cache[item] if self._cache is not None else self._load(item)

    def subset(self, rows: np.ndarray) -> list[Image.Image]:
        return [self[int(r)] for r in rows]
