"""Generated image-caption datasets with a known rule and known mis-captions, for tests and demos.

Each image shows one coloured shape on the left or right ("a red circle on the left": 6 colours x
4 shapes x 2 sides), which a tiny CLIP learns in about a minute on CPU. Every image also carries its
own random background texture and pixel noise, so a model can memorize individual pairs: that is what
lets a test check that mis-captioned samples get higher CLIPMem scores.

Every sample has a class ``label``, its shape, for linear probes on the image encoder. With
``captions_per_image > 1`` each image gets that many paraphrases of its caption and the dataset is
written as a COCO captions JSON (a CSV holds one caption per row), for the multi-caption studies.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image, ImageDraw

from .atomic import atomic_path
from .data import CLASS_COLUMN, LABEL_COLUMN, donor_captions
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
COCO_FILE = "captions.json"
# Paraphrases of one caption, first the plain one: what several captions per image look like here.
TEMPLATES = (
    "{a} {colour} {shape} on the {side}",
    "{colour} {shape}, {side} side",
    "on the {side} there is {a} {colour} {shape}",
    "{a} {shape} in {colour} at the {side}",
    "{side}: {a} {colour} {shape}",
)


def make_shapes_dataset(
    out_dir: str | os.PathLike,
    n: int,
    *,
    seed: int = 0,
    size: int = 32,
    miscaption_fraction: float = 0.0,
    captions_per_image: int = 1,
) -> Path:
    """Write ``images/*.png`` and ``captions.csv`` under ``out_dir``; return the CSV path for ``read_dataset``.

    The CSV has ``filepath, caption, label`` (the label is the shape). With ``miscaption_fraction > 0``
    that share of samples gets another sample's (different) caption and the CSV gains an
    ``is_miscaptioned`` column, as ``inject_miscaptions`` would write it. With ``captions_per_image > 1``
    (at most 5) the images get that many paraphrased captions, written as ``captions.json`` (COCO, the
    label in each image entry), whose path is returned instead.
    """
    if n < 2:
        raise ClipmemError(f"a shapes dataset needs at least 2 samples, not {n}")
    if not 0 <= miscaption_fraction < 1:
        raise ClipmemError(f"--miscaptioned must be in [0, 1), not {miscaption_fraction}")
    if not 1 <= captions_per_image <= len(TEMPLATES):
        raise ClipmemError(f"--captions-per-image must be between 1 and {len(TEMPLATES)}, not {captions_per_image}")
    if captions_per_image > 1 and miscaption_fraction > 0:
        raise ClipmemError("mis-captions are generated for one caption per image only")
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
            CLASS_COLUMN: shapes.astype(str),
        }
    )
    if captions_per_image > 1:
        captions = [
            _captions(str(c), str(s), str(side), captions_per_image) for c, s, side in zip(colours, shapes, sides)
        ]
        return _write_coco(out / COCO_FILE, frame, captions)
    if miscaption_fraction > 0:
        new = donor_captions([[c] for c in frame["caption"]], miscaption_fraction, rng)
        frame.loc[list(new), "caption"] = [donated[0] for donated in new.values()]
        frame[LABEL_COLUMN] = frame.index.isin(list(new))
    path = out / CAPTIONS_FILE
    with atomic_path(path) as tmp:
        frame.to_csv(tmp, index=False)
    return path


def _caption(colour: str, shape: str, side: str) -> str:
    return _captions(colour, shape, side, 1)[0]


def _captions(colour: str, shape: str, side: str, count: int) -> list[str]:
    article = "an" if colour[0] in "aeiou" else "a"
    return [t.format(a=article, colour=colour, shape=shape, side=side) for t in TEMPLATES[:count]]


def _write_coco(path: Path, frame: pd.DataFrame, captions: list[list[str]]) -> Path:
    """COCO captions: one image entry (with its label) per row, one annotation per caption."""
    images = [
        {"id": i, "file_name": filepath, CLASS_COLUMN: label}
        for i, (filepath, label) in enumerate(zip(frame["filepath"], frame[CLASS_COLUMN]))
    ]
    annotations = [
        {"id": len(images) * k + i, "image_id": i, "caption": caption}
        for i, options in enumerate(captions)
        for k, caption in enumerate(options)
    ]
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps({"images": images, "annotations": annotations}), encoding="utf-8")
    return path


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
