#!/usr/bin/env python3
"""Wall time of the test suite on every core (pytest-xdist) against one process, measured in the same run.

Issue 9's targets: ``make test-fast`` under 1 minute, ``make test`` under 10. This times the pytest part of
each selection twice, with ``-n auto`` (what the Makefile runs) and with ``-n 0`` (one process, the
baseline), and prints both and their ratio. Install, lint and PostgreSQL start-up are not included: time
``.ci/run`` for the whole CI job. Run it on a quiet machine; other load moves both columns.

    python -m bench.bench_tests                      # test-fast and test-pages
    python -m bench.bench_tests --selections full    # also the whole suite (needs CLIPMEM_TEST_PG_URL for
                                                     # the PostgreSQL tests, else they skip)
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# the Makefile's selections (keep in step with its test, test-fast and test-pages targets)
SELECTIONS = {
    "fast": ["-m", "not slow and not e2e and not pages"],
    "pages": ["-m", "pages and not slow"],
    "full": [],
}
TARGET_S = {"fast": 60, "full": 600}


def timed_pytest(selection: list[str], workers: str) -> tuple[float, str]:
    """Seconds of wall time for one pytest run, and its last line (the pass/fail count)."""
    command = [sys.executable, "-m", "pytest", "-q", "-n", workers, "--dist", "worksteal", *selection]
    started = time.perf_counter()
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, env=os.environ.copy())
    seconds = time.perf_counter() - started
    lines = [line for line in done.stdout.splitlines() if line.strip()]
    return seconds, (lines[-1] if lines else done.stderr[-300:])


def _counts(result: str) -> str:
    """'535 passed, 3 skipped in 70.88s (0:01:10)' -> '535 passed, 3 skipped'."""
    return result.split(" in ")[0]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--selections", default="fast,pages", help="comma-separated: " + ", ".join(SELECTIONS))
    args = parser.parse_args(argv)
    names = [name.strip() for name in args.selections.split(",") if name.strip()]
    unknown = set(names) - set(SELECTIONS)
    if unknown:
        parser.error(f"unknown selections: {', '.join(sorted(unknown))}")
    print(f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f} at the start\n")
    print("| selection | one process (s) | every core, -n auto (s) | speed-up | target | result |")
    print("|---|---:|---:|---:|---:|---|")
    for name in names:
        serial, serial_result = timed_pytest(SELECTIONS[name], "0")
        parallel, parallel_result = timed_pytest(SELECTIONS[name], "auto")
        target = TARGET_S.get(name)
        shown = f"{target} s" if target else "–"
        cells = [name, f"{serial:.0f}", f"{parallel:.0f}", f"{serial / parallel:.1f}x", shown, _counts(parallel_result)]
        print("| " + " | ".join(cells) + " |")
        if _counts(serial_result) != _counts(parallel_result):
            print(f"  (one process: {serial_result})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
