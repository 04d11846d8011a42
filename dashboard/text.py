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
# where GitHub-flavoured markdown would turn plain text into a link: "http://", "https://", "www." and an
# e-mail address's "@". Streamlit finds these in the text after its escapes are resolved, so escaping
# alone left "http://evil.example" in a caption a live link on a gallery card
_AUTOLINK_START = re.compile(r"(?i)(https?|www)(\\[:.])|(\\@)(?=[\w-]+\\\.[\w-])")
_WORD_JOINER = "\u2060"  # invisible, and not a character an autolink can span


def md(text: object) -> str:
    """``text`` on one line with every markdown-significant character backslash-escaped, and an invisible
    word joiner where it would otherwise become a link by itself."""
    escaped = _PUNCTUATION.sub(r"\\\1", " ".join(str(text).split()))
    return _AUTOLINK_START.sub(lambda m: (m[1] or "") + _WORD_JOINER + (m[2] or m[3]), escaped)


def isolated(text: object) -> str:
    """``text`` as a bidirectional isolate (Unicode's first-strong isolate, then its pop): a name in Arabic or
    Hebrew beside "(#1)" or "&" took the punctuation into its right-to-left run, and "monday (#1)" read as
    "(1#)", or two reviewers' names swapped places. Invisible; the text is not otherwise changed."""
    return f"\u2068{text}\u2069"


def markdown_table(frame: pd.DataFrame) -> str:
    """A small frame of text as a markdown table, every header and cell escaped by `md` (a ``|`` stays
    inside its cell)."""
    lines = ["| " + " | ".join(md(column) for column in frame.columns) + " |", "|" + " --- |" * frame.shape[1]]
    lines += ["| " + " | ".join(md(value) for value in row) + " |" for row in frame.itertuples(index=False)]
    return "\n".join(lines)


SHOWN_CAPTION = 200  # characters of a caption a card or a hint shows; the inspector and Review show all


def sample_label(sample_id: str, caption: str) -> str:
    """A sample as a message names it: the start of its caption, then its id ('“a purple diamond on the left”
    (1ec8f9947e5f916d)'). "Your verdict on 621f954dd0ded815 stays" named it by a hash no curator knows."""
    return f"“{shown_caption(caption, LABEL_CAPTION)}” ({sample_id})"


LABEL_CAPTION = 40  # characters of a caption that name its sample in a message


def shown_caption(caption: str, limit: int = SHOWN_CAPTION) -> str:
    """A caption cut to ``limit`` characters with an ellipsis: a 5,000-character caption drew a gallery
    card taller than the screen."""
    return caption if len(caption) <= limit else caption[: limit - 1].rstrip() + "…"
