"""``python -m clipmem_core review ...``: import verdicts, export results, report agreement, estimate.

The run's name in the review database is its folder name; the default SQLite file lives in the run
folder's parent (the cache root). ``CLIPMEM_DB_URL`` selects another database.
"""

from __future__ import annotations

import argparse
import getpass
import json
import sys
from dataclasses import asdict
from pathlib import Path
from typing import NamedTuple

import numpy as np
import pandas as pd

from ..atomic import check_output_file, read_parquet
from ..cache import Run, is_run_folder, load_run
from ..errors import ClipmemError
from ..formatting import fmt_count, fmt_number
from ..tables import read_frame
from .agreement import agreement_report
from .decisions import changed_minds, counted_verdicts, decided, decisions
from .estimate import (
    MIN_AUDIT,
    Estimate,
    audit_order,
    open_disagreements,
    ranking_name,
    ranking_order,
    run_estimate,
)
from .export import (
    EXPORTED_HEADERS,
    ROW_NOUNS,
    STDOUT,
    check_stream,
    export,
    export_bytes,
    left_out_notes,
    output_format,
    stream_table,
    unescape_cell,
)
from .roles import LEADS_ENV, leads
from .store import ReviewStore, given_at, open_store, record_problem
from .verdicts import normalise_verdict

# what an importable file holds (``review export --what verdicts`` / ``resolutions`` writes it): its kind's
# required columns, then the optional ones; created_at says when each was given
IMPORTS = {
    "verdicts": (("sample_id", "reviewer", "verdict"), ("suggested_caption", "note", "created_at")),
    "resolutions": (("sample_id", "resolved_by", "verdict"), ("caption", "note", "created_at")),
}


def _open(run_path: str) -> tuple[Run, ReviewStore]:
    run = load_run(run_path)
    return run, open_store(Path(run_path).resolve().parent)


def _note_renamed(store: ReviewStore, run: Run) -> None:
    """Say on stderr when a run has no verdicts while the database holds some for runs this cache no longer
    has: review data is kept by run name, and a renamed run folder showed none of its verdicts, without a
    word."""
    held = store.review_runs()
    if held.get(run.name):
        return
    gone = sorted(name for name in held if not (run.path.parent / name).is_dir())
    if gone:
        shown = ", ".join(f"{name} ({held[name]})" for name in gone[:3]) + (" …" if len(gone) > 3 else "")
        print(
            f"note: run {run.name} has no verdicts, but the review database holds verdicts for runs this cache "
            f"does not hold: {shown}. If this run was called so before, `clipmem review rename-run --run "
            f"{run.path} --from {gone[0]}` moves them to it.",
            file=sys.stderr,
        )


def _login_name() -> str:
    try:
        return getpass.getuser()
    except (OSError, KeyError):  # no login name to be had (a container without a user entry)
        return "clipmem"


def cmd_rename_run(args: argparse.Namespace) -> int:
    run, store = _open(args.run)
    old_folder = run.path.parent / args.old_name
    if old_folder != run.path and is_run_folder(old_folder) and not args.force:
        # a copied run folder (cp -a cache/a cache/b) took every verdict away from the original, without a word
        raise ClipmemError(
            f"{old_folder} is still a run: its verdicts would leave it. For a copy, carry them over with "
            f"`clipmem review export --run {old_folder} --what verdicts --out verdicts.csv` and `clipmem review "
            f"import --run {run.path} --file verdicts.csv` (and likewise --what resolutions); or add --force to "
            "move them anyway"
        )
    moved = store.rename_run(args.old_name, run.name, args.by or _login_name())
    what = f"{fmt_count(moved, 'verdict')}, with the resolutions and review sessions,"
    print(f"moved {what} from {args.old_name} to {run.name}")
    return 0


def _note_counting_rule(history: pd.DataFrame) -> None:
    """Say on stderr when the result would differ under the dashboard's lead list: a lead's shell without
    CLIPMEM_LEADS counted each reviewer's latest verdict, the dashboard with it a non-lead's first, and the
    two exports of one database differed without a word. ``history``: the run's every verdict (a caller
    that needs them too passes its own read: at 100,000 verdicts a read takes about two seconds)."""
    changed = changed_minds(history) if leads() is None else 0
    if changed:
        print(
            f"note: {fmt_count(changed, 'reviewer verdict')} changed after it was first given; with {LEADS_ENV} "
            "unset each reviewer's latest counts here. A dashboard served with a lead list counts a non-lead's "
            f"first (blind) verdict instead: set the same {LEADS_ENV} here to get its results.",
            file=sys.stderr,
        )


SPREADSHEET_SUFFIXES = (".xlsx", ".xls", ".xlsm", ".ods", ".numbers")


def _read_import_file(path: Path) -> tuple[str, pd.DataFrame]:
    """(its kind, the table of strings indexed by the line each row starts on): a file with a ``resolved_by``
    column holds a lead's resolutions. Read as datasets are (clipmem_core.tables), so a latin-1, semicolon-
    separated or badly quoted file is refused naming its line and what to do; a parquet export is read too."""
    expected = {kind: f"{','.join(req)}[,{','.join(opt)}]" for kind, (req, opt) in IMPORTS.items()}
    if path.suffix.lower() in SPREADSHEET_SUFFIXES:  # read as text, it was "not UTF-8 text (line 1, byte 12)"
        raise ClipmemError(f"{path} is a spreadsheet: save it as CSV (UTF-8) and import that")
    escaped = False
    if path.suffix.lower() == ".parquet":  # a parquet export escapes nothing
        frame = _read_parquet_import(path)
    else:
        fmt = "tsv" if path.suffix.lower() == ".tsv" else "csv"
        frame = read_frame(path, ("sample_id", "verdict"), fmt, expected["verdicts"])
        escaped = list(frame.columns) in EXPORTED_HEADERS.values()
    kind = "resolutions" if "resolved_by" in frame.columns else "verdicts"
    required, optional = IMPORTS[kind]
    missing = [c for c in required if c not in frame.columns]
    if missing:
        raise ClipmemError(f"{path} lacks columns {missing}; expected {expected[kind]}")
    kept = frame[[c for c in (*required, *optional) if c in frame.columns]]
    # an export escaped the cells a spreadsheet would evaluate ("'=x"); a file of one's own is taken verbatim:
    # a hand-written "'+' sign" lost its quote
    return kind, kept.map(unescape_cell) if escaped else kept


def _read_parquet_import(path: Path) -> pd.DataFrame:
    """A parquet export (``review export --format parquet``) as the CSV reader gives it: strings, "" for a
    missing value, indexed by row (counted from 2, as a CSV's lines are, after its header)."""
    try:
        frame = read_parquet(path)
    except FileNotFoundError:
        raise ClipmemError(f"{path} does not exist") from None
    except (OSError, ValueError) as exc:
        raise ClipmemError(f"{path} is not a readable parquet file: {(str(exc).splitlines() or [''])[0]}") from None
    times = frame.select_dtypes(include=["datetime", "datetimetz"]).columns
    frame[times] = frame[times].apply(lambda column: column.map(lambda t: t.isoformat() if pd.notna(t) else ""))
    frame = frame.astype(object).where(frame.notna(), "").astype(str)
    frame.index = pd.RangeIndex(2, len(frame) + 2, name="line")
    return frame


def _problems(frame: pd.DataFrame, run: Run, kind: str) -> list[str]:
    """One message per bad row, naming the line it starts on (the frame's index): every check the store makes
    when it writes, made first, so that a bad note or name on line 812 is not reported without its line."""
    problems = []
    for line, row in zip(frame.index, frame.to_dict("records")):
        if row["sample_id"] not in run.row_of:
            problems.append(f"line {line}: sample_id {row['sample_id'][:60]!r} is not in run {run.name}")
        problem = record_problem(kind, row)
        if problem:
            problems.append(f"line {line}: {problem}")
    return problems


def _text(value: object) -> str | None:
    """A cell as the store keeps it: blank (or a missing value, NaN in a frame) is None."""
    return None if value is None or pd.isna(value) else str(value).strip() or None


def _said(row: dict, columns: tuple[str, ...]) -> tuple:
    """Who said what on which sample (every column but the time): what an undated row is compared on."""
    text = [_text(row.get(c)) for c in columns if c not in ("verdict", "created_at")]
    return (*text, normalise_verdict(row["verdict"]))


def _key(row: dict, columns: tuple[str, ...]) -> tuple:
    """What makes two rows one verdict (or resolution) given once: who, on what, what they said, and when."""
    return (*_said(row, columns), pd.Timestamp(row["created_at"]))


def _already_held(history: pd.DataFrame, frame: pd.DataFrame, kind: str) -> np.ndarray:
    """Rows of an import file the run's history already holds (the same file imported twice, or this run's
    own export brought back): only rows that say when they were given can be told apart."""
    if "created_at" not in frame.columns:
        return np.zeros(len(frame), dtype=bool)
    columns = tuple(c for part in IMPORTS[kind] for c in part)
    seen, found = {_key(row, columns) for row in history.to_dict("records")}, []
    for row in frame.to_dict("records"):
        at = given_at(row["created_at"])
        if at is None:  # undated: a verdict given anew, however many there are
            found.append(False)
            continue
        key = _key({**row, "created_at": at}, columns)
        found.append(key in seen)
        seen.add(key)
    return np.array(found, dtype=bool)


def _undated_repeats(history: pd.DataFrame, frame: pd.DataFrame, kind: str) -> int:
    """Undated rows that say what the run's history already says (who, on what, the verdict, caption and
    note): each is added as given anew, and a file without times imported twice doubled the history
    without a word. Counted, so the import can say so."""
    columns = tuple(c for part in IMPORTS[kind] for c in part)
    undated = (
        frame["created_at"].map(lambda value: given_at(value) is None)
        if "created_at" in frame.columns
        else pd.Series(True, index=frame.index)
    )
    if not undated.any() or history.empty:
        return 0
    seen = {_said(row, columns) for row in history.to_dict("records")}
    return sum(_said(row, columns) in seen for row in frame[undated].to_dict("records"))


class Imported(NamedTuple):
    kind: str  # "verdicts" or "resolutions"
    count: int
    left_out: int  # rows of samples the run does not hold (``skip_unknown_samples``)
    repeated: int  # rows the run's history already held
    undated_repeats: int = 0  # undated rows, added anew, that say what the history already said


def import_verdict_file(
    store: ReviewStore, run: Run, path: str | Path, *, skip_unknown_samples: bool = False
) -> Imported:
    """Add every verdict of a CSV file to the run, or none: every row is checked before any is written. A file
    with a ``resolved_by`` column holds a lead's resolutions (``review export --what resolutions``) instead.

    ``skip_unknown_samples`` leaves out the rows of samples the run does not hold, so that verdicts exported
    from a run carry over to its re-run without the dropped samples (``--exclude``); every other bad row
    still imports nothing.

    A ``created_at`` column (an export has one) keeps when each was given, so the latest counts whatever the
    order of imports; a row the run's history already holds, to the second, is not added again.

    Returns:
        What was imported and what was left out. ClipmemError (naming the first three bad lines) otherwise.
    """
    kind, frame = _read_import_file(Path(path))
    held = frame["sample_id"].isin(list(run.row_of)).to_numpy() if skip_unknown_samples else None
    if held is not None:
        frame = frame[held]
    problems = _problems(frame, run, kind)
    if problems:
        more = f" (and {len(problems) - 3} more)" if len(problems) > 3 else ""
        unknown = any("is not in run" in problem for problem in problems)
        hint = "; to leave out samples the run does not hold (a re-run with --exclude), pass --skip-unknown-samples"
        hint = hint if unknown else ""
        raise ClipmemError(f"{path}: nothing imported: {'; '.join(problems[:3])}{more}{hint}")
    history = store.verdicts(run.name) if kind == "verdicts" else store.resolutions(run.name, history=True)
    duplicate = _already_held(history, frame, kind)
    undated_repeats = _undated_repeats(history, frame, kind)
    records = frame.loc[~duplicate].to_dict("records")
    try:
        add = store.add_verdicts if kind == "verdicts" else store.add_resolutions
        imported = add(run.name, records)
    except ClipmemError as exc:
        raise ClipmemError(f"{path}: nothing imported: {exc}") from None
    left_out = 0 if held is None else int((~held).sum())
    return Imported(kind, imported, left_out, int(duplicate.sum()), undated_repeats)


def cmd_import(args: argparse.Namespace) -> int:
    run, store = _open(args.run)
    done = import_verdict_file(store, run, args.file, skip_unknown_samples=args.skip_unknown_samples)
    print(f"imported {fmt_count(done.count, done.kind.removesuffix('s'))} into run {run.name}")
    if done.left_out:
        print(f"left out {fmt_count(done.left_out, 'row')} of samples run {run.name} does not hold")
    if done.repeated:
        same = "the same, given at the same time"
        print(f"left out {fmt_count(done.repeated, 'row')} the run's history already holds ({same})")
    if done.undated_repeats:
        print(
            f"note: {fmt_count(done.undated_repeats, 'undated row')} "
            f"{'says' if done.undated_repeats == 1 else 'say'} what the run's history already holds "
            f"(the same reviewer, sample and verdict) and {'was' if done.undated_repeats == 1 else 'were'} added "
            "again, as given now: without created_at "
            "a row cannot be told from one imported before. An export has created_at; importing it twice "
            "adds nothing.",
            file=sys.stderr,
        )
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    if args.replace_with_suggestion and args.what != "cleaned":
        raise ClipmemError("--replace-with-suggestion only applies to --what cleaned")
    if args.out == STDOUT:
        return _export_to_stdout(args)
    out = Path(args.out)
    check_output_file(out, force=args.force)  # before opening anything: nothing is replaced by accident
    fmt = output_format(out, args.format)
    run, store = _open(args.run)
    run.check_output(out, force=args.force)
    history = store.verdicts(run.name)
    _note_counting_rule(history)
    _note_renamed(store, run)
    path, rows = export(
        store,
        run,
        args.what,
        out,
        fmt,
        args.replace_with_suggestion,
        allow_unresolved=args.allow_unresolved,
        force=args.force,
        history=history,
    )
    print(f"wrote {path}: {fmt_count(rows, *ROW_NOUNS[args.what])}")
    root = run.dataset_root
    _export_notes(run, args.what, rows, elsewhere=root is not None and path.resolve().parent != root.resolve())
    return 0


def _export_to_stdout(args: argparse.Namespace) -> int:
    """``--out -``: the table on standard output and every word about it on standard error, so that
    ``review export --what droplist --out - | …`` reads nothing but the table. Parquet is binary: a
    terminal would show it as noise, so it needs a pipe or a redirect."""
    fmt = args.format or "csv"
    check_stream(fmt)
    run, store = _open(args.run)
    history = store.verdicts(run.name)
    _note_counting_rule(history)
    _note_renamed(store, run)
    data, rows = export_bytes(
        store,
        run,
        args.what,
        fmt,
        args.replace_with_suggestion,
        allow_unresolved=args.allow_unresolved,
        history=history,
    )
    stream_table(data, fmt)
    print(f"wrote {fmt_count(rows, *ROW_NOUNS[args.what])} to standard output", file=sys.stderr)
    _export_notes(run, args.what, rows, elsewhere=run.dataset_root is not None)
    return 0


def _export_notes(run: Run, what: str, rows: int, *, elsewhere: bool) -> None:
    """What a user should know about an export before using it, on standard error. ``elsewhere``: the file
    does not lie in the dataset root its relative filepaths start from."""
    if what == "droplist" and not rows:  # `run --exclude` of it trains on everything, as before
        print("note: no sample of this run is decided mis-captioned: the drop list is empty", file=sys.stderr)
    if what != "cleaned":
        return
    for note in left_out_notes(run):
        print(f"note: {note}", file=sys.stderr)
    if elsewhere:
        print(
            f"note: filepath is relative to the dataset root {run.dataset_root}; "
            "put the file there to train on it or to run clipmem on it again",
            file=sys.stderr,
        )


PAIRS_SHOWN = 20  # a crowd of reviewers has thousands of pairs: the text shows those with most in common


def _rater_range(fleiss: dict) -> str:
    low, high = fleiss["min_raters"], fleiss["max_raters"]
    return str(low) if low == high else f"{low} to {high}"


def _format_report(report: dict) -> str:
    num = fmt_number
    fleiss, share = report["fleiss"], report["percent_agreement"]
    lines = [
        f"samples judged: {report['n_samples']:,} by {fmt_count(report['n_reviewers'], 'reviewer')}; "
        f"{report['n_multiply_judged']:,} judged by two or more, "
        f"{fmt_count(report['n_disagreements'], 'disagreement')}",
        f"percent agreement: {num(share, 1, percent=True)}",
        f"Fleiss' kappa: {num(fleiss['kappa'])} (on {fleiss['n_samples']:,} samples judged by "
        f"{_rater_range(fleiss)} reviewers; {fleiss['n_judged_once']:,} judged by one, not counted)",
    ]
    pairs = report["pairs"]
    if len(pairs) > PAIRS_SHOWN:
        lines.append(
            f"Cohen's kappa of {len(pairs):,} pairs of reviewers; the {PAIRS_SHOWN} pairs that share the most "
            "samples below (--json lists every pair):"
        )
        pairs = sorted(pairs, key=lambda p: -p["n_samples"])[:PAIRS_SHOWN]
    lines += [
        f"Cohen's kappa {p['reviewer_a']} / {p['reviewer_b']}: {num(p['cohen_kappa'])} "
        f"on {p['n_samples']:,} samples (agreement {num(p['percent_agreement'])})"
        for p in pairs
    ]
    return "\n".join(lines)


def cmd_agreement(args: argparse.Namespace) -> int:
    run, store = _open(args.run)
    sample_ids = store.session_samples(args.session) if args.session is not None else None
    history = store.verdicts(run.name)
    _note_counting_rule(history)
    _note_renamed(store, run)
    if sample_ids is not None:
        history = history[history["sample_id"].isin(sample_ids)]
    report = agreement_report(counted_verdicts(history))
    print(json.dumps(report, indent=2) if args.json else _format_report(report))
    return 0


def cmd_estimate(args: argparse.Namespace) -> int:
    run, store = _open(args.run)
    name = ranking_name(run.scores)
    if name is None:
        raise ClipmemError(f"{args.run} has no registered score to rank by")
    history = store.verdicts(run.name)
    _note_counting_rule(history)
    _note_renamed(store, run)
    table = decisions(counted_verdicts(history), store.resolutions(run.name))
    estimate = run_estimate(run, decided(table), ranking_order(run, name), open_samples=open_disagreements(table))
    stops = _open_stops(run, estimate)
    if args.json:
        record = {"ranking": name, **asdict(estimate), "enough": estimate.enough, "stopped_at_disagreement": stops}
        print(json.dumps(record, indent=2))
        return 0
    print(
        f"judged top of {name}: {estimate.top_miscaptioned} mis-captioned in the first {estimate.top_judged}\n"
        f"random sample of the rest: {estimate.random_miscaptioned} of {estimate.random_judged} mis-captioned"
    )
    for part, sample in stops.items():
        print(
            f"the {part} stops at sample {sample}: its reviewers disagree and no lead has settled it. Samples "
            "judged after it count once it is settled (the Reconcile page, or `clipmem review import` of a "
            "resolution)"
        )
    if not estimate.enough:
        print(
            f"not enough for an estimate: judge at least {MIN_AUDIT} samples of the random order "
            f"(`clipmem review random-order --run {args.run}`, or the Review page's random sample queue)"
        )
        return 0
    print(
        f"estimated mis-captioned: {estimate.count:.0f} of {estimate.n_samples} "
        f"(95% interval {estimate.low:.0f}-{estimate.high:.0f})"
    )
    return 0


def _open_stops(run: Run, estimate: Estimate) -> dict[str, str]:
    """{part of the estimate: the sample id} where an open disagreement ends that part."""
    rows = {"judged top": estimate.top_open_row, "random sample": estimate.random_open_row}
    return {part: str(run.scores["sample_id"].iloc[row]) for part, row in rows.items() if row is not None}


def cmd_random_order(args: argparse.Namespace) -> int:
    """The random sample's sample ids, in order: for teams that judge outside the dashboard and import."""
    if args.limit < 1:  # a slice of -1 printed every id but the last
        raise ClipmemError(f"--limit must be 1 or more, not {args.limit}")
    run = load_run(args.run)
    ids = run.scores["sample_id"].iloc[audit_order(len(run.scores))[: args.limit]]
    sys.stdout.write("sample_id\n" + "".join(f"{sample}\n" for sample in ids))
    return 0
