"""Every class of the bad-input corpus (tests/corpus) through the CLI: a clear outcome, nothing lost,
nothing written outside the output folder, nothing half-written that blocks a rerun."""

from __future__ import annotations

import logging
from collections import Counter
from pathlib import Path

import pytest
from corpus import CASES, Workspace

from clipmem_core.cli import main


def snapshot(folder: Path) -> dict[str, tuple]:
    """Every path under ``folder`` with its type, size and mtime (links as links, never followed)."""
    found = {}
    for path in sorted(folder.rglob("*")):
        stat = path.lstat()
        found[path.relative_to(folder).as_posix()] = (stat.st_mode, stat.st_size, stat.st_mtime_ns)
    return found


@pytest.fixture
def clipmem(capsys, caplog):
    """``clipmem ARGS`` in this process: (exit code, stdout, stderr with the log lines)."""

    def call(argv: list[str]) -> tuple[int, str, str]:
        capsys.readouterr()
        caplog.clear()
        with caplog.at_level(logging.INFO, logger="clipmem"):
            try:
                code = main(argv)
            except SystemExit as exc:  # argparse usage errors
                code = exc.code
        out, err = capsys.readouterr()
        return int(code or 0), out, err + "\n".join(f"clipmem: {r.getMessage()}" for r in caplog.records)

    return call


def test_the_corpus_has_sixty_classes_or_more_in_every_area():
    areas = Counter(case.area for case in CASES)
    assert len(CASES) >= 60 and len({case.name for case in CASES}) == len(CASES)
    assert {"ingest", "options", "run folders", "review"} <= set(areas) and min(areas.values()) >= 10


@pytest.mark.parametrize("case", CASES, ids=[case.name for case in CASES])
def test_bad_input_class(case, tmp_path, monkeypatch, clipmem):
    workspace = Workspace(tmp_path)
    monkeypatch.setenv("CLIPMEM_DATA_CACHE", str(workspace.data_cache))
    monkeypatch.setenv("CLIPMEM_DB_URL", workspace.db_url)
    monkeypatch.delenv("CLIPMEM_LEADS", raising=False)
    argv = case.build(workspace)
    inputs = snapshot(workspace.inputs)

    code, out, err = clipmem(argv)
    assert "Traceback" not in err
    errors = [line for line in err.splitlines() if line.startswith("clipmem: error:")]
    if case.error is None:
        assert code == 0 and not errors, err
    else:
        assert code == 2 and len(errors) == 1 and case.error in errors[0], err
    assert snapshot(workspace.inputs) == inputs, "a file outside the output folder was written"
    assert not workspace.marker.exists(), "a pickled payload ran"
    if case.valid is not None:
        assert workspace.injected_rows() == case.valid, "a valid sample was lost"
    if case.check is not None:
        case.check(workspace, out, err)

    again, _out_again, err_again = clipmem(argv)
    assert again == code, f"a rerun met another outcome: {err_again}"
    assert [line for line in err_again.splitlines() if line.startswith("clipmem: error:")] == errors
    if case.valid is not None:
        assert workspace.injected_rows() == case.valid
