"""Exports: all verdicts, a cleaned dataset that ingests again, and a DataComp-style drop list.

The final label of a sample is its decision (`decisions`): the lead's latest resolution, else the
majority of the reviewers' counted verdicts (no label on a tie). The cleaned dataset and the drop list
refuse to be written while two reviewers disagree on a sample no lead has resolved, unless
``allow_unresolved`` is given (then the majority decides, and a tie keeps the row).

A sample is dropped from the cleaned dataset when its final label is mis-captioned, unless ``replace``
is chosen and an accepted caption exists: the resolution's caption, else the most common suggestion
among the reviewers who said mis-captioned (ties: the most recent).

The cleaned dataset is training data in the input's own shape: ``filepath`` relative to the dataset
root (as the input wrote it, so the file works beside the original CSV on any machine), ``caption``,
``id`` (the sample's stable id, which ``read_dataset`` reads back as its sample_id), the class ``label``
and the ground truth ``is_miscaptioned`` when the run has them, and ``captions`` (every caption, a JSON
list) when a sample has several, as COCO data does. Other columns of the input were never read and are
not kept. Its cells are written verbatim. Only the verdicts and resolutions exports as CSV, meant for
spreadsheets, escape cells that a spreadsheet would run as a formula, and cells that start with a quote
(a leading single quote); `review import` undoes it for a file with an export's header (``EXPORTED_HEADERS``)
and takes any other file verbatim.
"""

from __future__ import annotations

import csv
import io
import json
import os
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq

from ..atomic import parquet_table, write_bytes
from ..cache import GROUND_TRUTH, SKIPPED, Run
from ..data import CAPTIONS_COLUMN, CLASS_COLUMN, ID_ALIASES, ID_COLUMN, LABEL_COLUMN
from ..droplist import DROP_LIST_COLUMN
from ..errors import ClipmemError
from ..formatting import fmt_count
from ..tables import marked_encoding
from .agreement import suggestion_rows
from .commands import FORMATS, KINDS
from .decisions import RESOLVED, counted_verdicts, decisions, unresolved_disagreements
from .store import RESOLUTION_COLUMNS, VERDICT_COLUMNS, ReviewStore
from .verdicts import MISCAPTIONED

ROW_NOUNS = {  # what a row of each export is, one and many: the CLI counts them
    "verdicts": ("verdict", "verdicts"),
    "resolutions": ("resolution", "resolutions"),
    "cleaned": ("sample", "samples"),
    "droplist": ("sample to drop", "samples to drop"),
}
HISTORY_KINDS = ("verdicts", "resolutions")  # what a re-run's review carries over (``review import``)
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")
_SHOWN_IDS = 5


def escape_cell(value: object) -> object:
    """Prefix a string cell that a spreadsheet would evaluate with a single quote, and one that starts with a
    quote already (a spreadsheet shows one quote less), so that ``unescape_cell`` gives every cell back."""
    if isinstance(value, str) and value.startswith((*_FORMULA_START, "'")):
        return "'" + value
    return value


# The header of each spreadsheet export, exactly: a file that has it was written by `review export` (as
# such, or edited in a spreadsheet that kept it), so its cells were escaped and are unescaped on import.
EXPORTED_HEADERS = {
    "verdicts": VERDICT_COLUMNS,
    "resolutions": [c for c in RESOLUTION_COLUMNS if c != "id"],
}


def unescape_cell(value: object) -> object:
    """``escape_cell`` undone, for an exported file imported again: a note "=x" came back as "'=x"."""
    if isinstance(value, str) and value.startswith("'") and value[1:].startswith((*_FORMULA_START, "'")):
        return value[1:]
    return value


_FORMAT_OF_SUFFIX = {".csv": "csv", ".tsv": "csv", ".txt": "csv", ".parquet": "parquet", ".pq": "parquet"}


def output_format(path: str | os.PathLike, asked: str | None) -> str:
    """The format a table is written in: ``asked`` (``--format``), else the file's suffix, else CSV. A suffix
    that names another format, or none clipmem writes, is refused: a drop list named .parquet was written as
    CSV, and the run given it as --exclude called it unreadable."""
    suffix = Path(path).suffix.lower()
    named = _FORMAT_OF_SUFFIX.get(suffix)
    if suffix and named is None:
        raise ClipmemError(f"{path}: clipmem writes .csv, .tsv or .parquet files; name the file with one of them")
    if asked is not None and named is not None and asked != named:
        raise ClipmemError(f"{path} ends in {suffix} but --format {asked} was asked: name the file .{asked}")
    return asked or named or "csv"


def table_bytes(frame: pd.DataFrame, fmt: str, *, tsv: bool = False, spreadsheet: bool = False) -> bytes:
    """A table as CSV (TSV with ``tsv``; formula cells escaped only with ``spreadsheet``) or Parquet bytes."""
    if fmt not in FORMATS:
        raise ClipmemError(f"format {fmt!r} is not one of {', '.join(FORMATS)}")
    buffer = io.BytesIO()
    if fmt == "parquet":
        pq.write_table(parquet_table(frame), buffer)
    else:
        (frame.map(escape_cell) if spreadsheet else frame).to_csv(buffer, index=False, sep="\t" if tsv else ",")
    return buffer.getvalue()


STDOUT = "-"  # ``--out -``: a table to standard output, for a pipe


def check_stream(fmt: str) -> None:
    """Refuse ``--out -`` before any work where standard output cannot take the table: closed (``>&-``
    ended in a traceback), or a terminal for parquet, which is binary and would show as noise."""
    if sys.stdout is None:
        raise ClipmemError("standard output is closed: give --out FILE instead of -")
    if fmt == "parquet" and sys.stdout.isatty():
        raise ClipmemError("parquet is binary: redirect it (--out - > FILE.parquet) or give --out FILE.parquet")


def stream_table(data: bytes, fmt: str) -> None:
    """A table's bytes to standard output, for ``--out -``."""
    check_stream(fmt)
    sys.stdout.flush()
    sys.stdout.buffer.write(data)
    sys.stdout.buffer.flush()


def _id_lines(ids: pd.Series, path: Path) -> bytes:
    """A drop list as a .txt is read (``--exclude``): one id a line, verbatim. Written as CSV it had a header
    and quoted ids ("a,b"), which came back as ids the data does not hold, and those samples trained."""
    broken = next((i for i in ids.astype(str) if "\n" in i or "\r" in i), None)
    if broken is not None:
        raise ClipmemError(f"{path}: the id {broken!r} holds a line break, which a .txt list cannot; name it .csv")
    return "".join(f"{i}\n" for i in ids.astype(str)).encode("utf-8")


def write_table(
    frame: pd.DataFrame, path: str | os.PathLike, fmt: str, *, spreadsheet: bool = False, force: bool = False
) -> Path:
    """Write atomically; refuses to replace an existing file unless ``force``. ``.tsv`` names get tabs."""
    path = Path(path)
    if path.suffix.lower() == ".txt" and list(frame.columns) == [DROP_LIST_COLUMN] and fmt == "csv":
        data = _id_lines(frame[DROP_LIST_COLUMN], path)
    else:
        data = table_bytes(frame, fmt, tsv=path.suffix.lower() == ".tsv", spreadsheet=spreadsheet)
    if path.is_dir():
        raise ClipmemError(f"{path} is a folder; give a file name")
    if path.exists() and not force:
        raise ClipmemError(f"{path} already exists; add --force to overwrite it")
    write_bytes(path, data)
    return path


def _accepted_suggestions(current: pd.DataFrame) -> dict[str, str]:
    """sample_id -> the most common suggestion of reviewers who said mis-captioned (ties: latest)."""
    accepted = {}
    for sample_id, group in suggestion_rows(current).sort_values("id").groupby("sample_id"):
        counts = group["suggested_caption"].value_counts(sort=False)
        last_seen = {caption: i for i, caption in enumerate(group["suggested_caption"])}
        accepted[sample_id] = max(counts.index, key=lambda c: (counts[c], last_seen[c]))
    return accepted


def final_labels(
    store: ReviewStore, run: str, allow_unresolved: bool = True, *, history: pd.DataFrame | None = None
) -> pd.DataFrame:
    """Per judged sample: final verdict (None on a tie), its source and the accepted replacement caption.

    Raises ClipmemError naming the unresolved disagreements unless ``allow_unresolved``. ``history``: the
    run's verdicts as ``store.verdicts`` reads them, from a caller that has read them already (a read takes
    about two seconds at 100,000 verdicts).
    """
    history = store.verdicts(run) if history is None else history
    current, resolutions = counted_verdicts(history), store.resolutions(run)
    open_ones = unresolved_disagreements(current, resolutions)
    if open_ones and not allow_unresolved:
        shown = ", ".join(open_ones[:_SHOWN_IDS]) + (" …" if len(open_ones) > _SHOWN_IDS else "")
        raise ClipmemError(
            f"{fmt_count(len(open_ones), 'sample')} with unresolved disagreements ({shown}): a lead should resolve "
            "them on the Reconcile page, or pass --allow-unresolved to let the majority decide (ties keep the row)"
        )
    table = decisions(current, resolutions).reset_index()
    labels = table[["sample_id", "verdict", "source"]].copy()
    suggestions = _accepted_suggestions(current)
    labels["caption"] = [
        accepted if source == RESOLVED else suggestions.get(sid)
        for sid, source, accepted in zip(labels["sample_id"], labels["source"], table["accepted_caption"])
    ]
    return labels.sort_values("sample_id").reset_index(drop=True)


def is_accepted_caption(value: object) -> bool:
    """Whether a label's caption (a lead's accepted one, else a suggestion) can replace the sample's."""
    return isinstance(value, str) and bool(value)


def cleaned_dataset(run: Run, labels: pd.DataFrame, replace: bool) -> pd.DataFrame:
    """The run's rows minus mis-captioned samples (or with accepted captions), in the input's shape: the
    columns clipmem reads (filepath, caption, id, the class ``label`` and the ground truth when the run has
    them), and every caption of a sample with several as a JSON list in ``captions``, so that clipmem reads
    the file back as the same samples. Other columns of the input were never read and are not kept. A row
    kept under its accepted caption is no known mis-caption any more (``is_miscaptioned`` false): the flag
    described the caption it replaced, and a re-run counted corrected samples among the known mis-captions."""
    bad = labels[labels["verdict"] == MISCAPTIONED].set_index("sample_id")["caption"]
    frame = run.scores[["filepath", "caption", "sample_id"]].rename(columns={"sample_id": ID_COLUMN})
    if CLASS_COLUMN in run.scores.columns:
        frame[CLASS_COLUMN] = run.scores[CLASS_COLUMN]
    if run.has_ground_truth:
        frame[GROUND_TRUTH] = run.scores[GROUND_TRUTH].astype("boolean")
    is_bad = frame[ID_COLUMN].isin(bad.index).to_numpy()
    accepted = frame[ID_COLUMN].map(bad).map(is_accepted_caption).to_numpy(dtype=bool)
    replaced = is_bad & accepted & replace
    frame.loc[replaced, "caption"] = frame.loc[replaced, ID_COLUMN].map(bad)
    if GROUND_TRUTH in frame.columns:  # it said the old caption was wrong; the team has put a right one in
        frame.loc[replaced, GROUND_TRUTH] = False
    several = _several_captions(run, replaced)
    if several is not None:
        frame[CAPTIONS_COLUMN] = several
    return frame[~is_bad | replaced].reset_index(drop=True)


def left_out_notes(run: Run) -> list[str]:
    """What a cleaned export leaves out of the run's source besides the samples judged mis-captioned: the
    source's columns clipmem never reads, and the rows the run skipped when it read them. The export said
    only "wrote clean.csv", and a curator found their license and attribution columns, and a dozen good
    rows, gone later."""
    notes = []
    header = _source_header(run)
    unread = _unread_columns(header, run)
    if unread:
        shown = ", ".join(unread[:6]) + (f" and {len(unread) - 6:,} more" if len(unread) > 6 else "")
        has_ids = any(name.strip().lower() in ID_ALIASES for name in header)
        key = "the id" if has_ids else "filepath and caption (its ids were derived from them)"
        notes.append(
            f"the cleaned file has the columns clipmem reads; {run.dataset_source.name}'s other columns ({shown}) "
            f"are not in it: join them back on {key}"
        )
    skipped = int(run.manifest.dataset.n_skipped or 0)
    if skipped:
        notes.append(
            f"{fmt_count(skipped, 'row')} of the source {'was' if skipped == 1 else 'were'} skipped when the run "
            f"read it ({run.path / SKIPPED} says why), so {'it is' if skipped == 1 else 'they are'} not in the "
            "cleaned file either"
        )
    return notes


def _source_header(run: Run) -> list[str]:
    """The header of the run's CSV or TSV source ([] for other formats, or a source gone or unreadable)."""
    source = run.dataset_source
    if run.manifest.dataset.format not in ("csv", "tsv") or source is None or not source.is_file():
        return []
    try:
        with source.open("rb") as fh:
            first = fh.readline(1 << 20)
        line = first.decode(marked_encoding(first)).rstrip("\r\n")
    except (OSError, UnicodeDecodeError):
        return []
    return next(csv.reader([line], delimiter="\t" if run.manifest.dataset.format == "tsv" else ","), [])


def _unread_columns(header: list[str], run: Run) -> list[str]:
    """The columns of ``header`` that clipmem does not read."""
    config = run.manifest.config
    read = {config.get("img_key") or "filepath", config.get("caption_key") or "caption", *ID_ALIASES}
    read = {name.lower() for name in read | {LABEL_COLUMN, CLASS_COLUMN, CAPTIONS_COLUMN}}
    return [name for name in header if name.strip() and name.strip().lower() not in read]


def _several_captions(run: Run, replaced: np.ndarray) -> list[str] | None:
    """The ``captions`` cells: a JSON list where a sample has several captions, else empty; None when no
    sample has several. A replaced caption stands alone: the others were judged with the wrong one."""
    if "captions" not in run.scores.columns:
        return None
    counts = run.scores["captions"].map(len).to_numpy()
    if not (counts > 1).any():
        return None
    return [
        json.dumps(list(captions), ensure_ascii=False) if count > 1 and not swapped else ""
        for captions, count, swapped in zip(run.scores["captions"], counts, replaced)
    ]


def export_frame(
    store: ReviewStore,
    run: Run,
    what: str,
    replace: bool = False,
    allow_unresolved: bool = False,
    *,
    history: pd.DataFrame | None = None,
) -> pd.DataFrame:
    """The table of an export: ``verdicts`` (every verdict ever given), ``resolutions`` (the lead's standing
    decision on each sample they settled), ``cleaned`` or ``droplist``. ``history``: see ``final_labels``."""
    if what == "verdicts":
        return store.verdicts(run.name) if history is None else history
    if what == "resolutions":
        return store.resolutions(run.name).drop(columns="id")  # EXPORTED_HEADERS["resolutions"]
    if what not in KINDS:
        raise ClipmemError(f"unknown export {what!r}: use {', '.join(KINDS)}")
    labels = final_labels(store, run.name, allow_unresolved, history=history)
    if what == "cleaned":
        return cleaned_dataset(run, labels, replace)
    dropped = labels.loc[labels["verdict"] == MISCAPTIONED, "sample_id"]
    return pd.DataFrame({"sample_id": dropped[dropped.isin(run.scores["sample_id"])]}).reset_index(drop=True)


def export(
    store: ReviewStore,
    run: Run,
    what: str,
    out: str | os.PathLike,
    fmt: str = "csv",
    replace: bool = False,
    *,
    allow_unresolved: bool = False,
    force: bool = False,
    history: pd.DataFrame | None = None,
) -> tuple[Path, int]:
    """Write ``verdicts``, ``resolutions``, ``cleaned`` or ``droplist`` for a run; returns the file written and
    its number of rows. ``history``: see ``final_labels``."""
    frame = export_frame(store, run, what, replace, allow_unresolved, history=history)
    return write_table(frame, out, fmt, spreadsheet=what in HISTORY_KINDS, force=force), len(frame)


def export_bytes(
    store: ReviewStore,
    run: Run,
    what: str,
    fmt: str = "csv",
    replace: bool = False,
    *,
    allow_unresolved: bool = False,
    history: pd.DataFrame | None = None,
) -> tuple[bytes, int]:
    """An export's bytes and its number of rows, for a stream (``review export --out -``) instead of a file:
    the same table and escaping as ``export`` writes."""
    frame = export_frame(store, run, what, replace, allow_unresolved, history=history)
    return table_bytes(frame, fmt, spreadsheet=what in HISTORY_KINDS), len(frame)
