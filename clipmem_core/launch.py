"""What torchrun told this process, read without importing torch: a command that uses no model (the CLI's
logging set-up, `clipmem list`) must start without loading it."""

from __future__ import annotations

import os


def launched_rank() -> int:
    """This process's RANK as torchrun set it (0 outside torchrun), readable outside a session."""
    return int(os.environ.get("RANK", "0"))
