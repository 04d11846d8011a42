"""Compare page: runs side by side, a run against its cleaned re-run, and an experiment's runs and plot.

Everything comes from what runs and experiments stored (manifests, scores, the reference model's
embeddings, experiment summaries); the one computation, recall on a common footing for "did cleaning
help?", ranks at most ``COMMON_LIMIT`` pairs per run.
"""

from __future__ import annotations

import functools
import json
import math
import os
from collections.abc import Callable, Mapping, MutableMapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from clipmem_core.cache import GROUND_TRUTH, Run, RunInfo
from clipmem_core.config import SPEED_ONLY, UNUSED_BY_PROTOCOL
from clipmem_core.droplist import ids_digest, read_drop_list
from clipmem_core.errors import ClipmemError
from clipmem_core.experiments.base import RESULT_LABELS, table_cell, table_columns
from clipmem_core.formatting import fmt_count, fmt_number, fmt_yes_no, is_missing, json_safe
from clipmem_core.metrics import MIN_RECALL_PAIRS, retrieval_recall
from clipmem_core.review.export import final_labels
from clipmem_core.review.store import ReviewStore
from clipmem_core.review.verdicts import MISCAPTIONED
from clipmem_core.splits import EXTRA, PROTOCOLS, membership, split_order

RUNS_KEY = "compare_runs"  # session-state keys of the page's widgets
ORIGINAL_KEY = "compare_original"
CLEANED_KEY = "compare_cleaned"
EXPERIMENT_KEY = "compare_experiment"
CHOICES = (RUNS_KEY, ORIGINAL_KEY, CLEANED_KEY, EXPERIMENT_KEY)  # kept while another tab is open
TAB_KEY = "compare_tab"  # the open tab, kept in the URL (?compare_tab=…)
SIDE_BY_SIDE, CLEANING, EXPERIMENTS = "Side by side", "Did cleaning help?", "Experiments"
TABS = (SIDE_BY_SIDE, CLEANING, EXPERIMENTS)
# What a cleaned re-run changes on purpose (its data) or that cannot change a result (where it ran)
DATA_SETTINGS = (
    "data",
    "exclude",
    "img_key",
    "caption_key",
    "extract_shards",
    "allow_outside_root",
    "on_error",
    "device",
)
COMMON_LIMIT = 2_000  # pairs per run for recall on a common footing: same gallery size for both runs
DETECTOR = "combined"
SIDE_BY_SIDE_NOTE = (
    "R@1/R@5: image→text and text→image recall of each model on the samples it never trained on, averaged; "
    "runs on different data are measured on different samples, and recall falls as the samples to choose "
    "among grow, so the 'Did cleaning help?' tab measures both runs among the same number of pairs instead. "
    "Detection: how well the combined ranking finds "
    "the known mis-captions. Flagged: final team verdict mis-captioned. **–**: off, or not measured: recall "
    f"needs {MIN_RECALL_PAIRS} samples a model never trained on, detection needs known mis-captions "
    f"(an {GROUND_TRUTH} column)."
)
COMMON_FOOTING_HELP = (
    "Recall among the same number of held-out pairs in both runs, known and removed mis-captions left out: "
    "the Side by side tab's R@1 ranks each run among all its held-out pairs, more candidates, so it is usually lower "
    "and not comparable between runs of different sizes."
)
EXPERIMENT_NOTE = (
    "E: the experiment's evaluation set, samples of the data held out from every run of a seed, the same for "
    "each condition: R@1 on E and the probe compare the runs on one footing. The Side by side tab's R@1 (held "
    "out) ranks each pair among its own run's held-out pairs, which differ from run to run."
)
FOLD_SHIFT_NOTE = (
    "Under the full protocol a fold's CLIPMem compares the models that trained on it with the one that held it "
    "out, a different pair for each fold: a model that aligns every pair a little higher lifts one fold's mean and "
    "lowers the other's by as much. Folds of opposite signs are that, not memorization; the mean over all samples "
    "(Mean CLIPMem above) cancels the shift, the folds being drawn of about equal size."
)
COUNT_MEASURES = ("Samples", "Removed by the re-run", "… of them flagged by the team", "… of them known mis-captions")
# Run settings worth a column of their own in the side-by-side table (the rest shows under differences).
SETTING_COLUMNS = {
    "text_noise": "Text noise σ",
    "caption_dropout": "Caption dropout",
    "mask_duplicate_captions": "Duplicate captions masked",
    "max_captions": "Max captions",
    "exclude": "Drop list",
}


def flagged_count(store: ReviewStore, run_name: str) -> int:
    """Samples whose final label (resolution, else majority) is mis-captioned: what a drop list would hold."""
    labels = final_labels(store, run_name)
    return int((labels["verdict"] == MISCAPTIONED).sum()) if len(labels) else 0


def flagged_ids(store: ReviewStore, run_name: str) -> set[str]:
    labels = final_labels(store, run_name)
    return set(labels.loc[labels["verdict"] == MISCAPTIONED, "sample_id"]) if len(labels) else set()


def mean_utility(run: Run) -> dict[str, float]:
    """R@1 and R@5, averaged over both directions and over the run's models, on samples each never saw."""
    utility = run.manifest.utility or {}
    per_model = [m for m in utility.values() if isinstance(m, dict)]

    def mean(k: int) -> float:
        values = [v for m in per_model for v in (m.get(f"i2t_r{k}"), m.get(f"t2i_r{k}")) if isinstance(v, float)]
        return float(np.mean(values)) if values else math.nan

    return {"r1": mean(1), "r5": mean(5)}


def _detection(run: Run) -> dict[str, Any]:
    detectors = (run.manifest.summary.get("detection") or {}).get("detectors") or {}
    return detectors.get(DETECTOR) or {}


def _mean_clipmem(run: Run) -> float:
    if "clipmem" not in run.scores:
        return math.nan
    values = run.scores["clipmem"].to_numpy(dtype=np.float64, na_value=np.nan)
    finite = values[np.isfinite(values)]
    return float(finite.mean()) if finite.size else math.nan


def side_by_side(runs: Sequence[Run], flagged: Mapping[str, int]) -> pd.DataFrame:
    """One column per run, one row per measure: size, mitigation settings, utility, memorization,
    detection and team flags (runs as columns keep a handful of runs readable on a laptop screen)."""
    columns = {}
    for run in runs:
        config, utility, detection = run.manifest.config, mean_utility(run), _detection(run)
        columns[run.name] = {
            "Samples": fmt_number(len(run.scores)),
            "Excluded": fmt_number(run.manifest.dataset.n_excluded),
            **{label: _setting(config.get(key)) for key, label in SETTING_COLUMNS.items()},
            **({SETTING_COLUMNS["exclude"]: drop_list_label(str(config["exclude"]))} if config.get("exclude") else {}),
            "R@1 (held out)": fmt_number(utility["r1"]),
            "R@5 (held out)": fmt_number(utility["r5"]),
            "Mean CLIPMem": fmt_number(_mean_clipmem(run), 4, signed=True),
            "Detection AUROC": fmt_number(detection.get("auroc")),
            "Detection AP": fmt_number(detection.get("average_precision")),
            "Flagged by the team": fmt_number(flagged.get(run.name, 0)),
        }
    frame = pd.DataFrame(columns)
    return frame.rename_axis("Measure").reset_index()


def _setting(value: Any) -> str:
    """A setting as the table shows it: "–" when off or unset (False, 0, none), "yes" for a switch that is on."""
    if value is True:
        return fmt_yes_no(value)
    return "–" if value in (None, "", 0, 0.0) else str(value)


def clipmem_per_split(runs: Sequence[Run]) -> pd.DataFrame:
    """Mean CLIPMem of each split (rows) in each run (columns), from the manifests' summaries."""
    per_run = {}
    for run in runs:
        splits = (run.manifest.summary.get("splits") or {}).get("splits") or {}
        per_run[run.name] = {s: (stats.get("clipmem") or {}).get("mean") for s, stats in splits.items()}
    names = split_order({s for values in per_run.values() for s in values})
    table = {"Split": names}
    for name, values in per_run.items():
        table[name] = [fmt_number(values.get(s), 4, signed=True) for s in names]
    return pd.DataFrame(table)


def _flat(prefix: str, value: Any, out: dict[str, str]) -> None:
    if isinstance(value, dict):
        for key, inner in value.items():
            _flat(f"{prefix}.{key}" if prefix else str(key), inner, out)
    else:
        out[prefix] = json.dumps(json_safe(value)) if isinstance(value, (list, tuple)) else str(value)


def drop_list_label(path: str) -> str:
    """A drop list as Compare names it: its file name, how many ids it holds and a digest of them, so that
    two copies of one list read the same (an experiment writes one a run); its path where it cannot be read.
    Read once per version of the file: the page asks for each run's on every rerun, in two tables."""
    try:
        stat = os.stat(path)
    except OSError:
        return path
    return _drop_list_label(path, stat.st_mtime_ns, stat.st_size)


@functools.lru_cache(maxsize=64)
def _drop_list_label(path: str, mtime_ns: int, size: int) -> str:
    try:
        ids = read_drop_list(path)
    except ClipmemError:
        return path
    return f"{Path(path).name}: {fmt_count(len(ids), 'id')}, {ids_digest(ids)[:8]}"


def config_differences(runs: Sequence[Run | RunInfo]) -> pd.DataFrame:
    """The settings and data facts that differ between the runs: one row per differing key."""
    flat = []
    for run in runs:
        values: dict[str, str] = {}
        config = dict(run.manifest.config)
        for unused in UNUSED_BY_PROTOCOL.get(run.manifest.protocol, ()):  # recorded, never used
            config.pop(unused, None)
        _flat("", config, values)
        values.pop("out", None)
        if config.get("exclude"):  # two copies of one list are one setting; a path ran off the table's edge
            values["exclude"] = drop_list_label(str(config["exclude"]))
        values["dataset.content_hash"] = run.manifest.dataset.content_hash[:12]
        values["dataset.n_samples"] = str(run.manifest.dataset.n_samples)
        values["protocol"] = run.manifest.protocol
        flat.append(values)
    keys = sorted({k for values in flat for k in values})
    rows = [
        {"Setting": key, **{run.name: values.get(key, "–") for run, values in zip(runs, flat)}}
        for key in keys
        if len({values.get(key, "–") for values in flat}) > 1
    ]
    return pd.DataFrame(rows, columns=["Setting", *(run.name for run in runs)])


def confounders(original: Run | RunInfo, cleaned: Run | RunInfo) -> pd.DataFrame:
    """The settings, other than the data and how fast it ran, in which a cleaned re-run differs from its
    original: each changes R@1 and CLIPMem too, so the change shown is not the cleaning's alone."""
    table = config_differences([original, cleaned])
    expected = table["Setting"].isin([*DATA_SETTINGS, *SPEED_ONLY]) | table["Setting"].str.startswith("dataset.")
    return table[~expected].reset_index(drop=True)


def swapped_note(original: Run, cleaned: Run) -> str | None:
    """A warning when the "cleaned" run has more samples than its original: likely the wrong way round."""
    before, after = original.manifest.dataset.n_samples, cleaned.manifest.dataset.n_samples
    if after <= before:
        return None
    return (
        f"“{cleaned.name}” has more samples than “{original.name}” ({after:,} against {before:,}): a cleaned "
        "re-run has fewer. Are the two the wrong way round?"
    )


def unrelated_note(original: Run, cleaned: Run) -> str | None:
    """Why the two runs cannot be a run and its cleaned re-run: they share no sample. Compared anyway, two
    unrelated runs read as "Samples removed 2,000" and a recall that could not be measured."""
    shared = np.intersect1d(original.scores["sample_id"].to_numpy(str), cleaned.scores["sample_id"].to_numpy(str))
    if shared.size:
        return None
    return (
        f"“{cleaned.name}” and “{original.name}” share no sample: one is not a re-run of the other on the same "
        "data. Pick the re-run made with `clipmem run … --exclude DROPLIST` on the original's data."
    )


def default_original(
    shown: str | None, infos: Sequence[RunInfo], flagged_ids_of: Callable[[str], set[str]]
) -> str | None:
    """The original run the cleaning tab opens on: the run shown, unless that is itself a re-run with a drop
    list (``--exclude``) of a run in the cache on the same data; then the run that drop list most likely
    came from. The run shown is often the newest, the re-run itself, and the tab used to open on it as the
    original and compare the two the wrong way round.

    Of the runs on the same data, the one whose team flags (``flagged_ids_of``) the drop list holds most
    wins: a drop list is exported from one run's review, and a second run on the same data (another
    protocol, another seed) has other flags or none, so opening on it showed "0 flagged by the team".
    Then a run with flags at all (the drop list file may be gone), then the fewest other settings that
    differ."""
    usable = {info.name: info for info in infos if info.ok}
    current = usable.get(shown) if shown is not None else None
    if current is None or not current.manifest.config.get("exclude"):
        return shown
    originals = [
        info
        for name, info in usable.items()
        if name != shown
        and not info.manifest.config.get("exclude")
        and info.manifest.dataset.content_hash == current.manifest.dataset.content_hash
    ]
    if not originals:
        return shown
    dropped = _drop_list_ids(current.manifest.config["exclude"])

    def likelihood(info: RunInfo) -> tuple[int, bool, int]:
        flags = flagged_ids_of(info.name)
        return -len(flags & dropped), not flags, len(confounders(info, current))

    return min(originals, key=likelihood).name


def _drop_list_ids(path: str) -> frozenset[str]:
    """The ids of a re-run's drop list, or none where the file has moved or gone since the re-run."""
    try:
        return read_drop_list(path)
    except ClipmemError:
        return frozenset()


def cleaned_candidates(original: str, infos: Sequence[RunInfo], shown: str | None = None) -> list[str]:
    """Usable runs other than ``original``, those that look like its cleaned re-run first (same data, a drop
    list): the run ``shown`` in the sidebar where it is one, then those differing from the original in the
    fewest other settings. An experiment's runs have drop lists too (their evaluation set), and the first of
    them by name was offered as the re-run of a plain ``--exclude`` run chosen in the sidebar."""
    usable = {info.name: info for info in infos if info.ok}
    source = usable.get(original)

    def likely(info: RunInfo) -> bool:
        same_data = source is not None and info.manifest.dataset.content_hash == source.manifest.dataset.content_hash
        return same_data and bool(info.manifest.config.get("exclude"))

    def order(info: RunInfo) -> tuple[bool, bool, int]:
        if not likely(info):
            return True, True, 0
        return False, info.name != shown, len(confounders(source, info))

    others = [info for name, info in usable.items() if name != original]
    return [info.name for info in sorted(others, key=order)]


def choose_runs(session: MutableMapping[str, Any], names: Sequence[str]) -> None:
    """Button callback: show these runs side by side (the experiment tab's "compare these runs"), and open
    that tab."""
    session[RUNS_KEY] = list(names)
    session[TAB_KEY] = SIDE_BY_SIDE


def reference_heldout_rows(run: Run) -> np.ndarray:
    """Rows the reference model (whose embeddings the run stores) never trained on: the pipeline's utility set.
    No rows for an imported run, whose embeddings came from a model that clipmem does not know the data of: its
    recall is then not compared rather than measured on pairs that model may have trained on."""
    splits = run.scores["split"].to_numpy()
    if run.manifest.protocol not in PROTOCOLS:
        return np.array([], dtype=np.int64)
    if run.manifest.protocol == "paper":
        return np.flatnonzero(splits == EXTRA)
    models = membership(splits, run.manifest.protocol)
    first = run.manifest.models[0] if run.manifest.models else next(iter(models))
    return np.flatnonzero(~models[first])


def _common_recall(run: Run, rows: np.ndarray, size: int, seed: int) -> dict[str, float]:
    if size < 2:
        return {"r1": math.nan, "r5": math.nan}
    chosen = np.sort(np.random.default_rng(seed).choice(rows, size=size, replace=False))
    recall = retrieval_recall(np.asarray(run.image_embeddings[chosen]), np.asarray(run.text_embeddings[chosen]))
    return {"r1": (recall["i2t_r1"] + recall["t2i_r1"]) / 2, "r5": (recall["i2t_r5"] + recall["t2i_r5"]) / 2}


def cleaning_effect(original: Run, cleaned: Run, team_flagged: set[str], seed: int = 0) -> pd.DataFrame:
    """What changed from a run to its cleaned re-run: removed samples, utility and memorization.

    Utility is compared on a common footing: recall among the same number of pairs in both runs (gallery
    size changes recall), drawn from the pairs the reference model never saw, leaving out of the
    original the samples the re-run dropped (a dropped mis-caption cannot be retrieved, and counting it
    would credit the cleaning with what is only a smaller test set) and, where the data says, known
    mis-captions in both.
    """
    before, after = set(original.scores["sample_id"]), set(cleaned.scores["sample_id"])
    removed = before - after
    removed_mask = original.scores["sample_id"].isin(removed).to_numpy()
    eligible = []
    for run, drop in ((original, removed_mask), (cleaned, np.zeros(len(cleaned.scores), bool))):
        known = run.scores[GROUND_TRUTH].fillna(False).astype(bool).to_numpy() if run.has_ground_truth else None
        bad = known if known is not None else np.zeros(len(run.scores), bool)
        rows = reference_heldout_rows(run)
        eligible.append(rows[~(drop | bad)[rows]])
    size = min(len(eligible[0]), len(eligible[1]), COMMON_LIMIT)
    recall = [_common_recall(run, rows, size, seed) for run, rows in zip((original, cleaned), eligible)]
    common = sorted(before & after)
    samples, removed_label, flagged_label, known_label = COUNT_MEASURES
    rows = [
        (samples, len(original.scores), len(cleaned.scores)),
        (removed_label, math.nan, len(removed)),
        (flagged_label, math.nan, len(removed & team_flagged)),
        (known_label, math.nan, _known_miscaptioned(original, removed)),
        (f"R@1 on {fmt_number(size)} held-out pairs", recall[0]["r1"], recall[1]["r1"]),
        (f"R@5 on {fmt_number(size)} held-out pairs", recall[0]["r5"], recall[1]["r5"]),
        ("Mean CLIPMem, every sample", _mean_clipmem(original), _mean_clipmem(cleaned)),
        ("Mean CLIPMem, samples in both", _mean_on(original, common), _mean_on(cleaned, common)),
    ]
    return pd.DataFrame(
        [
            {"Measure": name, "Original": a, "Cleaned": b, "Change": b - a if np.isfinite([a, b]).all() else math.nan}
            for name, a, b in rows
        ]
    )


def _known_miscaptioned(run: Run, ids: set[str]) -> float:
    if not run.has_ground_truth:
        return math.nan
    chosen = run.scores["sample_id"].isin(ids)
    return float(run.scores.loc[chosen, GROUND_TRUTH].fillna(False).astype(bool).sum())


def _mean_on(run: Run, sample_ids: list[str]) -> float:
    if "clipmem" not in run.scores or not sample_ids:
        return math.nan
    chosen = run.scores["sample_id"].isin(sample_ids).to_numpy()
    values = run.scores.loc[chosen, "clipmem"].to_numpy(dtype=np.float64, na_value=np.nan)
    finite = values[np.isfinite(values)]
    return float(finite.mean()) if finite.size else math.nan


def metric_change(change: float, digits: int, *, lower_is_better: bool = False) -> dict[str, Any]:
    """``st.metric``'s delta arguments for a change shown to ``digits`` decimals.

    Streamlit draws every delta as a rise or a fall, so a change that rounds to zero would read "↑ +0.000"
    in green (or red when lower is better): it reads "no change", grey and without an arrow instead.
    """
    if is_missing(change):
        return {"delta": None}
    text = fmt_number(change, digits, signed=True)
    if float(text) == 0:
        return {"delta": "no change", "delta_arrow": "off", "delta_color": "off"}
    return {"delta": text, "delta_color": "inverse" if lower_is_better else "normal"}


def cleaning_verdict(effect: pd.DataFrame, experiment: str | None = None) -> str:
    """One plain sentence on R@1, the utility measure a curator cares about first. A re-run that removed
    nothing says so first: any change then is the seed's or the settings', not the cleaning's. The advice
    on seed noise points at ``experiment`` when both runs are its runs: it has the seeds already, and
    `clipmem experiment removal` would have started another."""
    row = effect[effect["Measure"].str.startswith("R@1")].iloc[0]
    removed = effect.loc[effect["Measure"] == COUNT_MEASURES[1], "Cleaned"]
    nothing = (
        "The re-run removed no sample, so this is no measure of cleaning (was its drop list empty?). "
        if len(removed) and removed.iat[0] == 0
        else ""
    )
    if not np.isfinite(row["Change"]):
        return nothing + "Too few held-out pairs to compare retrieval."
    if fmt_number(row["Original"]) == fmt_number(row["Cleaned"]):  # "did not change from 0.060 to 0.060"
        change = f"R@1 is {fmt_number(row['Original'])} in both runs."
    else:
        direction = "rose" if row["Change"] > 0 else "fell"
        change = (
            f"R@1 {direction} from {fmt_number(row['Original'])} to {fmt_number(row['Cleaned'])} "
            f"({fmt_number(row['Change'], signed=True)})."
        )
    if experiment:
        return (
            f"{nothing}{change} One seed of experiment {experiment!r}: the Experiments tab gives its mean over "
            "every seed, which tells an effect from seed noise."
        )
    return (
        f"{nothing}{change} One run each: to tell an effect from seed noise, run clipmem experiment removal "
        "(3 seeds, a fixed evaluation set)."
    )


def display_effect(effect: pd.DataFrame) -> pd.DataFrame:
    """The effect table as text: counts as whole numbers, figures with four decimals, changes signed."""
    counts = effect["Measure"].isin(COUNT_MEASURES).to_numpy()

    def cell(value: Any, count: bool, signed: bool = False) -> str:
        if count and isinstance(value, float) and np.isfinite(value):
            return fmt_number(int(value), signed=signed)
        return fmt_number(value, 4, signed=signed)

    return pd.DataFrame(
        {
            "Measure": effect["Measure"],
            **{
                column: [cell(v, c, signed=column == "Change") for v, c in zip(effect[column], counts)]
                for column in ("Original", "Cleaned", "Change")
            },
        }
    )


def experiment_table(summary: pd.DataFrame, study: str) -> pd.DataFrame:
    """An experiment's summary for reading: per condition, mean ± spread over seeds of the main figures."""
    if summary.empty:
        return pd.DataFrame()
    rows = []
    for _, row in summary.iterrows():
        entry = {"Condition": str(row.get("condition")), "Seeds": fmt_number(row.get("seeds"))}
        if study == "removal":
            entry["Strategy"] = row.get("group")
        for column in table_columns(summary, study):
            entry[RESULT_LABELS[column]] = table_cell(row, column)
        rows.append(entry)
    return pd.DataFrame(rows)
