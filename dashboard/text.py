"""Untrusted text in markdown-rendering elements: `md` escapes it so it shows verbatim.

Streamlit renders markdown in titles, captions, alerts, badges, metric and button labels. Sample ids,
reviewer names, run names and captions come from users and data, so wherever one of them reaches such
an element it goes through `md`: ``[x](http://evil)`` or ``![](http://evil/pixel)`` shows as typed and
links or loads nothing. Plain blocks of untrusted text use ``st.text`` instead.
"""

from __future__ import annotations

import re

_PUNCTUATION = re.compile(r"([!-/:-@\[-`{-~])")  # every ASCII punctuation character: CommonMark escapes them all


def md(text: object) -> str:
    """``text`` on one line with every markdown-significant character backslash-escaped."""
    return _PUNCTUATION.sub(r"\\\1", " ".join(str(text).split()))
