"""The run cache: one folder per run, written by ``write_run`` alone, loaded as a typed `Run`.

Layout of ``cache/<name>/`` (row i of every array is row i of ``scores.parquet``)::

    manifest.json            a `Manifest`: config, protocol, dataset, versions, timings, utility, summary; written LAST
    scores.parquet           one row per sample: BASE_COLUMNS plus the registered scores (clipmem_core.scores)
    image_embeddings.npy     (N, D) float32, L2-normalised, from the run's reference model (f, or h0)
    text_embeddings.npy      (N, D) float32, likewise
    view_alignments.npy      (M, N, K) float32: per-view cosines of each of the M models; NaN where unscored
    index/image.faiss, index/text.faiss
    checkpoints/<model>_last.pt
    checkpoints/<model>_retained.npy   full protocol: the model's retained alignment of its own rows (retention)
    thumbs/<row>.jpg         small thumbnails for the dashboard
    skipped.csv              every input row that was skipped, and why

The manifest is written last, so a folder whose manifest says ``status: complete`` holds every file it
lists; anything else is refused with a clear reason.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, fields
from datetime import UTC, datetime
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.ipc as ipc
import pyarrow.parquet as pq
from PIL import Image

from .atomic import atomic_path, check_output_file, relative_if_inside, write_json, write_npy, write_parquet
from .caption_search import CaptionIndex, caption_index, scan
from .data import CONTROL_CHARACTERS, IMAGE_SUFFIXES
from .errors import ClipmemError
from .formatting import fmt_count
from .shards import image_exists

SCHEMA_VERSION = 2
READABLE_SCHEMAS = (1, 2)  # version 1 runs (before the score registry) are upgraded in memory
MANIFEST = "manifest.json"
SCORES = "scores.parquet"
SCORES_MAPPED = "scores.arrow"  # an uncompressed copy of SCORES that large runs load memory-mapped
MAP_FROM_ROWS = 1_000_000
IMAGE_EMBEDDINGS = "image_embeddings.npy"
TEXT_EMBEDDINGS = "text_embeddings.npy"
VIEW_ALIGNMENTS = "view_alignments.npy"
INDEX_DIR = "index"
MODALITIES = ("image", "text")  # one index file each in INDEX_DIR
CHECKPOINT_DIR = "checkpoints"
THUMB_DIR = "thumbs"
SKIPPED = "skipped.csv"
STATE_FILE = "run_state.json"
MADE_BY = "made_by"  # in a run's state: what made the run and continues it, when not `clipmem run` (an experiment)


MAX_RUN_NAME = 300  # a run's name (its folder's) is a key of the review store, which holds this many characters


def run_name_problem(out: Path) -> str | None:
    """Why the folder ``out`` cannot name a run, or None: its name keys the run's verdicts, and a run named with
    a newline (``--out $'runs/a\\nb'``) was trained, then refused by every review command."""
    name = Path(os.path.abspath(out)).name  # never over MAX_RUN_NAME: file systems hold 255 bytes a name
    if CONTROL_CHARACTERS.search(name):
        return f"the run's name (its folder's), {name!r}, holds control characters (a line break, a tab)"
    return None


def trained_nothing(out: Path) -> bool:
    """Whether a run folder holds only what a run writes before it trains (its state and skip report): a run
    refused for its data, or cancelled early. The next run may start afresh in it."""
    contents = {p.name for p in out.iterdir() if not p.name.startswith(".")} if out.is_dir() else set()
    return contents <= {STATE_FILE, SKIPPED}


EXPERIMENTS_DIR = "experiments"  # <cache>/experiments/<name>/: an experiment's records (clipmem_core.experiments)
EXPERIMENT_FILE = "experiment.json"  # marks an experiment folder (clipmem_core.experiments)
GROUND_TRUTH = "is_miscaptioned"
TRUTH_MISCAPTIONED, TRUTH_CLEAN, TRUTH_UNKNOWN = "mis-captioned", "clean", "unknown"  # ground truth in words


def truth_words(values: pd.Series | None, index: pd.Index) -> pd.Series:
    """The ground truth column in words (unknown where missing, or everywhere without the column)."""
    if values is None:
        return pd.Series(TRUTH_UNKNOWN, index=index, dtype=object)
    return values.map({True: TRUTH_MISCAPTIONED, False: TRUTH_CLEAN}).astype(object).fillna(TRUTH_UNKNOWN)


# Every run has these; score columns come from the registry and may be missing (then the score is unavailable).
BASE_COLUMNS = ("sample_id", "split", "filepath", "caption", "captions")
PROJECTION_COLUMNS = ("proj_x", "proj_y")
THUMBNAIL_SIZE = 96


@dataclass
class DatasetInfo:
    """Where a run's data came from. ``root`` is the folder image paths are confined to."""

    path: str = ""
    root: str = ""
    format: str = ""
    content_hash: str = ""
    n_samples: int = 0
    n_skipped: int = 0
    n_excluded: int = 0  # samples the run's drop list (--exclude) removed
    n_exclude_not_found: int = 0  # ids of that list the data did not hold
    exclude_digest: str = ""  # that list's ids (droplist.ids_digest), "" without one: --resume needs the same
    warnings: list[str] = field(default_factory=list)  # whole-input notes (data.Dataset.warnings), for the Overview


@dataclass
class Manifest:
    """What ``manifest.json`` holds: enough to understand, trust and redo a run.

    Example::

        manifest = Manifest(name="demo", protocol="full", config=config.to_dict(), dataset=DatasetInfo(path="x.csv"))
        Manifest.from_dict(manifest.to_dict()) == manifest
    """

    name: str
    protocol: str = "paper"
    config: dict[str, Any] = field(default_factory=dict)
    dataset: DatasetInfo = field(default_factory=DatasetInfo)
    splits: dict[str, int] = field(default_factory=dict)
    models: list[str] = field(default_factory=list)
    versions: dict[str, str] = field(default_factory=dict)
    compute: dict[str, str] = field(default_factory=dict)  # where it ran: device, and the precision auto became
    timings: dict[str, float] = field(default_factory=dict)
    peak_memory_mb: float | None = None
    utility: dict[str, Any] | None = None
    training: dict[str, Any] | None = None
    summary: dict[str, Any] = field(default_factory=dict)
    files: list[str] = field(default_factory=list)
    created: str = field(default_factory=lambda: datetime.now(UTC).isoformat(timespec="seconds"))
    status: str = "complete"
    schema_version: int = SCHEMA_VERSION

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Any, where: str = "manifest") -> Manifest:
        """Validate and build; a wrong type anywhere is a ClipmemError naming the field."""
        if not isinstance(data, dict):
            raise ClipmemError(f"{where} is not a clipmem manifest (not a JSON object)")
        values: dict[str, Any] = {}
        for spec in fields(cls):
            if spec.name not in data:
                continue
            value = data[spec.name]
            if spec.name == "dataset":
                value = _dataset_info(value, where)
            elif not _has_type(value, spec.type):
                raise ClipmemError(f"{where}: field {spec.name!r} has the wrong type ({type(value).__name__})")
            values[spec.name] = value
        if "name" not in values:
            raise ClipmemError(f"{where}: field 'name' is missing")
        return cls(**values)

    @property
    def seconds(self) -> float:
        """Total compute time over every stage."""
        return float(sum(v for v in self.timings.values() if isinstance(v, (int, float))))


def computed_on(compute: dict[str, str]) -> str:
    """A manifest's ``compute`` as "computed on cuda:0 in bf16": runs show it because bf16 runs score a little
    differently from fp32 ones. Empty for runs made before manifests recorded it, rather than a guess."""
    if not compute:
        return ""
    return f"computed on {compute.get('device', '–')} in {compute.get('precision', '–')}"


_TYPE_CHECKS = {
    "str": str,
    "int": int,
    "float | None": (int, float, type(None)),
    "dict[str, Any]": dict,
    "dict[str, int]": dict,
    "dict[str, str]": dict,
    "dict[str, float]": dict,
    "dict[str, Any] | None": (dict, type(None)),
    "list[str]": list,
}


def _has_type(value: Any, annotation: str) -> bool:
    expected = _TYPE_CHECKS.get(str(annotation))
    return expected is None or (isinstance(value, expected) and not isinstance(value, bool))


def _dataset_info(value: Any, where: str) -> DatasetInfo:
    if not isinstance(value, dict):
        raise ClipmemError(f"{where}: field 'dataset' is not an object")
    known = {f.name for f in fields(DatasetInfo)}
    try:
        return DatasetInfo(**{k: v for k, v in value.items() if k in known})
    except TypeError as exc:
        raise ClipmemError(f"{where}: field 'dataset' is malformed: {exc}") from None


@dataclass
class Run:
    """A complete run loaded from ``cache/<name>/``. Arrays are memory-mapped, not read into RAM.

    Example::

        run = load_run("cache/demo")
        run.manifest.protocol, len(run.scores), run.image_embeddings.shape
        run.image_path(run.row("3f2a9c0d1e2b4a5f"))
    """

    path: Path
    manifest: Manifest
    scores: pd.DataFrame = field(repr=False)

    @property
    def name(self) -> str:
        """The run folder's name, also for a path such as ``.`` or ``runs/x/..`` (its name was "", and the
        review commands looked up the verdicts of a run named "": none). A link keeps its own name."""
        return Path(os.path.abspath(self.path)).name

    @property
    def has_ground_truth(self) -> bool:
        return GROUND_TRUTH in self.scores.columns

    @cached_property
    def row_of(self) -> dict[str, int]:
        """sample_id -> row in scores and in every array. Built from one list in C (2.7x faster than
        iterating the Arrow-backed column: 1.7 s against 4.6 s at 2M ids)."""
        ids = self.scores["sample_id"].tolist()
        return dict(zip(ids, range(len(ids)), strict=True))

    @cached_property
    def caption_index(self) -> CaptionIndex | None:
        """Built on the first caption search, once per loaded run; None where a scan is fast enough."""
        return caption_index(pa.array(self.scores["caption"]))

    def captions_holding(self, text: str) -> np.ndarray:
        """Boolean mask of the rows whose caption holds ``text``, literally and case-insensitively."""
        index = self.caption_index
        return scan(pa.array(self.scores["caption"]), text) if index is None else index.search(text)

    def row(self, sample_id: str) -> int:
        try:
            return self.row_of[sample_id]
        except KeyError:
            raise ClipmemError(f"sample_id {sample_id!r} is not in run {self.name}") from None

    def ids_matching(self, typed: str) -> tuple[str, list[str]]:
        """(how, the sample ids) that a typed id names: "exact"; else "capitals", the one id equal to it but
        for capitals; else "prefix", the ids that start with it (one names a sample, several do not); else
        "none". An id typed in capitals or cut short (as the dashboard shows ids) named no sample."""
        typed = typed.strip()
        if typed in self.row_of:
            return "exact", [typed]
        if not typed:
            return "none", []
        ids = self.scores["sample_id"].astype(str)
        folded = ids.str.casefold()
        same = ids[folded == typed.casefold()].tolist()
        if len(same) == 1:
            return "capitals", same
        starting = ids[folded.str.startswith(typed.casefold())].tolist()
        return ("prefix", starting) if starting else ("none", [])

    def _array(self, name: str) -> np.ndarray:
        path = self.path / name
        if not path.exists():
            raise ClipmemError(f"run {self.name} has no {name}")
        try:
            return np.load(path, mmap_mode="r")
        except (OSError, ValueError) as exc:
            raise ClipmemError(f"run {self.name}: {name} is unreadable ({exc})") from None

    @cached_property
    def image_embeddings(self) -> np.ndarray:
        return self._array(IMAGE_EMBEDDINGS)

    @cached_property
    def text_embeddings(self) -> np.ndarray:
        return self._array(TEXT_EMBEDDINGS)

    @cached_property
    def view_alignments(self) -> np.ndarray | None:
        """(models, N, K) per-view cosines, or None when the run stores none."""
        if not (self.path / VIEW_ALIGNMENTS).exists():
            return None
        views = self._array(VIEW_ALIGNMENTS)
        return np.moveaxis(views, 1, 0) if self.manifest.schema_version == 1 else views

    @property
    def dataset_root(self) -> Path | None:
        """Folder that image paths are confined to; relative manifests resolve against the run."""
        root = self.manifest.dataset.root
        if not root:
            return None
        root_path = Path(root)
        return root_path if root_path.is_absolute() else Path(os.path.normpath(self.path.resolve() / root_path))

    @property
    def dataset_source(self) -> Path | None:
        """The dataset file (or folder, or shard pattern) the run was computed from, as the manifest names it;
        relative manifests resolve against the run."""
        written = self.manifest.dataset.path
        if not written:
            return None
        path = Path(written)
        return path if path.is_absolute() else Path(os.path.normpath(self.path.resolve() / path))

    def check_output(self, out: str | os.PathLike, force: bool = False) -> None:
        """Refuse an output file that would replace the run's dataset or a file of any run folder (this run's
        or another's), even with ``force``: `review export --force` wrote over the user's source CSV (its
        other columns lost), and `suspects --out scores.parquet --force` over a run's scores, which no
        command could read after."""
        runs = [folder for folder in Path(out).expanduser().resolve().parents if is_run_folder(folder)]
        sources = [p for p in (self.dataset_source,) if p]
        check_output_file(out, force=force, inputs=sources, kept_folders=[self.path, *runs])

    def image_path(self, row: int) -> Path | None:
        """The full-size image of a row, or None if the row names no usable image file.

        The path may run through a WebDataset shard (``shards.tar/key.jpg``): open it with
        `clipmem_core.shards.open_image_source`.

        Only rows of the run are served, never a path built from request input: a relative ``filepath``
        must stay inside the dataset root (checked lexically, as at ingest), an absolute one is what the
        user's own CSV or COCO file named (``clipmem_core.data``), and either must be an existing file
        with an image suffix. See docs/security.md.
        """
        if not 0 <= row < len(self.scores):
            return None
        filepath = str(self.scores["filepath"].iat[row])
        if "\x00" in filepath:
            return None
        written = Path(filepath)
        if written.is_absolute():
            candidate = Path(os.path.normpath(written))
        else:
            root = self.dataset_root
            if root is None:
                return None
            candidate = Path(os.path.normpath(root / written))
            if not candidate.is_relative_to(root):
                return None
        if candidate.suffix.lower() not in IMAGE_SUFFIXES or not image_exists(candidate):
            return None
        return candidate

    def thumbnail_path(self, row: int) -> Path | None:
        path = self.path / THUMB_DIR / f"{row}.jpg"
        return path if path.exists() else None

    def index_path(self, modality: str) -> Path:
        return self.path / INDEX_DIR / f"{modality}.faiss"


def _runs_inside(folder: Path) -> str:
    """A hint when ``folder`` is a cache, not a run: people pass the cache where a run is asked for."""
    runs = sorted(child.name for child in folder.iterdir() if (child / MANIFEST).is_file())
    if not runs:
        return ""
    shown = ", ".join(str(folder / name) for name in runs[:3]) + (" …" if len(runs) > 3 else "")
    return f"; it is a cache of {fmt_count(len(runs), 'run')}: pass one of them, e.g. {shown}"


def read_run_state(run_dir: Path) -> dict:
    """An unfinished run's state file, {} where it cannot be read."""
    try:
        state = json.loads((run_dir / STATE_FILE).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError, RecursionError):
        return {}
    return state if isinstance(state, dict) else {}


def unfinished_import(run_dir: Path) -> bool:
    """Whether an unfinished run folder was left by import-run (its state names the scores file)."""
    return "imported_from" in read_run_state(run_dir)


def computing_process() -> dict:
    """What a run's state records of the process computing it, so that a reader can tell a run still being
    computed from one that was stopped."""
    return {"host": socket.gethostname(), "pid": os.getpid()}


def mark_stopped(run_dir: Path) -> None:
    """Forget the computing process in a stopped run's state: a process that stopped a run and lives on (a
    notebook, a test) would otherwise be taken for one still computing it. A folder without a state (the run
    stopped before writing one), or one another process computes (a refused second start), is left alone."""
    state = read_run_state(run_dir)
    if state.get("pid") == os.getpid() and state.get("host") == socket.gethostname():
        state.pop("pid")
        write_json(run_dir / STATE_FILE, state)


_CLAIMED: dict[Path, int] = {}  # run folder -> the descriptor whose lock this process holds on it


def claim_run_folder(run_dir: Path) -> bool:
    """Lock the run folder for this process while it computes the run, or refuse: two runs started into one
    folder in the same second both found no live process in its state, and both trained into it. An
    exclusive ``flock`` on the folder itself (no lock file joins the run's files), which the system drops
    when the process ends, however it ends. False on a filesystem without locks, which leaves the state's
    process check; True when locked, and the state's process id then says nothing: after a restart (a
    container's) another program may have the id of a run killed there, and --resume was refused for good."""
    import fcntl

    key = run_dir.resolve()
    if key in _CLAIMED:
        return True
    descriptor = os.open(key, os.O_RDONLY)
    try:
        fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(descriptor)
        raise ClipmemError(
            f"{run_dir} is still being computed by another process: wait for it, or stop it first"
        ) from None
    except OSError:  # no locks here (some network mounts)
        os.close(descriptor)
        return False
    _CLAIMED[key] = descriptor
    return True


def release_run_folder(run_dir: Path) -> None:
    """Let another process compute the run folder (this one has finished or stopped it)."""
    descriptor = _CLAIMED.pop(run_dir.resolve(), None)
    if descriptor is not None:
        os.close(descriptor)


def still_computing(run_dir: Path) -> str | None:
    """ "process 1234 on this machine" while the process that computes the run is alive here; None when it
    has ended, or when it runs on another machine, which cannot be asked."""
    return process_alive(read_run_state(run_dir))


def process_alive(state: dict) -> str | None:
    """ "process 1234 on this machine" while the process a record names (``computing_process``) is alive
    here, other than this one; None when it has ended, or runs on another machine."""
    pid = state.get("pid")
    if state.get("host") != socket.gethostname() or not isinstance(pid, int) or pid <= 0 or pid == os.getpid():
        return None  # elsewhere, or this very process: one that stopped a run and now resumes or reads it
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return None
    except PermissionError:  # alive, under another user
        pass
    return f"process {pid} on this machine"


def _unfinished(run_dir: Path) -> str:
    """Why a run folder with a state and no manifest cannot be read yet, and what to do. Why: a run still
    being computed was listed as unfinished with the advice to resume it, which would start a second
    process on the same folder."""
    if unfinished_import(run_dir):
        return f"{run_dir} is unfinished (no {MANIFEST} yet): the same `clipmem import-run` redoes it"
    running = still_computing(run_dir)
    if running:
        return f"{run_dir} is still being computed ({running}); it can be opened when it finishes"
    state = read_run_state(run_dir)
    host = state.get("host")
    elsewhere = f" (unless it is still running on {host})" if host and host != socket.gethostname() else ""
    if state.get(MADE_BY):  # an experiment's run: a `clipmem run` into it, as advised, broke the experiment
        return f"{run_dir} is unfinished (no {MANIFEST} yet){elsewhere}: a run of {state[MADE_BY]}, which continues it"
    return f"{run_dir} is unfinished (no {MANIFEST} yet){elsewhere}: the same `clipmem run` with --resume continues it"


def read_manifest(run_dir: Path) -> Manifest:
    """A run's manifest alone, or a ClipmemError saying why there is none: what a check of a run's settings
    or data needs, without the scores ``load_run`` reads."""
    manifest_path = run_dir / MANIFEST
    if not run_dir.is_dir():
        raise ClipmemError(f"{run_dir} is not a directory")
    if not manifest_path.exists():
        if (run_dir / STATE_FILE).exists():  # "not a clipmem run" read as if the work were lost
            raise ClipmemError(_unfinished(run_dir))
        if (run_dir / EXPERIMENT_FILE).exists():
            raise ClipmemError(
                f"{run_dir} is an experiment, not a run: its results are in results.parquet and summary.parquet "
                f"there (and on the Compare runs page), its runs in the cache as {run_dir.name}-s<seed>-<condition>"
            )
        raise ClipmemError(
            f"{run_dir} is not a clipmem run (no {MANIFEST}; incomplete or not a run){_runs_inside(run_dir)}"
        )
    try:
        data = json.loads(manifest_path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, RecursionError) as exc:
        raise ClipmemError(f"{manifest_path} is unreadable: {exc}") from None
    if isinstance(data, dict) and data.get("schema_version") not in READABLE_SCHEMAS:
        raise ClipmemError(
            f"{run_dir} has cache schema version {data.get('schema_version')!r}; "
            f"this clipmem reads versions {', '.join(map(str, READABLE_SCHEMAS))}"
        )
    return Manifest.from_dict(data, str(manifest_path))


def check_manifest(run_dir: Path, manifest: Manifest, *, indexes: bool = True) -> None:
    """Raise ClipmemError if the run is incomplete or a file it lists is missing or visibly damaged.

    Cheap enough for ``clipmem list`` over a cache of large runs: the parquet footer (row count and
    columns) and each ``.npy`` header are read, and each array's size is checked against the file's,
    so a truncated file is refused here rather than half-read later. Nothing is read in full. Without
    ``indexes`` the FAISS index files are not looked at: `reindex`, which rebuilds them, refused a run whose
    index file was missing or empty, and nothing else could mend it.
    """
    if manifest.status != "complete":
        raise ClipmemError(f"{run_dir} is incomplete (status {manifest.status!r})")
    for name in [SCORES, *manifest.files]:
        if not (run_dir / name).exists():
            if Path(name).parts[0] == INDEX_DIR:
                if not indexes:
                    continue
                raise ClipmemError(
                    f"{run_dir} is incomplete: {name} is missing; rebuild it with `clipmem reindex --run {run_dir}`"
                )
            raise ClipmemError(f"{run_dir} is incomplete: {name} is missing")
    rows = _parquet_rows(run_dir / SCORES)
    for name in (IMAGE_EMBEDDINGS, TEXT_EMBEDDINGS, VIEW_ALIGNMENTS):
        if name in manifest.files or (run_dir / name).exists():
            shape = _npy_shape(run_dir / name)
            row_axis = 1 if name == VIEW_ALIGNMENTS and manifest.schema_version >= 2 else 0
            if len(shape) <= row_axis or shape[row_axis] != rows:
                raise ClipmemError(f"{run_dir / name} has shape {shape}, which does not match {rows} rows of scores")
    for modality in MODALITIES if indexes else ():
        index = run_dir / INDEX_DIR / f"{modality}.faiss"
        if index.exists() and index.stat().st_size == 0:
            raise ClipmemError(f"{index} is empty; rebuild it with `clipmem reindex --run {run_dir}`")


def _parquet_rows(path: Path) -> int:
    """Row count from the parquet footer; a truncated file has none."""
    try:
        metadata = pq.read_metadata(path)
    except Exception as exc:  # pyarrow raises several types for a damaged file
        raise ClipmemError(f"{path} is unreadable: {_first_line(exc)}") from None
    missing = [c for c in BASE_COLUMNS if c not in metadata.schema.to_arrow_schema().names]
    if missing:
        raise ClipmemError(f"{path} lacks columns {missing}")
    return metadata.num_rows


def _npy_shape(path: Path) -> tuple[int, ...]:
    """An ``.npy`` file's shape from its header, after checking the file holds every byte it announces."""
    try:
        with open(path, "rb") as fh:
            version = np.lib.format.read_magic(fh)
            read_header = (
                np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
            )
            shape, _, dtype = read_header(fh)
            header_end = fh.tell()
    except (OSError, ValueError, EOFError) as exc:
        raise ClipmemError(f"{path} is unreadable: {_first_line(exc)}") from None
    expected = header_end + int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    actual = path.stat().st_size
    if dtype.hasobject or actual != expected:
        raise ClipmemError(f"{path} is damaged: {actual} bytes where its header announces {expected}")
    return tuple(int(n) for n in shape)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def _contiguous(table: pa.Table) -> pa.Table:
    """Each column in one chunk. Arrow-backed string columns keep the file's chunks otherwise (77 at 10M
    rows), and taking 48 rows from a chunked column joins every chunk first: a gallery page's 48 cards
    took 130-250 ms at 10M instead of 1 ms. A column too large for one chunk (over 2 GiB of text) stays
    chunked."""
    try:
        return table.combine_chunks()
    except (pa.ArrowInvalid, pa.ArrowCapacityError):
        return table


def _scores_table(run_dir: Path) -> pa.Table:
    """The scores as one Arrow table: read from the parquet file, or from 1M rows on memory-mapped.

    A 10M-row frame read from parquet is 5.4 GiB of private memory in every server process and 11-16 s
    to decode. Memory-mapped from an uncompressed Arrow copy it is file-backed pages, which every process
    shares and the kernel can drop, and numeric columns reach pandas without a copy (see
    `_mapped_scores`). Where the copy cannot be written (a read-only cache) the parquet file is read.
    """
    parquet = run_dir / SCORES
    if _parquet_rows(parquet) >= MAP_FROM_ROWS:
        mapped = _mapped_scores(parquet)
        if mapped is not None:
            return ipc.open_file(pa.memory_map(str(mapped))).read_all()
    return _contiguous(pq.read_table(parquet))


def _source_stamp(parquet: Path) -> bytes:
    stat = parquet.stat()
    return f"{stat.st_size}:{stat.st_mtime_ns}".encode()


def _mapped_scores(parquet: Path) -> Path | None:
    """``scores.arrow`` beside ``parquet``, written once per version of it; None where it cannot be.

    The copy is one record batch (each column one chunk, strings as large strings) with missing floats
    stored as NaN rather than as nulls: a column without nulls becomes a numpy view of the mapped file.
    It records the parquet file's size and mtime, so a rewritten run gets a new copy.
    """
    mapped = parquet.with_name(SCORES_MAPPED)
    stamp = _source_stamp(parquet)
    try:
        with pa.memory_map(str(mapped)) as source:
            if (ipc.open_file(source).schema.metadata or {}).get(b"clipmem_source") == stamp:
                return mapped
    except (OSError, pa.ArrowInvalid):
        pass  # missing, stale or damaged: written again below
    read = pq.read_table(parquet)
    table = pa.Table.from_arrays([_mappable(column) for column in read.columns], names=read.column_names)
    table = table.combine_chunks().replace_schema_metadata({**(read.schema.metadata or {}), b"clipmem_source": stamp})
    del read
    try:
        with atomic_path(mapped) as tmp, ipc.new_file(str(tmp), table.schema) as writer:
            writer.write_table(table, max_chunksize=max(1, table.num_rows))
    except OSError:
        return None
    return mapped


def _mappable(column: pa.ChunkedArray) -> pa.ChunkedArray:
    """The column in a form that stays one chunk and converts to pandas without a copy."""
    if pa.types.is_floating(column.type):
        return pc.fill_null(column, float("nan"))
    if pa.types.is_string(column.type):
        return column.cast(pa.large_string())
    if pa.types.is_list(column.type) and pa.types.is_string(column.type.value_type):
        return column.cast(pa.large_list(pa.large_string()))
    return column


def _lists_stay_arrow(arrow_type: pa.DataType) -> pd.ArrowDtype | None:
    """List columns (``captions``) stay Arrow arrays instead of one Python object per row.

    At 10M samples the ``captions`` column as Python objects took 10.7 s and 3.75 GiB of a 5.4 GiB
    scores frame (bench/bench_scale.py dashboard), and no page reads it; as Arrow it keeps its buffers.
    A row's captions still come out as a Python list.
    """
    return pd.ArrowDtype(arrow_type) if pa.types.is_list(arrow_type) or pa.types.is_large_list(arrow_type) else None


def load_run(path: str | os.PathLike, *, check_indexes: bool = True) -> Run:
    """Load a complete run, or raise ClipmemError saying why it cannot be used.

    Args:
        path: the run folder, e.g. ``cache/demo``.
        check_indexes: refuse a run whose FAISS index file is missing or empty (not for `reindex`).

    Returns:
        A `Run` whose ``scores`` frame holds every registered score the run has (version 1 runs gain the
        scores that can be derived from their columns) and whose arrays are memory-mapped on first use.

    Example::

        run = load_run("cache/demo")
        run.scores.sort_values("combined", ascending=False).head(10)
    """
    run_dir = Path(path)
    manifest = read_manifest(run_dir)
    check_manifest(run_dir, manifest, indexes=check_indexes)
    try:
        scores = _scores_table(run_dir).to_pandas(types_mapper=_lists_stay_arrow, split_blocks=True)
    except Exception as exc:  # pyarrow raises many types for a damaged file
        raise ClipmemError(f"{run_dir / SCORES} is unreadable: {exc}") from None
    missing = [c for c in BASE_COLUMNS if c not in scores.columns]
    if missing:
        raise ClipmemError(f"{run_dir / SCORES} lacks columns {missing}")
    if manifest.schema_version == 1:
        from .scores import derive_missing

        scores = derive_missing(scores)
    return Run(path=run_dir, manifest=manifest, scores=scores)


@dataclass(frozen=True)
class RunInfo:
    """One entry of the cache listing; ``error`` says why an unusable run cannot be loaded."""

    name: str
    path: Path
    manifest: Manifest | None
    error: str | None

    @property
    def ok(self) -> bool:
        return self.error is None


def is_run_folder(folder: Path) -> bool:
    """Whether ``folder`` holds a run, finished (its manifest) or under way (its state file)."""
    return (folder / MANIFEST).is_file() or (folder / STATE_FILE).is_file()


def list_runs(cache_root: str | os.PathLike) -> list[RunInfo]:
    """Every sub-folder of the cache, usable or not, newest first (``experiments/`` holds no run)."""
    root = Path(cache_root)
    if not root.is_dir():
        return []
    infos = []
    for run_dir in sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")):
        if run_dir.name == EXPERIMENTS_DIR:
            continue
        try:
            manifest = read_manifest(run_dir)
            check_manifest(run_dir, manifest)
            infos.append(RunInfo(run_dir.name, run_dir, manifest, None))
        except ClipmemError as exc:
            infos.append(RunInfo(run_dir.name, run_dir, None, str(exc)))
    infos.sort(key=lambda i: i.manifest.created if i.manifest else "", reverse=True)
    return infos


def write_thumbnails(
    out: Path, images: Sequence[Image.Image], size: int = THUMBNAIL_SIZE, sources: Sequence[str] | None = None
) -> None:
    """Write every thumbnail into a temp folder, then swap it in whole.

    ``sources`` (row i's image file): rows that share an image share its thumbnail, as a hard link (a copy
    where the file system has none). A COCO-style table has a row per caption, five per image, and each
    image was decoded and shrunk five times."""
    from tqdm.auto import tqdm

    final, staging = out / THUMB_DIR, out / f".{THUMB_DIR}.tmp"
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    first_row: dict[str, int] = {}
    try:
        for row in tqdm(range(len(images)), desc="thumbnails", unit="img", leave=False):
            target = staging / f"{row}.jpg"
            earlier = None if sources is None else first_row.setdefault(str(sources[row]), row)
            if earlier is not None and earlier != row:
                _link_or_copy(staging / f"{earlier}.jpg", target)
                continue
            thumb = images[row].copy()
            thumb.thumbnail((size, size))
            thumb.save(target, quality=85)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    shutil.rmtree(final, ignore_errors=True)
    staging.rename(final)


def _link_or_copy(source: Path, target: Path) -> None:
    try:
        os.link(source, target)
    except OSError:
        shutil.copyfile(source, target)


def write_run(
    out: str | os.PathLike,
    scores: pd.DataFrame,
    manifest: Manifest,
    *,
    image_embeddings: np.ndarray | None = None,
    text_embeddings: np.ndarray | None = None,
    view_alignments: np.ndarray | None = None,
    images: Sequence[Image.Image] | None = None,
    thumbnail_size: int = THUMBNAIL_SIZE,
    stage=None,
    imported_ranking: bool = False,
) -> Run:
    """The one writer of run folders: computed, imported, demo, test and benchmark runs all come from here.

    Builds the FAISS indexes and the 2-D projection from the embeddings, writes thumbnails of ``images``
    (row i of ``scores``), the arrays and the scores, fills ``manifest.files`` and ``manifest.summary``,
    and writes the manifest last. ``stage`` is an optional ``Stopwatch.stage`` to time the steps.
    ``imported_ranking``: the combined ranking came with imported scores, so the summary is not stamped
    with this version's recipe.

    Returns:
        The run, loaded back with ``load_run`` (so a written run is always a loadable one).
    """
    from .index import build_index, save_index
    from .metrics import run_summary
    from .projection import project_2d
    from .scores.combined import RECIPE

    out = Path(out)
    stage = stage or _no_stage
    scores = scores.reset_index(drop=True).copy()
    files = [SCORES]
    has_embeddings = image_embeddings is not None and text_embeddings is not None
    if has_embeddings:
        with stage("index"):
            for modality, vectors in (("image", image_embeddings), ("text", text_embeddings)):
                save_index(build_index(vectors), out / INDEX_DIR / f"{modality}.faiss")
                files.append(f"{INDEX_DIR}/{modality}.faiss")
        if not set(PROJECTION_COLUMNS) <= set(scores.columns):
            with stage("projection"):
                xy = project_2d(image_embeddings, seed=int(manifest.config.get("seed") or 0))
                scores["proj_x"], scores["proj_y"] = xy[:, 0], xy[:, 1]
    for column in PROJECTION_COLUMNS:
        if column not in scores.columns:
            scores[column] = np.nan
    if images is not None:
        with stage("thumbnails"):
            sources = scores["filepath"].astype(str).tolist() if "filepath" in scores.columns else None
            write_thumbnails(out, images, thumbnail_size, sources)
        files.append(THUMB_DIR)
    with stage("write"):
        arrays = {IMAGE_EMBEDDINGS: image_embeddings, TEXT_EMBEDDINGS: text_embeddings}
        arrays[VIEW_ALIGNMENTS] = view_alignments
        for name, array in arrays.items():
            if array is not None and (has_embeddings or name == VIEW_ALIGNMENTS):
                write_npy(out / name, np.asarray(array, dtype=np.float32))
                files.append(name)
        write_parquet(out / SCORES, scores)
    manifest.files = files
    manifest.splits = {str(k): int(v) for k, v in scores["split"].value_counts().items()}
    manifest.dataset.n_samples = manifest.dataset.n_samples or len(scores)
    manifest.summary = run_summary(scores, manifest.protocol, recipe=None if imported_ranking else RECIPE)
    for attribute in ("path", "root"):  # so a run and a dataset inside it can move together
        value = getattr(manifest.dataset, attribute)
        setattr(manifest.dataset, attribute, value and relative_if_inside(_resolve(out, value), out))
    write_json(out / MANIFEST, manifest.to_dict())
    (out / STATE_FILE).unlink(missing_ok=True)
    return load_run(out)


def _resolve(out: Path, path: str) -> Path:
    return Path(path) if Path(path).is_absolute() else (out / path)


class _NoStage:
    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: object) -> None:
        return None


def _no_stage(name: str) -> _NoStage:
    return _NoStage()
