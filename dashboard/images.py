"""Images as ``<img>`` tags with their bytes inline (data URLs), for a markdown element to draw.

Why not ``st.image``: its component is one of Streamlit's lazily loaded script chunks, and a page's
images showed only after the browser had fetched, compiled and run that chunk, on a CPU it shares with
the server. A markdown element is in Streamlit's main bundle and draws in the page's first wave: on the
Overview, the first chart came 0.47x as late (bench/bench_first_paint.py, docs/benchmarks.md).

Every part of a tag is ours: the bytes are base64, the MIME type a constant and the alt text escaped,
so no text from a dataset reaches the HTML unescaped. Large originals are scaled down first, so a page
never carries a camera's full-size photo through the websocket.
"""

from __future__ import annotations

import base64
import html
import io
from pathlib import Path

from PIL import Image

IMAGE_CLASS = "clipmem-image"  # a sample's image or thumbnail
CHART_CLASS = "clipmem-chart"  # a chart the server drew
IMAGE_SELECTOR = f"img.{IMAGE_CLASS}"  # what the browser tests and benchmarks wait for
CHART_SELECTOR = f'img.{CHART_CLASS}, [data-testid="stVegaLiteChart"] svg.marks'
MAX_SIDE_PX = 768  # twice the widest drawn image (the review's 384 px): sharp on a high-density screen
SVG = "image/svg+xml"


def encoded(image: Image.Image, max_side: int = MAX_SIDE_PX) -> tuple[bytes, str]:
    """The image as PNG where it has transparency (clip art), else JPEG, at most ``max_side`` px a side."""
    if max(image.size) > max_side:
        image = image.copy()
        image.thumbnail((max_side, max_side), Image.Resampling.LANCZOS)
    buffer = io.BytesIO()
    if image.mode in ("RGBA", "LA", "P", "PA"):
        image.save(buffer, "PNG", optimize=False)
        return buffer.getvalue(), "image/png"
    image.convert("RGB").save(buffer, "JPEG", quality=90)
    return buffer.getvalue(), "image/jpeg"


def file_bytes(source: Path | str | bytes, max_side: int = MAX_SIDE_PX) -> tuple[bytes, str]:
    """An image file (a path, or a shard member's bytes) ready for a tag: a small JPEG or PNG file as it
    is (a thumbnail: no decoding), anything else decoded and encoded by `encoded`."""
    raw = source if isinstance(source, bytes) else Path(source).read_bytes()
    mime = _sniff(raw)
    if mime is not None and len(raw) <= 64_000:
        with Image.open(io.BytesIO(raw)) as probe:
            if max(probe.size) <= max_side:
                return raw, mime
    with Image.open(io.BytesIO(raw)) as opened:
        opened.load()
        return encoded(opened, max_side)


def img_tag(data: bytes, mime: str, *, alt: str, css_class: str = IMAGE_CLASS, width_px: int | None = None) -> str:
    """One ``<img>`` with ``data`` inline, ``width_px`` wide, else as wide as its column allows.

    Streamlit keeps ``class`` and ``width`` but drops ``style``, and its markdown images never grow past
    their own pixels (``object-fit: scale-down``): a small image is upscaled on the server where a page
    promises a size (review.review_image)."""
    width = f' width="{int(width_px)}"' if width_px else ""
    source = f"data:{mime};base64,{base64.b64encode(data).decode('ascii')}"
    alt = html.escape(" ".join(alt.split()))  # one line: a blank line would end markdown's HTML block
    return f'<img class="{css_class}" alt="{alt}"{width} src="{source}">'


def _sniff(raw: bytes) -> str | None:
    if raw.startswith(b"\xff\xd8\xff"):
        return "image/jpeg"
    if raw.startswith(b"\x89PNG\r\n\x1a\n"):
        return "image/png"
    return None
