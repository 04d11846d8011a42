"""python -m tests.corpus DIR: write every bad-input class under DIR (see tests/corpus/__init__.py)."""

from __future__ import annotations

import sys
from collections import Counter

from . import build_all


def main() -> int:
    if len(sys.argv) != 2:
        print("usage: python -m tests.corpus DIR", file=sys.stderr)
        return 2
    built = build_all(sys.argv[1])
    areas = Counter(case.area for case, _ in built)
    print(f"{len(built)} classes written to {sys.argv[1]}: " + ", ".join(f"{n} {a}" for a, n in sorted(areas.items())))
    return 0


if __name__ == "__main__":
    sys.exit(main())
