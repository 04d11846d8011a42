"""Tables, binned data and charts for the Overview page, read from the manifest and scores (no recompute).

Histograms are binned here, so the browser gets bins, not one value per sample. The charts are drawn on
the server as images (the histogram an SVG, the scatter a PNG): a Vega-Lite chart makes the browser
load and run Vega's code before it draws, about 1.4 s of a 2-core machine, and the Overview is the page
a curator opens first. Nothing is lost: its charts only showed values on hover, and the Embedding map
is the interactive view.
"""

from __future__ import annotations

import functools
import math
import shlex
from collections.abc import Callable
from dataclasses import asdict
from typing import Any

import altair as alt
import numpy as np
import pandas as pd
import vl_convert

from clipmem_core.cache import (
    GROUND_TRUTH,
    IMAGE_EMBEDDINGS,
    SKIPPED,
    TRUTH_CLEAN,
    TRUTH_MISCAPTIONED,
    TRUTH_UNKNOWN,
    Manifest,
    Run,
    computed_on,
    truth_words,
)
from clipmem_core.droplist import exclusion_note
from clipmem_core.fingerprints import FINGERPRINT_COLUMN
from clipmem_core.formatting import fmt_count, fmt_number
from clipmem_core.importer import PROTOCOL as IMPORTED
from clipmem_core.metrics import (
    best_detector,
    clipmem_offset_sentence,
    held_out_pools,
    model_strength,
    weak_models_sentence,
)
from clipmem_core.review.estimate import MIN_AUDIT, Estimate
from clipmem_core.scores import MEASUREMENTS, column_label, registry
from clipmem_core.scores.combined import RECIPE, members
from clipmem_core.splits import CANDIDATE, EXTRA, INDEPENDENT, SHARED, split_order

from .embedding_map import TRUTH_COLOURS, colour_scale  # ground truth looks the same on every page
from .gallery import DEFAULT_SORT
from .review import AUDIT_LABEL, DEFAULT_BATCH

MAX_POINTS = 20_000
SKIPPED_SHOWN = 1_000  # rows of the skip report shown; the file holds them all
CHART_WIDTH = 880  # px of a drawn chart: the main column at 1280 px with the sidebar open; images shrink to fit
SPLIT_COLOURS = {CANDIDATE: "#d62728", INDEPENDENT: "#1f77b4", EXTRA: "#7f7f7f", SHARED: "#bcbd22"}


def run_facts(manifest: Manifest) -> dict[str, str]:
    """Headline numbers; long values (model, split sizes) go in ``run_line`` instead."""
    seconds = manifest.seconds
    return {
        "Samples": fmt_number(manifest.dataset.n_samples),
        "Skipped": fmt_number(manifest.dataset.n_skipped),
        "Protocol": manifest.protocol,
        "Compute time": f"{seconds / 60:.1f} min" if seconds >= 120 else f"{seconds:.0f} s",
    }


def run_line(manifest: Manifest) -> str:
    """Model, preset, data and split sizes in one line of plain text."""
    config = manifest.config
    splits = ", ".join(f"{s} {fmt_number(manifest.splits[s])}" for s in split_order(manifest.splits))
    line = (
        f"model {config.get('model', '–')} · preset {config.get('preset', '–')} · "
        f"data {manifest.dataset.path or '–'} · splits: {splits} · created {manifest.created}"
    )
    where = computed_on(manifest.compute)
    return f"{line} · {where}" if where else line


def manifest_sections(manifest: Manifest) -> dict[str, dict]:
    """The manifest's parts a person may want to read, as plain dicts."""
    return {
        "config": manifest.config,
        "dataset": asdict(manifest.dataset),
        "timings": manifest.timings,
        "versions": manifest.versions,
    }


def key_values(mapping: dict, value_name: str = "value") -> pd.DataFrame:
    """A nested dict as a two-column table of strings (dotted keys), for st.dataframe."""
    rows: list[tuple[str, str]] = []

    def walk(prefix: str, value: Any) -> None:
        if isinstance(value, dict):
            for k, v in value.items():
                walk(f"{prefix}.{k}" if prefix else str(k), v)
        else:
            rows.append((prefix, str(value)))

    walk("", mapping or {})
    return pd.DataFrame(rows, columns=["key", value_name])


def histogram_column(scores: pd.DataFrame) -> str:
    """The paper's A(f) − A(g) under the paper protocol (it separates the splits), else CLIPMem."""
    return "clipmem_from_f" if "clipmem_from_f" in scores.columns else "clipmem"


def split_histograms(scores: pd.DataFrame, bins: int = 60) -> pd.DataFrame:
    """Counts of the histogram column per split on shared bin edges: (split, value, count)."""
    column = histogram_column(scores)
    values = scores[column].to_numpy(dtype=np.float64, na_value=np.nan) if column in scores else np.array([])
    finite = np.isfinite(values)
    if not finite.any():
        return pd.DataFrame(columns=["split", "value", "count"])
    edges = np.histogram_bin_edges(values[finite], bins=bins)
    bin_edges = {"value": (edges[:-1] + edges[1:]) / 2, "start": edges[:-1], "end": edges[1:]}
    splits = scores["split"].to_numpy()
    frames = []
    for split in split_order(scores["split"].unique()):
        chosen = values[finite & (splits == split)]
        if chosen.size:
            counts, _ = np.histogram(chosen, bins=edges)
            frames.append(pd.DataFrame({"split": split, **bin_edges, "count": counts}))
    return pd.concat(frames, ignore_index=True)


# The Overview draws Vega-Lite charts (Altair), not Plotly: Streamlit loads a chart library's code on
# the first chart of a page, and Plotly's is 4.7 MB, which held every element of the page back until
# parsed: the first chart took 10 s on the benchmark VM under load (docs/benchmarks.md).


def histogram_chart(hist: pd.DataFrame, label: str, height: int = 320) -> alt.Chart:
    """Overlaid per-split histograms (from `split_histograms`), legend on top so it covers nothing."""
    splits = list(dict.fromkeys(hist["split"]))
    return (
        alt.Chart(hist, height=height)
        .mark_rect(opacity=0.6)
        .encode(
            x=alt.X("start:Q", title=label, axis=alt.Axis(tickCount=6, labelOverlap="greedy")),  # labels ran together
            x2="end:Q",
            y=alt.Y("count:Q", title="samples"),
            y2=alt.datum(0),
            color=alt.Color("split:N", scale=colour_scale(splits, SPLIT_COLOURS), legend=alt.Legend(orient="top")),
            tooltip=["split", alt.Tooltip("value:Q", format=".3f", title=label), "count"],
        )
    )


READABLE_TICKS = alt.Axis(tickCount=8, labelOverlap="greedy")  # a 0.02 grid's labels read "0.100.12" at its ends


def alignment_chart(points: pd.DataFrame, x_label: str, y_label: str, height: int = 420) -> alt.LayerChart:
    """Held-out against trained alignment per sample, mis-captions drawn on top, with the line y = x.

    The points go in as inline values, not as a frame: Altair refuses a frame of more than 5,000 rows, and
    the Overview of every run over 5,000 samples stopped at this chart with a MaxRowsError."""
    truths = [t for t in (TRUTH_CLEAN, TRUTH_UNKNOWN, TRUTH_MISCAPTIONED) if t in set(points["ground truth"])]
    low, high = float(points[["x", "y"]].min().min()), float(points[["x", "y"]].max().max())
    ordered = points.assign(order=points["ground truth"].map({t: i for i, t in enumerate(truths)}))
    dots = (
        alt.Chart(alt.InlineData(values=ordered.to_dict("records")))
        .mark_circle(size=22, opacity=0.8)
        .encode(
            x=alt.X("x:Q", title=x_label, scale=alt.Scale(zero=False), axis=READABLE_TICKS),  # ran together
            y=alt.Y("y:Q", title=y_label, scale=alt.Scale(zero=False), axis=READABLE_TICKS),
            color=alt.Color(
                "ground truth:N", scale=colour_scale(truths, TRUTH_COLOURS), legend=alt.Legend(orient="top")
            ),
            order="order:Q",
            tooltip=[alt.Tooltip("x:Q", format=".3f", title=x_label), alt.Tooltip("y:Q", format=".3f", title=y_label)],
        )
    )
    diagonal = (
        alt.Chart(pd.DataFrame({"x": [low, high], "y": [low, high]}))
        .mark_line(strokeDash=[4, 4], color="grey")
        .encode(x="x:Q", y="y:Q")
    )
    return alt.layer(dots, diagonal, height=height)


def split_means(manifest: Manifest) -> pd.DataFrame:
    """Mean ± std of every score and measurement (rows, under registry labels) per split (columns)."""
    per_split = (manifest.summary.get("splits") or {}).get("splits") or {}
    splits = split_order(per_split)
    rows = [{"score": "samples", **{s: fmt_number(per_split[s].get("count")) for s in splits}}]
    stored = dict.fromkeys(k for s in splits for k, v in per_split[s].items() if isinstance(v, dict))
    listing = {name: i for i, name in enumerate([*registry(), *MEASUREMENTS])}  # the manifest sorts its keys
    columns = sorted(stored, key=lambda column: (listing.get(column, len(listing)), column))
    for column in columns:
        cells = {}
        for split in splits:
            stats = per_split[split].get(column) or {}
            mean, std = stats.get("mean"), stats.get("std")
            cells[split] = "–" if mean is None else f"{fmt_number(mean)} ± {fmt_number(std)}"
        rows.append({"score": column_label(column), **cells})
    return pd.DataFrame(rows, columns=["score", *splits])


def ttests(manifest: Manifest) -> pd.DataFrame:
    """Welch t-tests from the manifest, each named with the registry's label of the column it tests; a test
    with an empty side (no sample marked mis-captioned) is left out: its row was all dashes beside "n A 0"."""
    rows = []
    for name, test in ((manifest.summary.get("splits") or {}).get("ttests") or {}).items():
        if not test.get("n_a") or not test.get("n_b"):
            continue
        column, _, what = name.partition(": ")
        rows.append(
            {
                "test": f"{column_label(column)}: {what}" if what else name,
                "mean A": fmt_number(test.get("mean_a")),
                "mean B": fmt_number(test.get("mean_b")),
                "n A": fmt_number(test.get("n_a")),
                "n B": fmt_number(test.get("n_b")),
                "t": fmt_number(test.get("t"), 2),
                "p": fmt_number(test.get("p"), 2, general=True),
            }
        )
    return pd.DataFrame(rows)


def utility_table(manifest: Manifest) -> pd.DataFrame:
    """Image→text and text→image R@1/R@5 of each model on samples it never saw."""
    utility = manifest.utility or {}
    rows = []
    for model, metrics in utility.items():
        if isinstance(metrics, dict):
            rows.append(
                {"model": model, **{_recall_label(k): fmt_number(v, 1, percent=True) for k, v in metrics.items()}}
            )
    return pd.DataFrame(rows)


def _recall_label(key: str) -> str:
    """``i2t_r5`` -> "image→text R@5"."""
    direction, _, k = key.partition("_r")
    words = {"i2t": "image→text", "t2i": "text→image"}
    return f"{words.get(direction, direction)} R@{k}" if k else key


# Short headers, so that the table fits a 1280 px window beside the sidebar; the caption above the table
# says what "top k" and "first page" are the precision of.
DETECTION_COLUMNS = {
    "auroc": "AUROC",
    "average_precision": "Average precision",
    "precision_at_k": "Top k",
    "precision_at_48": "First page (48)",
    "coverage": "Scored",
}


def detection_table(detection: dict | None) -> pd.DataFrame:
    """One row per registered score, in listing order, under the registry's labels (percentages as text)."""
    detectors = (detection or {}).get("detectors") or {}
    if not likely_count(detection):  # a ground truth that marks none: every figure is 0 % or undefined
        return pd.DataFrame()
    rows = []
    for name in registry():
        if name not in detectors:
            continue
        stats = detectors[name]
        row = {"ranking": column_label(name)}
        for key, label in DETECTION_COLUMNS.items():
            if key in stats:
                value = stats[key]
                row[label] = fmt_number(value, 3) if key == "auroc" else fmt_number(value, 1, percent=True)
        rows.append(row)
    return pd.DataFrame(rows)


def likely_count(detection: dict | None) -> int:
    """How many samples the ground truth marks mis-captioned; 0 without one.

    No label-free count is offered: the one shown before (samples whose held-out image→text margin is
    negative, i.e. another caption fits the image better) counted 1,918 of the demo's 2,000 samples, where
    80 are mis-captioned. Models trained from scratch prefer some other caption for most images, so such a
    count says how weak the models are, not how dirty the data is."""
    if detection and detection.get("n_miscaptioned") is not None:
        return int(detection["n_miscaptioned"])
    return 0


def estimate_sentence(ranking: str, estimate: Estimate) -> str:
    """The team's estimate in one sentence, with what it rests on, e.g. "Your team's verdicts put the
    mis-captioned samples at about 212 (4.2%; 95% interval 150–290): 120 in the first 300 of …"."""
    share = fmt_number(estimate.count / estimate.n_samples, 1, percent=True)
    found = (
        f"{fmt_number(estimate.top_miscaptioned)} in the first {fmt_number(estimate.top_judged)} of "
        f"“{column_label(ranking)}”, all judged"
    )
    if estimate.top_judged == estimate.n_samples:
        return (
            f"Your team has judged every sample: {fmt_number(estimate.top_miscaptioned)} ({share}) are mis-captioned."
        )
    sample = (
        f"{fmt_number(estimate.random_miscaptioned)} of {fmt_count(estimate.random_judged, 'sample')} drawn at random"
        + (" from the rest" if estimate.top_judged else "")
    )
    return (
        f"Your team's verdicts put the mis-captioned samples at about {fmt_number(round(estimate.count))} ({share}; "
        f"95% interval {fmt_number(math.floor(estimate.low))}–{fmt_number(math.ceil(estimate.high))}): "
        + (f"{found}, and {sample}." if estimate.top_judged else f"{sample}.")
    )


def estimate_hint(estimate: Estimate, open_sample: str | None = None) -> str:
    """What a team without ground truth can do to learn the number: judge a little of the random sample,
    or, where an open disagreement ends it (``open_sample``), settle that first: judging more cannot get
    past it, and the page used to ask for more verdicts the team had already given."""
    if open_sample is not None:
        return (
            f"The random sample stops at {open_sample}, where the reviewers disagree: a lead settles it on the "
            f"Reconcile page, and the samples judged after it then count toward the estimate."
        )
    needed = MIN_AUDIT - estimate.random_judged
    return (
        f"To estimate it, judge {fmt_count(needed, 'more sample' if estimate.random_judged else 'sample')} in the "
        f"Review page's “{AUDIT_LABEL}” queue."
    )


def _are(count: int) -> str:
    """ "1 of them is", "2 of them are": the verb agrees with the count it follows."""
    return "is" if count == 1 else "are"


def summary_paragraph(
    run_name: str,
    manifest: Manifest,
    scores: pd.DataFrame,
    detection: dict | None,
    estimate: tuple[str, Estimate] | None = None,
) -> str:
    """The Overview's first lines, in plain words: how many samples, how many look wrong, which ranking finds
    them, and the team's estimate once its verdicts allow one (``estimate``: the ranking counted, the figures)."""
    n = len(scores)
    count = likely_count(detection)
    lines = [f"{run_name} holds {fmt_number(n)} image–caption pairs ({manifest.protocol} protocol)."]
    known = estimate is not None and estimate[1].enough
    if count:
        share = fmt_number(count / n, 1, percent=True)
        lines.append(f"{fmt_number(count)} of them ({share}) {_are(count)} marked mis-captioned in the ground truth.")
    best = best_detector(detection)
    if best is not None:
        lines.append(_best_ranking_sentence(best, detection, count))
    elif not known:
        marks_none = detection is not None and detection.get("n_miscaptioned") == 0
        lines.append(
            (
                "The ground truth marks none of them mis-captioned, so no ranking can be measured against it"
                if marks_none
                else "No ground truth marks which captions are wrong, so their number is not known"
            )
            + "; start with the default ranking, “Likely mis-captioned”, which puts the most suspicious first."
        )
        if estimate is not None:
            open_row = estimate[1].random_open_row
            lines.append(estimate_hint(estimate[1], None if open_row is None else scores["sample_id"].iloc[open_row]))
    if known:
        lines.append(estimate_sentence(*estimate))
    return " ".join(lines)


EARLIER_RECIPE = (
    "This run's Likely mis-captioned was not made by this clipmem's recipe: an earlier version made it. This "
    "command remakes it from the run's files in seconds, without training:"
)


NOT_FINGERPRINTED = (
    "This run's images were never fingerprinted (an import, or a run made before 2026-12-08), so Likely "
    "mis-captioned cannot compare a caption with the same picture's other captions. This command reads each "
    "image once and adds that, without training:"
)


def rerank_command(run: Run) -> str | None:
    """The command that brings the run's Likely mis-captioned up to this clipmem's recipe, when another made
    it (its stamp in the manifest, ``combined.RECIPE``; none for an imported ranking): after an upgrade a run
    keeps the ranking it was made with until ``clipmem rerank``. None for a current run, for one without
    stored image embeddings, which cannot be re-ranked, and for one without any of the recipe's members (an
    import of its own ranking beside CLIPMem alone), which the command would re-rank by what it happens to
    have, in the imported ranking's place. A run stamped with this recipe whose images were never fingerprinted
    (an import) is offered it too while its images can be read: the command adds the member that reads them."""
    if IMAGE_EMBEDDINGS not in run.manifest.files or not members(run.scores):
        return None
    if run.manifest.summary.get("recipe") == RECIPE and not _fingerprints_to_add(run):
        return None
    return f"clipmem rerank --run {shlex.quote(str(run.path))}"


def _fingerprints_to_add(run: Run) -> bool:
    """Whether a rerank would fingerprint the run's images: it has none, and its first image is where the run
    says (a run whose images have gone would be offered a command that cannot add them, again and again)."""
    return FINGERPRINT_COLUMN not in run.scores.columns and len(run.scores) > 0 and run.image_path(0) is not None


def rerank_note(run: Run) -> str:
    """What the rerank command would do to this run: an imported ranking is the team's own, and the command
    replaces it, which the note used to leave for the user to guess."""
    if run.manifest.summary.get("recipe") == RECIPE:  # today's ranking, less the member its images give
        return NOT_FINGERPRINTED
    if run.manifest.protocol != IMPORTED:
        return EARLIER_RECIPE
    made_from = ", ".join(members(run.scores))
    return (
        "This run's Likely mis-captioned is the one its scores file brought. This clipmem's recipe can make one "
        f"from the run's {made_from} and its image embeddings, in seconds; this command replaces the imported "
        "ranking with it:"
    )


def dataset_warnings(run: Run) -> list[str]:
    """What reading the data warned about (every caption the same, ground truth for some samples only, a
    truncated shard): the CLI logged it once, and a reviewer in the browser never saw it."""
    notes = run.manifest.dataset.warnings
    return [note for note in notes if isinstance(note, str)] if isinstance(notes, list) else []


def drop_list_note(run: Run) -> str | None:
    """A cleaned re-run's drop list, under the summary: the Overview said nothing of the samples it left out."""
    dataset = run.manifest.dataset
    return exclusion_note(dataset.n_excluded, dataset.n_exclude_not_found, run.manifest.config.get("exclude"))


def weak_models_warning(run: Run) -> str | None:
    """Said under the summary when the run's models barely learned (``metrics.model_strength``): a reader
    would otherwise take a weak ranking for a finding."""
    pools = held_out_pools(run.manifest.splits, run.manifest.protocol)
    return weak_models_sentence(model_strength(run.manifest.utility, pools))


def clipmem_offset_note(run: Run) -> str | None:
    """Said under the summary when CLIPMem's splits sit on different scales (``metrics.clipmem_offset_sentence``):
    the gallery's CLIPMem sort then shows one fold first."""
    splits = (run.manifest.summary or {}).get("splits", {}).get("splits", {})
    return clipmem_offset_sentence(splits, run.manifest.protocol)


def skipped_rows(run: Run, limit: int = SKIPPED_SHOWN) -> pd.DataFrame | None:
    """The first ``limit`` rows of the run's skip report (row, line, filepath, caption, reason), verbatim; None
    when it has none or it cannot be read. The Overview counts them; a curator wants to see which and why.
    An empty ``line`` column (data that is no table, or a report written before it existed) is left out."""
    try:
        rows = pd.read_csv(run.path / SKIPPED, dtype=str, keep_default_na=False, nrows=limit)
    except (OSError, ValueError, pd.errors.ParserError):
        return None
    if "line" in rows and not rows["line"].str.len().any():
        rows = rows.drop(columns="line")
    return rows


def review_progress(decisions: pd.DataFrame) -> str | None:
    """The review so far, as this viewer may see it (blind mode applied)."""
    if decisions.empty:
        return None
    counts = decisions["verdict"].value_counts()
    parts = ", ".join(f"{fmt_number(int(n))} {verdict}" for verdict, n in counts.items())
    return f"Review so far: {fmt_count(len(decisions), 'sample')} with a verdict you can see ({parts})."


def _best_ranking_sentence(best: str, detection: dict, count: int | None) -> str:
    """Which ranking finds the mis-captions best, by the measure that chose it (average precision), and the
    default ranking's figures beside it when another won. Why: the sentence named the winner with its AUROC
    and its hits in the top k, on which the default ranking could be ahead, so it read as a contradiction."""
    k = detection.get("k") or count
    stats = detection["detectors"][best]
    sentence = (
        f"The ranking that finds them best, by average precision, is “{column_label(best)}” "
        f"({_ap_and_hits(stats, k)}; AUROC {fmt_number(stats.get('auroc'))}, measured on "
        f"{detection.get('scope', 'all samples')})."
    )
    default = detection["detectors"].get(DEFAULT_SORT)
    if best != DEFAULT_SORT and default is not None:
        sentence += f" The default, “{column_label(DEFAULT_SORT)}”, has {_ap_and_hits(default, k)}."
    return sentence


def _ap_and_hits(stats: dict, k: int | None) -> str:
    """ "AP 10.8%: 6 of its top 37 are mis-captioned", as far as the summary holds them."""
    parts = [f"AP {fmt_number(stats.get('average_precision'), 1, percent=True)}"]
    found = stats.get("precision_at_k")
    if found is not None and k:
        hits = round(found * k)
        parts.append(f"{fmt_number(hits)} of its top {fmt_number(k)} {_are(hits)} mis-captioned")
    return ": ".join(parts)


def review_plan(
    scores: pd.DataFrame, detection: dict | None, estimate: tuple[str, Estimate] | None = None
) -> tuple[str, int]:
    """(the queue to review, how many): the best ranking and the number the ground truth marks mis-captioned,
    else the team's estimate once there is one, else the review page's default batch; never more than the run
    holds (a run of 40 offered "the top 50")."""
    best = best_detector(detection)
    rule = best if best in scores.columns else ("combined" if "combined" in scores.columns else next(iter(scores)))
    estimated = round(estimate[1].count) if estimate is not None and estimate[1].enough else 0
    return rule, max(1, min(likely_count(detection) or estimated or DEFAULT_BATCH, len(scores)))


FIRST_BATCH_MAX = 200  # samples the Overview's button starts with: about ten minutes of verdicts


def first_batch(count: int) -> tuple[int, str | None]:
    """(the batch the Overview's button starts, a note when the plan takes more than one): a plan of 10,000
    samples (the ground truth's count on a large run) started one batch of 10,000, which every verdict's
    rerun then looked up in the review store whole."""
    batch = min(count, FIRST_BATCH_MAX)
    if batch == count:
        return batch, None
    batches = math.ceil(count / batch)
    return batch, (
        f"The plan is the top {fmt_number(count)}, in {fmt_number(batches)} batches of up to {batch}: the Review "
        "page's “Next batch” goes on where one ends."
    )


def alignment_columns(scores: pd.DataFrame) -> tuple[str, str] | None:
    """(training-side, held-out) alignment columns: the registry's A pair, or the paper's A(f), A(g)."""
    for pair in (("align_train", "align_heldout"), ("align_f", "align_g")):
        if set(pair) <= set(scores.columns):
            return pair
    return None


def alignment_points(scores: pd.DataFrame, max_points: int = MAX_POINTS, seed: int = 0) -> pd.DataFrame:
    """Samples with both alignments for the scatter, a seeded subsample of at most ``max_points``."""
    pair = alignment_columns(scores)
    if pair is None:
        return pd.DataFrame(columns=["row", "x", "y", "ground truth"])
    x, y = (scores[c].to_numpy(dtype=np.float64, na_value=np.nan) for c in pair)
    scored = np.flatnonzero(np.isfinite(x) & np.isfinite(y))
    if scored.size > max_points:
        scored = np.sort(np.random.default_rng(seed).choice(scored, max_points, replace=False))
    frame = scores.iloc[scored]
    truth = truth_words(frame.get(GROUND_TRUTH), frame.index)
    return pd.DataFrame({"row": scored, "x": x[scored], "y": y[scored], "ground truth": truth.to_numpy()})


def chart_svg(chart: alt.TopLevelMixin, width: int = CHART_WIDTH) -> str:
    """The chart drawn on the server, as an SVG document (vl-convert: Vega's own renderer, no browser)."""
    return vl_convert.vegalite_to_svg(chart.properties(width=width).to_dict())


def chart_renderer_warm_up() -> Callable[[], str]:
    """Build a one-point chart's spec now and return the call that draws it.

    Drawing pays the renderer's start-up (about 2 s: its JavaScript engine and Vega) before the first
    Overview asks for a chart, so it runs in the background; building the spec here, in the caller's
    thread, makes Altair's and pandas' lazy imports (``DataFrame.to_dict``'s module among them) happen
    before the server's first visitor, every time, rather than whenever the background thread gets there."""
    spec = alt.Chart(pd.DataFrame({"x": [0.0]})).mark_point().encode(x="x:Q").properties(width=10).to_dict()
    return functools.partial(vl_convert.vegalite_to_svg, spec)


def histogram_svg(scores: pd.DataFrame) -> str | None:
    """The per-split histogram of the Overview's score as SVG; None when no sample has a value."""
    hist = split_histograms(scores)
    return None if hist.empty else chart_svg(histogram_chart(hist, column_label(histogram_column(scores))))


def alignment_png(scores: pd.DataFrame) -> tuple[bytes, int] | None:
    """The alignment scatter as a PNG and its number of points; None when the run has no alignment pair.

    A PNG, not an SVG: one path per point made the demo's scatter a 730 kB SVG, sent inside the page's
    websocket message, and the browser drew nothing after it until that message was handled; a PNG is
    190 kB fetched beside the page."""
    pair = alignment_columns(scores)
    if pair is None:
        return None
    points = alignment_points(scores)
    chart = alignment_chart(points, column_label(pair[0]), column_label(pair[1])).properties(width=CHART_WIDTH)
    return vl_convert.vegalite_to_png(chart.to_dict()), len(points)
