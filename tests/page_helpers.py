"""Reading what a page drew under Streamlit's AppTest, for tests of several pages."""

from __future__ import annotations

import re

_IMAGE = re.compile(r"!\[(?:[^\]\\]|\\.)*\]\((data:image/[^)]+)\)")


def drawn_images(block) -> list[str]:
    """The data URLs of the images in ``block`` (an AppTest or one of its containers), in page order:
    markdown images with their bytes inline (dashboard/images.py)."""
    return [url for m in block.markdown for url in _IMAGE.findall(m.value)]
