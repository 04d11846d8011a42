"""Which samples show the same picture: a small fingerprint of each image's content.

Datasets hold the same picture more than once: openclipart files a drawing under several categories (28 % of
its images have a pixel-identical twin), web scrapes re-host an image under other alt text. Two samples with
the same picture and captions that share no words cannot both be right, so a run records each image's
fingerprint (the ``image_fingerprint`` column) and the score ``agreement_duplicate_images`` compares the
captions of each group.

The fingerprint is the image as the run sees it (alpha composited on white, ``data.decode_image``) shrunk to
16 × 16 RGB, its 768 bytes hashed to 64 bits. Equal pictures at the same size give equal fingerprints;
shrinking first lets small differences of encoding pass only where they vanish at 16 × 16. Two different
pictures collide only if their 16 × 16 versions are identical (blank images, for instance, which do show
the same thing). Not found: the same picture at another size, cropped or re-encoded lossily enough to move
a pixel of the 16 × 16 version; a perceptual hash with a tolerance would find those, at the cost of
merging unlike clip art.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

import numpy as np
from PIL import Image
from tqdm.auto import tqdm

FINGERPRINT_COLUMN = "image_fingerprint"
_SIDE = 16  # pixels a side of the shrunk picture that is hashed


def image_fingerprint(image: Image.Image) -> int:
    """The picture's 64-bit fingerprint, as a signed integer (what a parquet int64 column holds)."""
    small = image.convert("RGB").resize((_SIDE, _SIDE), Image.Resampling.BOX)
    digest = hashlib.blake2b(small.tobytes(), digest_size=8).digest()
    return int.from_bytes(digest, "little", signed=True)


def image_fingerprints(images: Sequence[Image.Image], progress: bool = True) -> np.ndarray:
    """(N,) int64 fingerprints of a run's images, in row order."""
    bar = tqdm(range(len(images)), desc="fingerprint images", unit="img", leave=False, disable=not progress)
    return np.fromiter((image_fingerprint(images[row]) for row in bar), dtype=np.int64, count=len(images))
