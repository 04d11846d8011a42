"""Untrusted text in markdown-rendering elements: `md` escapes it so it shows verbatim.

Streamlit renders markdown in titles, captions, alerts, badges, metric and button labels. Sample ids,
reviewer names, run names and captions come from users and data, so wherever one of them reaches such
an element it goes through `md`: ``[x](http://evil)`` or ``![](http://evil/pixel)`` shows as typed and
links or loads nothing. Plain blocks of untrusted text use ``st.text`` instead.
"""

from __future__ import annotations

import re

import pandas as pd

_PUNCTUATION = re.compile(r"([!-/:-@\[-`{-~])")  # every ASCII punctuation character: CommonMark escapes them all


def md(text: object) -> str:
    """``text`` on one line with every markdown-significant character backslash-escaped."""
    return _PUNCTUATION.sub(r"\\\1", " ".join(str(text).split()))


def markdown_table(frame: pd.DataFrame) -> str:
    """A small frame of text as a markdown table, every header and cell escaped by `md` (a ``|`` stays
    inside its cell)."""
    lines = ["| " + " | ".join(md(column) for column in frame.columns) + " |", "|" + " --- |" * frame.shape[1]]
    lines += ["| " + " | ".join(md(value) for value in row) + " |" for row in frame.itertuples(index=False)]
    return "\n".join(lines)


SHOWN_CAPTION = 200  # characters of a caption a card or a hint shows; the inspector and Review show all


def shown_caption(caption: str, limit: int = SHOWN_CAPTION) -> str:
    """A caption cut to ``limit`` characters with an ellipsis: a 5,000-character caption drew a gallery
    card taller than the screen."""
    return caption if len(caption) <= limit else caption[: limit - 1].rstrip() + "…"
