"""Dataset ingest: a CSV/TSV file, a COCO captions JSON, an image folder or WebDataset shards -> a validated `Dataset`.

Every reader yields the same raw records; one validation pass then sorts each record into
``samples`` or ``skipped`` (with a human reason), so all formats share the same bad-row rules.

Paths. The *base* folder is the one the input names paths against: the CSV/TSV's folder, the JSON's
folder (a COCO ``file_name`` missing there is looked up under an ``images/`` folder beside the JSON),
or the image folder itself. WebDataset shards (a ``.tar``, a folder holding ``*.tar``, or a brace pattern
such as ``train-{0000..0003}.tar`` in the file name) have their images extracted once into a cache folder
named by the shards' paths, sizes and mtimes (under ``$CLIPMEM_DATA_CACHE``, else
``~/.cache/clipmem/webdataset``), never beside the shards; that folder is the base, and a sample's
``filepath`` is ``<shard stem>/<key>.<ext>``. ``root`` is that base, widened to the common ancestor when some good
images lie outside it (absolute paths, ``../``), so every ``filepath`` is relative to ``root`` and
``Run.image_path`` can confine lookups to it.

Row numbers in messages and in ``skipped`` count records from 1 in input order: CSV/TSV data rows
(header excluded), COCO ``images`` entries, the sorted image files of a folder, or WebDataset samples
(member groups sharing a key) in shard order.
"""

from __future__ import annotations

import hashlib
import json
import os
import posixpath
import re
import shutil
import tarfile
from collections import Counter, defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from PIL import Image
from tqdm.auto import tqdm

from .atomic import atomic_path
from .errors import ClipmemError

IMAGE_SUFFIXES = frozenset({".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff"})
ID_COLUMN = "id"
LABEL_COLUMN = "is_miscaptioned"
CLASS_COLUMN = "label"  # optional class of the image (e.g. a stamp's category): for linear probes, never trained on
SKIP_COLUMNS = ["row", "filepath", "caption", "reason"]
_TRUE = frozenset({"true", "1", "yes"})
_FALSE = frozenset({"false", "0", "no"})
_FORMATS = "a .csv, a .tsv, a COCO captions .json, a folder of images with .txt captions, or WebDataset .tar shards"
DATA_CACHE_ENV = "CLIPMEM_DATA_CACHE"
_BRACE = re.compile(r"\{(\d+)\.\.(\d+)\}")
_IMAGE_EXTS = frozenset(suffix[1:] for suffix in IMAGE_SUFFIXES)


@dataclass
class Dataset:
    """The usable samples of one input plus every skipped row, with a hash to key caches on."""

    samples: pd.DataFrame
    root: Path
    format: str
    skipped: pd.DataFrame
    content_hash: str
    source: Path

    def __len__(self) -> int:
        return len(self.samples)


@dataclass
class _Record:
    """One input row before validation; ``problem`` is a defect the reader already saw."""

    row: int
    written: str
    path: Path
    captions: list[str]
    sample_id: str
    label: Any = None
    problem: str | None = None
    category: str | None = None


def read_dataset(
    path: str | os.PathLike,
    *,
    img_key: str = "filepath",
    caption_key: str = "caption",
    on_error: str = "skip",
    check_images: bool = True,
    progress: bool = True,
) -> Dataset:
    """Read and validate a dataset; bad rows are skipped with a reason, or raise if ``on_error="fail"``.

    ``check_images`` opens every image with PIL ``verify()``; without it only existence is checked.
    """
    if on_error not in ("skip", "fail"):
        raise ClipmemError(f"on_error must be 'skip' or 'fail', not {on_error!r}")
    source = Path(path).expanduser().resolve()
    fmt, base, records, has_label = _read_records(source, img_key, caption_key, progress)
    if not records:
        raise ClipmemError(f"{source} holds no samples")
    good, skipped = _validate(records, has_label, check_images, progress, on_error)
    if not good:
        raise ClipmemError(
            f"{source} has no usable samples: all {len(skipped)} rows were skipped ({_top_reasons(skipped)})"
        )
    root = _common_root(base, [r.path for r in good])
    samples = _samples_frame(good, root, has_label)
    return Dataset(
        samples=samples,
        root=root,
        format=fmt,
        skipped=pd.DataFrame([s[:4] for s in skipped], columns=SKIP_COLUMNS),
        content_hash=_content_hash(samples, root),
        source=source,
    )


def _read_records(
    source: Path, img_key: str, caption_key: str, progress: bool
) -> tuple[str, Path, list[_Record], bool]:
    """Pick the reader by the path: (format, base folder, records, has a label column)."""
    if _BRACE.search(source.name):
        return _read_webdataset(_pattern_shards(source), progress)
    if not source.exists():
        raise ClipmemError(f"dataset {source} does not exist")
    if source.is_dir():
        shards = sorted(p for p in source.glob("*.tar") if p.is_file())
        return _read_webdataset(shards, progress) if shards else ("folder", source, _read_folder(source), False)
    suffix = source.suffix.lower()
    if suffix == ".tar":
        return _read_webdataset([source], progress)
    if suffix in (".csv", ".tsv"):
        fmt = suffix[1:]
        records, has_label = _read_table(source, "," if fmt == "csv" else "\t", img_key, caption_key)
        return fmt, source.parent, records, has_label
    if suffix == ".json":
        return "coco", source.parent, _read_coco(source), False
    raise ClipmemError(f"unknown dataset format {suffix or '(no extension)'!r} for {source}: expected {_FORMATS}")


def _read_table(source: Path, sep: str, img_key: str, caption_key: str) -> tuple[list[_Record], bool]:
    try:
        frame = pd.read_csv(source, sep=sep, dtype=str, keep_default_na=False, encoding="utf-8-sig")
    except pd.errors.EmptyDataError:
        raise ClipmemError(f"{source} is empty") from None
    except (pd.errors.ParserError, UnicodeDecodeError) as exc:
        raise ClipmemError(f"{source} is not a readable table: {str(exc).strip().splitlines()[0]}") from None
    missing = [key for key in (img_key, caption_key) if key not in frame.columns]
    if missing:
        raise ClipmemError(
            f"{source} lacks the column(s) {', '.join(map(repr, missing))} "
            f"(columns: {', '.join(map(str, frame.columns))}); "
            "name the image and caption columns with --csv-img-key/--csv-caption-key"
        )
    base = source.parent
    has_id, has_label = ID_COLUMN in frame.columns, LABEL_COLUMN in frame.columns
    has_category = CLASS_COLUMN in frame.columns and CLASS_COLUMN not in (img_key, caption_key)
    records = []
    for i, row in enumerate(frame.to_dict("records"), start=1):
        written, caption = row[img_key].strip(), row[caption_key].strip()
        full = _absolute(base, written)
        records.append(
            _Record(
                row=i,
                written=written,
                path=full,
                captions=[caption],
                sample_id=row[ID_COLUMN].strip() if has_id else _derived_id(base, full, caption),
                label=row[LABEL_COLUMN] if has_label else None,
                problem=None if written else "filepath is empty",
                category=row[CLASS_COLUMN].strip() if has_category else None,
            )
        )
    return records, has_label


def _read_coco(source: Path) -> list[_Record]:
    """COCO captions: one record per ``images`` entry, its annotations' captions in file order."""
    try:
        data = json.loads(source.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ClipmemError(f"{source} is not valid JSON: {exc}") from None
    if not isinstance(data, dict) or not all(isinstance(data.get(k), list) for k in ("images", "annotations")):
        raise ClipmemError(f"{source} is not a COCO captions file (it needs 'images' and 'annotations' lists)")
    captions: dict[str, list[str]] = defaultdict(list)
    for ann in data["annotations"]:
        if isinstance(ann, dict) and isinstance(ann.get("caption"), str) and ann["caption"].strip():
            captions[str(ann.get("image_id"))].append(ann["caption"].strip())
    base = source.parent
    records = []
    for i, image in enumerate(data["images"], start=1):
        image = image if isinstance(image, dict) else {}
        written = str(image.get("file_name", "")).strip()
        full = _coco_image_path(base, written)
        caps = captions.get(str(image.get("id")), [])
        records.append(
            _Record(
                row=i,
                written=written,
                path=full,
                captions=caps,
                sample_id=str(image["id"]) if "id" in image else _derived_id(base, full, caps[0] if caps else ""),
                problem=None if written else "image entry has no file_name",
                category=None if image.get(CLASS_COLUMN) is None else str(image[CLASS_COLUMN]),
            )
        )
    return records


def _coco_image_path(base: Path, file_name: str) -> Path:
    direct = _absolute(base, file_name)
    nested = _absolute(base / "images", file_name)
    return nested if file_name and not direct.is_file() and nested.is_file() else direct


def _read_folder(folder: Path) -> list[_Record]:
    """Images anywhere under ``folder`` (hidden paths ignored); ``x.txt`` beside ``x.png`` holds its captions."""
    images = sorted(
        p
        for p in folder.rglob("*")
        if p.suffix.lower() in IMAGE_SUFFIXES
        and p.is_file()
        and not any(part.startswith(".") for part in p.relative_to(folder).parts)
    )
    records = []
    for i, image in enumerate(images, start=1):
        text_file = image.with_suffix(".txt")
        caps = _caption_lines(text_file.read_text(encoding="utf-8", errors="replace")) if text_file.is_file() else []
        records.append(
            _Record(
                row=i,
                written=image.relative_to(folder).as_posix(),
                path=image,
                captions=caps,
                sample_id=_derived_id(folder, image, caps[0] if caps else ""),
                problem=None if text_file.is_file() else f"caption file {text_file.name} is missing",
            )
        )
    return records


def _caption_lines(text: str) -> list[str]:
    return [line.strip() for line in text.splitlines() if line.strip()]


@dataclass
class _TarSample:
    """The members of one WebDataset sample: image file names (extracted or refused) and small text members."""

    key: str
    kinds: set[str] = field(default_factory=set)
    images: list[str] = field(default_factory=list)
    texts: dict[str, bytes] = field(default_factory=dict)
    problem: str | None = None


def _pattern_shards(pattern: Path) -> list[Path]:
    """The shards a brace pattern names, each of which must exist."""
    shards = [pattern.with_name(name) for name in _expand_braces(pattern.name)]
    missing = [s for s in shards if not s.is_file()]
    if missing:
        raise ClipmemError(f"{len(missing)} of {len(shards)} shards of {pattern} do not exist, e.g. {missing[0]}")
    return shards


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


def _read_webdataset(shards: list[Path], progress: bool) -> tuple[str, Path, list[_Record], bool]:
    """Stream the shards in order, extracting images into the cache folder; one record per sample key."""
    root = _extraction_dir(shards)
    grouped: list[tuple[Path, _TarSample]] = []
    with tqdm(desc="reading shards", unit="file", disable=not progress) as bar:
        for shard in shards:
            grouped += [(shard, sample) for sample in _shard_samples(shard, root / shard.stem, bar)]
    records = [_tar_record(i, shard, root, sample) for i, (shard, sample) in enumerate(grouped, start=1)]
    return "webdataset", root, records, any(r.label is not None for r in records)


def _extraction_dir(shards: list[Path]) -> Path:
    """Cache folder keyed by the shards' paths, sizes and mtimes, so edited shards never reuse stale images."""
    stats = [(str(s), s.stat().st_size, s.stat().st_mtime_ns) for s in shards]
    digest = hashlib.sha256(json.dumps(stats).encode()).hexdigest()[:16]
    base = os.environ.get(DATA_CACHE_ENV) or Path.home() / ".cache" / "clipmem" / "webdataset"
    return Path(base).expanduser().resolve() / digest


def _shard_samples(shard: Path, out_dir: Path, bar: tqdm) -> list[_TarSample]:
    """Group a shard's members by key (first-seen order), extracting images not already in ``out_dir``."""
    samples: dict[str, _TarSample] = {}
    try:
        with tarfile.open(shard, "r|") as tar:
            for member in tar:
                bar.update()
                key, ext = _split_member(member.name)
                if member.isfile() and key and ext:
                    _add_member(tar, member, samples.setdefault(key, _new_sample(key, out_dir)), ext, out_dir)
    except (tarfile.TarError, EOFError) as exc:
        raise ClipmemError(f"{shard} is not a readable tar file: {exc}") from None
    return list(samples.values())


def _split_member(name: str) -> tuple[str, str]:
    """WebDataset naming: key = normalised path up to the file name's first dot; extension = the rest."""
    folder, _, base = posixpath.normpath(name).rpartition("/")
    stem, _, ext = base.partition(".")
    return (f"{folder}/{stem}" if folder and stem else stem), ext


def _new_sample(key: str, out_dir: Path) -> _TarSample:
    escapes = not _absolute(out_dir, key).is_relative_to(out_dir)
    return _TarSample(key, problem=f"member name {key!r} points outside the shard" if escapes else None)


def _add_member(tar: tarfile.TarFile, member: tarfile.TarInfo, sample: _TarSample, ext: str, out_dir: Path) -> None:
    """Record one member; images are written to ``out_dir`` unless the sample's name is unsafe or already there."""
    kind = ext.lower()
    if kind in sample.kinds:
        sample.problem = sample.problem or f"duplicate member {member.name}"
        return
    sample.kinds.add(kind)
    if kind in _IMAGE_EXTS:
        sample.images.append(f"{sample.key}.{ext}")
        target = out_dir / sample.images[-1]
        if not sample.problem and not target.exists():
            _extract(tar, member, target)
    elif kind in ("txt", "json"):
        sample.texts[kind] = tar.extractfile(member).read()


def _extract(tar: tarfile.TarFile, member: tarfile.TarInfo, target: Path) -> None:
    """Write one member atomically with the member's mtime, so a re-extraction keeps ``content_hash``."""
    with atomic_path(target) as tmp:
        with tar.extractfile(member) as src, open(tmp, "wb") as dst:
            shutil.copyfileobj(src, dst)
        os.utime(tmp, (member.mtime, member.mtime))


def _tar_record(row: int, shard: Path, root: Path, sample: _TarSample) -> _Record:
    meta, json_problem = _sample_json(sample)
    captions = _tar_captions(sample, meta)
    path = _absolute(root / shard.stem, sample.images[0] if sample.images else sample.key)
    derived = _derived_id(root, path, captions[0] if captions else "")
    return _Record(
        row=row,
        written=f"{shard.name}:{sample.key}",
        path=path,
        captions=captions,
        sample_id=str(meta[ID_COLUMN]) if meta.get(ID_COLUMN) is not None else derived,
        label=meta.get(LABEL_COLUMN),
        problem=sample.problem or json_problem or _tar_problem(sample, captions),
        category=None if meta.get(CLASS_COLUMN) is None else str(meta[CLASS_COLUMN]),
    )


def _tar_problem(sample: _TarSample, captions: list[str]) -> str | None:
    """A sample needs exactly one image and a caption source (an empty .txt is left to validation)."""
    if not sample.images:
        return "image is missing"
    if len(sample.images) > 1:
        return f"several images ({', '.join(sample.images)})"
    if "txt" not in sample.texts and not captions:
        return "caption is missing (no .txt member and no caption/text in the .json)"
    return None


def _sample_json(sample: _TarSample) -> tuple[dict, str | None]:
    """The sample's .json fields ({} without one) and a problem if it is not a JSON object."""
    if "json" not in sample.texts:
        return {}, None
    try:
        meta = json.loads(sample.texts["json"])
    except (json.JSONDecodeError, UnicodeDecodeError):
        meta = None
    return (meta, None) if isinstance(meta, dict) else ({}, f"{sample.key}.json is not a JSON object")


def _tar_captions(sample: _TarSample, meta: dict) -> list[str]:
    """Lines of the .txt member, else the json's ``caption`` or ``text`` (a string or a list of strings)."""
    if "txt" in sample.texts:
        return _caption_lines(sample.texts["txt"].decode("utf-8", errors="replace"))
    value = meta.get("caption", meta.get("text"))
    values = [value] if isinstance(value, str) else value if isinstance(value, list) else []
    return [v.strip() for v in values if isinstance(v, str) and v.strip()]


def _absolute(base: Path, written: str) -> Path:
    """Absolute, lexically normalised path (symlinks kept, so they stay under the root)."""
    return Path(os.path.normpath(base / written))


def _display_path(base: Path, full: Path) -> str:
    return full.relative_to(base).as_posix() if full.is_relative_to(base) else full.as_posix()


def _derived_id(base: Path, full: Path, caption: str) -> str:
    """Stable id for inputs without one: it depends only on the path (relative to the base) and caption."""
    return hashlib.sha1(f"{_display_path(base, full)}\n{caption}".encode()).hexdigest()[:16]


def _validate(
    records: list[_Record], has_label: bool, check_images: bool, progress: bool, on_error: str
) -> tuple[list[_Record], list[tuple]]:
    """Split records into good ones (labels parsed to bool) and skipped (row, filepath, caption, reason, kind).

    Duplicates are checked against earlier *good* rows only, so a copy of a bad row is judged on its own.
    """
    seen_ids: dict[str, int] = {}
    seen_pairs: dict[tuple, int] = {}
    image_problems: dict[Path, str | None] = {}
    good, skipped = [], []
    desc = "checking images" if check_images else "checking rows"
    with tqdm(records, desc=desc, unit="img", disable=not progress) as bar:
        for rec in bar:
            kind, detail = _problem(rec, has_label, seen_ids, seen_pairs, image_problems, check_images)
            if kind is None:
                good.append(rec)
                seen_ids[rec.sample_id] = rec.row
                seen_pairs[(rec.path, tuple(rec.captions))] = rec.row
                continue
            reason = f"{kind}: {detail}" if detail else kind
            if on_error == "fail":
                raise ClipmemError(f"row {rec.row} ({rec.written}): {reason}")
            skipped.append((rec.row, rec.written, rec.captions[0] if rec.captions else "", reason, kind))
    return good, skipped


def _problem(
    rec: _Record,
    has_label: bool,
    seen_ids: dict[str, int],
    seen_pairs: dict[tuple, int],
    image_problems: dict[Path, str | None],
    check_images: bool,
) -> tuple[str | None, str]:
    """(kind, detail) of the first defect of a record, cheapest checks first; (None, "") if it is good."""
    if rec.problem:
        return rec.problem, ""
    if not rec.captions or not rec.captions[0]:
        return "caption is empty", ""
    if has_label:
        label = _parse_label(rec.label)
        if label is None:
            return "bad is_miscaptioned value", f"{rec.label!r} (use true/false, 1/0 or yes/no)"
        rec.label = label
    if not rec.sample_id:
        return "id is empty", ""
    if (rec.path, tuple(rec.captions)) in seen_pairs:
        return "duplicate row", f"same filepath and caption as row {seen_pairs[(rec.path, tuple(rec.captions))]}"
    if rec.sample_id in seen_ids:
        return "duplicate id", f"{rec.sample_id!r} is also row {seen_ids[rec.sample_id]}"
    if not rec.path.is_file():
        return "image file is missing", str(rec.path)
    if check_images:
        if rec.path not in image_problems:
            image_problems[rec.path] = _image_problem(rec.path)
        if image_problems[rec.path]:
            return "image is unreadable", image_problems[rec.path]
    return None, ""


def _parse_label(value: Any) -> bool | None:
    text = str(value).strip().lower()
    return True if text in _TRUE else False if text in _FALSE else None


def _image_problem(path: Path) -> str | None:
    try:
        with Image.open(path) as image:
            image.verify()
    except Exception as exc:  # PIL raises many exception types for damaged files
        return str(exc) or type(exc).__name__
    return None


def _top_reasons(skipped: list[tuple], top: int = 3) -> str:
    counts = Counter(s[4] for s in skipped).most_common(top)
    return ", ".join(f"{n} {kind}" for kind, n in counts)


def _common_root(base: Path, paths: list[Path]) -> Path:
    outside = [p for p in paths if not p.is_relative_to(base)]
    return Path(os.path.commonpath([base, *outside])) if outside else base


def _samples_frame(good: list[_Record], root: Path, has_label: bool) -> pd.DataFrame:
    frame = pd.DataFrame(
        {
            "sample_id": [r.sample_id for r in good],
            "filepath": [r.path.relative_to(root).as_posix() for r in good],
            "caption": [r.captions[0] for r in good],
            "captions": [list(r.captions) for r in good],
        }
    )
    if has_label:
        frame[LABEL_COLUMN] = np.array([r.label for r in good], dtype=bool)
    if any(r.category for r in good):
        frame[CLASS_COLUMN] = [r.category or None for r in good]
    return frame


def _content_hash(samples: pd.DataFrame, root: Path) -> str:
    """sha256 over the samples (by sample_id) and each image's size and mtime: cheap, and any edit shows."""
    digest = hashlib.sha256()
    missing = pd.Series([None] * len(samples), index=samples.index)
    labels, categories = samples.get(LABEL_COLUMN, missing), samples.get(CLASS_COLUMN, missing)
    for sid, filepath, caps, label, category in sorted(
        zip(samples["sample_id"], samples["filepath"], samples["captions"], labels, categories), key=lambda r: r[0]
    ):
        stat = (root / filepath).stat()
        label = None if label is None else bool(label)
        entry = [sid, filepath, list(caps), label, stat.st_size, stat.st_mtime_ns]
        digest.update(json.dumps(entry if category is None else [*entry, category]).encode())
    return digest.hexdigest()


def write_skip_report(dataset: Dataset, path: str | os.PathLike) -> None:
    """Write ``dataset.skipped`` as CSV; atomic, so a crash never leaves a half report."""
    with atomic_path(path) as tmp:
        dataset.skipped.to_csv(tmp, index=False)


def load_image(root: str | os.PathLike, filepath: str) -> Image.Image:
    """Open one dataset image as RGB, fully loaded so the file handle is closed."""
    path = Path(root) / filepath
    try:
        with Image.open(path) as image:
            return image.convert("RGB")
    except (OSError, ValueError) as exc:
        raise ClipmemError(f"image {path} is unreadable: {exc}") from None


def donor_captions(captions: Sequence[Sequence[str]], fraction: float, rng: np.random.Generator) -> dict[int, str]:
    """Pick ``round(fraction * n)`` (at least 1) samples and, for each, another sample's first caption
    that none of its own captions equal: sample index -> new caption."""
    firsts = [caps[0] for caps in captions]
    codes, uniques = pd.factorize(pd.Series(firsts))
    if len(uniques) < 2:
        raise ClipmemError("mis-captioning needs at least two different captions in the dataset")
    code_of = {caption: code for code, caption in enumerate(uniques)}
    n_pick = min(len(firsts), max(1, round(fraction * len(firsts))))
    chosen = np.sort(rng.choice(len(firsts), size=n_pick, replace=False))
    new = {}
    for i in chosen:
        donors = np.flatnonzero(~np.isin(codes, [code_of[c] for c in captions[i] if c in code_of]))
        if len(donors) == 0:
            raise ClipmemError(f"sample {i} has every caption of the dataset; no different caption to give it")
        new[int(i)] = firsts[int(rng.choice(donors))]
    return new


def inject_miscaptions(
    src_path: str | os.PathLike,
    out_path: str | os.PathLike,
    *,
    fraction: float,
    seed: int,
    img_key: str = "filepath",
    caption_key: str = "caption",
    progress: bool = True,
) -> dict:
    """Write a CSV copy of a dataset where a seeded ``fraction`` of samples carry another sample's caption.

    Columns ``id, filepath, caption, is_miscaptioned`` (and ``label`` when the source has it): one row per
    sample with its first caption (a mis-captioned multi-caption sample gets the donor's first caption only);
    ids keep the source sample_ids; filepaths are relative to the output's folder. A sample already flagged
    in the source stays flagged.
    """
    if not 0 < fraction < 1:
        raise ClipmemError(f"fraction must be between 0 and 1 (exclusive), not {fraction}")
    dataset = read_dataset(src_path, img_key=img_key, caption_key=caption_key, progress=progress)
    samples = dataset.samples
    new = donor_captions(samples["captions"].tolist(), fraction, np.random.default_rng(seed))
    out = Path(out_path).expanduser().resolve()
    captions = samples["caption"].tolist()
    flags = samples[LABEL_COLUMN].tolist() if LABEL_COLUMN in samples else [False] * len(samples)
    for i, caption in new.items():
        captions[i], flags[i] = caption, True
    frame = pd.DataFrame(
        {
            ID_COLUMN: samples["sample_id"],
            "filepath": [Path(os.path.relpath(dataset.root / fp, out.parent)).as_posix() for fp in samples["filepath"]],
            "caption": captions,
            LABEL_COLUMN: flags,
        }
    )
    if CLASS_COLUMN in samples:
        frame[CLASS_COLUMN] = samples[CLASS_COLUMN].to_numpy()
    with atomic_path(out) as tmp:
        frame.to_csv(tmp, index=False)
    return {"n": len(frame), "n_injected": len(new), "n_skipped": len(dataset.skipped), "out": str(out), "seed": seed}
