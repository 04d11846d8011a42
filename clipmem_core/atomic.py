"""Atomic file writes: a crash, a full disk or a kill never leaves a truncated file under the real name.

Every writer fills a temp file beside the target, flushes it to disk and renames it over the target.
Temp files are created with mode 0o666 minus the umask (like ``open``), so a team sharing a group can
read each other's runs; ``tempfile.mkstemp`` would make every file private (0o600).
"""

from __future__ import annotations

import glob
import json
import os
import re
import secrets
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from .errors import ClipmemError

if TYPE_CHECKING:  # imported on use below: the CLI's parser imports this module, and these took 0.25 s of each start
    import pandas as pd
    import pyarrow as pa

TEMP_SUFFIX = ".tmp"
_TEMP_NAME = re.compile(r"^\..+\.[0-9a-f]{8}\.tmp$")  # what _create_temp names its files


def _create_temp(path: Path) -> tuple[Path, int]:
    """A new, empty file beside ``path`` whose permissions follow the umask, and a descriptor that holds an
    exclusive lock on it until the write ends: the lock tells ``remove_abandoned_temps`` a live write's
    temp file from a killed one's (the system drops the lock however the process ends)."""
    for _ in range(100):
        candidate = path.with_name(f".{path.name}.{secrets.token_hex(4)}{TEMP_SUFFIX}")
        try:
            descriptor = os.open(candidate, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o666)
        except FileExistsError:
            continue
        _lock(descriptor)
        return candidate, descriptor
    raise FileExistsError(f"could not create a temp file beside {path}")


def _lock(descriptor: int) -> bool:
    """Take an exclusive lock on the open file, without waiting; False when another process holds it. A
    filesystem without locks (some network mounts) counts as held, so nothing is taken for abandoned there."""
    import fcntl

    try:
        fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        return False
    return True


@contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temp path beside ``path``; rename it over ``path`` only if the block succeeds.

    The temp file is fsynced before the rename, so after a power cut the target is either the old or
    the new content. On any error the temp file is removed and the target is left as it was.
    """
    path = Path(path)
    refuse_special_file(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        tmp_path, descriptor = _create_temp(path)
    except OSError as exc:
        raise _named(exc, path, None) from None
    try:
        yield tmp_path
        with open(tmp_path, "rb+") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp_path, path)
    except OSError as exc:
        raise _named(exc, path, tmp_path) from None
    finally:
        tmp_path.unlink(missing_ok=True)
        os.close(descriptor)


def _named(exc: OSError, path: Path, tmp_path: Path | None) -> OSError:
    """``exc`` naming the file asked for where it named the hidden temp file beside it (or nothing): "No space
    left on device: runs/.scores.parquet.ef577b4a.tmp" named a file the user never asked for and cannot find."""
    if exc.filename not in (None, str(tmp_path), str(path)) or exc.errno is None:
        return exc
    return type(exc)(exc.errno, exc.strerror, str(path))


def remove_stale_temps(folder: str | os.PathLike) -> int:
    """Delete the temp files a killed writer left under ``folder`` (only names ``_create_temp`` makes).

    A kill -9 between creating a temp file and renaming it leaves the temp behind; it never shadows a
    real file, but a resumed run should not keep collecting them. Returns how many were removed.
    """
    stale = [p for p in Path(folder).rglob(f"*{TEMP_SUFFIX}") if _TEMP_NAME.match(p.name) and p.is_file()]
    for path in stale:
        path.unlink(missing_ok=True)
    return len(stale)


ABANDONED_AFTER_S = 10.0  # a temp younger than this may be one whose writer has created it and not yet locked it


def remove_abandoned_temps(path: str | os.PathLike) -> int:
    """Delete the temp files that killed writes of ``path`` left beside it; returns how many.

    Why: a ``review export --out x.csv`` killed midway left ``.x.csv.3fa2c1d0.tmp`` in the user's folder for
    good. Only the temps of this one file, and only those no live write holds locked (``_create_temp``)."""
    path = Path(path)
    own_temp = re.compile(rf"^\.{re.escape(path.name)}\.[0-9a-f]{{8}}{re.escape(TEMP_SUFFIX)}$")
    removed = 0
    for candidate in path.parent.glob(f".{glob.escape(path.name)}.*{TEMP_SUFFIX}"):
        if own_temp.match(candidate.name) and _abandoned(candidate):
            candidate.unlink(missing_ok=True)
            removed += 1
    return removed


def _abandoned(temp: Path) -> bool:
    """True for a temp file whose writer has ended: old enough, a plain file, and nobody holds its lock."""
    try:
        if not temp.is_file() or time.time() - temp.stat().st_mtime < ABANDONED_AFTER_S:
            return False
        descriptor = os.open(temp, os.O_RDONLY)
    except OSError:
        return False
    try:
        return _lock(descriptor)
    finally:
        os.close(descriptor)


def refuse_special_file(path: Path) -> None:
    """Refuse a target that exists and is no regular file (``/dev/stdout``, ``/dev/null``, a pipe, or a link
    to one): the rename that makes a write atomic replaced it with a plain file, and as root
    ``--out /dev/stdout --force`` turned the machine's /dev/stdout into one."""
    if path.exists() and not path.is_file() and not path.is_dir():
        raise ClipmemError(
            f"{path} is not a regular file (a device, a pipe, or a link to one): clipmem writes a new file in its "
            "place, so it is refused; name a file, or give - where a command writes to standard output"
        )


def write_json(path: str | os.PathLike, obj: Any) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(obj, indent=2, sort_keys=True, default=str), encoding="utf-8")


def parquet_table(frame: pd.DataFrame) -> pa.Table:
    """``frame`` as an Arrow table that plain ``pd.read_parquet`` reads back.

    Why: a list column loaded as Arrow (``captions``, see ``cache._lists_stay_arrow``) is recorded in the
    file's pandas metadata as ``list<item: string>[pyarrow]``, a dtype name pandas cannot parse: after
    ``clipmem rerank`` a user's ``pd.read_parquet("scores.parquet")`` failed. Such columns are recorded as
    ``object``, what pandas makes of any list column; the data itself is unchanged."""
    import pyarrow as pa

    return _readable_by_pandas(pa.Table.from_pandas(frame, preserve_index=False))


def _readable_by_pandas(table: pa.Table) -> pa.Table:
    """``table`` with its pandas metadata recording Arrow-typed columns as ``object`` (see ``parquet_table``)."""
    metadata = dict(table.schema.metadata or {})
    if b"pandas" not in metadata:
        return table
    pandas_meta = json.loads(metadata[b"pandas"])
    for column in pandas_meta.get("columns", []):
        if str(column.get("numpy_type", "")).endswith("[pyarrow]"):
            column["numpy_type"] = "object"
    metadata[b"pandas"] = json.dumps(pandas_meta).encode()
    return table.replace_schema_metadata(metadata)


def read_parquet(path: str | os.PathLike) -> pd.DataFrame:
    """``pd.read_parquet``, which also reads a file that pandas itself wrote of a run's scores frame: pandas
    records its Arrow list column (``captions``) under a type name it cannot parse back ("data type
    'list<element: string>[pyarrow]' not understood"), and `import-run` refused such a file as unreadable."""
    import pandas as pd

    try:
        return pd.read_parquet(path)
    except TypeError as exc:
        if "not understood" not in str(exc):
            raise
    import pyarrow.parquet as pq

    return _readable_by_pandas(pq.read_table(path)).to_pandas()


def write_parquet(path: str | os.PathLike, frame: pd.DataFrame) -> None:
    with atomic_path(path) as tmp:
        import pyarrow.parquet as pq

        pq.write_table(parquet_table(frame), tmp)


def write_npy(path: str | os.PathLike, array: np.ndarray) -> None:
    with atomic_path(path) as tmp, open(tmp, "wb") as fh:
        np.save(fh, np.ascontiguousarray(array))


def write_bytes(path: str | os.PathLike, data: bytes) -> None:
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


def relative_if_inside(path: str | os.PathLike, base: str | os.PathLike) -> str:
    """``path`` relative to ``base`` when it lies inside it (so the pair can move together), else absolute."""
    path, base = Path(path).resolve(), Path(base).resolve()
    return path.relative_to(base).as_posix() if path.is_relative_to(base) else str(path)


def check_output_file(
    path: str | os.PathLike,
    *,
    force: bool = False,
    inputs: Iterable[str | os.PathLike] = (),
    kept_folders: Iterable[str | os.PathLike] = (),
) -> None:
    """Refuse, before any work, an output file that would clobber something: one of ``inputs`` or an
    existing file inside one of ``kept_folders`` (a run's own files; never allowed), an existing file
    (allowed with ``force``), a folder, or a path under a file. Then clears what a killed earlier write of
    this file left beside it (``remove_abandoned_temps``)."""
    refuse_special_file(Path(path).expanduser())
    path = Path(path).expanduser().resolve()
    if path.is_dir():
        raise ClipmemError(f"--out {path} is a folder; name a file")
    for source in inputs:
        source = Path(source).expanduser().resolve()
        if path == source or (path.exists() and source.exists() and os.path.samefile(path, source)):
            raise ClipmemError(f"--out {path} is the input itself; writing it would destroy the input")
    for folder in kept_folders:
        if path.exists() and path.is_relative_to(Path(folder).expanduser().resolve()):
            raise ClipmemError(f"--out {path} is a file of the run in {folder}; writing it would break the run")
    if path.exists() and not force:
        raise ClipmemError(f"--out {path} already exists; add --force to overwrite it")
    for parent in path.parents:
        if parent.exists():
            if not parent.is_dir():
                raise ClipmemError(f"--out {path} cannot be written: {parent} is a file, not a folder")
            break
    if path.parent.is_dir():
        remove_abandoned_temps(path)
