"""torchrun as `clipmem run --nproc` starts it: torch's own launcher, which on a stop says nothing more than
the launcher does.

Why: a Ctrl-C printed torchrun's traceback (``SignalException: Process … got signal: 2``) and two log lines
with process ids under the one line the launcher prints ("clipmem: interrupted; …"), and read as a crash.
A worker that fails still gets torchrun's own failure report: only a stop is quiet.
"""

from __future__ import annotations

import logging
import signal
import sys

# The agent's words on a stop, which the launcher says in its own ("clipmem: interrupted; …").
_STOP_LINES = {
    "torch.distributed.elastic.agent.server.api": "Received %s death signal, shutting down workers",
    "torch.distributed.elastic.multiprocessing.api": "Sending process %s closing signal %s",
}


def _quiet_stop_lines() -> None:
    """Drop the agent's log lines of a stop; every other line of torchrun's stays."""
    for name, template in _STOP_LINES.items():
        logging.getLogger(name).addFilter(lambda record, template=template: record.msg != template)


def main() -> int:
    """Run torchrun on this process's arguments; a stop (SIGINT, SIGTERM) ends it with 128 + the signal, the
    stop of a second after the launch too, while torch is still loading."""
    try:
        from torch.distributed.elastic.multiprocessing.api import SignalException
        from torch.distributed.run import main as torchrun_main
    except KeyboardInterrupt:
        return 128 + signal.SIGINT
    _quiet_stop_lines()
    try:
        torchrun_main()
    except SignalException as stop:
        return 128 + int(stop.sigval)
    return 0


if __name__ == "__main__":
    sys.exit(main())
