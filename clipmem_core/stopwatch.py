"""Per-stage wall-clock timing of a run or an import, recorded in its manifest."""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from contextlib import contextmanager

log = logging.getLogger("clipmem")


class Stopwatch:
    """Per-stage wall-clock seconds, logged as each stage starts so long runs show where they are."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}

    @contextmanager
    def stage(self, name: str) -> Iterator[None]:
        log.info("stage: %s", name)
        started = time.perf_counter()
        yield
        self.seconds[name] = round(time.perf_counter() - started, 3)
