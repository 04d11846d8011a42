"""Image fingerprints: which samples show the same picture, found from the pixels as a run loads them."""

from __future__ import annotations

import numpy as np
from PIL import Image

from clipmem_core.data import load_image
from clipmem_core.fingerprints import image_fingerprint, image_fingerprints


def _drawing(size: int = 64) -> Image.Image:
    pixels = np.zeros((size, size, 3), np.uint8)
    pixels[size // 4 : size // 2, size // 8 :] = (200, 30, 30)
    pixels[size // 2 :, : size // 3] = (20, 90, 220)
    return Image.fromarray(pixels)


def test_the_same_picture_in_two_files_and_formats_has_one_fingerprint_and_another_picture_another(tmp_path):
    _drawing().save(tmp_path / "a.png")
    _drawing().save(tmp_path / "b.bmp")
    _drawing().transpose(Image.Transpose.FLIP_LEFT_RIGHT).save(tmp_path / "mirrored.png")
    a, b, mirrored = (image_fingerprint(load_image(tmp_path, name)) for name in ("a.png", "b.bmp", "mirrored.png"))
    assert a == b and a != mirrored


def test_transparency_is_the_white_the_run_sees_and_twice_the_size_is_the_same_picture(tmp_path):
    drawing = np.asarray(_drawing())
    transparent = np.dstack([drawing, np.where(drawing.any(axis=2), 255, 0).astype(np.uint8)])
    Image.fromarray(transparent, "RGBA").save(tmp_path / "transparent.png")
    on_white = np.where(drawing.any(axis=2, keepdims=True), drawing, 255).astype(np.uint8)
    Image.fromarray(on_white).save(tmp_path / "white.png")
    Image.fromarray(on_white).resize((128, 128), Image.Resampling.NEAREST).save(tmp_path / "twice.png")
    found = image_fingerprints([load_image(tmp_path, n) for n in ("transparent.png", "white.png", "twice.png")])
    assert found.dtype == np.int64 and len(set(found.tolist())) == 1
