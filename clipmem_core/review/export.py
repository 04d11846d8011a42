"""Exports: all verdicts, a cleaned dataset that ingests again, and a DataComp-style drop list.

The final label of a sample is its latest resolution if a lead settled it, else the majority of the
reviewers' current verdicts (no label on a tie). A sample is dropped from the cleaned dataset when its
final label is mis-captioned, unless ``replace`` is chosen and an accepted caption exists: the
resolution's caption, else the most common suggestion among the reviewers who said mis-captioned
(ties: the most recent).

CSV cells that a spreadsheet would run as a formula (starting with = + - @ tab or CR) get a leading
single quote. That is also true of the cleaned dataset, which people open in spreadsheets too.
"""

from __future__ import annotations

import os
from pathlib import Path

import pandas as pd

from ..atomic import atomic_path, relative_if_inside
from ..cache import Run
from ..errors import ClipmemError
from .agreement import majority_verdicts
from .store import ReviewStore

FORMATS = ("csv", "parquet")
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def escape_cell(value: object) -> object:
    """Prefix a string cell that a spreadsheet would evaluate with a single quote."""
    if isinstance(value, str) and value.startswith(_FORMULA_START):
        return "'" + value
    return value


def unescape_cell(value: str) -> str:
    """Undo ``escape_cell``: what a CSV export wrote as ``'=x`` is read back as ``=x``."""
    return value[1:] if value.startswith("'") and value[1:].startswith(_FORMULA_START) else value


def write_table(frame: pd.DataFrame, path: str | os.PathLike, fmt: str) -> Path:
    """Write atomically as CSV (formula-escaped; tab-separated if the name ends in .tsv) or Parquet."""
    if fmt not in FORMATS:
        raise ClipmemError(f"format {fmt!r} is not one of {', '.join(FORMATS)}")
    path = Path(path)
    with atomic_path(path) as tmp:
        if fmt == "csv":
            sep = "\t" if path.suffix.lower() == ".tsv" else ","
            frame.map(escape_cell).to_csv(tmp, index=False, sep=sep)
        else:
            frame.to_parquet(tmp, index=False)
    return path


def _accepted_suggestions(current: pd.DataFrame) -> dict[str, str]:
    """sample_id -> the most common suggestion of reviewers who said mis-captioned (ties: latest)."""
    said_wrong = current[(current["verdict"] == "mis-captioned") & current["suggested_caption"].notna()]
    accepted = {}
    for sample_id, group in said_wrong.sort_values("id").groupby("sample_id"):
        counts = group["suggested_caption"].value_counts(sort=False)
        last_seen = {caption: i for i, caption in enumerate(group["suggested_caption"])}
        accepted[sample_id] = max(counts.index, key=lambda c: (counts[c], last_seen[c]))
    return accepted


def final_labels(store: ReviewStore, run: str) -> pd.DataFrame:
    """Per judged sample: final verdict, where it came from, and the accepted replacement caption."""
    current = store.current_verdicts(run)
    labels = majority_verdicts(current)[["sample_id", "majority"]].rename(columns={"majority": "verdict"})
    labels["source"] = "majority"
    labels["caption"] = labels["sample_id"].map(_accepted_suggestions(current))
    resolutions = store.resolutions(run)
    if len(resolutions):
        settled = resolutions.assign(source="resolution")[["sample_id", "verdict", "source", "caption"]]
        labels = pd.concat([labels[~labels["sample_id"].isin(settled["sample_id"])], settled])
    return labels.sort_values("sample_id").reset_index(drop=True)


def cleaned_dataset(run: Run, labels: pd.DataFrame, out_dir: Path, replace: bool) -> pd.DataFrame:
    """``filepath,caption`` rows of the run minus mis-captioned samples (or with accepted captions)."""
    root = run.dataset_root
    if root is None:
        raise ClipmemError(f"run {run.name} does not record its dataset root; cannot write image paths")
    out_dir = out_dir.resolve()
    bad = labels[labels["verdict"] == "mis-captioned"].set_index("sample_id")["caption"]
    rows = []
    for sample_id, filepath, caption in run.scores[["sample_id", "filepath", "caption"]].itertuples(index=False):
        if sample_id in bad.index:
            if not (replace and isinstance(bad[sample_id], str) and bad[sample_id]):
                continue
            caption = bad[sample_id]
        rows.append({"filepath": relative_if_inside(root / filepath, out_dir), "caption": caption})
    return pd.DataFrame(rows, columns=["filepath", "caption"])


def export(
    store: ReviewStore, run: Run, what: str, out: str | os.PathLike, fmt: str = "csv", replace: bool = False
) -> Path:
    """Write ``verdicts``, ``cleaned`` or ``droplist`` for a run; returns the file written."""
    out = Path(out)
    if what == "verdicts":
        frame = store.verdicts(run.name)
    elif what == "cleaned":
        frame = cleaned_dataset(run, final_labels(store, run.name), out.parent, replace)
    elif what == "droplist":
        labels = final_labels(store, run.name)
        dropped = labels.loc[labels["verdict"] == "mis-captioned", "sample_id"]
        frame = pd.DataFrame({"sample_id": dropped[dropped.isin(run.row_of)]}).reset_index(drop=True)
    else:
        raise ClipmemError(f"unknown export {what!r}: use verdicts, cleaned or droplist")
    return write_table(frame, out, fmt)
