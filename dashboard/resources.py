"""Process-wide cached resources (runs, sort orders, indexes, review store) and the current run.

Everything heavy is loaded once per run version (keyed by the manifest's mtime) with
``st.cache_resource``; pages only read from these objects. A run or a database that cannot be read
shows one ``st.error`` naming the problem, and the rest of the dashboard (other runs, other pages)
stays usable: the page stops, or carries on without what is missing (verdicts, neighbours).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import sys
import threading
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import NamedTuple

import numpy as np
import pandas as pd
import streamlit as st

from clipmem_core import ClipmemError, Run, list_runs, load_run
from clipmem_core.cache import IMAGE_EMBEDDINGS, INDEX_DIR, MANIFEST, MODALITIES, TEXT_EMBEDDINGS, VIEW_ALIGNMENTS
from clipmem_core.index import NeighbourSearch
from clipmem_core.learned import KEY as LEARNED_KEY
from clipmem_core.learned import LABEL as LEARNED_LABEL
from clipmem_core.learned import LearnedRanking, can_learn, fit_learned_ranking, labels_from_verdicts
from clipmem_core.metrics import best_detector, detection_summary
from clipmem_core.review import ReviewStore, open_store
from clipmem_core.review.decisions import COLUMNS, decided, visible_decisions
from clipmem_core.review.estimate import Estimate, audit_order, open_disagreements, ranking_name, run_estimate
from clipmem_core.review.store import DB_URL_ENV
from clipmem_core.scores import suspicion_order

from . import auth, embedding_map, inspector, overview, state
from .gallery import (
    DEFAULT_SORT,
    FLAG_FILTERS,
    FLAG_FROM_LABEL,
    UNSCORED_CHOICES,
    Filters,
    SortOrders,
    range_scores,
    slider_grid,
    sort_orders,
    sorts,
    values,
)
from .images import Atlas, thumbnail_atlas
from .text import md


def _version(path: str) -> int:
    """Changes when a run is rewritten, so a recomputed run is not served from the cache."""
    try:
        return (Path(path) / MANIFEST).stat().st_mtime_ns
    except OSError:
        return 0


@st.cache_resource(show_spinner=False)
def warm_chart_renderer() -> threading.Thread:
    """Start the chart renderer in the background, once per server process (see overview.chart_svg)."""
    draw = overview.chart_renderer_warm_up()
    thread = threading.Thread(target=draw, name="chart-renderer-warm-up", daemon=True)
    thread.start()
    return thread


@st.cache_resource(max_entries=8, show_spinner=False)
def _overview_charts(path: str, version: int) -> tuple[str | None, tuple[bytes, int] | None]:
    run = _load_run(path, version)
    return overview.histogram_svg(run.scores), overview.alignment_png(run.scores)


def overview_charts(run: Run) -> tuple[str | None, tuple[bytes, int] | None]:
    """The Overview's histogram (SVG) and alignment scatter (PNG), drawn once per run version."""
    return _overview_charts(str(run.path), _version(str(run.path)))


@st.cache_resource(max_entries=8, show_spinner=False)
def _map_atlas(path: str, version: int, key: str, _rows: np.ndarray) -> Atlas:
    run = _load_run(path, version)
    return thumbnail_atlas([run.thumbnail_path(int(row)) for row in _rows], embedding_map.ATLAS_CELL_PX)


def map_atlas_key(run: Run, rows: np.ndarray) -> str:
    """Names the thumbnail atlas of ``rows`` in this run version: the browser keeps the atlas it holds by it."""
    digest = hashlib.sha256(np.asarray(rows, dtype=np.int64).tobytes())
    digest.update(f"{run.path}:{_version(str(run.path))}".encode())
    return digest.hexdigest()[:16]


def map_atlas(run: Run, rows: np.ndarray, key: str) -> Atlas:
    """The Embedding map's hover thumbnails for its plotted ``rows`` (``key``: `map_atlas_key`), built once
    per key."""
    return _map_atlas(str(run.path), _version(str(run.path)), key, rows)


@st.cache_resource(max_entries=4, show_spinner="Loading run…")
def _load_run(path: str, version: int) -> Run:
    return load_run(path)


@st.cache_resource(max_entries=4, show_spinner="Ranking samples…")
def _orders(path: str, version: int) -> SortOrders:
    return sort_orders(_load_run(path, version).scores)


@st.cache_resource(max_entries=16, show_spinner="Learning from your verdicts…")
def _learned(path: str, version: int, digest: str, _labels: Mapping[str, bool]) -> LearnedRanking | None:
    """Refit whenever the verdicts change: their digest is the key (hashing the labels themselves would
    cost more than the lookup saves at 100k verdicts)."""
    return fit_learned_ranking(_load_run(path, version).scores, _labels)


@st.cache_resource(max_entries=4, show_spinner="Loading indexes…")
def _search(path: str, version: int) -> NeighbourSearch:
    return NeighbourSearch(_load_run(path, version))


@st.cache_resource(max_entries=8, show_spinner=False)
def _problems(path: str, version: int) -> list[str]:
    """What is damaged in a loaded run's other files (arrays, indexes): checked once per run version.

    The arrays' headers and sizes are read (memory-mapped, not loaded); the indexes are loaded into the
    run's cached NeighbourSearch, which the inspector and the review hints use anyway.
    """
    run = _load_run(path, version)
    problems = []
    for name in (IMAGE_EMBEDDINGS, TEXT_EMBEDDINGS, VIEW_ALIGNMENTS):
        if name in run.manifest.files:
            try:
                np.load(run.path / name, mmap_mode="r")
            except (OSError, ValueError, EOFError) as exc:
                problems.append(f"{name} is unreadable ({exc})")
    for modality in MODALITIES:
        if f"{INDEX_DIR}/{modality}.faiss" in run.manifest.files:
            try:
                _search(path, version).index(modality)
            except ClipmemError as exc:
                problems.append(str(exc))
    return problems


@st.cache_resource(max_entries=4, show_spinner=False)
def _detection(path: str, version: int) -> dict | None:
    return detection_summary(_load_run(path, version).scores)


@st.cache_resource(show_spinner=False)
def review_store(cache_root: str, url: str | None) -> ReviewStore:
    """Keyed by $CLIPMEM_DB_URL too: when set, it, not the cache root, picks the database."""
    return open_store(cache_root, url)


def current_run() -> Run | None:
    """The run chosen in the sidebar; None when there is none. A damaged one: st.error, then the page stops."""
    path = st.session_state.get(state.RUN_PATH)
    if not path:
        return None
    try:
        return _load_run(path, _version(path))
    except ClipmemError as exc:
        st.error(f"Run {md(Path(path).name)} cannot be shown: {md(exc)}", icon=":material/error:")
        st.caption("Pick another run in the sidebar; the others are not affected.")
        st.stop()


def preload_default_run() -> None:
    """Load the run a visitor first sees, and its default order, into the process cache (a server's
    start-up, dashboard.warm). A run that cannot be read is left for its page to report."""
    root = Path(state.default_cache_root())
    name = state.default_run(list_runs(root)) if root.is_dir() else None
    if name is not None:
        print(f"clipmem: loading run {name!r} before the first visitor…", file=sys.stderr, flush=True)
        with contextlib.suppress(ClipmemError, OSError):
            orders(run_at(root / name))


def run_at(path: str | Path) -> Run:
    """Any run of the cache by its folder, loaded once per version (the Compare page shows several)."""
    return _load_run(str(path), _version(str(path)))


def require_run() -> Run:
    """The chosen run (damaged files named in st.error, the page goes on); without one, say how to get one."""
    run = current_run()
    if run is None:
        st.info("No run to show yet: start one on the Compute page.")
        st.stop()
    for problem in _problems(str(run.path), _version(str(run.path))):
        st.error(f"Run {md(run.name)} is damaged: {md(problem)}. Parts that need this file are not shown.")
    return run


def rerun_page_if_gone(run: Run) -> None:
    """In a fragment (which reruns alone, with the run the page loaded): when the run's folder has gone,
    rerun the whole page, whose sidebar then says so and shows another run. A Gallery's Next after the
    folder was deleted showed a traceback ("… is not a directory"), where a reload said what had happened."""
    if not (run.path / MANIFEST).is_file():
        st.rerun(scope="app")


def orders(run: Run) -> SortOrders:
    return _orders(str(run.path), _version(str(run.path)))


@st.cache_data(max_entries=64, show_spinner=False)
def _found_sample(path: str, version: int, typed: str) -> tuple[str | None, str | None]:
    return inspector.find_sample(_load_run(path, version), typed)


def find_sample(run: Run, typed: str) -> tuple[str | None, str | None]:
    """The inspector's lookup of a typed id, kept per run and text: an id in other capitals or cut short
    scans every id of the run, and the page reruns with the same text in the box (a tab, a slider)."""
    return _found_sample(str(run.path), _version(str(run.path)), typed)


class Orders(Mapping):
    """Key -> row order (most suspicious first) of every sort and ranked queue. The learned ranking's order
    is fitted on first access, so pages that never show it never pay for the fit."""

    def __init__(self, registered: Mapping[str, np.ndarray], fit: Callable[[], LearnedRanking | None] | None):
        self._registered, self._fit, self._learned_order = registered, fit, None

    def __getitem__(self, key: str) -> np.ndarray:
        if key != LEARNED_KEY or self._fit is None:
            return self._registered[key]
        if self._learned_order is None:
            self._learned_order = suspicion_order(self._fit().scores.astype(np.float64))
        return self._learned_order

    def __iter__(self) -> Iterator[str]:
        yield from self._registered
        if self._fit is not None:
            yield LEARNED_KEY

    def __len__(self) -> int:
        return len(self._registered) + (self._fit is not None)


class Rankings(NamedTuple):
    """Every sort and ranked review queue: key -> label, key -> row order, the learned ranking's fit (None
    until the verdicts allow one), and how many samples the verdicts call mis-captioned (what unlocks it)."""

    labels: dict[str, str]
    orders: Orders
    learned: Callable[[], LearnedRanking | None]
    miscaptioned: int


class LearningInput(NamedTuple):
    """What the learned ranking learns from: sample_id -> is mis-captioned, and their digest (its cache key)."""

    labels: dict[str, bool]
    digest: str


def learning_input(verdicts: Mapping[str, str]) -> LearningInput:
    labels = labels_from_verdicts(verdicts)
    return LearningInput(labels, hashlib.sha256(json.dumps(sorted(labels.items())).encode()).hexdigest())


def rankings(run: Run, verdicts: Mapping[str, str] | LearningInput) -> Rankings:
    """The registered scores' rankings, then the one learned from ``verdicts`` (sample_id -> decided
    verdict, as this viewer may see them) once they call enough samples mis-captioned. Only counted here: the
    fit (well under a second at 100k rows) runs when a page asks for the order or its AUROC, and is cached
    by the verdicts' digest, so it is redone only when they change."""
    learning = verdicts if isinstance(verdicts, LearningInput) else learning_input(verdicts)
    names = sorts(run.scores)
    miscaptioned = sum(learning.labels.values())
    if not can_learn(run.scores, learning.labels):
        return Rankings(names, Orders(orders(run), None), lambda: None, miscaptioned)

    def fit() -> LearnedRanking | None:
        return _learned(str(run.path), _version(str(run.path)), learning.digest, learning.labels)

    return Rankings({**names, LEARNED_KEY: LEARNED_LABEL}, Orders(orders(run), fit), fit, miscaptioned)


def review_rankings(run: Run, batch: tuple) -> Rankings:
    """The review page's rankings. The verdicts the learned ranking learns from are read once per ``batch``
    (a key: the queue and batch at hand), so recording a verdict costs neither the decisions table, nor
    the digest, nor a refit; the next batch learns from everything judged so far."""
    ss = st.session_state
    key = (run.name, *batch)
    if ss.get(state.LEARNED_SNAPSHOT, (None,))[0] != key:
        ss[state.LEARNED_SNAPSHOT] = (key, learning_input(decided(decisions(run))))
    return rankings(run, ss[state.LEARNED_SNAPSHOT][1])


@st.cache_resource(max_entries=4, show_spinner=False)
def _audit_order(n_samples: int) -> np.ndarray:
    return audit_order(n_samples)


def audit(run: Run) -> np.ndarray:
    """The "Random sample" queue's row order: seeded, the same for every reviewer, drawn once per size
    (a permutation of 10M rows takes about a third of a second)."""
    return _audit_order(len(run.scores))


def estimate(run: Run, decisions_table: pd.DataFrame) -> tuple[str, Estimate] | None:
    """(the ranking counted, the estimate of how many samples are mis-captioned) from the decisions this
    viewer may see; None for a run with no score."""
    name = ranking_name(run.scores)
    if name is None:
        return None
    open_samples = open_disagreements(decisions_table)
    return name, run_estimate(run, decided(decisions_table), orders(run)[name], audit(run), open_samples)


def neighbour_search(run: Run) -> NeighbourSearch:
    return _search(str(run.path), _version(str(run.path)))


def detection(run: Run) -> dict | None:
    """The run's detection summary: the manifest's when it ranks registered scores (by average precision),
    else (older runs) computed once from the scores; None without ground truth."""
    stored = run.manifest.summary.get("detection")
    if best_detector(stored) is not None:
        return stored
    return _detection(str(run.path), _version(str(run.path))) if run.has_ground_truth else None


def store() -> ReviewStore:
    """The review database; ClipmemError (e.g. an unreachable $CLIPMEM_DB_URL) says why not."""
    cache_root = st.session_state.get(state.CACHE_ROOT, state.default_cache_root())
    return review_store(cache_root, os.environ.get(DB_URL_ENV))


def store_or_stop() -> ReviewStore:
    """For pages useless without verdicts: the store, or st.error with the reason and stop."""
    try:
        return store()
    except ClipmemError as exc:
        st.error(md(exc), icon=":material/error:")
        st.stop()


def run_and_store() -> tuple[Run, ReviewStore]:
    """For the review pages, useless without either, or with a database they cannot write: stop with the
    reason. A read-only one (a cache copied without write rights) is still read by every other page."""
    run, review = require_run(), store_or_stop()
    if review.read_only:
        st.warning(
            f"The review database {md(review.read_only_file)} is read-only here: the other pages show the "
            f"team's verdicts, but none can be recorded. To review, point {DB_URL_ENV} at a database you can "
            "write, or give this server write access to it.",
            icon=":material/lock:",
        )
        st.stop()
    return run, review


def decisions(run: Run) -> pd.DataFrame:
    """The decisions this viewer may see (blind mode applied), index sample_id; empty when the store is down.

    The one source of badges, the flag filter and map colours on every page.
    """
    try:
        review = store()
        table = visible_decisions(review.current_verdicts(run.name), review.resolutions(run.name), *viewing())
    except ClipmemError as exc:
        st.error(f"Verdicts are not shown: {md(exc)}", icon=":material/error:")
        return pd.DataFrame(columns=COLUMNS).rename_axis("sample_id")
    return table


def viewing() -> tuple[str | None, bool]:
    """(who is looking, whether blind mode hides others' verdicts from them)."""
    return auth.viewer(), auth.blind()


def range_bounds(run: Run, column: str) -> tuple[float, float, float]:
    """(low, high, step) of the score's range slider: see ``gallery.slider_grid``."""
    finite = values(run.scores, column)
    return slider_grid(finite[np.isfinite(finite)])


def range_score(run: Run) -> str:
    """The score the sidebar's range filter applies to: by default the gallery's default sort (the
    combined ranking), so that a filtered gallery is still ordered by the score it was filtered on."""
    choices = range_scores(run.scores)
    chosen = st.session_state.get(state.RANGE_SCORE)
    if chosen in choices:
        return chosen
    return next((c for c in (DEFAULT_SORT, "clipmem") if c in choices), next(iter(choices), DEFAULT_SORT))


def current_filters(run: Run) -> Filters:
    """The sidebar's filters; the range counts only when narrower than the score's whole range.

    The split, verdict and caption-search filters live in the address too (``sidebar.filters``), so a reload
    or a shared link filters alike. Their widgets are drawn after the page's content: on a page's first load
    this reads the address, which the widgets have not read yet."""
    ss = st.session_state
    column = range_score(run)
    chosen = ss.get(state.range_key(run.name, column))
    active = chosen is not None and tuple(chosen) != range_bounds(run, column)[:2]
    flag = ss[state.FLAG] if state.FLAG in ss else FLAG_FROM_LABEL.get(st.query_params.get(state.FLAG, "any"))
    unscored = ss.get(state.UNSCORED, "include")
    text = ss[state.TEXT] if state.TEXT in ss else st.query_params.get(state.TEXT, "")
    text = text or ""
    if text.strip():
        _index_captions(run)
    splits = ss[state.SPLITS] if state.SPLITS in ss else st.query_params.get_all(state.SPLITS)
    return Filters(
        splits=tuple(splits or ()),
        score=column,
        score_range=tuple(chosen) if active else None,
        unscored=unscored if unscored in UNSCORED_CHOICES else "include",
        flag=flag if flag in FLAG_FILTERS else "any",
        text=text,
    )


def _index_captions(run: Run) -> None:
    """The first caption search of a large run builds its word index (about 15 s at 10M rows): say so,
    rather than leave the page still. Later searches, by anyone, use the index (`clipmem_core.caption_search`)."""
    if "caption_index" not in vars(run):
        with st.spinner(f"Indexing {len(run.scores):,} captions for search (once per run)…"):
            run.caption_index  # noqa: B018 (builds and keeps it)


MAX_HELD_SELECTIONS = 256


@st.cache_resource(show_spinner=False)
def _held_selections() -> dict[str, tuple[str, tuple[int, ...]]]:
    """Map selections opened in the gallery, by token: (the run's folder, its rows), for the life of the
    server process, the latest ``MAX_HELD_SELECTIONS``."""
    return {}


def hold_selection(run: Run, rows: np.ndarray) -> str:
    """Keep a map selection for the gallery's address (``?map_selection=<token>``): a reload, or the link
    passed to a teammate on the same server, shows the same samples. The rows themselves would not fit in an
    address (up to 20,000), so the server holds them; before, a reload showed the whole run without a word."""
    chosen = tuple(int(row) for row in rows)
    token = hashlib.sha256(f"{run.path}:{chosen}".encode()).hexdigest()[:12]
    held = _held_selections()
    held.pop(token, None)
    held[token] = (str(run.path), chosen)
    for stale in list(held)[: max(0, len(held) - MAX_HELD_SELECTIONS)]:
        held.pop(stale, None)
    return token


def selection(run: Run) -> np.ndarray | None:
    """Rows chosen on the embedding map, which the gallery then shows alone: this session's, else the one the
    address names (a reload, a shared link); a token this server does not hold for this run is dropped from
    the address, and the gallery says so (``state.SELECTION_LOST``)."""
    rows = st.session_state.get(state.SELECTION)
    token = st.query_params.get(state.SELECTION_PARAM)
    if rows is None and token:
        held = _held_selections().get(token)
        if held is None or held[0] != str(run.path):
            st.query_params.pop(state.SELECTION_PARAM, None)
            st.session_state[state.SELECTION_LOST] = True
            return None
        rows = st.session_state[state.SELECTION] = list(held[1])
    return None if rows is None else np.asarray(rows, dtype=np.int64)
