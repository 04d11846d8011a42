"""How long a `clipmem` command takes before it does any work: its interpreter, its imports, its parser.

Each command is a fresh process (as a user's shell starts it), timed best of ``--repeats`` wall times; the
baseline, measured in the same run, is a bare interpreter (``python -c pass``) and ``import pandas``, the
one data library most commands need anyway. A command's overhead is its time minus the bare interpreter's.

    python -m bench.bench_startup --repeats 7
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time

COMMANDS = {
    "python -c pass (baseline)": ["-c", "pass"],
    "import pandas (baseline)": ["-c", "import pandas"],
    "clipmem --version": ["-m", "clipmem_core", "--version"],
    "clipmem review export --help": ["-m", "clipmem_core", "review", "export", "--help"],
}


def best_wall_s(args: list[str], repeats: int) -> float:
    """The fastest of ``repeats`` runs: the least disturbed by whatever else the machine does."""
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        subprocess.run([sys.executable, *args], check=True, capture_output=True)
        times.append(time.perf_counter() - start)
    return min(times)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=7, help="runs per command; the fastest counts (default 7)")
    args = parser.parse_args(argv)
    timed = {name: best_wall_s(command, args.repeats) for name, command in COMMANDS.items()}
    bare = timed["python -c pass (baseline)"]
    pandas = timed["import pandas (baseline)"] - bare
    print(f"{'command':<32} {'wall':>8} {'over python':>12} {'/ import pandas':>16}")
    for name, wall in timed.items():
        print(f"{name:<32} {wall:>7.3f}s {wall - bare:>11.3f}s {(wall - bare) / pandas:>16.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
