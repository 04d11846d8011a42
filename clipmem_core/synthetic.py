"""Generated image-caption datasets with a known rule and known mis-captions, for tests and demos.

Each image shows one coloured shape on the left or right ("a red circle on the left": 6 colours x
4 shapes x 2 sides), which a tiny CLIP learns in about a minute on CPU. Every image also carries its
own random background texture and pixel noise, so a model can memorize individual pairs: that is what
lets a test check that mis-captioned samples get higher CLIPMem scores.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image, ImageDraw

from .atomic import atomic_path
from .data import LABEL_COLUMN, donor_captions
from .errors import ClipmemError

COLOURS = {
    "red": (220, 40, 40),
    "green": (40, 180, 60),
    "blue": (40, 80, 220),
    "yellow": (230, 210, 40),
    "purple": (150, 60, 190),
    "orange": (240, 140, 30),
}
SHAPES = ("circle", "square", "triangle", "diamond")
SIDES = ("left", "right")
CAPTIONS_FILE = "captions.csv"


def make_shapes_dataset(
    out_dir: str | os.PathLike,
    n: int,
    *,
    seed: int = 0,
    size: int = 32,
    miscaption_fraction: float = 0.0,
) -> Path:
    """Write ``images/*.png`` and ``captions.csv`` under ``out_dir``; return the CSV path for ``read_dataset``.

    With ``miscaption_fraction > 0`` that share of samples gets another sample's (different) caption
    and the CSV gains an ``is_miscaptioned`` column, as ``inject_miscaptions`` would write it.
    """
    if n < 2:
        raise ClipmemError(f"a shapes dataset needs at least 2 samples, not {n}")
    if not 0 <= miscaption_fraction < 1:
        raise ClipmemError(f"miscaption_fraction must be in [0, 1), not {miscaption_fraction}")
    out = Path(out_dir)
    (out / "images").mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    colours = rng.choice(list(COLOURS), size=n)
    shapes = rng.choice(SHAPES, size=n)
    sides = rng.choice(SIDES, size=n)
    filepaths = []
    for i in range(n):
        filepath = f"images/{i:05d}.png"
        _draw(str(colours[i]), str(shapes[i]), str(sides[i]), size, rng).save(out / filepath)
        filepaths.append(filepath)
    frame = pd.DataFrame(
        {
            "filepath": filepaths,
            "caption": [_caption(str(c), str(s), str(side)) for c, s, side in zip(colours, shapes, sides)],
        }
    )
    if miscaption_fraction > 0:
        new = donor_captions([[c] for c in frame["caption"]], miscaption_fraction, rng)
        frame.loc[list(new), "caption"] = list(new.values())
        frame[LABEL_COLUMN] = frame.index.isin(list(new))
    path = out / CAPTIONS_FILE
    with atomic_path(path) as tmp:
        frame.to_csv(tmp, index=False)
    return path


def _caption(colour: str, shape: str, side: str) -> str:
    return f"{'an' if colour[0] in 'aeiou' else 'a'} {colour} {shape} on the {side}"


def _draw(colour: str, shape: str, side: str, size: int, rng: np.random.Generator) -> Image.Image:
    """One shape over a per-sample texture (low-frequency blotches plus pixel noise)."""
    texture = rng.uniform(-40, 40, size=(4, 4, 3))
    background = rng.uniform(70, 180) + np.kron(texture, np.ones((size // 4 + 1, size // 4 + 1, 1)))[:size, :size]
    image = Image.fromarray(np.clip(background, 0, 255).astype(np.uint8))
    radius = size * rng.uniform(0.16, 0.22)
    cx = size * (rng.uniform(0.22, 0.3) if side == "left" else rng.uniform(0.7, 0.78))
    cy = size * rng.uniform(0.35, 0.65)
    box = (cx - radius, cy - radius, cx + radius, cy + radius)
    draw = ImageDraw.Draw(image)
    fill = COLOURS[colour]
    if shape == "circle":
        draw.ellipse(box, fill=fill)
    elif shape == "square":
        draw.rectangle(box, fill=fill)
    elif shape == "triangle":
        draw.polygon([(cx, cy - radius), (cx + radius, cy + radius), (cx - radius, cy + radius)], fill=fill)
    else:
        draw.polygon([(cx, cy - radius), (cx + radius, cy), (cx, cy + radius), (cx - radius, cy)], fill=fill)
    noisy = np.asarray(image, dtype=np.float32) + rng.normal(0, 8, size=(size, size, 3))
    return Image.fromarray(np.clip(noisy, 0, 255).astype(np.uint8))
