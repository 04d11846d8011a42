"""The CLI as users and other tools call it: exit codes, one-line errors, outputs."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from clipmem_core.synthetic import make_shapes_dataset

ROOT = Path(__file__).resolve().parents[1]


def clipmem(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "clipmem_core", *map(str, args)], cwd=ROOT, capture_output=True, text=True, timeout=600
    )


def assert_clean_error(result: subprocess.CompletedProcess, fragment: str) -> None:
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("clipmem: error:") and fragment in last, result.stderr


@pytest.mark.parametrize(
    "command", ["run", "inject-miscaptions", "neighbours", "summary", "import-run", "list", "review"]
)
def test_every_command_has_help(command):
    result = clipmem(command, "--help")
    assert result.returncode == 0 and "usage:" in result.stdout


@pytest.fixture(scope="module")
def shapes(tmp_path_factory) -> Path:
    return make_shapes_dataset(tmp_path_factory.mktemp("cli"), 40, seed=1)


def _csv(tmp_path: Path, shapes: Path, mutate) -> Path:
    frame = pd.read_csv(shapes)
    frame["filepath"] = [str(shapes.parent / p) for p in frame["filepath"]]
    frame = mutate(frame)
    path = tmp_path / "bad.csv"
    frame.to_csv(path, index=False)
    return path


def test_bad_input_gives_one_line_and_exit_2(tmp_path, shapes):
    out = tmp_path / "cache" / "x"
    assert_clean_error(clipmem("run", "--data", tmp_path / "missing.csv", "--out", out), "missing.csv")
    no_columns = _csv(tmp_path, shapes, lambda f: f.rename(columns={"caption": "text"}))
    assert_clean_error(clipmem("run", "--data", no_columns, "--out", out), "caption")
    assert_clean_error(clipmem("run", "--data", shapes, "--out", out, "--model", "ViT-Nope"), "unknown model")
    assert_clean_error(clipmem("summary", "--run", shapes.parent), "not a clipmem run")
    assert_clean_error(clipmem("neighbours", "--run", tmp_path, "--sample-id", "x"), "not a clipmem run")
    assert_clean_error(
        clipmem("inject-miscaptions", "--data", shapes, "--out", tmp_path / "n.csv", "--fraction", "1.5"), "fraction"
    )
    assert not out.exists()


def test_bad_rows_fail_or_are_skipped_and_reported(tmp_path, shapes):
    Path(shapes.parent / "images" / "corrupt.png").write_bytes(b"\x89PNG not really")

    def add_bad_rows(frame):
        bad = pd.DataFrame(
            {
                "filepath": [str(shapes.parent / "images" / "corrupt.png"), frame["filepath"][1]],
                "caption": ["a corrupt image", "   "],
            }
        )
        return pd.concat([frame, bad], ignore_index=True)

    data = _csv(tmp_path, shapes, add_bad_rows)
    failing = clipmem("run", "--data", data, "--out", tmp_path / "c" / "fail", "--on-error", "fail")
    assert_clean_error(failing, "row 41")
    skipping = clipmem("run", "--data", data, "--out", tmp_path / "c" / "skip", "--epochs", "1", "--augmentations", "1")
    assert skipping.returncode == 0, skipping.stderr
    assert "skipped 2 of 42 rows" in skipping.stderr
    report = pd.read_csv(tmp_path / "c" / "skip" / "skipped.csv")
    assert sorted(report["row"]) == [41, 42]
    assert any("unreadable" in r for r in report["reason"]) and any("empty" in r for r in report["reason"])
    injected = clipmem(
        "inject-miscaptions", "--data", data, "--out", tmp_path / "noisy.csv", "--fraction", "0.25", "--seed", "3"
    )
    assert injected.returncode == 0, injected.stderr
    noisy = pd.read_csv(tmp_path / "noisy.csv")
    assert len(noisy) == 40 and noisy["is_miscaptioned"].sum() == 10


@pytest.mark.slow
def test_summary_and_neighbours_on_a_run(tiny_run):
    result = clipmem("summary", "--run", tiny_run.path, "--json")
    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout)
    detection = summary["detection"]["detectors"]
    assert detection["clipmem"]["auroc"] > 0.5
    assert summary["splits"]["splits"]["candidate"]["clipmem_from_f"]["mean"] > 0
    text = clipmem("summary", "--run", tiny_run.path)
    assert "Welch t-test" in text.stdout and "auroc" in text.stdout
    sample = tiny_run.scores["sample_id"].iloc[0]
    for mode in ("image", "text", "image2text", "text2image"):
        found = clipmem(
            "neighbours", "--run", tiny_run.path, "--sample-id", sample, "--k", "5", "--mode", mode, "--json"
        )
        assert found.returncode == 0, found.stderr
        neighbours = json.loads(found.stdout)
        assert len(neighbours) == 5
        similarities = [n["similarity"] for n in neighbours]
        assert similarities == sorted(similarities, reverse=True)
    lines = clipmem("neighbours", "--run", tiny_run.path, "--sample-id", sample, "--k", "3").stdout.splitlines()
    assert len(lines) == 3
    assert_clean_error(clipmem("neighbours", "--run", tiny_run.path, "--sample-id", "nope"), "nope")
    listing = clipmem("list", "--cache", tiny_run.path.parent)
    assert tiny_run.name in listing.stdout


@pytest.mark.slow
def test_import_run_rebuilds_a_run_from_its_own_files(tiny_run, noisy_shapes, tmp_path):
    scores = tiny_run.scores[["sample_id", "split", "align_f", "align_g", "clip_score_f", "clip_score_g"]]
    scores.to_parquet(tmp_path / "scores.parquet")
    np.save(tmp_path / "img.npy", np.asarray(tiny_run.image_embeddings) * 3.0)  # import normalises
    np.save(tmp_path / "txt.npy", np.asarray(tiny_run.text_embeddings))
    out = tmp_path / "cache" / "imported"
    result = clipmem(
        "import-run",
        "--data",
        noisy_shapes,
        "--scores",
        tmp_path / "scores.parquet",
        "--image-embeddings",
        tmp_path / "img.npy",
        "--text-embeddings",
        tmp_path / "txt.npy",
        "--out",
        out,
    )
    assert result.returncode == 0, result.stderr
    from clipmem_core import load_run

    imported = load_run(out)
    np.testing.assert_allclose(imported.scores["clipmem"], tiny_run.scores["clipmem"], atol=1e-5)
    np.testing.assert_allclose(imported.image_embeddings, tiny_run.image_embeddings, atol=1e-5)
    assert imported.scores["is_miscaptioned"].sum() == tiny_run.scores["is_miscaptioned"].sum()
    np.save(tmp_path / "short.npy", np.zeros((3, 4), dtype=np.float32))
    assert_clean_error(
        clipmem(
            "import-run",
            "--data",
            noisy_shapes,
            "--scores",
            tmp_path / "scores.parquet",
            "--image-embeddings",
            tmp_path / "short.npy",
            "--text-embeddings",
            tmp_path / "short.npy",
            "--out",
            tmp_path / "cache" / "bad",
        ),
        "shape",
    )
