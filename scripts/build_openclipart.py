#!/usr/bin/env python3
"""Build an image-caption dataset from Debian's public-domain openclipart packages.

Images come from ``openclipart-png``; captions from the RDF metadata of the matching file in
``openclipart-svg`` (``dc:title``, ``dc:subject`` keywords, ``dc:description``), as
"<title>" or "<title>: kw1, kw2". The captions are noisy, like web alt-text, which is the point.

Both .deb files are fetched with ``apt-get download`` into a temporary folder and unpacked with
``dpkg-deb -x``; nothing is installed system-wide.

Output::

    <out>/images/<category>__<name>.png   RGB, size x size, transparency flattened onto white
    <out>/captions.csv                    filepath,caption (filepath relative to the CSV)
    <out>/metadata.csv                    filepath,caption,category,title,keywords,description
    <out>/SOURCE.txt                      source, package versions, licence

Usage: build_openclipart.py --out DIR [--size 64] [--limit N --seed 0] [--jobs J]
"""

from __future__ import annotations

import argparse
import csv
import html
import os
import random
import re
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from multiprocessing import Pool
from pathlib import Path

from PIL import Image
from tqdm import tqdm

PACKAGES = ("openclipart-png", "openclipart-svg")
PNG_ROOT = "usr/share/openclipart/png"
SVG_ROOT = "usr/share/openclipart/svg"
MAX_KEYWORDS = 4
# Keywords that say nothing about the picture (openclipart's own filing labels).
UNINFORMATIVE = {"", "unsorted", "hash", "clip art", "clipart", "image", "media", "png", "svg", "public domain"}
WHITE = (255, 255, 255, 255)
Image.MAX_IMAGE_PIXELS = None  # trusted Debian package; a few posters exceed Pillow's bomb guard

_WORK = re.compile(r"<(?:\w+:)?Work\b.*?</(?:\w+:)?Work>", re.S)
_AGENT = re.compile(r"<(?:\w+:)?Agent\b.*?</(?:\w+:)?Agent>", re.S)
_TAG = re.compile(r"<[^>]+>")


@dataclass(frozen=True)
class Clip:
    """One picture: its PNG, where it goes, and the text parsed from its SVG."""

    png: str
    filepath: str
    category: str
    title: str
    keywords: tuple[str, ...]
    description: str

    @property
    def caption(self) -> str:
        kws = [k for k in self.keywords if k.lower() != self.title.lower()][:MAX_KEYWORDS]
        return f"{self.title}: {', '.join(kws)}" if kws else self.title


def _text(fragment: str) -> str:
    """The fragment's words, markup dropped and entities decoded, twice where the site escaped twice.

    Some titles were escaped before they were written into the SVG ("B &amp;amp; W"): decoded once they
    still read "B &amp; W" in a caption; a text model should see "B & W", as a person would.
    """
    text = _TAG.sub(" ", fragment)
    for _ in range(3):
        decoded = html.unescape(text)
        if decoded == text:
            break
        text = decoded
    return " ".join(text.split())


def _element(block: str, name: str) -> str:
    m = re.search(rf"<(?:\w+:)?{name}\b[^>]*?(?:/>|>(.*?)</(?:\w+:)?{name}>)", block, re.S)
    return (m.group(1) or "") if m else ""


def parse_svg_metadata(svg_text: str) -> tuple[str, tuple[str, ...], str]:
    """(title, keywords, description) of the cc:Work, ignoring the creator/publisher agents' titles."""
    work = _WORK.search(svg_text)
    block = _AGENT.sub("", work.group(0)) if work else ""
    title = _text(_element(block, "title"))
    description = _text(_element(block, "description"))
    subject = _element(block, "subject")
    items = re.findall(r"<(?:\w+:)?li\b[^>]*>(.*?)</(?:\w+:)?li>", subject, re.S) or [subject]
    keywords: list[str] = []
    for item in items:
        for kw in re.split(r"[,;]", _text(item)):
            kw = kw.replace("_", " ").strip()
            if kw.lower() not in UNINFORMATIVE and kw not in keywords:
                keywords.append(kw)
    return title, tuple(keywords), description


def title_from_stem(stem: str) -> str:
    """Fallback title from a file name like ``chemistry_flask_matthew__02``."""
    return " ".join(re.sub(r"_+\d+$", "", stem).replace("_", " ").split()).capitalize()


def find_clips(png_root: Path, svg_root: Path) -> list[Clip]:
    clips = []
    for png in sorted(png_root.rglob("*.png")):
        rel = png.relative_to(png_root).with_suffix("")
        svg = svg_root / rel.with_suffix(".svg")
        meta = svg.read_text(encoding="utf-8", errors="replace") if svg.is_file() else ""
        title, keywords, description = parse_svg_metadata(meta)
        clips.append(
            Clip(
                png=str(png),
                filepath=f"images/{rel.as_posix().replace('/', '__')}.png",
                category=rel.parts[0] if len(rel.parts) > 1 else "",
                title=title or description or title_from_stem(rel.name),
                keywords=keywords,
                description=description,
            )
        )
    return clips


def square_on_white(im: Image.Image, size: int) -> Image.Image:
    """Flatten onto white and pad to a centred square before resizing, so nothing is distorted.

    Shrinks first (alpha-premultiplied, to 4x the target) so the package's few 200-megapixel
    posters do not need a full-size canvas.
    """
    im = im.convert("RGBA")
    im.thumbnail((4 * size, 4 * size), Image.LANCZOS)
    side = max(im.size)
    canvas = Image.new("RGBA", (side, side), WHITE)
    canvas.alpha_composite(im, ((side - im.width) // 2, (side - im.height) // 2))
    return canvas.convert("RGB").resize((size, size), Image.LANCZOS)


def _convert(job: tuple[Clip, str, int]) -> tuple[Clip, str | None]:
    clip, out, size = job
    try:
        with Image.open(clip.png) as im:
            square_on_white(im, size).save(Path(out) / clip.filepath, optimize=True)
        return clip, None
    except Exception as exc:  # one broken file must not stop the build
        return clip, f"{clip.png}: {exc}"


def fetch_packages(workdir: Path) -> dict[str, str]:
    """apt-get download + dpkg-deb -x each package into workdir/pkg; returns {package: version}."""
    if subprocess.run(["apt-cache", "show", *PACKAGES], capture_output=True).returncode != 0:
        subprocess.run(["apt-get", "update", "-qq"], check=True)
    subprocess.run(["apt-get", "download", "-q", *PACKAGES], cwd=workdir, check=True)
    versions = {}
    for pkg in PACKAGES:
        deb = next(workdir.glob(f"{pkg}_*.deb"))
        versions[pkg] = subprocess.run(
            ["dpkg-deb", "-f", str(deb), "Version"], capture_output=True, text=True, check=True
        ).stdout.strip()
        subprocess.run(["dpkg-deb", "-x", str(deb), str(workdir / "pkg")], check=True)
    return versions


def write_csv(path: Path, header: list[str], rows: list[list[str]]) -> None:
    with open(path, "w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow(header)
        writer.writerows(rows)


def source_text(versions: dict[str, str], size: int, n: int, limit: int | None, seed: int, copyright_text: str) -> str:
    subset = f"seeded subset: --limit {limit} --seed {seed}" if limit else "all pictures"
    pkgs = "\n".join(f"  {p} {v}" for p, v in versions.items())
    return (
        f"Open Clip Art Library 0.18, from the Debian packages:\n{pkgs}\n\n"
        "Licence: public domain (every picture carries cc:license PublicDomain; see debian/copyright).\n"
        "Images: the package's PNGs, flattened onto white, padded to a square, resized to "
        f"{size}x{size} RGB.\n"
        "Captions: dc:title of the matching SVG, plus up to 4 dc:subject keywords "
        "('<title>: kw1, kw2'); the file name when the title is empty.\n"
        f"Samples: {n} ({subset}).\nBuilt by scripts/build_openclipart.py.\n\n"
        f"--- debian/copyright (openclipart-png) ---\n{copyright_text}"
    )


def build(out: Path, size: int, limit: int | None, seed: int, jobs: int) -> int:
    with tempfile.TemporaryDirectory(prefix="openclipart-") as tmp:
        work = Path(tmp)
        versions = fetch_packages(work)
        clips = find_clips(work / "pkg" / PNG_ROOT, work / "pkg" / SVG_ROOT)
        if limit and limit < len(clips):
            clips = sorted(random.Random(seed).sample(clips, limit), key=lambda c: c.filepath)
        if (out / "images").exists():
            shutil.rmtree(out / "images")
        (out / "images").mkdir(parents=True)
        kept, errors = [], []
        with Pool(jobs) as pool:
            results = pool.imap_unordered(_convert, [(c, str(out), size) for c in clips], chunksize=16)
            for clip, err in tqdm(results, total=len(clips), desc="openclipart", unit="img"):
                (errors if err else kept).append(err or clip)
        copyright_text = (work / "pkg/usr/share/doc/openclipart-png/copyright").read_text(errors="replace")
    for err in errors:
        print("skipped", err, file=sys.stderr)
    kept.sort(key=lambda c: c.filepath)
    write_csv(out / "captions.csv", ["filepath", "caption"], [[c.filepath, c.caption] for c in kept])
    write_csv(
        out / "metadata.csv",
        ["filepath", "caption", "category", "title", "keywords", "description"],
        [[c.filepath, c.caption, c.category, c.title, "; ".join(c.keywords), c.description] for c in kept],
    )
    (out / "SOURCE.txt").write_text(
        source_text(versions, size, len(kept), limit, seed, copyright_text), encoding="utf-8"
    )
    print(
        f"openclipart: {len(kept)} samples in {out} ({len(errors)} skipped, "
        f"{len({c.caption for c in kept})} distinct captions)"
    )
    return len(kept)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", required=True, type=Path)
    ap.add_argument("--size", type=int, default=64, help="side of the square output images (px)")
    ap.add_argument("--limit", type=int, help="keep a seeded random subset of N pictures")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--jobs", type=int, default=os.cpu_count() or 1)
    args = ap.parse_args(argv)
    return 0 if build(args.out.resolve(), args.size, args.limit, args.seed, args.jobs) else 1


if __name__ == "__main__":
    sys.exit(main())
