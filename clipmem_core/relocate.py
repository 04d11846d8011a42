"""Point a run at its images where they are now: a run computed on a GPU server and reviewed elsewhere.

A run stores the folder its image paths are relative to (the manifest's dataset root) as the absolute path
it had where the run was made. Copied to a reviewer's machine, the run's thumbnails travel with it, but the
inspector and the review pages look for the full-size images at that path, and fell back to the 96 px
thumbnails for good. Relocating checks that the run's images are found under the new folder and rewrites
the root; nothing else in the run changes.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .atomic import write_json
from .cache import MANIFEST, Run, load_run
from .errors import ClipmemError
from .formatting import fmt_count
from .shards import image_exists

CHECKED = 1_000  # rows whose image is looked for under the new folder (all of them in a smaller run)


@dataclass(frozen=True)
class Relocated:
    run: Run
    before: str  # the root the run had
    checked: int
    found: int


def relocate_images(run_dir: str | Path, data_root: str | Path) -> Relocated:
    """Make ``data_root`` the folder the run's relative image paths resolve against, once the images of up to
    ``CHECKED`` rows (spread over the run) are found there. Absolute image paths (a CSV that named them so)
    are left as they are; a run holding only those has nothing to relocate."""
    run = load_run(run_dir)
    root = Path(data_root).expanduser().resolve()
    if not root.is_dir():
        raise ClipmemError(f"{data_root} is not a folder")
    relative = [p for p in run.scores["filepath"].astype(str) if not Path(p).is_absolute()]
    if not relative:
        raise ClipmemError(f"run {run.name} names its images by absolute paths: there is no root to move")
    picked = np.linspace(0, len(relative) - 1, min(CHECKED, len(relative))).round().astype(int)
    checked = [relative[i] for i in dict.fromkeys(picked.tolist())]
    found = sum(image_exists(root / path) for path in checked)
    if found == 0:
        raise ClipmemError(
            f"none of the {fmt_count(len(checked), 'image')} looked for is under {root} (the first: "
            f"{root / checked[0]}); pass the folder the run's image paths are relative to"
        )
    manifest, before = run.manifest, run.manifest.dataset.root
    manifest.dataset.root = str(root)
    write_json(run.path / MANIFEST, manifest.to_dict())
    return Relocated(load_run(run.path), before, len(checked), found)
