"""What torchrun told this process, read without importing torch: a command that uses no model (the CLI's
logging set-up, `clipmem list`) must start without loading it."""

from __future__ import annotations

import os


def launched_rank() -> int:
    """This process's RANK as torchrun set it (0 outside torchrun), readable outside a session."""
    return int(os.environ.get("RANK", "0"))


NPROC_LAUNCHER_ENV = "CLIPMEM_NPROC_LAUNCHER"
"""Set for the processes `clipmem run --nproc` starts: the launcher reports a stop itself."""


def reports_the_stop() -> bool:
    """Whether this process tells the user of a stop ("clipmem: interrupted; …"): the first process, unless
    `clipmem run --nproc` started it. Why: the line came three times, once from each worker and once from the
    launcher, which says it after the workers have stopped, when it can tell what they saved."""
    return launched_rank() == 0 and NPROC_LAUNCHER_ENV not in os.environ
