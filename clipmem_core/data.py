"""Dataset ingest: a CSV/TSV file, a COCO captions JSON, an image folder or WebDataset shards -> a validated `Dataset`.

Every reader yields the same raw records; one validation pass then sorts each record into
``samples`` or ``skipped`` (with a human reason), so all formats share the same bad-row rules.

Paths. The *base* folder is the one the input names paths against: the CSV/TSV's folder, the JSON's
folder (a COCO ``file_name`` missing there is looked up under an ``images/`` folder beside the JSON),
or the image folder itself. WebDataset shards (a ``.tar``, a folder holding ``*.tar``, or a brace pattern
such as ``train-{0000..0003}.tar`` in the file name) are read in place: the base is the shards' folder
and a sample's ``filepath`` runs through its shard, ``<shard>.tar/<key>.<ext>``; images are read from
the tar at their offsets (`clipmem_core.shards`), nothing is written. With ``extract_shards`` (for small
data, or tools that need plain files) the images are extracted once into a cache folder named by the
shards' paths, sizes and mtimes (under ``$CLIPMEM_DATA_CACHE``, else ``~/.cache/clipmem/webdataset``),
never beside the shards; that folder is then the base, and ``filepath`` is ``<shard stem>/<key>.<ext>``.
Either way a sample's derived id is the same. ``root`` is always the base. A sample's ``filepath`` is
relative to it when the image lies inside it; an absolute path written in the user's own CSV/COCO file
(img2dataset and open_clip CSVs use them) is kept absolute. A relative path that leaves the base with
``..`` is refused (a skipped row) unless ``allow_outside_root``; then it is stored as an absolute path
too. So a stored relative ``filepath`` never escapes ``root``, and ``Run.image_path`` serves exactly
the files that are rows of a run (docs/security.md).

Row numbers in messages and in ``skipped`` count records from 1 in input order: CSV/TSV data rows
(header and blank lines excluded), COCO ``images`` entries, the sorted image files of a folder, or
WebDataset samples (member groups sharing a key) in shard order, a damaged shard's tail counting as one.
An ``on_error="fail"`` message adds the line a table's row starts on ("row 2, line 3 of the file"), and
``skipped`` has it as its ``line`` column.
A COCO annotation that captions no sample is reported without a row number; its reason names it by its
``id`` and its place counted from 1 ("annotation id 720 (the 716th)").
"""

from __future__ import annotations

import ast
import errno
import hashlib
import json
import logging
import os
import posixpath
import re
import shutil
import stat
import tarfile
import warnings
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO, NamedTuple

import numpy as np
import pandas as pd
from PIL import Image, ImageOps, UnidentifiedImageError
from tqdm.auto import tqdm

from .atomic import atomic_path, check_output_file
from .config import ON_ERROR
from .errors import ClipmemError
from .formatting import fmt_count
from .shards import image_exists, image_stat, open_image_source, shards_root
from .tables import field_count_problem, marked_encoding, read_text, separator_problem, table_rows

log = logging.getLogger("clipmem")
IMAGE_SUFFIXES = frozenset({".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff"})
ID_COLUMN = "id"
# Other spellings of the id column that a table's header may use ("ID" from a spreadsheet, "sample_id" from
# clipmem's own scores and drop lists); compared without case. They were ignored without a word, and every
# sample got a derived id, so scores and drop lists keyed by the user's ids matched nothing.
ID_ALIASES = ("id", "sample_id")
LABEL_COLUMN = "is_miscaptioned"
CLASS_COLUMN = "label"  # optional class of the image (e.g. a stamp's category): for linear probes, never trained on
# optional: every caption of a sample with several, as a JSON or Python list (the cleaned export of COCO data writes it)
CAPTIONS_COLUMN = "captions"
# ``line``: the file line a table's row starts on (empty for other formats). ``row`` counts data rows, and a
# row whose caption spans lines starts further down than its number says, so an editor needs the line.
SKIP_COLUMNS = ["row", "line", "filepath", "caption", "reason"]
SHOWN_REASONS = 4  # in a skip summary; the rest are counted together
# Also what pandas writes for a bool column with gaps (1.0/0.0), and spreadsheets' one-letter forms.
_TRUE = frozenset({"true", "1", "yes", "1.0", "t", "y"})
_FALSE = frozenset({"false", "0", "no", "0.0", "f", "n"})
_LABEL_HINT = "use true/false, 1/0 or yes/no; an empty cell is an unlabelled sample"
UNIDENTIFIED = "not an image file PIL can read (unknown format, or the start of the file is damaged)"
EMPTY_IMAGE = "empty file (0 bytes)"  # not "damaged": a failed download or copy, to fetch again
_FORMATS = "a .csv, a .tsv, a COCO captions .json, a folder of images with .txt captions, or WebDataset .tar shards"
DATA_CACHE_ENV = "CLIPMEM_DATA_CACHE"
_BRACE = re.compile(r"\{(\d+)\.\.(\d+)\}")
COMPRESSED_SHARDS = (".tar.gz", ".tgz", ".tar.bz2", ".tar.xz", ".tar.zst")
_IMAGE_EXTS = frozenset(suffix[1:] for suffix in IMAGE_SUFFIXES)
MAX_SHARDS = 100_000  # a brace pattern naming more shards is a typo, not a dataset
MAX_ID_LENGTH = 300  # what the review database stores (review/store.py)
# PIL's own decompression-bomb threshold (2 x Image.MAX_IMAGE_PIXELS); fixed here so a changed global
# cannot turn it off. A 12000 x 12000 poster (144 MP) passes; images are downscaled once loaded.
MAX_IMAGE_PIXELS = 178_956_970
MAX_MEMBER_BYTES = 256 * 1024 * 1024  # a WebDataset image larger than this is refused, not extracted
MAX_TEXT_MEMBER_BYTES = 1024 * 1024  # a .txt/.json member larger than this is refused, not read
CONTROL_CHARACTERS = re.compile(r"[\x00-\x1f\x7f]")  # never in an id or a name: they go to the review store, links
_OUTSIDE_HINT = "add --allow-outside-root to accept it"
OUTSIDE_REASON = "image path leaves the dataset folder"
DAMAGED_SHARD = "\x00damaged"  # the key of the one skipped record that stands for a damaged shard's lost tail


@dataclass
class Dataset:
    """The usable samples of one input plus every skipped row, with a hash to key caches on.

    ``warnings`` are whole-input problems that lost no usable sample but that a user should know
    about (a truncated shard, ground truth given for only some samples); the CLI logs them.
    """

    samples: pd.DataFrame
    root: Path
    format: str
    skipped: pd.DataFrame
    content_hash: str
    source: Path
    warnings: list[str] = field(default_factory=list)
    # the ids of the skipped rows: scores computed elsewhere for every row (import-run) name them too
    skipped_ids: frozenset[str] = frozenset()
    rows: int = 0  # rows (samples) the input had, skipped ones too: a drop list later leaves fewer samples

    def __post_init__(self) -> None:
        self.rows = self.rows or len(self.samples) + len(self.skipped)

    def __len__(self) -> int:
        return len(self.samples)


@dataclass
class _Record:
    """One input row before validation; ``problem`` is a defect the reader already saw, the same words for
    every record with it (the skip summary counts them together), ``detail`` what is particular to this one.

    ``escapes``: the path was written relative but leaves the base folder with ``..``.
    """

    row: int | None  # None: an entry that is no sample's row (a COCO annotation); its detail says which
    written: str
    path: Path
    captions: list[str]
    sample_id: str
    label: Any = None
    problem: str | None = None
    detail: str = ""
    escapes: bool = False
    warn: bool = False  # the record stands for lost input (a damaged shard): also a warning
    category: str | None = None
    # another place the image was looked for (a COCO file_name under images/): "missing" named only the first
    elsewhere: Path | None = None
    line: int | None = None  # the file line a table's row starts on: "row 2" counts data rows, editors count lines


class _Skip(NamedTuple):
    """A skipped row as ``skipped.csv`` lists it (the first five fields, ``SKIP_COLUMNS``), plus the reason's
    kind without its detail, which the summaries count by, and the id the row would have had."""

    row: int | None
    line: int | None
    filepath: str
    caption: str
    reason: str
    kind: str
    sample_id: str = ""


def read_dataset(
    path: str | os.PathLike,
    *,
    img_key: str = "filepath",
    caption_key: str = "caption",
    on_error: str = "skip",
    check_images: bool = True,
    progress: bool = True,
    allow_outside_root: bool = False,
    extract_shards: bool = False,
) -> Dataset:
    """Read and validate a dataset; bad rows are skipped with a reason, or raise if ``on_error="fail"``.

    ``check_images`` decodes every image fully (a truncated JPEG passes PIL's ``verify()`` but not a
    decode); without it only existence is checked. ``allow_outside_root`` accepts relative paths that
    leave the dataset's folder with ``..`` (absolute paths are always accepted). ``extract_shards``
    writes WebDataset images to the extraction cache instead of reading them in place.
    """
    if on_error not in ON_ERROR:
        raise ClipmemError(f"on_error must be one of {', '.join(ON_ERROR)}, not {on_error!r}")
    source = Path(path).expanduser().resolve()
    fmt, base, records, has_label = _read_records(source, img_key, caption_key, progress, extract_shards)
    if not records:
        raise ClipmemError(f"{source} holds no samples")
    notes = [_lost_input_note(r) for r in records if r.warn and r.problem]
    good, skipped = _validate(records, has_label, check_images, progress, on_error, allow_outside_root)
    if not good:
        raise ClipmemError(
            f"{source} has no usable samples: all {len(skipped)} rows were skipped ({_top_reasons(skipped)})"
            + _where_paths_point(skipped, base, fmt)
            + _through_a_link(Path(path).expanduser(), source)
            + _outside_root_hint(skipped, base)
            + _tables_inside(source)
        )
    samples, label_note = _samples_frame(good, base, has_label)
    notes += [label_note] if label_note else []
    if len(samples) > 1 and samples["caption"].nunique() == 1:  # the run still goes on, ranking noise
        notes.append(
            f"every sample has the same caption ({samples['caption'].iat[0][:60]!r}): no ranking can tell a wrong "
            "caption from a right one"
        )
    for note in notes:
        log.warning("%s: %s", source.name, note)
    return Dataset(
        samples=samples,
        root=base,
        format=fmt,
        skipped=pd.DataFrame([s[:5] for s in skipped], columns=SKIP_COLUMNS).astype({"row": "Int64", "line": "Int64"}),
        content_hash=_content_hash(samples, base),
        source=source,
        warnings=notes,
        skipped_ids=frozenset(s.sample_id for s in skipped if s.sample_id),
    )


def _lost_input_note(record: _Record) -> str:
    """A record of lost input (a damaged or compressed shard) as a warning that names its file: "compressed
    shard, not read: decompress it …" left the user to find which shard in skipped.csv."""
    problem = str(record.problem)
    return problem if record.written in problem else f"{record.written}: {problem}"


def _pattern_hint(source: Path) -> str:
    """What to do with a wildcard the shell did not expand (it was quoted, or matched nothing): clipmem
    expands brace ranges of shards only, and the user read "does not exist" as a missing file."""
    if not any(char in source.name for char in "*?["):
        return ""
    return (
        ": clipmem does not expand * ? [ ] wildcards. Give one table, a folder of .tar shards, or a brace range "
        "of shards such as data/{000000..000009}.tar"
    )


def _read_records(
    source: Path, img_key: str, caption_key: str, progress: bool, extract_shards: bool
) -> tuple[str, Path, list[_Record], bool]:
    """Pick the reader by the path: (format, base folder, records, has a label column)."""
    if _BRACE.search(source.name):
        return _read_webdataset(_pattern_shards(source), progress, extract_shards)
    if not source.exists():
        raise ClipmemError(f"dataset {source} does not exist{_pattern_hint(source)}")
    if source.is_dir():
        shards = sorted(p for p in source.glob("*.tar") if p.is_file())
        compressed = sorted(p for p in source.iterdir() if p.name.lower().endswith(COMPRESSED_SHARDS))
        if shards:
            return _read_webdataset(shards, progress, extract_shards, unread=compressed)
        records = _read_folder(source)
        if not records and compressed:
            raise _compressed_shards(source, [p.name for p in compressed])
        return "folder", source, records, False
    if source.name.lower().endswith(COMPRESSED_SHARDS):
        raise _compressed_shards(source.parent, [source.name])
    suffix = source.suffix.lower()
    if suffix == ".tar":
        return _read_webdataset([source], progress, extract_shards)
    if suffix in (".csv", ".tsv"):
        fmt = suffix[1:]
        records, has_label = _read_table(source, fmt, img_key, caption_key)
        return fmt, source.parent, records, has_label
    if suffix == ".json":
        return "coco", source.parent, _read_coco(source), False
    if suffix == ".txt":
        raise ClipmemError(_text_file(source))
    raise ClipmemError(f"unknown dataset format {suffix or '(no extension)'!r} for {source}: expected {_FORMATS}")


# A .txt is refused, not guessed at: Excel's "Unicode Text" is a tab-separated table, but a .txt is as often a
# drop list (one id a line, for --exclude) or one image's captions; read as a table, those failed with "lacks
# the column(s) 'filepath', 'caption'", and the suffix alone cannot tell them apart. The advice follows the first
# line: a rename to .tsv was advised of every .txt, a list of ids or a comma-separated table included.
_TEXT_FILE = "{source} is a .txt file, which is not read as a dataset."
_TEXT_TSV = (
    ' Its first line holds tabs: a table saved as tab-separated text (Excel\'s "Unicode Text" names it .txt) is read '
    "once it is named .tsv: rename it {name}."
)
_TEXT_CSV = " Its first line holds commas: a comma-separated table is read once it is named .csv: rename it {name}."
_TEXT_CAPTIONS = (
    " Captions in .txt files are read beside their images, one file per image: pass the folder. Expected " + _FORMATS
)


def _text_file(source: Path) -> str:
    """Why a .txt dataset is refused, with the rename that reads it where its first line looks like a table's."""
    line = _first_text_line(source)
    if "\t" in line:
        table = _TEXT_TSV.format(name=_renamed(source, ".tsv"))
    elif "," in line:
        table = _TEXT_CSV.format(name=_renamed(source, ".csv"))
    else:  # one id or caption a line: no rename reads it as a table
        table = ""
    return _TEXT_FILE.format(source=source) + table + _TEXT_CAPTIONS


def _first_text_line(source: Path, size: int = 65_536) -> str:
    """The first non-blank line of a text file, read as UTF-8 or as its byte-order mark says (UTF-16 from
    Excel); "" where it cannot be read. Only its start is read: the file may be large, and not text at all."""
    try:
        with source.open("rb") as fh:
            data = fh.read(size)
    except OSError:
        return ""
    text = data.decode(marked_encoding(data), errors="replace")
    return next((line for line in text.splitlines() if line.strip()), "")


def _renamed(source: Path, suffix: str) -> str:
    """The name that reads ``source`` as ``suffix``: ``cap.txt`` -> ``cap.tsv``; a table already named for a
    separator and saved with .txt added (``cap.csv.txt``) loses both the .txt and the wrong separator's name."""
    stem = Path(source.stem)
    if stem.suffix.lower() == suffix:
        return stem.name
    if stem.suffix.lower() in (".csv", ".tsv"):
        return stem.with_suffix(suffix).name
    return source.with_suffix(suffix).name


COMPRESSED_SHARD_REASON = "compressed shard, not read: decompress it into a plain .tar shard (e.g. gunzip)"


def _compressed_shards(folder: Path, names: list[str]) -> ClipmemError:
    return ClipmemError(
        f"{folder / names[0]}{f' and {len(names) - 1} more' if len(names) > 1 else ''}: compressed shards are not "
        "read (a compressed tar allows no reading of one image at its offset); decompress them into plain .tar "
        "shards first, e.g. gunzip *.tar.gz"
    )


def _read_table(source: Path, fmt: str, img_key: str, caption_key: str) -> tuple[list[_Record], bool]:
    rows = table_rows(read_text(source), fmt, source)
    first = next(rows, None)
    if first is None:
        raise ClipmemError(f"{source} is empty")
    header = first[1]
    columns = _table_columns(source, header, fmt, img_key, caption_key)
    has_id, has_label = ID_COLUMN in columns, LABEL_COLUMN in columns
    base = source.parent
    has_category = CLASS_COLUMN in columns and CLASS_COLUMN not in (img_key, caption_key)
    has_captions = CAPTIONS_COLUMN in columns and CAPTIONS_COLUMN not in (img_key, caption_key)
    records = []
    for i, (line, fields) in enumerate(rows, start=1):
        problem = field_count_problem(fields, len(header))
        fields = fields + [""] * (len(header) - len(fields))
        written, caption = fields[columns[img_key]].strip(), fields[columns[caption_key]].strip()
        full = _absolute(base, written)
        captions, captions_problem = _all_captions(caption, fields[columns[CAPTIONS_COLUMN]] if has_captions else "")
        problem = problem or captions_problem
        records.append(
            _Record(
                row=i,
                written=written,
                path=full,
                captions=captions,
                # an empty id cell gets the id a file without the column would give (the row was skipped)
                sample_id=(fields[columns[ID_COLUMN]].strip() if has_id else "") or _derived_id(base, full, caption),
                label=(fields[columns[LABEL_COLUMN]].strip() or None) if has_label else None,  # empty: unlabelled
                problem=problem or (None if written else "filepath is empty"),
                escapes=_escapes(base, written, full),
                category=fields[columns[CLASS_COLUMN]].strip() if has_category else None,
                line=line,
            )
        )
    return records, has_label


def _other_separator(header: list[str], wanted: list[str]) -> str | None:
    """The separator a header read as one column really uses (``;`` from a European spreadsheet), if the
    wanted column names appear once it is split by it."""
    if len(header) != 1:
        return None
    return next((sep for sep in (";", "|", "\t") if all(key in header[0].split(sep) for key in wanted)), None)


def _table_columns(source: Path, header: list[str], fmt: str, img_key: str, caption_key: str) -> dict[str, int]:
    """Position of each column the reader uses; a missing or repeated one is a whole-file error."""
    missing = [key for key in (img_key, caption_key) if key not in header]
    separator = separator_problem(source, header, missing, fmt)
    if separator:  # the column-name flags cannot help a file read as one column
        raise ClipmemError(separator)
    if missing:
        spaced = [name for name in header if name != name.strip() and name.strip() in missing]
        hint = f"; the header has {', '.join(map(repr, spaced))}, with spaces: remove them" if spaced else ""
        raise ClipmemError(
            f"{source} lacks the column(s) {', '.join(map(repr, missing))} "
            f"(columns: {', '.join(map(repr, header))[:300]}){hint}; "
            "name the image and caption columns with --csv-img-key/--csv-caption-key"
        )
    used = [
        key
        for key in dict.fromkeys((img_key, caption_key, ID_COLUMN, LABEL_COLUMN, CLASS_COLUMN, CAPTIONS_COLUMN))
        if key in header
    ]
    repeated = [key for key in used if header.count(key) > 1]
    if repeated:
        raise ClipmemError(f"{source} has the column {repeated[0]!r} more than once; keep one")
    columns = {key: header.index(key) for key in used}
    id_column = ID_COLUMN if ID_COLUMN in columns else _id_alias(source, header, (img_key, caption_key))
    if id_column is not None:
        columns[ID_COLUMN] = header.index(id_column)
    return columns


def _id_alias(source: Path, header: list[str], taken: tuple[str, ...]) -> str | None:
    """The column read as the sample id when the header has no ``id``: one named as in ``ID_ALIASES``
    in any case; None without one. Two such columns are refused: either could be the ids."""
    aliases = [name for name in header if name.strip().lower() in ID_ALIASES and name not in taken]
    if len(aliases) > 1:
        raise ClipmemError(
            f"{source} has the columns {', '.join(map(repr, aliases))}: which holds the sample ids? Name that one "
            f"{ID_COLUMN!r}"
        )
    return aliases[0] if aliases else None


def _all_captions(caption: str, listed: str) -> tuple[list[str], str | None]:
    """The sample's captions: ``caption`` first, then the others of a ``captions`` cell; (captions, a problem
    with the cell or None). An empty cell means the one caption."""
    if not listed.strip():
        return [caption], None
    values = _string_list(listed)
    if values is None:
        return [caption], f"{CAPTIONS_COLUMN} is not a list of strings (JSON or Python)"
    return [caption, *(other for other in distinct_captions(values) if other != caption)], None


def _string_list(listed: str) -> list[str] | None:
    """A JSON list of strings, or a Python one: a list column that pandas wrote with ``to_csv`` reads
    ``['a cat', "a dog's bowl"]``, and every such row was skipped. Read with ``ast.literal_eval``, which
    evaluates literals only, never code; None for anything else."""
    try:
        values = json.loads(listed)
    except ValueError:
        try:
            values = ast.literal_eval(listed.strip())
        except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError):
            return None
    if not isinstance(values, (list, tuple)) or not all(isinstance(v, str) for v in values):
        return None
    return list(values)


def _escapes(base: Path, written: str, full: Path) -> bool:
    """True for a relative path that leaves ``base`` (``../x.png``); absolute paths are the user's choice."""
    return bool(written) and not Path(written).is_absolute() and not full.is_relative_to(base)


def _coco_id(value: Any) -> str:
    """An image id as a key: 3 and 3.0 are one id (some JSON writers store every number as a float, and
    every annotation of such a file matched no image)."""
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def _read_coco(source: Path) -> list[_Record]:
    """COCO captions: one record per ``images`` entry, its annotations' captions in file order."""
    try:
        data = json.loads(read_text(source))
    except (json.JSONDecodeError, RecursionError) as exc:
        reason = "it is nested too deeply" if isinstance(exc, RecursionError) else str(exc)
        raise ClipmemError(f"{source} is not valid JSON: {reason}") from None
    if not isinstance(data, dict) or not all(isinstance(data.get(k), list) for k in ("images", "annotations")):
        raise ClipmemError(f"{source} is not a COCO captions file (it needs 'images' and 'annotations' lists)")
    captions: dict[str, list[str]] = defaultdict(list)
    # image_id -> its annotations' (positions, names), for the report
    where: dict[str, list[tuple[int, str]]] = defaultdict(list)
    uncaptioned = []
    for position, ann in enumerate(data["annotations"], start=1):
        ann = ann if isinstance(ann, dict) else {}
        image_id, caption = _coco_id(ann.get("image_id")), ann.get("caption")
        if isinstance(caption, str) and caption.strip():
            captions[image_id].append(caption.strip())
            where[image_id].append((position, _annotation_name(position, ann)))
        else:
            name = _annotation_name(position, ann)
            uncaptioned.append((position, name, "", image_id, "annotation has no caption (a non-empty string)"))
    base = source.parent
    records = []
    shared = _shared_image_ids(data["images"])
    for i, image in enumerate(data["images"], start=1):
        image = image if isinstance(image, dict) else {}
        file_name = image.get("file_name", "")
        written = file_name.strip() if isinstance(file_name, str) else ""
        full, elsewhere = _coco_image_path(base, written)
        caps = distinct_captions(captions.get(_coco_id(image.get("id")), []))
        problem = None if written else "image entry has no file_name (a string)"
        if "id" not in image:  # no annotation can name it: "no annotation gives the image a caption: image id None"
            problem = problem or "image entry has no id"
        shared_rows = shared.get(_coco_id(image["id"])) if "id" in image else None
        if shared_rows:
            problem = SHARED_IMAGE_ID
        records.append(
            _Record(
                row=i,
                written=written,
                path=full,
                captions=caps,
                sample_id=_coco_id(image["id"]) if "id" in image else _derived_id(base, full, caps[0] if caps else ""),
                problem=problem or (None if caps else "no annotation gives the image a caption"),
                detail=shared_rows or ("" if caps or problem else f"image id {_coco_id(image.get('id'))}"),
                escapes=_escapes(base, written, full),
                category=None if image.get(CLASS_COLUMN) is None else str(image[CLASS_COLUMN]),
                elsewhere=elsewhere,
            )
        )
    image_ids = {_coco_id(image.get("id")) for image in data["images"] if isinstance(image, dict)}
    orphans = [  # a caption for an image the file does not list
        (position, name, caption, image_id, "annotation for an image_id that no image entry has")
        for image_id in captions.keys() - image_ids
        for (position, name), caption in zip(where[image_id], captions[image_id])
    ]
    return records + [_annotation_record(base, *entry) for entry in sorted(uncaptioned + orphans)]


SHARED_IMAGE_ID = "image id shared by several image entries, so which one its captions describe is unknown"


def _shared_image_ids(images: list) -> dict[str, str]:
    """Image ids that several ``images`` entries give to different files, each with the entries' rows ("image
    id 8, rows 8 and 9"): the captions name an image by its id, so all of them are skipped. The first entry
    used to keep the captions, and a green square was captioned "a blue square" without a word. Entries of
    one id that name one file are the same image listed twice: the first is kept, the others skipped as
    duplicate rows (the image and its captions had been lost)."""
    rows: dict[str, list[int]] = defaultdict(list)
    files: dict[str, set[str]] = defaultdict(set)
    for i, image in enumerate(images, start=1):
        if isinstance(image, dict) and "id" in image:
            rows[_coco_id(image["id"])].append(i)
            file_name = image.get("file_name")
            files[_coco_id(image["id"])].add(file_name.strip() if isinstance(file_name, str) else repr(file_name))
    return {
        image_id: f"image id {image_id}, rows {', '.join(map(str, found[:-1]))} and {found[-1]}"
        for image_id, found in rows.items()
        if len(files[image_id]) > 1
    }


def _annotation_record(base: Path, position: int, name: str, caption: str, image_id: str, problem: str) -> _Record:
    """A COCO annotation that gives no sample a caption: reported, not silently dropped. It has no row
    number, since rows count the ``images`` entries; its detail names the annotation instead."""
    return _Record(
        row=None,
        written="",
        path=base,
        captions=[caption] if caption else [],
        sample_id=f"annotation {position}",
        problem=problem,
        detail=f"{name}, image_id {image_id}",
    )


def _annotation_name(position: int, ann: dict) -> str:
    """ "annotation id 720 (the 716th)": the annotation's own id, which a user searches the file for, and its
    1-based place in ``annotations``. "annotation 716" alone was read as an index, and ``annotations[716]``
    (0-based) is the next one."""
    own = f"id {str(_coco_id(ann['id']))[:60]}" if "id" in ann else "without an id"
    return f"annotation {own} (the {_ordinal(position)})"


def _ordinal(n: int) -> str:
    """1st, 2nd, 3rd, 4th, 11th, 12th, 13th, 21st, 716th."""
    suffix = "th" if n % 100 in (11, 12, 13) else {1: "st", 2: "nd", 3: "rd"}.get(n % 10, "th")
    return f"{n}{suffix}"


def _coco_image_path(base: Path, file_name: str) -> tuple[Path, Path | None]:
    """(the image's path, the other place it was looked for when it is in neither, else None): a
    ``file_name`` is looked up beside the JSON, then under ``images/`` there; "image file is missing" named
    only the first, and the user did not know that the images/ folder had been searched too."""
    direct = _absolute(base, file_name)
    nested = _absolute(base / "images", file_name)
    if not file_name or direct.is_file():
        return direct, None
    if nested.is_file():
        return nested, None
    return direct, nested if nested != direct else None  # an absolute file_name is looked for once


def _read_folder(folder: Path) -> list[_Record]:
    """Images anywhere under ``folder`` (hidden paths ignored); ``x.txt`` (or ``x.TXT``) beside ``x.png`` holds
    its captions."""
    files = sorted(
        p
        for p in folder.rglob("*")
        if p.is_file() and not any(part.startswith(".") for part in p.relative_to(folder).parts)
    )
    images = [p for p in files if p.suffix.lower() in IMAGE_SUFFIXES]
    records = _captions_without_image(folder, files, images)
    texts = {f.with_suffix(""): f for f in files if f.suffix.lower() == ".txt"}  # x.TXT too, as X.PNG is read
    for i, image in enumerate(images, start=1):
        caps, problem, detail = _caption_file(texts.get(image.with_suffix(""), image.with_suffix(".txt")))
        records.append(
            _Record(
                row=i,
                written=image.relative_to(folder).as_posix(),
                path=image,
                captions=caps,
                sample_id=_derived_id(folder, image, caps[0] if caps else ""),
                problem=problem,
                detail=detail,
            )
        )
    return records


def _captions_without_image(folder: Path, files: list[Path], images: list[Path]) -> list[_Record]:
    """A ``.txt`` file no image shares its name with, as a skipped entry (no sample's row, like a COCO
    annotation of an unknown image): its image is missing, or of a type clipmem does not read (``x.heic``),
    and such a sample vanished without a word, against the promise that every skipped row is listed."""
    with_image = {image.with_suffix("") for image in images}
    siblings: dict[Path, list[str]] = {}
    for file in files:
        siblings.setdefault(file.with_suffix(""), []).append(file.name)
    records = []
    for text in (f for f in files if f.suffix.lower() == ".txt" and f.with_suffix("") not in with_image):
        others = [name for name in siblings[text.with_suffix("")] if name != text.name]
        written = text.relative_to(folder).as_posix()
        problem = "caption file has no image" + (" of a readable type" if others else "")
        shown = f"{written} (beside {', '.join(others[:3])}; images are {', '.join(sorted(IMAGE_SUFFIXES))})"
        records.append(
            _Record(
                row=None,
                written=written,
                path=text,
                captions=[],
                sample_id=f"caption file {written}",
                problem=problem,
                detail=shown if others else written,
            )
        )
    return records


def _caption_file(text_file: Path) -> tuple[list[str], str | None, str]:
    """The captions in an image's ``.txt`` file, or a problem if it is missing, too large or unreadable, and
    the file it concerns. The problem's words are the same for every file (the skip summary counts them
    together: "203 rows: caption file is missing", where it listed 203 file names one by one)."""
    if not text_file.is_file():
        return [], "caption file is missing", text_file.name
    try:
        if text_file.stat().st_size > MAX_TEXT_MEMBER_BYTES:
            return [], f"caption file is larger than {MAX_TEXT_MEMBER_BYTES:,} bytes", text_file.name
        caps, problem = _caption_text(text_file.read_bytes())
        return caps, problem, text_file.name if problem else ""
    except OSError as exc:
        return [], "caption file is unreadable", f"{text_file.name}, {exc.strerror or exc}"


def _caption_text(data: bytes) -> tuple[list[str], str | None]:
    """The caption lines of a ``.txt`` file or shard member, as CSV and COCO are read: UTF-8, a byte-order
    mark dropped; a problem for other bytes (decoded leniently, "café" from latin-1 became "caf�", kept)."""
    try:  # UTF-16/32 where a byte-order mark says so, as a CSV is read (Notepad's "Unicode" was refused)
        return _caption_lines(data.decode(marked_encoding(data))), None
    except UnicodeDecodeError:
        return [], "caption file is not UTF-8 text (save it as UTF-8)"


def _caption_lines(text: str) -> list[str]:
    return distinct_captions(text.splitlines())


def distinct_captions(values: Iterable[Any]) -> list[str]:
    """A sample's captions as every format reads them: strings stripped, empty ones dropped, each once, in
    the order first seen. A repeat would be drawn twice as often; and the formats disagreed (a shard's .txt
    kept a repeated line, the cleaned CSV exported from its run did not), so re-running the export, with no
    verdict given, trained on other data and ranked 161 of 200 samples elsewhere."""
    return list(dict.fromkeys(v.strip() for v in values if isinstance(v, str) and v.strip()))


@dataclass
class _TarSample:
    """The members of one WebDataset sample: image file names (extracted or refused) and small text members.

    ``problem`` is the first defect seen, in the same words for every sample with it (the skip summary counts
    samples by it), ``detail`` the member it concerns.
    """

    key: str
    kinds: set[str] = field(default_factory=set)
    images: list[str] = field(default_factory=list)
    texts: dict[str, bytes] = field(default_factory=dict)
    problem: str | None = None
    detail: str = ""

    def flag(self, problem: str, detail: str = "") -> None:
        """Record a defect unless an earlier one was."""
        if self.problem is None:
            self.problem, self.detail = problem, detail


def _pattern_shards(pattern: Path) -> list[Path]:
    """The shards a brace pattern names, each of which must exist (at most MAX_SHARDS of them)."""
    count = _brace_count(pattern.name)
    if count > MAX_SHARDS:
        raise ClipmemError(
            f"{pattern.name} names {count:,} shards; at most {MAX_SHARDS:,} are read (is a range too wide?)"
        )
    shards = [pattern.with_name(name) for name in _expand_braces(pattern.name)]
    missing = [s for s in shards if not s.is_file()]
    if missing:
        raise ClipmemError(f"{len(missing)} of {len(shards)} shards of {pattern} do not exist, e.g. {missing[0]}")
    return shards


def _brace_count(name: str) -> int:
    """How many names ``_expand_braces`` gives, counted without expanding anything."""
    count = 1
    for first, last in _BRACE.findall(name):
        count *= abs(int(last) - int(first)) + 1
    return count


def _expand_braces(name: str) -> list[str]:
    """Expand every ``{a..b}`` numeric range like the shell does, zero-padded when either end is."""
    match = _BRACE.search(name)
    if not match:
        return [name]
    first, last = match.groups()
    width = max(len(first), len(last)) if first.startswith("0") or last.startswith("0") else 0
    step = 1 if int(first) <= int(last) else -1
    head, tail = name[: match.start()], name[match.end() :]
    return [
        expanded
        for n in range(int(first), int(last) + step, step)
        for expanded in _expand_braces(f"{head}{n:0{width}d}{tail}")
    ]


def _read_webdataset(
    shards: list[Path], progress: bool, extract: bool, unread: Sequence[Path] = ()
) -> tuple[str, Path, list[_Record], bool]:
    """Stream the shards in order, one record per sample key; images stay in the shards unless ``extract``.

    A shard that is not a tar, or whose end is missing or damaged, adds one skipped record saying so
    (its readable samples are kept), so a truncated download never passes unnoticed. So does each of
    ``unread``: compressed shards beside the plain ones, whose samples were lost without a word.
    """
    root = _extraction_dir(shards) if extract else shards_root(shards)
    grouped: list[tuple[Path, _TarSample]] = []
    with tqdm(desc="reading shards", unit="file", disable=not progress) as bar:
        for shard in shards:
            samples, damage = _shard_samples(shard, _image_folder(root, shard, extract), bar, extract)
            grouped += [(shard, sample) for sample in samples]
            if damage:
                grouped.append((shard, _TarSample(DAMAGED_SHARD, problem=damage)))
    grouped += [(path, _TarSample(DAMAGED_SHARD, problem=COMPRESSED_SHARD_REASON)) for path in unread]
    records = [_tar_record(i, shard, root, sample, extract) for i, (shard, sample) in enumerate(grouped, start=1)]
    return "webdataset", root, records, any(r.label is not None for r in records)


def _image_folder(root: Path, shard: Path, extract: bool) -> Path:
    """Where a shard's member paths live: its extraction folder, or the shard itself (read in place)."""
    return root / shard.stem if extract else shard


def _extraction_dir(shards: list[Path]) -> Path:
    """Cache folder keyed by the shards' paths, sizes and mtimes, so edited shards never reuse stale images."""
    stats = [(str(s), s.stat().st_size, s.stat().st_mtime_ns) for s in shards]
    digest = hashlib.sha256(json.dumps(stats).encode()).hexdigest()[:16]
    base = os.environ.get(DATA_CACHE_ENV) or Path.home() / ".cache" / "clipmem" / "webdataset"
    return Path(base).expanduser().resolve() / digest


def _shard_samples(shard: Path, out_dir: Path, bar: tqdm, extract: bool) -> tuple[list[_TarSample], str | None]:
    """Group a shard's members by key (first-seen order); with ``extract``, write images not already in ``out_dir``.

    Returns the samples and, for a shard that is unreadable, truncated or damaged, what is wrong with it.
    Python's tarfile stops silently at a truncated or garbled header, so the end-of-archive block is
    checked here: a shard that does not end with one lost its tail.
    """
    samples: dict[str, _TarSample] = {}
    current: _TarSample | None = None
    try:
        with tarfile.open(shard, "r|") as tar:
            for member in tar:
                bar.update()
                key, ext = _split_member(member.name)
                if member.isfile() and key and ext:
                    current = samples.setdefault(key, _new_sample(key, out_dir))
                    _add_member(tar, member, current, ext, out_dir if extract else None)
            end = tar.offset
    except (tarfile.TarError, EOFError, OSError) as exc:
        if not samples:
            return [], f"shard {shard.name} is not a readable tar file ({exc})"
        if current is not None:
            current.flag("the shard breaks off inside this sample")
        whole = len(samples) - (current is not None)  # "after 12 samples" where the 12th broke off
        return list(samples.values()), _damage(shard, whole, str(exc))
    if not _ends_cleanly(shard, end):
        return list(samples.values()), _damage(shard, len(samples), f"no end of archive at byte {end:,}")
    return list(samples.values()), None


def _damage(shard: Path, n_samples: int, detail: str) -> str:
    """E.g. "shard 003.tar is truncated or damaged after 1 sample (unexpected end of data); the rest of it is lost"."""
    where = f"after {fmt_count(n_samples, 'sample')} ({detail})"
    return f"shard {shard.name} is truncated or damaged {where}; the rest of it is lost"


def _ends_cleanly(shard: Path, offset: int) -> bool:
    """True if the block where tarfile stopped is the zero block that ends a tar archive."""
    with open(shard, "rb") as fh:
        fh.seek(offset)
        block = fh.read(tarfile.BLOCKSIZE)
    return len(block) == tarfile.BLOCKSIZE and not any(block)


def _split_member(name: str) -> tuple[str, str]:
    """WebDataset naming: key = normalised path up to the file name's first dot; extension = the rest."""
    folder, _, base = posixpath.normpath(name).rpartition("/")
    stem, _, ext = base.partition(".")
    return (f"{folder}/{stem}" if folder and stem else stem), ext


def _new_sample(key: str, out_dir: Path) -> _TarSample:
    sample = _TarSample(key)
    if not _absolute(out_dir, key).is_relative_to(out_dir):
        sample.flag("member name points outside the shard", repr(key))
    return sample


def _add_member(
    tar: tarfile.TarFile, member: tarfile.TarInfo, sample: _TarSample, ext: str, out_dir: Path | None
) -> None:
    """Record one member; images are written to ``out_dir`` (if given) unless the name is unsafe or already there."""
    kind = ext.lower()
    if kind in sample.kinds:
        sample.flag("duplicate member", member.name)
        return
    sample.kinds.add(kind)
    if kind in _IMAGE_EXTS:
        sample.images.append(f"{sample.key}.{ext}")
        if member.size > MAX_MEMBER_BYTES:
            sample.flag(f"member is larger than {MAX_MEMBER_BYTES:,} bytes", member.name)
        if out_dir is not None and not sample.problem and not (out_dir / sample.images[-1]).exists():
            _extract(tar, member, out_dir / sample.images[-1])
    elif kind in ("txt", "json"):
        if member.size > MAX_TEXT_MEMBER_BYTES:
            sample.flag(f"member is larger than {MAX_TEXT_MEMBER_BYTES:,} bytes", member.name)
            return
        sample.texts[kind] = tar.extractfile(member).read()


def _extract(tar: tarfile.TarFile, member: tarfile.TarInfo, target: Path) -> None:
    """Write one member atomically with the member's mtime, so a re-extraction keeps ``content_hash``."""
    with atomic_path(target) as tmp:
        with tar.extractfile(member) as src, open(tmp, "wb") as dst:
            shutil.copyfileobj(src, dst)
        os.utime(tmp, (member.mtime, member.mtime))


def _tar_record(row: int, shard: Path, root: Path, sample: _TarSample, extract: bool) -> _Record:
    folder = _image_folder(root, shard, extract)
    if sample.key == DAMAGED_SHARD:
        return _Record(row, shard.name, folder, [], "", problem=sample.problem, warn=True)
    meta, json_problem = _sample_json(sample)
    captions, text_problem = _tar_captions(sample, meta)
    # the first defect, in the same words for every sample with it (the skip summary counts by them), and its detail
    problem, detail = (sample.problem, sample.detail) if sample.problem else json_problem
    if not problem:
        problem, detail = (text_problem, "") if text_problem else _tar_problem(sample, captions)
    image = sample.images[0] if sample.images else sample.key
    path = _absolute(folder, image)
    # the id names the image as extraction does (<stem>/<member>), so both ways of reading agree on it
    derived = _derived_id(Path("/"), _absolute(Path("/") / shard.stem, image), captions[0] if captions else "")
    return _Record(
        row=row,
        written=f"{shard.name}/{image}",  # as a scored sample's filepath reads, read in place
        path=path,
        captions=captions,
        sample_id=str(meta[ID_COLUMN]) if meta.get(ID_COLUMN) is not None else derived,
        label=meta.get(LABEL_COLUMN),
        problem=problem,
        detail=detail,
        category=None if meta.get(CLASS_COLUMN) is None else str(meta[CLASS_COLUMN]),
    )


def _unread_members(sample: _TarSample) -> str:
    """Why members that may be the image were not read as one: an ``x.heic``, or an ``x.v2.jpg`` whose type
    is ``v2.jpg`` (WebDataset's type is everything after the first dot), was called only "missing"."""
    others = sorted(kind for kind in sample.kinds if kind.rpartition(".")[2] not in ("txt", "json"))  # 000.txt
    if not others:
        return ""
    shown = ", ".join(f"{sample.key.rpartition('/')[2]}.{kind}" for kind in others)
    return (
        f"{shown} (a member's type is everything after the first dot of its name, and clipmem reads "
        f"{', '.join(sorted(_IMAGE_EXTS))})"
    )


def _tar_problem(sample: _TarSample, captions: list[str]) -> tuple[str | None, str]:
    """(problem, detail): a sample needs exactly one image and a caption source (an empty .txt is left to
    validation). The members a problem names are its detail: written into the problem, as "image is missing
    (a.000.jpg, …: …)", every sample's list was a reason of its own in the skip summary, cut at its colon."""
    if not sample.images:
        return "image is missing", _unread_members(sample)
    if len(sample.images) > 1:
        return "several images", ", ".join(sample.images)
    if "txt" not in sample.texts and not captions:
        return "caption is missing (no .txt member and no caption/text in the .json)", ""
    return None, ""


def _sample_json(sample: _TarSample) -> tuple[dict, tuple[str | None, str]]:
    """The sample's .json fields ({} without one) and (a problem if it is not a JSON object, the member)."""
    if "json" not in sample.texts:
        return {}, (None, "")
    try:
        meta = json.loads(sample.texts["json"])
    except (json.JSONDecodeError, UnicodeDecodeError, RecursionError):
        meta = None
    if isinstance(meta, dict):
        return meta, (None, "")
    return {}, ("the .json member is not a JSON object", f"{sample.key}.json")


def _tar_captions(sample: _TarSample, meta: dict) -> tuple[list[str], str | None]:
    """Lines of the .txt member, else the json's ``caption`` or ``text`` (a string or a list of strings); and a
    problem with the .txt member, or None."""
    if "txt" in sample.texts:
        return _caption_text(sample.texts["txt"])
    value = meta.get("caption", meta.get("text"))
    values = [value] if isinstance(value, str) else value if isinstance(value, list) else []
    return distinct_captions(values), None


def _absolute(base: Path, written: str) -> Path:
    """Absolute, lexically normalised path (symlinks kept, so they stay under the root)."""
    return Path(os.path.normpath(base / written))


def _display_path(base: Path, full: Path) -> str:
    return full.relative_to(base).as_posix() if full.is_relative_to(base) else full.as_posix()


def _derived_id(base: Path, full: Path, caption: str) -> str:
    """Stable id for inputs without one: it depends only on the path (relative to the base) and caption."""
    return hashlib.sha1(f"{_display_path(base, full)}\n{caption}".encode()).hexdigest()[:16]


def _validate(
    records: list[_Record], has_label: bool, check_images: bool, progress: bool, on_error: str, allow_outside: bool
) -> tuple[list[_Record], list[_Skip]]:
    """Split records into good ones (labels parsed to bool) and skipped ones, as ``_Skip``.

    Duplicates are checked against earlier *good* rows only, so a copy of a bad row is judged on its own.
    """
    seen_ids: dict[str, int] = {}
    seen_pairs: dict[tuple, int] = {}
    image_problems: dict[Path, str | None] = {}
    good, skipped = [], []
    desc = "checking images" if check_images else "checking rows"
    with tqdm(records, desc=desc, unit="img", disable=not progress) as bar:
        for rec in bar:
            kind, detail = _problem(rec, has_label, seen_ids, seen_pairs, image_problems, check_images, allow_outside)
            if kind is None:
                good.append(rec)
                seen_ids[rec.sample_id] = rec.row
                seen_pairs[(rec.path, tuple(rec.captions))] = rec.row
                continue
            reason = f"{kind}: {detail}" if detail else kind
            if on_error == "fail":
                raise ClipmemError(reason if rec.row is None else f"{_row_name(rec)} ({rec.written[:200]}): {reason}")
            caption = rec.captions[0] if rec.captions else ""
            skipped.append(_Skip(rec.row, rec.line, rec.written, caption, reason, kind, rec.sample_id or ""))
    return good, skipped


def _row_name(rec: _Record) -> str:
    """ "row 2, line 3 of the file" for a table's row: rows count data rows (as skipped.csv does), and "row 2"
    was read as an editor's line 2, which is the first data row under the header."""
    return f"row {rec.row}" + (f", line {rec.line} of the file" if rec.line is not None else "")


def _problem(
    rec: _Record,
    has_label: bool,
    seen_ids: dict[str, int],
    seen_pairs: dict[tuple, int],
    image_problems: dict[Path, str | None],
    check_images: bool,
    allow_outside: bool,
) -> tuple[str | None, str]:
    """(kind, detail) of the first defect of a record, cheapest checks first; (None, "") if it is good.

    A path that leaves the dataset folder is refused before the file system is asked anything about it.
    """
    if rec.problem:
        return rec.problem, rec.detail
    if rec.escapes and not allow_outside:
        return OUTSIDE_REASON, f"{rec.written[:200]!r} ({_OUTSIDE_HINT})"
    if "\x00" in rec.written:
        return "filepath holds a NUL byte", ""
    if not rec.captions or not rec.captions[0]:
        return "caption is empty", ""
    if has_label and rec.label is not None:  # a WebDataset sample without the key is unlabelled, not bad
        label = _parse_label(rec.label)
        if label is None:
            return "bad is_miscaptioned value", f"{str(rec.label)[:40]!r} ({_LABEL_HINT})"
        rec.label = label
    id_problem = _id_problem(rec.sample_id)
    if id_problem:
        return id_problem, ""
    if (rec.path, tuple(rec.captions)) in seen_pairs:
        return "duplicate row", f"same filepath and caption as row {seen_pairs[(rec.path, tuple(rec.captions))]}"
    if rec.sample_id in seen_ids:
        return "duplicate id", f"{rec.sample_id!r} is also row {seen_ids[rec.sample_id]}"
    if not image_exists(rec.path):
        if rec.path.is_dir():  # it exists, and "missing" sent the user looking for it
            return "image path is a folder, not a file", str(rec.path)
        odd = _not_a_file(rec.path)
        if odd:  # there too: a link that points nowhere or at itself, a pipe
            return f"image path is {odd}", str(rec.path)
        hint = " (write paths with /, not \\)" if "\\" in rec.written else ""
        looked_at = f"{rec.path} or {rec.elsewhere}" if rec.elsewhere else str(rec.path)
        return "image file is missing", f"{looked_at}{hint}"
    if check_images:
        if rec.path not in image_problems:
            image_problems[rec.path] = _image_problem(rec.path)
        if image_problems[rec.path]:
            return "image is unreadable", image_problems[rec.path]
    return None, ""


def _id_problem(sample_id: str) -> str | None:
    """Ids travel to the review database, URLs and exports: non-empty, at most MAX_ID_LENGTH, no control characters."""
    if not sample_id:
        return "id is empty"
    if len(sample_id) > MAX_ID_LENGTH:
        return f"id is longer than {MAX_ID_LENGTH} characters"
    if CONTROL_CHARACTERS.search(sample_id):
        return "id holds control characters"
    return None


def _not_a_file(path: Path) -> str | None:
    """What stands at ``path`` where no file does, in words, or None when nothing does: a symbolic link
    that points nowhere (or at itself), a pipe, a device, a socket. Each was "image file is missing"."""
    try:
        mode = path.lstat().st_mode
    except OSError:
        return None
    if stat.S_ISLNK(mode):
        try:
            path.stat()
        except OSError as exc:
            return "a symbolic link to itself (a loop)" if exc.errno == errno.ELOOP else "a broken symbolic link"
        return "a link to something other than a file"
    return "a pipe" if stat.S_ISFIFO(mode) else "a device or a socket, not a file"


def _parse_label(value: Any) -> bool | None:
    text = str(value).strip().lower()
    return True if text in _TRUE else False if text in _FALSE else None


def _image_problem(path: Path) -> str | None:
    """Why an image cannot be used, or None: the header is checked, then every pixel decoded.

    ``verify()`` alone passes a truncated JPEG, which would then abort the run at "load images".
    """
    try:
        with _quiet_bombs(), Image.open(open_image_source(path)) as image:
            too_large = _size_problem(image)
            if too_large:
                return too_large
            image.verify()
        with _quiet_bombs(), Image.open(open_image_source(path)) as image:
            image.load()
    except UnidentifiedImageError:  # its message names the file object: "<_io.BytesIO object at 0x…>"
        return _unidentified(path)
    except Exception as exc:  # PIL raises many exception types for damaged files
        return (str(exc) or type(exc).__name__).splitlines()[0][:300]
    return None


def _unidentified(path: Path) -> str:
    """Why PIL knew no format for the file or shard member at ``path``: an empty one (a download or copy that
    failed) was called "damaged", and the user looked for damage in a file with nothing in it."""
    try:
        empty = image_stat(path)[0] == 0
    except (ClipmemError, OSError):
        empty = False
    return EMPTY_IMAGE if empty else UNIDENTIFIED


def _size_problem(image: Image.Image) -> str | None:
    pixels = image.width * image.height
    if pixels > MAX_IMAGE_PIXELS:
        return f"image is {image.width} x {image.height} pixels, more than the limit of {MAX_IMAGE_PIXELS:,}"
    return None


@contextmanager
def _quiet_bombs() -> Iterator[None]:
    """PIL warns about images above half its limit; clipmem checks its own limit, so the warning is noise."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        yield


def _tables_inside(source: Path) -> str:
    """A hint when a folder read as images with .txt captions holds a caption table: the table was meant."""
    if not source.is_dir():
        return ""
    tables = sorted(p.name for p in source.iterdir() if p.suffix.lower() in (".csv", ".tsv", ".json") and p.is_file())
    if not tables:
        return ""
    which = "that file" if len(tables) == 1 else "the one with filepaths and captions"
    return f"; the folder holds {', '.join(tables[:3])}: to read a table, pass {which}"


def _top_reasons(skipped: list[_Skip], top: int = 3) -> str:
    counts = Counter(s.kind for s in skipped).most_common(top)
    return "; ".join(_reason_count(kind, n) for kind, n in counts)


def _reason_count(reason: str, rows: int) -> str:
    """ "119 rows: image file is missing": a reason is a clause, so the count stands apart from it."""
    return f"{fmt_count(rows, 'row')}: {reason}"


def _where_paths_point(skipped: list[_Skip], base: Path, fmt: str) -> str:
    """When every row's image is missing, the folder the paths were read against and where the first image was
    looked for: a table moved away from its images (an export saved elsewhere) reads as "all images missing".
    For a COCO file (whose reason names the images/ folder tried too), the link that serves COCO's own layout."""
    missing = [s for s in skipped if s.kind == "image file is missing"]
    if len(missing) != len(skipped):
        return ""
    looked_at = missing[0].reason.partition(": ")[2]
    said = f". Image paths are read relative to {base}; the first row's image was looked for at {looked_at}"
    if fmt == "coco":
        said += (
            ". For COCO's own layout (annotations/captions_train2017.json beside "
            "train2017/) link the images in once: ln -s ../train2017 annotations/images"
        )
    return said


def _through_a_link(given: Path, source: Path) -> str:
    """When the data were named through a symbolic link: paths are read against the folder of the file the
    link points to, and a user who linked a table in beside its images found every image "missing"."""
    if given.absolute().parent.resolve() == source.parent:
        return ""
    return (
        f" ({given} is a link to {source}: image paths are read against the folder of the file it points to; "
        "copy the table beside its images instead of linking it there)"
    )


def _outside_root_hint(skipped: list[_Skip], base: Path) -> str:
    """When rows were refused for leaving the dataset's folder, the option that accepts them: the error
    named the reason ("image path leaves the dataset folder") and not the way out."""
    if not any(s.kind == OUTSIDE_REASON for s in skipped):
        return ""
    return f". Paths with .. that leave {base} are refused unless you {_OUTSIDE_HINT}"


def _samples_frame(good: list[_Record], root: Path, has_label: bool) -> tuple[pd.DataFrame, str | None]:
    """The samples table, and a note when ground truth is given for some samples only (then it is left out).

    ``filepath`` is relative to ``root`` for an image inside it, else the image's absolute path.
    """
    frame = pd.DataFrame(
        {
            "sample_id": [r.sample_id for r in good],
            "filepath": [_stored_path(root, r.path) for r in good],
            "caption": [r.captions[0] for r in good],
            "captions": [list(r.captions) for r in good],
        }
    )
    labels = [r.label for r in good] if has_label else []
    known = sum(label is not None for label in labels)
    if labels and known == len(labels):
        frame[LABEL_COLUMN] = np.array(labels, dtype=bool)
    if any(r.category for r in good):
        frame[CLASS_COLUMN] = [r.category or None for r in good]
    if known and known < len(labels):
        return frame, (
            f"{LABEL_COLUMN} is given for {known} of {len(labels)} samples; a partial ground truth would "
            "skew every detection figure, so it is left out (label every sample to use it)"
        )
    return frame, None


def _stored_path(root: Path, path: Path) -> str:
    return path.relative_to(root).as_posix() if path.is_relative_to(root) else path.as_posix()


def _content_hash(samples: pd.DataFrame, root: Path) -> str:
    """sha256 over the samples (by sample_id) and each image's size and mtime: cheap, and any edit shows."""
    digest = hashlib.sha256()
    missing = pd.Series([None] * len(samples), index=samples.index)
    labels, categories = samples.get(LABEL_COLUMN, missing), samples.get(CLASS_COLUMN, missing)
    for sid, filepath, caps, label, category in sorted(
        zip(samples["sample_id"], samples["filepath"], samples["captions"], labels, categories), key=lambda r: r[0]
    ):
        size, mtime_ns = image_stat(root / filepath)
        label = None if label is None else bool(label)
        entry = [sid, filepath, list(caps), label, size, mtime_ns]
        digest.update(json.dumps(entry if category is None else [*entry, category]).encode())
    return digest.hexdigest()


def skip_summary(dataset: Dataset) -> str | None:
    """ "skipped 2 of 5 rows (1 row: image file is missing; 1 row: caption is empty)"; None when nothing was
    skipped."""
    if not len(dataset.skipped):
        return None
    reasons = dataset.skipped["reason"].map(_reason_kind).value_counts()
    shown = len(reasons) if len(reasons) <= SHOWN_REASONS + 1 else SHOWN_REASONS  # never "1 other reason"
    summary = "; ".join(_reason_count(reason, count) for reason, count in reasons.head(shown).items())
    if len(reasons) > shown:  # every row is counted: the numbers add up to the total
        summary += f"; {fmt_count(int(reasons.iloc[shown:].sum()), 'row')} for {len(reasons) - shown} other reasons"
    return f"skipped {len(dataset.skipped)} of {dataset.rows} rows ({summary})"


def _reason_kind(reason: str) -> str:
    """A skip reason without its detail: up to its first colon outside parentheses. Cut at the first colon
    anywhere, a reason such as "shard b.tar is not a readable tar file ([Errno 13] Permission denied: '…')" read
    with an unclosed parenthesis in the summary."""
    depth = 0
    for i, char in enumerate(reason):
        depth += (char == "(") - (char == ")" and depth > 0)
        if char == ":" and depth == 0:
            return reason[:i]
    return reason


def write_skip_report(dataset: Dataset, path: str | os.PathLike) -> None:
    """Write ``dataset.skipped`` as CSV; atomic, so a crash never leaves a half report."""
    with atomic_path(path) as tmp:
        dataset.skipped.to_csv(tmp, index=False)


def load_image(root: str | os.PathLike, filepath: str) -> Image.Image:
    """Open one dataset image as 8-bit RGB, fully loaded so the file handle is closed.

    ``filepath`` is relative to ``root`` or absolute (see the module docstring).
    """
    path = Path(root) / filepath
    return decode_image(path, lambda: open_image_source(path))


def decode_image(path: Path, source: Callable[[], BinaryIO | Path]) -> Image.Image:
    """Decode what ``source()`` gives (a file's path or a shard member's bytes) as 8-bit RGB; ``path`` names it.

    Every failure, reading included, is a ClipmemError naming the image.
    """
    try:
        with _quiet_bombs(), Image.open(source()) as image:
            too_large = _size_problem(image)
            if too_large:
                raise ClipmemError(f"image {path} is unusable: {too_large}")
            return to_rgb(ImageOps.exif_transpose(image))  # a phone photo upright, as any viewer shows it
    except UnidentifiedImageError:
        raise ClipmemError(f"image {path} is unreadable: {_unidentified(path)}") from None
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as exc:
        raise ClipmemError(f"image {path} is unreadable: {exc}") from None


def to_rgb(image: Image.Image) -> Image.Image:
    """8-bit RGB from any PIL mode, keeping the picture's contrast.

    PIL's ``convert("RGB")`` clips 16-bit and 32-bit integer pixels to 255 (a 16-bit grayscale PNG
    turns white) and float pixels in [0, 1] to 0 (black); those are rescaled to 0-255 first. A transparent
    background is drawn on white, as a web page shows it: ``convert`` kept the hidden colour under it,
    mostly black, and a clip-art icon came out as a shape on black.
    """
    if image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info):
        return Image.alpha_composite(Image.new("RGBA", image.size, "white"), image.convert("RGBA")).convert("RGB")
    if image.mode.startswith("I;16") or image.mode == "I":
        pixels = np.asarray(image, dtype=np.int64)
        if image.mode == "I" and pixels.max(initial=0) <= 255:
            return Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8), "L").convert("RGB")
        return Image.fromarray((np.clip(pixels, 0, 65535) >> 8).astype(np.uint8), "L").convert("RGB")
    if image.mode == "F":
        pixels = np.nan_to_num(np.asarray(image, dtype=np.float64), nan=0.0, posinf=0.0, neginf=0.0)
        scale = 255.0 if pixels.max(initial=0.0) <= 1.0 else 1.0
        return Image.fromarray(np.clip(pixels * scale, 0, 255).round().astype(np.uint8), "L").convert("RGB")
    return image.convert("RGB")


def _clustered_victims(groups: Sequence, n_pick: int, rng: np.random.Generator) -> np.ndarray:
    """The first ``n_pick`` rows of whole groups taken in a seeded order (each group's rows shuffled), so
    the victims fill a few groups instead of spreading over all of them."""
    codes, uniques = pd.factorize(pd.Series(list(groups), dtype=object))
    rows_in_order = [rng.permutation(np.flatnonzero(codes == group)) for group in rng.permutation(len(uniques))]
    return np.concatenate(rows_in_order)[:n_pick]


def donor_captions(
    captions: Sequence[Sequence[str]],
    fraction: float,
    rng: np.random.Generator,
    groups: Sequence | None = None,
    *,
    one_donor_class: bool = False,
    eligible: np.ndarray | None = None,
    permuted: bool = False,
) -> dict[int, list[str]]:
    """Pick ``round(fraction * n)`` (at least 1) samples and, for each, another sample whose first caption
    none of its own captions equal: sample index -> that donor's captions (all of them but any the victim
    already has, first caption first), as a swapped image in COCO would carry the other image's whole set.
    With ``groups`` (one value a sample) the picked samples are whole groups, as a broken source would be
    (``_clustered_victims``); without, they are spread uniformly. ``one_donor_class`` (with ``groups``)
    gives each picked group the captions of one other group, as a folder given another folder's captions
    would be: the mis-captions then agree with each other, which a check against similar images cannot see
    (docs/detection.md). ``eligible`` (a mask) limits the picks to those samples, at most all of them.
    ``permuted`` picks the same samples from the same ``rng`` state, but they trade captions among
    themselves (`_caption_cycle`), so no caption is copied: a copy leaves a twin of the wrong caption on its
    donor, a trace a detector can read and a mis-caption that is not a copy lacks (docs/detection.md)."""
    firsts = [caps[0] for caps in captions]
    codes, uniques = pd.factorize(pd.Series(firsts))
    if len(uniques) < 2:
        raise ClipmemError("mis-captioning needs at least two different captions in the dataset")
    code_of = {caption: code for code, caption in enumerate(uniques)}
    candidates = np.arange(len(firsts)) if eligible is None else np.flatnonzero(eligible)
    n_pick = min(len(candidates), max(1, round(fraction * len(firsts))))
    if groups is None:
        chosen = np.sort(rng.choice(candidates, size=n_pick, replace=False))
    else:
        chosen = np.sort(candidates[_clustered_victims([groups[i] for i in candidates], n_pick, rng)])
    carried = {int(i): [code_of[c] for c in captions[i] if c in code_of] for i in chosen}  # no donor may give these
    if permuted:
        if one_donor_class:
            raise ClipmemError("captions from one other class are copies: they cannot be permuted among the samples")
        donor_of = _caption_cycle(chosen, codes, carried, rng)
        return {int(i): _donated(captions[i], captions[donor_of[i]]) for i in chosen}
    donor_classes = _donor_classes(groups, chosen, rng) if one_donor_class and groups is not None else None
    new = {}
    for i in chosen:
        usable = ~np.isin(codes, carried[int(i)])
        donors = np.flatnonzero(usable)
        if donor_classes is not None:
            group_of, donor_of = donor_classes
            in_class = np.flatnonzero(usable & (group_of == donor_of[group_of[i]]))
            donors = in_class if len(in_class) else donors  # a donor class of only this caption: anyone's
        if len(donors) == 0:
            raise ClipmemError(f"sample {i} has every caption of the dataset; no different caption to give it")
        donor = int(rng.choice(donors))
        new[int(i)] = _donated(captions[i], captions[donor])
    return new


def _donated(own: Sequence[str], donor: Sequence[str]) -> list[str]:
    """The donor's captions that the victim does not carry already, first caption first."""
    carried = set(own)
    return [caption for caption in dict.fromkeys(donor) if caption not in carried]


CYCLE_REPAIRS = 1000  # tries per clash before a permutation is given up as impossible


def _caption_cycle(
    chosen: np.ndarray, first_codes: np.ndarray, own_codes: Mapping[int, Sequence[int]], rng: np.random.Generator
) -> dict[int, int]:
    """victim -> the victim whose captions it takes: one random cycle through ``chosen``, so every victim
    gives its captions away and no caption stays behind as a copy. Where a victim would get a first caption
    it already carries (the data repeats captions), its donor trades places with a random other victim; a
    trade that adds clashes among the four links it touches is undone."""
    if len(chosen) < 2:
        raise ClipmemError("permuted mis-captions trade captions among the drawn samples: draw at least two")
    order = [int(i) for i in rng.permutation(chosen)]
    size = len(order)

    def clashes(position: int) -> bool:
        victim, donor = order[position], order[(position + 1) % size]
        return int(first_codes[donor]) in own_codes[victim]

    clashing = {position for position in range(size) if clashes(position)}
    for _ in range(CYCLE_REPAIRS * len(clashing)):
        if not clashing:
            break
        position = min(clashing)
        donor_at, other = (position + 1) % size, int(rng.integers(size))
        touched = {position, donor_at, (other - 1) % size, other}
        before = sum(clashes(t) for t in touched)
        order[donor_at], order[other] = order[other], order[donor_at]
        if sum(clashes(t) for t in touched) > before:
            order[donor_at], order[other] = order[other], order[donor_at]
            continue
        clashing = (clashing - touched) | {t for t in touched if clashes(t)}
    if clashing:
        raise ClipmemError("the drawn samples share their captions too much to trade them without a copy")
    return {order[t]: order[(t + 1) % size] for t in range(size)}


def _donor_classes(groups: Sequence, chosen: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, dict]:
    """(group code per row, picked group -> the group it takes captions from): another group, one with no
    picked rows where there is one, drawn once per picked group."""
    codes, uniques = pd.factorize(pd.Series(list(groups), dtype=object))
    if len(uniques) < 2:
        raise ClipmemError("captions from another class need at least two classes in the 'label' column")
    victim_groups = list(dict.fromkeys(codes[chosen].tolist()))
    spared = [g for g in rng.permutation(len(uniques)).tolist() if g not in victim_groups]
    donor_of = {}
    for group in victim_groups:
        if spared:
            donor_of[group] = spared.pop(0)
        else:
            donor_of[group] = int(rng.choice([g for g in range(len(uniques)) if g != group]))
    return codes, donor_of


def _flagged(flags: list) -> np.ndarray:
    """Each sample's flag as a bool: unlabelled (None) is not flagged."""
    return np.array([flag is not None and not pd.isna(flag) and bool(flag) for flag in flags], dtype=bool)


def _drawable(samples: pd.DataFrame, flags: list, clustered: bool) -> np.ndarray:
    """Which samples a draw may mis-caption, saying which it may not and why: not one the source already flags
    (a second round with the same seed swapped the same samples again, and the copy held no more
    mis-captions than the first), and, drawing whole classes, not one without a class (the unlabelled were
    drawn as one class named "")."""
    flagged = _flagged(flags)
    if flagged.any():
        already = fmt_count(int(flagged.sum()), "sample is", "samples are")
        log.warning("%s already flagged %s: kept as they are, and not drawn again", already, LABEL_COLUMN)
    unlabelled = np.zeros(len(samples), dtype=bool)
    if clustered:
        unlabelled = samples[CLASS_COLUMN].map(lambda value: value is None or pd.isna(value) or not str(value).strip())
        unlabelled = unlabelled.to_numpy(dtype=bool)
        if unlabelled.any():
            log.warning(
                "%s no '%s': not drawn, since --clustered mis-captions whole classes",
                fmt_count(int(unlabelled.sum()), "sample has", "samples have"),
                CLASS_COLUMN,
            )
    eligible = ~flagged & ~unlabelled
    if not eligible.any():
        raise ClipmemError("no sample is left to mis-caption: every one is already flagged or has no class")
    return eligible


def inject_miscaptions(
    src_path: str | os.PathLike,
    out_path: str | os.PathLike,
    *,
    fraction: float,
    seed: int,
    img_key: str = "filepath",
    caption_key: str = "caption",
    progress: bool = True,
    force: bool = False,
    allow_outside_root: bool = False,
    on_error: str = "skip",
    extract_shards: bool = False,
    clustered: bool = False,
    one_donor_class: bool = False,
    permuted: bool = False,
) -> dict:
    """Write a CSV copy of a dataset where a seeded ``fraction`` of samples carry another sample's caption.

    ``clustered`` takes the mis-captioned samples as whole classes (the ``label`` column) in a seeded order,
    as a broken source would give them, instead of spreading them over the dataset: real mis-captions
    cluster, and a detector that weighs a sample against similar images can miss a cluster
    (docs/detection.md, "Clustered mis-captions"). ``one_donor_class`` (with ``clustered``) gives each
    mis-captioned class the captions of one other class. ``permuted`` mis-captions the same samples as
    without it, but they trade captions among themselves, so that no wrong caption is also left on its
    donor: a copy is one kind of real mis-caption (alt text reused) and leaves a trace, a swap is another.

    Columns ``id, filepath, caption, is_miscaptioned`` (and ``label`` when the source has it, and
    ``captions`` when a sample has several): one row per sample with its first caption; a sample with
    several keeps them all in ``captions``, as ``clipmem review export`` writes them (they were dropped,
    and a run on the copy trained on fewer captions than the original), and a mis-captioned one gets its
    donor's (so ``experiment captions --inject`` trains the victims on 1…n wrong captions too); ids keep
    the source sample_ids; filepaths are relative to the output's folder when the image lies inside it,
    else absolute (so the copy reads back without ``--allow-outside-root``). A sample already flagged in
    the source stays flagged and is not drawn again, so a second round adds new mis-captions
    (``n_miscaptioned`` in the summary counts both). An existing ``out_path`` is only replaced with
    ``force``, and never when it is the input itself.
    """
    if not 0 < fraction < 1:
        raise ClipmemError(f"fraction must be between 0 and 1 (exclusive), not {fraction}")
    out = Path(out_path).expanduser().resolve()
    check_output_file(out, force=force, inputs=[Path(src_path)])
    if out.suffix.lower() != ".csv":  # a copy named noisy.json was CSV inside, and read back as broken JSON
        raise ClipmemError(f"the copy is written as CSV: name it .csv, not {out.name}")
    dataset = read_dataset(
        src_path,
        img_key=img_key,
        caption_key=caption_key,
        progress=progress,
        allow_outside_root=allow_outside_root,
        on_error=on_error,
        extract_shards=extract_shards,
    )
    samples = dataset.samples
    if one_donor_class and not clustered:
        raise ClipmemError("captions from one other class apply to clustered mis-captions: add --clustered")
    if clustered and CLASS_COLUMN not in samples:
        raise ClipmemError(
            f"clustered mis-captions are drawn by class, and {src_path} has no '{CLASS_COLUMN}' column: add one "
            "(e.g. each image's source or category)"
        )
    groups = samples[CLASS_COLUMN].astype(str).tolist() if clustered else None
    flags = samples[LABEL_COLUMN].tolist() if LABEL_COLUMN in samples else [False] * len(samples)
    eligible = _drawable(samples, flags, clustered)
    rng = np.random.default_rng(seed)
    new = donor_captions(
        samples["captions"].tolist(),
        fraction,
        rng,
        groups,
        one_donor_class=one_donor_class,
        eligible=eligible,
        permuted=permuted,
    )
    captions = samples["caption"].tolist()
    for i, donated in new.items():
        captions[i], flags[i] = donated[0], True
    frame = pd.DataFrame(
        {
            ID_COLUMN: samples["sample_id"],
            "filepath": [_stored_path(out.parent, _absolute(dataset.root, fp)) for fp in samples["filepath"]],
            "caption": captions,
            LABEL_COLUMN: flags,
        }
    )
    if CLASS_COLUMN in samples:
        frame[CLASS_COLUMN] = samples[CLASS_COLUMN].to_numpy()
    kept = [new.get(i, caps) for i, caps in enumerate(samples["captions"])]
    several = [json.dumps(list(caps), ensure_ascii=False) if len(caps) > 1 else "" for caps in kept]
    if any(several):
        frame[CAPTIONS_COLUMN] = several
    with atomic_path(out) as tmp:
        frame.to_csv(tmp, index=False)
    summary = {
        "n": len(frame),
        "n_injected": len(new),
        "n_miscaptioned": int(_flagged(flags).sum()),
        "n_skipped": len(dataset.skipped),
        "out": str(out),
        "seed": seed,
        "clustered": clustered,
        "one_donor_class": one_donor_class,
        "permuted": permuted,
    }
    if len(dataset.skipped):  # the copy leaves them out: which, and why, was said only as a count
        report = out.with_name(f"{out.stem}.skipped.csv")
        write_skip_report(dataset, report)
        log.warning("%s of the source, left out of the copy; every one is listed in %s", skip_summary(dataset), report)
        summary["skipped_report"] = str(report)
    return summary
