"""One model's training in its own process, for ``--parallel-models``: ``python -m clipmem_core.train_worker JOB``.

A plain subprocess rather than a multiprocessing one: a spawned multiprocessing child re-imports the
parent's ``__main__`` (a notebook, a Streamlit script, a test runner), which fails or runs it again;
this entry point imports clipmem alone. JOB is a pickle the parent wrote into a private temporary
folder (the run's settings, the model's pairs, its device and threads); the result (per-epoch losses)
is written beside it as JSON. The model's weights travel through its checkpoints in the run folder.
"""

from __future__ import annotations

import json
import logging
import pickle
import sys
from pathlib import Path

import torch


def main(argv: list[str] | None = None) -> int:
    """Train the job's model and write ``<job>.json``; the exit code tells the parent whether it did."""
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 1:
        print(
            "usage: python -m clipmem_core.train_worker JOB (written by clipmem run --parallel-models)", file=sys.stderr
        )
        return 2
    from .cli import _error
    from .errors import ClipmemError

    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(message)s")
    try:
        _train(Path(argv[0]))
    except ClipmemError as exc:  # bad data the worker met (an unreadable image): one line, as the CLI says it
        return _error(str(exc))
    except KeyboardInterrupt:  # a Ctrl-C reaches every process of the terminal's group: the parent says what
        return 130  # to do; each worker printed a traceback of 30 frames above that line
    return 0


def _train(job_path: Path) -> None:
    from .image_list import ImageList
    from .pipeline import _train_one

    job = pickle.loads(job_path.read_bytes())  # written by this user's own clipmem run, in a 0700 folder
    torch.set_num_threads(job["threads"])
    images = ImageList(job["root"], job["filepaths"], job["max_side"])
    config = job["config"]
    _, result = _train_one(
        job["tag"], config, images[:], job["captions"], Path(config.out), torch.device(job["device"])
    )
    report = {"epoch_losses": result.epoch_losses, "resumed_from_epoch": result.resumed_from_epoch}
    job_path.with_suffix(".json").write_text(json.dumps(report), encoding="utf-8")


if __name__ == "__main__":
    sys.exit(main())
