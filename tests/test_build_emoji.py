"""The held-out emoji dataset's builder: one image per drawable character, captioned with its Unicode name."""

from __future__ import annotations

import importlib.util
from pathlib import Path

from PIL import Image, ImageFont

from clipmem_core.data import read_dataset

ROOT = Path(__file__).resolve().parents[1]


def _builder():
    spec = importlib.util.spec_from_file_location("build_emoji", ROOT / "scripts" / "build_emoji.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_each_drawable_character_becomes_an_image_captioned_with_its_name(tmp_path):
    builder = _builder()
    font = ImageFont.load_default(size=builder.BITMAP_SIZE)  # Pillow's own font: no emoji, but real glyphs
    count = builder.build(tmp_path, 32, font, "test font", chars=["A", "B", " ", "\U000e0000"])
    assert count == 2  # the space draws nothing; U+E0000 has no glyph
    dataset = read_dataset(tmp_path / "captions.csv", progress=False)
    assert dataset.samples["caption"].tolist() == ["latin capital letter a", "latin capital letter b"]
    for path in dataset.samples["filepath"]:
        with Image.open(tmp_path / path) as image:
            assert image.size == (32, 32) and image.mode == "RGB"
    assert "test font" in (tmp_path / "SOURCE.txt").read_text(encoding="utf-8")


def test_candidates_are_named_symbols_only():
    chars = _builder().candidates()
    assert "\U0001f600" in chars and "A" not in chars and len(chars) > 1000


def test_a_font_that_cannot_be_read_is_one_line_and_exit_2(tmp_path, capsys):
    bad = tmp_path / "not-a-font.ttf"
    bad.write_text("not a font", encoding="utf-8")
    assert _builder().main(["--out", str(tmp_path / "out"), "--font", str(bad)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("build_emoji: ") and err.count("\n") == 1 and "Traceback" not in err
