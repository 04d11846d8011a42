"""clipmem: measure memorization in CLIP models and find mis-captioned image-caption pairs.

The run-cache names below are imported on first use (PEP 562), not with the package: importing any
``clipmem_core`` module imports this file first, and pandas alone took 0.6 s of the ``clipmem`` command's
start-up, before its Ctrl-C handler existed (an interrupt then printed a traceback).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .errors import ClipmemError

if TYPE_CHECKING:
    from .cache import Run, list_runs, load_run

__all__ = ["ClipmemError", "Run", "__version__", "list_runs", "load_run"]
_FROM_CACHE = ("Run", "list_runs", "load_run")


def __getattr__(name: str) -> object:
    if name in _FROM_CACHE:
        from . import cache

        return getattr(cache, name)
    if name == "__version__":  # written once, in pyproject.toml (this file said 0.1.0 while it said 0.2.0)
        from importlib.metadata import version

        return version("clipmem")
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
