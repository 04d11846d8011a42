"""Run ``clipmem ARGS`` and SIGKILL this very process at an instrumented point: kill -9 where we choose.

    python tests/kill_driver.py MODULE.ATTR:N:WHEN -- run --data ... --out ...

MODULE.ATTR names a function looked up at call time (``faiss.write_index``, ``clipmem_core.train._save_checkpoint``,
``PIL.Image.Image.save`` …); on its N-th call the process kills itself with SIGKILL ``before`` the call or
``after`` it returns. Nothing is cleaned up, exactly as with ``kill -9`` from outside. Used by test_faults.py.
"""

from __future__ import annotations

import functools
import importlib
import os
import signal
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def _owner(dotted: str):
    """The object holding the attribute: the longest importable module prefix, then attributes."""
    parts = dotted.split(".")
    for cut in range(len(parts) - 1, 0, -1):
        try:
            owner = importlib.import_module(".".join(parts[:cut]))
        except ImportError:
            continue
        for name in parts[cut:-1]:
            owner = getattr(owner, name)
        return owner, parts[-1]
    raise SystemExit(f"cannot find {dotted}")


def instrument(spec: str) -> None:
    target, count, when = spec.rsplit(":", 2)
    owner, name = _owner(target)
    original = getattr(owner, name)
    calls = {"n": 0}

    @functools.wraps(original)
    def wrapper(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == int(count) and when == "before":
            os.kill(os.getpid(), signal.SIGKILL)
        result = original(*args, **kwargs)
        if calls["n"] == int(count) and when == "after":
            os.kill(os.getpid(), signal.SIGKILL)
        return result

    setattr(owner, name, wrapper)


if __name__ == "__main__":
    spec, separator, *argv = sys.argv[1:]
    assert separator == "--", __doc__
    if spec != "none":
        instrument(spec)
    from clipmem_core.cli import main

    sys.exit(main(argv))
