"""The openclipart builder's captions: title and keywords from each SVG's metadata, read as a person would."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]

SVG = """<svg xmlns:dc="http://purl.org/dc/elements/1.1/"><metadata><rdf:RDF><cc:Work>
<dc:title>Croissant (B &amp;amp; W)</dc:title>
<dc:description>Gelato all&amp;#39;italiana</dc:description>
<dc:subject><rdf:Bag><rdf:li>food</rdf:li><rdf:li>Baden-W&amp;uuml;rttemberg</rdf:li></rdf:Bag></dc:subject>
<dc:creator><cc:Agent><dc:title>someone</dc:title></cc:Agent></dc:creator>
</cc:Work></rdf:RDF></metadata></svg>"""


@pytest.fixture(autouse=True)
def _keep_pillows_bomb_guard(monkeypatch):
    """The builder lifts Pillow's decompression-bomb limit on import (it reads a trusted package); put it back
    afterwards, or the tests that run next in this process would meet no limit."""
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", Image.MAX_IMAGE_PIXELS)


def _builder():
    spec = importlib.util.spec_from_file_location("build_openclipart", ROOT / "scripts" / "build_openclipart.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up by name
    spec.loader.exec_module(module)
    return module


def test_titles_escaped_twice_by_the_source_read_as_plain_text():
    title, keywords, description = _builder().parse_svg_metadata(SVG)
    assert title == "Croissant (B & W)"
    assert keywords == ("food", "Baden-Württemberg")
    assert description == "Gelato all'italiana"


def test_plain_ampersands_and_words_are_left_as_they_are():
    assert _builder()._text("Tom & Jerry  &amp; friends") == "Tom & Jerry & friends"
