"""Images inside WebDataset shards, read in place: a member's bytes at its offset in the uncompressed tar.

A dataset read from shards names each image by a path *through* its shard, ``<folder>/<shard>.tar/<member>``
(the member's name normalised, as WebDataset keys are). Anything that opens an image goes through
`image_exists`, `image_stat` and `open_image_source`, which serve such a path from the tar and any
other path from the file system.

Why read in place rather than extract: at CC3M size extraction writes millions of small files and
doubles the disk the data takes. Why random access rather than webdataset's sequential streaming: a run
draws samples by index (a seeded DistributedSampler whose order and views are the same under any
number of processes and survive ``--resume``), scores rows in batches, and the dashboard shows any row
on demand. An uncompressed tar stores each member contiguously after its header, so an index of
(offset, size) per member gives a member in one seek and one read; webdataset's indexed ``wids``
datasets use the same design. The index is built by reading the headers only (no member data) and
cached per process, keyed by the shard's size and modification time so an edited shard is re-read.
A run's image list keeps only three integers a row (`Locations`), so data-loader workers forked from
it share the table instead of each indexing every shard.
"""

from __future__ import annotations

import io
import os
import posixpath
import tarfile
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import BinaryIO

import numpy as np

from .errors import ClipmemError

SHARD_SUFFIX = ".tar"


@dataclass(frozen=True)
class Member:
    """Where one member's bytes lie in its shard, and its recorded modification time (whole seconds)."""

    offset: int
    size: int
    mtime: int


def member_name(name: str) -> str:
    """A member's name as clipmem stores it: normalised like a WebDataset key (``./a/b.jpg`` -> ``a/b.jpg``)."""
    return posixpath.normpath(name)


def split_member_path(path: Path, known: dict[Path, bool] | None = None) -> tuple[Path, str] | None:
    """(shard, member name) when ``path`` runs through a ``.tar`` file, else None (a plain path).

    Only parents named ``*.tar`` are asked about, so a plain image path costs no extra system call;
    ``known`` remembers the answers across many paths.
    """
    known = {} if known is None else known
    for parent in path.parents:
        if parent.suffix == SHARD_SUFFIX:
            if parent not in known:
                known[parent] = parent.is_file()
            if known[parent]:
                return parent, path.relative_to(parent).as_posix()
    return None


def members(shard: Path) -> dict[str, Member]:
    """Every regular member of ``shard`` by normalised name (the last one wins, as tar extraction does)."""
    stat = shard.stat()
    return _members(str(shard), stat.st_size, stat.st_mtime_ns)


@lru_cache(maxsize=16)  # for on-demand reads (the dashboard); a run's images use `Locations`
def _members(shard: str, size: int, mtime_ns: int) -> dict[str, Member]:
    """The index of one shard version (``size`` and ``mtime_ns`` are the cache key, not read here)."""
    found: dict[str, Member] = {}
    try:
        with tarfile.open(shard, "r:") as tar:  # "r:" seeks past member data: only headers are read
            for info in tar:
                if info.isfile():
                    found[member_name(info.name)] = Member(info.offset_data, info.size, int(info.mtime))
    except (tarfile.TarError, EOFError, OSError) as exc:
        if not found:
            raise ClipmemError(f"shard {shard} is not a readable tar file ({exc})") from None
    return found


def _member(path: Path) -> tuple[Path, Member] | None:
    """The shard and index entry of a member path, None for a plain path; a missing member is an error."""
    where = split_member_path(path)
    if where is None:
        return None
    shard, name = where
    entry = members(shard).get(name)
    if entry is None:
        raise ClipmemError(f"{shard.name} has no member {name}")
    return shard, entry


def read_member(shard: Path, offset: int, size: int) -> bytes:
    """One member's bytes: one seek and one read; a shard cut short since it was indexed is an error."""
    with open(shard, "rb") as fh:
        fh.seek(offset)
        data = fh.read(size)
    if len(data) != size:
        raise ClipmemError(f"{shard.name} ends inside a member at byte {offset + len(data)}")
    return data


def image_exists(path: Path) -> bool:
    """True if ``path`` is a regular file, or a member of a shard."""
    try:
        where = split_member_path(path)
        return path.is_file() if where is None else where[1] in members(where[0])
    except (ClipmemError, OSError):
        return False


def image_stat(path: Path) -> tuple[int, int]:
    """(size in bytes, modification time in ns) of a file or a shard member, for content hashes.

    A member's time is its header's whole seconds, which is also what an extracted copy gets.
    """
    found = _member(path)
    if found is None:
        stat = path.stat()
        return stat.st_size, stat.st_mtime_ns
    return found[1].size, found[1].mtime * 1_000_000_000


def open_image_source(path: Path) -> BinaryIO | Path:
    """What ``PIL.Image.open`` reads: the path of a file, or a member's bytes in memory."""
    found = _member(path)
    if found is None:
        return path
    shard, entry = found
    return io.BytesIO(read_member(shard, entry.offset, entry.size))


def shards_root(shards: list[Path]) -> Path:
    """The folder the shards' member paths are relative to: the one folder that holds them all."""
    return Path(os.path.commonpath([str(s.parent) for s in shards]))


@dataclass
class Locations:
    """Where each row's image lies: its shard (an index into ``shards``; -1: a plain file) and byte range."""

    shards: list[Path]
    shard_of: np.ndarray
    offset: np.ndarray
    size: np.ndarray

    def member_bytes(self, row: int) -> bytes | None:
        """The bytes of ``row``'s member, or None when its image is a plain file."""
        shard = int(self.shard_of[row])
        if shard < 0:
            return None
        return read_member(self.shards[shard], int(self.offset[row]), int(self.size[row]))


def locate(paths: Sequence[Path]) -> Locations:
    """Each path's shard and byte range, indexing every shard once; a member no shard holds is an error."""
    n = len(paths)
    shard_of, offset, size = np.full(n, -1, np.int32), np.zeros(n, np.int64), np.zeros(n, np.int64)
    known: dict[Path, bool] = {}
    rows_of: dict[Path, list[tuple[int, str]]] = {}
    for row, path in enumerate(paths):
        where = split_member_path(path, known)
        if where is not None:
            rows_of.setdefault(where[0], []).append((row, where[1]))
    for number, (shard, rows) in enumerate(rows_of.items()):
        index = members(shard)
        for row, name in rows:
            entry = index.get(name)
            if entry is None:
                raise ClipmemError(f"{shard.name} has no member {name}")
            shard_of[row], offset[row], size[row] = number, entry.offset, entry.size
    return Locations(list(rows_of), shard_of, offset, size)
