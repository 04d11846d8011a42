"""Images as markdown with their bytes inline (data URLs): ``![caption](data:image/jpeg;base64,…)``.

Why not ``st.image``: its component is one of Streamlit's lazily loaded script chunks, and a page's
images showed only after the browser had fetched, compiled and run that chunk, on a CPU it shares with
the server. Plain markdown is in Streamlit's main bundle and draws in the page's first wave (an ``<img>``
tag would need the markdown's raw-HTML chunk instead). Measured in bench/bench_first_paint.py, recorded
in docs/benchmarks.md.

Streamlit draws a markdown image as wide as its column allows but never past its own pixels
(``object-fit: scale-down``), so where a page promises a size the server upscales the image first
(review.review_image). Large originals are scaled down, so no page carries a camera's full-size photo
through the websocket. The alt text is escaped like any other untrusted text (dashboard/text.py).
"""

from __future__ import annotations

import base64
import io
import math
from collections.abc import Sequence
from pathlib import Path
from typing import NamedTuple

from PIL import Image

from .text import md, shown_caption

# What the browser tests and benchmarks wait for: an image drawn inside a markdown element (a sample's
# image, or a chart the server drew), or the Embedding map's canvas once it has drawn its points.
IMAGE_SELECTOR = '[data-testid="stMarkdownContainer"] img[src^="data:image/"]'
CHART_SELECTOR = f"{IMAGE_SELECTOR}, .clipmem-map canvas[data-drawn]"
MAX_SIDE_PX = 768  # twice the widest drawn image (the review's 384 px): sharp on a high-density screen
SVG, PNG, JPEG = "image/svg+xml", "image/png", "image/jpeg"
_SMALL_FILE_BYTES = 64_000
# What reading an image file may raise (a damaged, truncated or oversized file): it costs that image only.
UNREADABLE = (OSError, ValueError, Image.DecompressionBombError)


def encoded(image: Image.Image, max_side: int = MAX_SIDE_PX) -> tuple[bytes, str]:
    """The image as PNG where it has transparency (clip art), else JPEG, at most ``max_side`` px a side."""
    if max(image.size) > max_side:
        image = image.copy()
        image.thumbnail((max_side, max_side), Image.Resampling.LANCZOS)
    buffer = io.BytesIO()
    if image.mode in ("RGBA", "LA", "P", "PA"):
        image.save(buffer, "PNG")
        return buffer.getvalue(), PNG
    image.convert("RGB").save(buffer, "JPEG", quality=90)
    return buffer.getvalue(), JPEG


def file_bytes(source: Path | str | bytes, max_side: int = MAX_SIDE_PX) -> tuple[bytes, str]:
    """An image file (a path, or a shard member's bytes) ready to draw: a small JPEG or PNG file as it is
    (a thumbnail: not decoded), anything else decoded and encoded by `encoded`. A file that is no image
    raises OSError."""
    raw = source if isinstance(source, bytes) else Path(source).read_bytes()
    with Image.open(io.BytesIO(raw)) as opened:  # reads the header only
        if opened.format in ("JPEG", "PNG") and len(raw) <= _SMALL_FILE_BYTES and max(opened.size) <= max_side:
            return raw, Image.MIME[opened.format]
        opened.load()
        return encoded(opened, max_side)


def markdown_image(data: bytes, mime: str, *, alt: str) -> str:
    """``data`` as a markdown image, its alt text escaped and cut as a card cuts a caption: the alt is the
    sample's caption, and one of 100,000 characters took the browser 6 s to render on every visit."""
    return f"![{md(shown_caption(alt))}](data:{mime};base64,{base64.b64encode(data).decode('ascii')})"


class Atlas(NamedTuple):
    """Thumbnails side by side in one image, ``columns`` a row, each in a ``cell``-pixel square."""

    src: str  # a data URL
    cell: int
    columns: int


def thumbnail_atlas(paths: Sequence[Path | None], cell: int) -> Atlas:
    """One JPEG holding a thumbnail per path, in order (a blank cell where there is none or it is unreadable):
    one request's worth of images for a chart's hover, however many points it has."""
    columns = max(1, math.ceil(math.sqrt(len(paths))))
    sheet = Image.new("RGB", (columns * cell, max(1, math.ceil(len(paths) / columns)) * cell), "white")
    for i, path in enumerate(paths):
        if path is None:
            continue
        try:
            with Image.open(path) as opened:
                opened.thumbnail((cell, cell))
                tile = opened.convert("RGB")
        except UNREADABLE:
            continue
        sheet.paste(tile, ((i % columns) * cell, (i // columns) * cell))
    buffer = io.BytesIO()
    sheet.save(buffer, "JPEG", quality=75)
    return Atlas(f"data:{JPEG};base64,{base64.b64encode(buffer.getvalue()).decode('ascii')}", cell, columns)
