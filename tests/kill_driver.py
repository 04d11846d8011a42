"""Run ``clipmem ARGS`` and SIGKILL that very process at an instrumented point: kill -9 where we choose.

    python tests/kill_driver.py MODULE.ATTR:N:WHEN -- run --data ... --out ...
    python tests/kill_driver.py --serve        # one request a line on stdin, one answer a line on stdout

MODULE.ATTR names a function looked up at call time (``faiss.write_index``, ``clipmem_core.train._save_checkpoint``,
``PIL.Image.Image.save`` …); on its N-th call the process kills itself with SIGKILL ``before`` the call or
``after`` it returns. Nothing is cleaned up, exactly as with ``kill -9`` from outside. Used by test_faults.py.

``--serve`` imports clipmem, torch and open_clip once, then forks one child per request
(``{"point": ..., "argv": [...], "log": path}``) and answers ``{"returncode": ...}`` when it ends. Why: a
fresh interpreter spends about 7 CPU seconds importing torch, open_clip and torchvision before the first
line of a run, and the fault tests start thirteen of them. A forked child is that fresh process without the
import: nothing has run in the parent (no model, no random draw, no OpenMP thread) that a child could inherit.
"""

from __future__ import annotations

import functools
import importlib
import json
import os
import signal
import sys
import time
import traceback
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

CHILD_TIMEOUT_S = 300


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


def run_clipmem(spec: str, argv: list[str]) -> int:
    if spec != "none":
        instrument(spec)
    from clipmem_core.cli import main

    return main(argv)


def _child(request: dict) -> None:
    """In the forked child: send stdout and stderr to the request's log, run, and never return."""
    log = os.open(request["log"], os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    os.dup2(log, 1)
    os.dup2(log, 2)
    code = 1
    try:
        code = run_clipmem(request["point"], request["argv"])
    except BaseException:
        traceback.print_exc()
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code if isinstance(code, int) else 1)


def _wait(pid: int) -> int:
    """The child's exit code (negative: the signal that ended it); SIGKILLed by us after CHILD_TIMEOUT_S."""
    deadline = time.monotonic() + CHILD_TIMEOUT_S
    while True:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            return os.waitstatus_to_exitcode(status)
        if time.monotonic() > deadline:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
            return 124
        time.sleep(0.05)


def serve() -> None:
    # The imports every child would otherwise pay for.
    import clipmem_core.cli
    import clipmem_core.pipeline  # noqa: F401

    for line in sys.stdin:
        request = json.loads(line)
        pid = os.fork()
        if pid == 0:
            _child(request)
        print(json.dumps({"returncode": _wait(pid)}), flush=True)


if __name__ == "__main__":
    if sys.argv[1:] == ["--serve"]:
        serve()
    else:
        spec, separator, *argv = sys.argv[1:]
        assert separator == "--", __doc__
        sys.exit(run_clipmem(spec, argv))
