#!/usr/bin/env python3
"""Build an image-caption dataset from Debian's Noto Color Emoji font: each emoji drawn alone, captioned
with its Unicode name ("grinning face with smiling eyes").

Why this dataset: it was not used to choose the combined ranking's recipe (docs/detection.md chose it on
shapes, tuxpaint and openclipart), so it tests that recipe on data it has never seen. Its captions are
short and exact, like tuxpaint's, but the pictures are photographic-looking colour glyphs.

The ``fonts-noto-color-emoji`` .deb is fetched with ``apt-get download`` into a temporary folder and
unpacked with ``dpkg-deb -x``; nothing is installed system-wide (``--font`` uses a font file you have).
Only single code points are drawn (no sequences, skin tones or flags), those Python's ``unicodedata``
names and the font has a glyph for.

Output::

    <out>/images/<codepoint>.png   RGB, size x size, on white
    <out>/captions.csv             filepath,caption (filepath relative to the CSV)
    <out>/SOURCE.txt               source, package version, licence

Usage: build_emoji.py --out DIR [--size 64] [--font PATH]
"""

from __future__ import annotations

import argparse
import csv
import subprocess
import sys
import tempfile
import unicodedata
from pathlib import Path

from PIL import Image, ImageDraw, ImageFont

PACKAGE = "fonts-noto-color-emoji"
FONT_IN_PACKAGE = "usr/share/fonts/truetype/noto/NotoColorEmoji.ttf"
BITMAP_SIZE = 109  # the only size the font's colour bitmaps (CBDT) come in
CANVAS = (160, 160)
# Where single-code-point emoji live; other code points in these ranges are skipped when the font has none.
RANGES = ((0x2000, 0x2BFF), (0x3000, 0x303F), (0x3290, 0x329F), (0x1F000, 0x1FAFF))
WHITE = (255, 255, 255)


def fetch_font(folder: Path) -> tuple[Path, str]:
    """The font file unpacked from the Debian package, and the package's version."""
    subprocess.run(["apt-get", "download", PACKAGE], cwd=folder, check=True, capture_output=True)
    deb = next(folder.glob(f"{PACKAGE}_*.deb"))
    subprocess.run(["dpkg-deb", "-x", str(deb), str(folder / "root")], check=True)
    version = subprocess.run(
        ["dpkg-deb", "-f", str(deb), "Version"], check=True, capture_output=True, text=True
    ).stdout.strip()
    return folder / "root" / FONT_IN_PACKAGE, version


def draw(char: str, font: ImageFont.FreeTypeFont) -> Image.Image | None:
    """The glyph on white, cropped to its ink; None when the font draws nothing for it."""
    canvas = Image.new("RGBA", CANVAS, (255, 255, 255, 0))
    ImageDraw.Draw(canvas).text((10, 10), char, font=font, embedded_color=True)
    box = canvas.getbbox()
    if box is None:
        return None
    flat = Image.new("RGB", CANVAS, WHITE)
    flat.paste(canvas, mask=canvas.getchannel("A"))
    return flat.crop(box)


def square(image: Image.Image, size: int) -> Image.Image:
    """Centred on a white square, then scaled to ``size``."""
    side = max(image.size)
    out = Image.new("RGB", (side, side), WHITE)
    out.paste(image, ((side - image.width) // 2, (side - image.height) // 2))
    return out.resize((size, size), Image.Resampling.LANCZOS)


def candidates() -> list[str]:
    """Named symbol code points in the emoji ranges."""
    chars = (chr(cp) for low, high in RANGES for cp in range(low, high + 1))
    return [c for c in chars if unicodedata.category(c) == "So" and unicodedata.name(c, "")]


def build(out: Path, size: int, font: ImageFont.FreeTypeFont, source: str, chars: list[str] | None = None) -> int:
    """Write the dataset from ``chars`` (default: every candidate); returns the number of images."""
    missing = draw("\U000e0000", font)  # a code point the font lacks: what "no glyph" looks like, if anything
    missing_bytes = missing.tobytes() if missing is not None else None
    images = out / "images"
    images.mkdir(parents=True, exist_ok=True)
    rows = []
    for char in candidates() if chars is None else chars:
        glyph = draw(char, font)
        if glyph is None or glyph.tobytes() == missing_bytes:
            continue
        name = f"{ord(char):05x}.png"
        square(glyph, size).save(images / name)
        rows.append({"filepath": f"images/{name}", "caption": unicodedata.name(char).lower()})
    with (out / "captions.csv").open("w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=["filepath", "caption"])
        writer.writeheader()
        writer.writerows(rows)
    (out / "SOURCE.txt").write_text(
        f"Noto Color Emoji ({source}), SIL Open Font License 1.1; captions: Unicode character names "
        f"(Python {sys.version.split()[0]} unicodedata {unicodedata.unidata_version}).\n",
        encoding="utf-8",
    )
    return len(rows)


def _emoji_font(path: Path) -> ImageFont.FreeTypeFont:
    try:
        return ImageFont.truetype(str(path), BITMAP_SIZE)
    except OSError as exc:  # FreeType's own words ("cannot open resource") do not name the file
        raise OSError(f"{path} is not a readable colour-emoji font ({exc})") from exc


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", required=True, type=Path)
    parser.add_argument("--size", type=int, default=64, help="image side in pixels (default 64)")
    parser.add_argument("--font", type=Path, help="a NotoColorEmoji.ttf to use instead of the Debian package")
    args = parser.parse_args(argv)
    if args.size < 1:
        parser.error(f"--size must be a positive number of pixels, not {args.size}")
    try:
        if args.font:
            count = build(args.out, args.size, _emoji_font(args.font), f"font file {args.font.name}")
        else:
            with tempfile.TemporaryDirectory() as tmp:
                font, version = fetch_font(Path(tmp))
                count = build(args.out, args.size, _emoji_font(font), f"Debian {PACKAGE} {version}")
    except subprocess.CalledProcessError as exc:
        failed = " ".join(exc.cmd)
        print(f"build_emoji: could not fetch {PACKAGE} ({failed} failed); pass --font instead", file=sys.stderr)
        return 2
    except OSError as exc:  # no apt-get, a font file that is missing or no emoji font, an unwritable --out
        print(f"build_emoji: {exc}", file=sys.stderr)
        return 2
    print(f"{count} images and captions in {args.out}")
    return 0 if count else 1


if __name__ == "__main__":
    sys.exit(main())
