"""The files a bad-input class is made of: a workspace folder with small builders for each kind of input.

Inputs go under ``in/``; everything clipmem may write goes under ``out/`` (run folders, the injected
CSV, the WebDataset extraction cache, the review database), so "no file written outside the output
folder" is a comparison of ``in/`` before and after.
"""

from __future__ import annotations

import atexit
import csv
import io
import json
import shutil
import struct
import tarfile
import tempfile
import zlib
from functools import cache
from pathlib import Path

import numpy as np
from PIL import Image

GOOD_ROWS = 6  # every table holds this many good rows unless a class says otherwise
INJECT_OUT = "noisy.csv"


@cache
def image_bytes(fmt: str = "PNG", size: int = 8, mode: str = "RGB") -> bytes:
    """A small real image, made once: a gradient, so lossy formats keep it decodable."""
    ramp = np.linspace(0, 255, size * size * 3).reshape(size, size, 3).astype(np.uint8)
    image = Image.fromarray(ramp, "RGB").convert(mode) if mode != "RGB" else Image.fromarray(ramp, "RGB")
    buf = io.BytesIO()
    image.save(buf, fmt)
    return buf.getvalue()


def noisy_jpeg(size: int = 64) -> bytes:
    """A JPEG whose scan data is long enough to cut in the middle."""
    pixels = np.random.default_rng(0).integers(0, 255, (size, size, 3), dtype=np.uint8)
    buf = io.BytesIO()
    Image.fromarray(pixels).save(buf, "JPEG", quality=90)
    return buf.getvalue()


def png_claiming(width: int, height: int) -> bytes:
    """A PNG header announcing a size without its pixels: a decompression bomb, cheaply."""

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"")) + chunk(b"IEND", b"")


class RunsCode:
    """A pickled object whose loading runs a command: what a tampered checkpoint holds."""

    def __init__(self, marker: Path):
        self.marker = str(marker)

    def __reduce__(self):
        import os

        return (os.system, (f"touch {self.marker}",))


@cache
def _template_run() -> Path:
    """One fake run per process (12 samples s00000 …), copied into each workspace that needs one.

    Removed when the process exits: each test worker made one, and they piled up in /tmp.
    """
    from clipmem_core.testing import fake_run

    root = Path(tempfile.mkdtemp(prefix="clipmem-corpus-"))
    atexit.register(shutil.rmtree, root, ignore_errors=True)
    return fake_run(root, "template", n=12).path


class Workspace:
    """A folder for one class: ``in/`` (inputs, never written by clipmem) and ``out/`` (its outputs)."""

    def __init__(self, root: Path):
        self.root = Path(root)
        self.inputs = self.root / "in"
        self.out = self.root / "out"
        self.inputs.mkdir(parents=True, exist_ok=True)
        self.out.mkdir(parents=True, exist_ok=True)
        self.marker = self.root / "code-ran"  # a tampered pickle would create it

    @property
    def data_cache(self) -> Path:
        return self.out / "datacache"

    @property
    def db_url(self) -> str:
        return f"sqlite:///{self.out / 'review.sqlite'}"

    # -- files --------------------------------------------------------------------------------

    def write(self, name: str, content: bytes | str) -> Path:
        path = self.inputs / name
        path.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, str):
            path.write_text(content, encoding="utf-8")
        else:
            path.write_bytes(content)
        return path

    def images(self, n: int = GOOD_ROWS, folder: str = "images", fmt: str = "PNG") -> list[str]:
        names = [f"{folder}/{i}.{fmt.lower()}" for i in range(n)]
        for name in names:
            self.write(name, image_bytes(fmt))
        return names

    def rows(self, n: int = GOOD_ROWS) -> list[dict]:
        """``n`` good rows whose images exist; captions all differ."""
        return [{"filepath": p, "caption": f"a red circle number {i}"} for i, p in enumerate(self.images(n))]

    def table(self, rows: list[dict], name: str = "data.csv") -> Path:
        """A CSV (quoted as needed) or, for a .tsv name, tab-separated lines written as they are."""
        columns = list(dict.fromkeys(k for row in rows for k in row))
        if name.endswith(".tsv"):
            lines = ["\t".join(columns)] + ["\t".join(str(r.get(c, "")) for c in columns) for r in rows]
            return self.write(name, "\n".join(lines) + "\n")
        buf = io.StringIO()
        writer = csv.writer(buf, lineterminator="\n")
        writer.writerow(columns)
        writer.writerows([[r.get(c, "") for c in columns] for r in rows])
        return self.write(name, buf.getvalue())

    def coco(self, images: list, annotations: list, name: str = "captions.json") -> Path:
        return self.write(name, json.dumps({"images": images, "annotations": annotations}))

    def shard(self, name: str, members: list[tuple[str, bytes | str | dict]]) -> Path:
        """A tar of (name, content) members; str is UTF-8 text, dict is JSON."""
        path = self.inputs / name
        path.parent.mkdir(parents=True, exist_ok=True)
        with tarfile.open(path, "w") as tar:
            for member, content in members:
                data = json.dumps(content).encode() if isinstance(content, dict) else content
                data = data.encode() if isinstance(data, str) else data
                info = tarfile.TarInfo(member)
                info.size, info.mtime = len(data), 1_700_000_000
                tar.addfile(info, io.BytesIO(data))
        return path

    def good_shard(self, name: str = "shard.tar", n: int = GOOD_ROWS, first: int = 0) -> Path:
        members = []
        for i in range(first, first + n):
            members += [(f"{i:06d}.png", image_bytes()), (f"{i:06d}.txt", f"a blue square number {i}")]
        return self.shard(name, members)

    def run(self, name: str = "run1") -> Path:
        """A copy of a complete fake run (12 samples s00000 … s00011) under ``in/runs/``."""
        target = self.inputs / "runs" / name
        shutil.copytree(_template_run(), target)
        return target

    # -- command lines ------------------------------------------------------------------------

    def inject(self, data: Path | str, *extra: str) -> list[str]:
        """inject-miscaptions writes one row per usable sample: the count of valid samples kept."""
        out = self.out / INJECT_OUT
        return ["inject-miscaptions", "--data", str(data), "--out", str(out), "--fraction", "0.3", "--force", *extra]

    def run_command(self, data: Path | str, *extra: str) -> list[str]:
        return ["run", "--data", str(data), "--out", str(self.out / "run"), "--epochs", "1", *extra]

    def injected_rows(self) -> int | None:
        path = self.out / INJECT_OUT
        if not path.exists():
            return None
        with open(path, newline="", encoding="utf-8") as fh:
            return sum(1 for _ in csv.DictReader(fh))
