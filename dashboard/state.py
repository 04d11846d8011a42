"""Session-state keys and defaults shared by app.py, the pages and the review pages."""

from __future__ import annotations

import os
from collections.abc import Iterable, MutableMapping, Sequence
from typing import Any

from clipmem_core.cache import RunInfo

CACHE_ENV = "CLIPMEM_CACHE"
DEFAULT_RUN = "demo"
DEFAULT_RUN_ENV = "CLIPMEM_DEFAULT_RUN"  # the run a bare address opens, for a team reviewing one run

# Keys the review pages read too: keep their names stable.
CACHE_ROOT = "cache_root"
RUN_PATH = "run_path"
# Dashboard-only keys.
RUN_NAME = "run"  # written to ?run= on every page, so a reload (or a shared link) keeps the run
FILTER_PREFIX = "f_"  # every sidebar filter's key starts with it
SPLITS = "f_splits"
RANGE_SCORE = "f_range_score"
UNSCORED = "f_unscored"
FLAG = "f_flag"
TEXT = "f_text"
PAGE = "gallery_page"  # 1-based, the page number widget's key
PAGE_FIX, PAGE_NOTE = "_gallery_page_fix", "_gallery_page_note"  # a page number past the end, put right on a rerun
SORT = "sort"  # bound to ?sort=
SELECTION = "selection_rows"
SELECTION_PARAM = "map_selection"  # ?map_selection=<token>: a selection the server holds (resources.hold_selection)
SELECTION_LOST = "_map_selection_lost"  # a link's selection this server no longer holds: said once
INSPECT = "inspect_sample"
NEIGHBOUR_MODE = "inspect_mode"  # the inspector's open neighbour tab
INSPECT_RUN = "inspect_run"  # the run the inspected sample id belongs to
JOB = "compute_job"
FLAG_MODE = "flag_mode"  # bound to ?flag_mode= so flag mode survives a reload
LEARNED_SNAPSHOT = "learned_snapshot"  # (run, queue, batch) -> the verdicts the review queue learned from
PAGE_WIDGETS = (PAGE, SORT, INSPECT)


def keep_values(session: MutableMapping[str, Any], keys: Iterable[str]) -> None:
    """Keep these widgets' values through a run that does not draw them: Streamlit forgets the value of a
    widget a run does not draw, unless the script re-owns it by writing it back.

    A widget whose value is kept this way takes its default from the session state (``setdefault`` before
    it is drawn), not from its ``value``/``default`` argument: Streamlit warns in the server log of a
    widget created with a default whose value the script also set."""
    for key in keys:
        if key in session:
            session[key] = session[key]


def default_cache_root() -> str:
    return os.environ.get(CACHE_ENV, "cache")


def range_key(run_name: str, column: str) -> str:
    """The range slider's key is per run and score: its bounds differ from one to the other."""
    return f"f_range:{run_name}:{column}"


def default_run(infos: Sequence[RunInfo]) -> str | None:
    """The run named by CLIPMEM_DEFAULT_RUN if it is usable, else the demo, else the newest usable run.

    Without the setting, a cache without the demo opens on whichever run finished last: a team reviewing
    one run would land on another as soon as someone's new run finished, unless every link named it."""
    usable = [i.name for i in infos if i.ok]
    for preferred in (os.environ.get(DEFAULT_RUN_ENV, "").strip(), DEFAULT_RUN):
        if preferred in usable:
            return preferred
    return usable[0] if usable else None
