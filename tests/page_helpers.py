"""Reading what a page drew under Streamlit's AppTest, for tests of several pages."""

from __future__ import annotations

import re

import pandas as pd

from clipmem_core.review import decisions as decisions_module
from clipmem_core.review import store as store_module

_IMAGE = re.compile(r"!\[(?:[^\]\\]|\\.)*\]\((data:image/[^)]+)\)")


def drawn_images(block) -> list[str]:
    """The data URLs of the images in ``block`` (an AppTest or one of its containers), in page order:
    markdown images with their bytes inline (dashboard/images.py)."""
    return [url for m in block.markdown for url in _IMAGE.findall(m.value)]


def markdown_tables(block) -> list[pd.DataFrame]:
    """The markdown tables in ``block`` (dashboard.text.markdown_table), their cells unescaped."""
    tables = []
    for m in block.markdown:
        lines = m.value.splitlines()
        if len(lines) >= 2 and lines[0].startswith("| ") and lines[1].startswith("| ---"):
            rows = [
                [re.sub(r"\\(.)", r"\1", c.strip()).replace("\u2060", "") for c in re.split(r"(?<!\\)\|", line)[1:-1]]
                for line in lines
            ]
            tables.append(pd.DataFrame(rows[2:], columns=rows[0]))
    return tables


def after_the_grace(monkeypatch) -> None:
    """Every verdict as if older than the undo's grace (``UNDO_GRACE_S``): the store refuses a late take-back
    of a first verdict others have judged too, and blind mode shows the other reviewers' verdicts."""
    monkeypatch.setattr(store_module, "UNDO_GRACE_S", 0.0)
    monkeypatch.setattr(decisions_module, "UNDO_GRACE_S", 0.0)
