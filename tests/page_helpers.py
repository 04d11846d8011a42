"""Reading what a page drew under Streamlit's AppTest, for tests of several pages."""

from __future__ import annotations

import re

from dashboard.images import IMAGE_CLASS

_SOURCE = re.compile(r'src="([^"]+)"')


def drawn_images(block, css_class: str = IMAGE_CLASS) -> list[str]:
    """The data URLs of the images in ``block`` (an AppTest or one of its containers): each is a markdown
    element holding one ``<img>`` of that class (dashboard/images.py)."""
    return [_SOURCE.search(m.value).group(1) for m in block.markdown if f'<img class="{css_class}"' in m.value]
