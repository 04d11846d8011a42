"""A corpus of bad input: every class of hostile data, damaged file, odd option and broken run folder that
clipmem's library and CLI must survive (issue 12).

Each `Case` builds its input under a `Workspace` and returns the ``clipmem`` command line to run on it,
with what must happen: one error line naming the problem (exit 2, never a traceback), or success with
``valid`` samples kept. ``tests/test_corpus.py`` runs every case through the CLI in-process and checks,
besides the outcome, that nothing was written outside ``out/`` and that a rerun meets the same outcome
(nothing half-written blocks it).

To look at the files themselves::

    python -m tests.corpus /tmp/corpus          # one folder per class, with its command in command.txt
"""

from __future__ import annotations

from .cases import CASES, Case
from .workspace import Workspace

__all__ = ["CASES", "Case", "Workspace", "build_all"]


def build_all(folder) -> list[tuple[Case, list[str]]]:
    """Write every class under ``folder/<area>/<name>/``; returns each case with its command line."""
    from pathlib import Path

    built = []
    for case in CASES:
        workspace = Workspace(Path(folder) / case.area / case.name)
        argv = case.build(workspace)
        (workspace.root / "command.txt").write_text("clipmem " + " ".join(argv) + "\n", encoding="utf-8")
        built.append((case, argv))
    return built
