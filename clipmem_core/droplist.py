"""Drop lists: the sample ids a run leaves out (``clipmem run --exclude FILE``).

A drop list is what ``clipmem review export --what droplist`` writes (a CSV or parquet file with a
``sample_id`` column); a TSV with that column, a table whose ids are in an ``id`` column (as a dataset's),
or a ``.txt`` file with one id a line, works too. Excluded samples are removed right after ingest, before
the folds or splits are drawn, so the run trains and scores as if they were never in the data. Ids the
data does not hold are counted and reported: a drop list made on a larger version of the data still
applies to what is left. A list none of whose ids is in the data is refused: it is another dataset's.
"""

from __future__ import annotations

import hashlib
import logging
import os
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from .atomic import atomic_path, read_parquet
from .data import ID_ALIASES
from .errors import ClipmemError
from .formatting import fmt_count
from .tables import read_frame, read_text, separator_problem

log = logging.getLogger("clipmem")
DROP_LIST_COLUMN = "sample_id"


@dataclass(frozen=True)
class Exclusion:
    """What a drop list did to a dataset: how many samples it removed and how many ids it named in vain."""

    ids: frozenset[str]
    removed: int
    not_found: int

    @property
    def digest(self) -> str:
        """Identifies the list's content, so a resumed run refuses a drop list that changed."""
        return ids_digest(self.ids)


def ids_digest(ids: frozenset[str]) -> str:
    """A drop list's content in 16 hex digits, whatever its file's name, format or order of ids."""
    return hashlib.sha256("\n".join(sorted(ids)).encode()).hexdigest()[:16]


def read_drop_list(path: str | os.PathLike) -> frozenset[str]:
    """The ids of a drop list file; a missing file, a table without ``sample_id`` or an unknown type is refused."""
    source = Path(path).expanduser()
    if source.is_dir():
        raise ClipmemError(f"drop list {source} is a folder; give the file of sample ids (.csv, .tsv, .parquet, .txt)")
    if not source.is_file():
        raise ClipmemError(f"drop list {source} does not exist")
    suffix = source.suffix.lower()
    if suffix == ".txt":
        ids = [line.strip() for line in read_text(source).splitlines() if line.strip()]
        if ids and ids[0].lower() in ID_ALIASES:  # a header (sample_id, id), as older `review export`s wrote:
            ids = ids[1:]  # read as an id, it was "1 id of the list is not in the data"
        return frozenset(ids)
    if suffix in (".csv", ".tsv"):
        fmt = suffix.removeprefix(".")
        frame = read_frame(source, (), fmt)
        if frame.columns.empty:  # an empty list drops nothing
            return frozenset()
    elif suffix in (".parquet", ".pq"):  # `review export --out drop.pq` writes parquet
        fmt, frame = "parquet", _read_parquet(source)
    else:
        raise ClipmemError(f"drop list {source}: expected a .csv, .tsv, .parquet or .txt file")
    column = _id_column([str(c) for c in frame.columns])
    if column is None:
        header = [str(c) for c in frame.columns]
        problems = (separator_problem(source, header, [name], fmt) for name in ID_ALIASES)
        raise ClipmemError(
            next((p for p in problems if p), None)
            or f"drop list {source} has no {DROP_LIST_COLUMN!r} (or 'id') column (columns: {', '.join(header)[:300]})"
        )
    # the review export writes drop lists verbatim (only the verdicts export escapes formula-like cells)
    return frozenset(v for v in (str(v).strip() for v in frame[column]) if v)


def _id_column(columns: list[str]) -> str | None:
    """The column of ids: ``sample_id``, else one named as a dataset's id column may be (``id``, ``ID``): a
    drop list cut from the data itself, or from ``inject-miscaptions``' copy, has ``id`` and was refused."""
    if DROP_LIST_COLUMN in columns:
        return DROP_LIST_COLUMN
    return next((name for name in columns if name.strip().lower() in ID_ALIASES), None)


def _read_parquet(source: Path) -> pd.DataFrame:
    try:
        return read_parquet(source)
    except (OSError, ValueError) as exc:
        raise ClipmemError(f"drop list {source} is unreadable: {str(exc).strip().splitlines()[0]}") from None


def _none_of(count: int) -> str:
    """The refusal's words, "its one id is not" or "none of its 3 ids is" (one id read "none of its 1 ids is")."""
    return "its one id is not" if count == 1 else f"none of its {count:,} ids is"


def apply_drop_list(
    samples: pd.DataFrame, ids: frozenset[str], source: str = "drop list"
) -> tuple[pd.DataFrame, Exclusion]:
    """``samples`` without the listed ids, and what was removed; unknown ids are logged, not refused."""
    listed = samples["sample_id"].isin(ids)
    exclusion = Exclusion(ids=ids, removed=int(listed.sum()), not_found=len(ids) - int(listed.sum()))
    if ids and not exclusion.removed:  # the whole run would train as if no list were given
        raise ClipmemError(
            f"{source}: {_none_of(len(ids))} in the data (e.g. {sorted(ids)[0][:60]!r}; the data's ids "
            f"look like {str(samples['sample_id'].iloc[0])[:60]!r}): is it this dataset's list? Without "
            "--exclude nothing is left out"
        )
    if not ids:
        log.warning("%s is empty: nothing is excluded", source)
    if exclusion.not_found:
        log.warning("%s: %d of %d ids are not in the data (ignored)", source, exclusion.not_found, len(ids))
    if exclusion.removed == len(samples):
        raise ClipmemError(f"{source} excludes every one of the {len(samples)} samples; nothing is left to train on")
    log.info("%s: excluded %d samples", source, exclusion.removed)
    return samples.loc[~listed].reset_index(drop=True), exclusion


def write_drop_list(path: str | os.PathLike, ids: list[str] | frozenset[str]) -> Path:
    """A CSV drop list (``sample_id``) that ``--exclude`` and the review export agree on; written atomically."""
    path = Path(path)
    with atomic_path(path) as tmp:
        pd.DataFrame({DROP_LIST_COLUMN: sorted(ids)}).to_csv(tmp, index=False)
    return path


def exclusion_note(n_excluded: int, n_not_found: int, path: str | None) -> str | None:
    """What a run's drop list did, for the summary and the Overview: a cleaned re-run said nothing of it
    there, and the ids its list named in vain were recorded but shown nowhere. None for a run without one."""
    if not path:
        return None
    note = f"{fmt_count(n_excluded, 'sample')} left out by the drop list {path}"
    if n_not_found:
        note += f"; {fmt_count(n_not_found, 'id')} of the list {'is' if n_not_found == 1 else 'are'} not in the data"
    return note
