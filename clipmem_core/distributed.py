"""Running under ``torchrun``: the process group, the rank helpers, and rank 0 as the only writer.

``torchrun`` starts one process per device and tells each its place through the environment (RANK,
WORLD_SIZE, LOCAL_RANK, MASTER_ADDR, MASTER_PORT). :func:`session` reads it, joins the process group
(NCCL on CUDA, gloo on CPU) and leaves it again; outside torchrun every helper answers as the single
process of a world of one, so the library code calls them unconditionally.

Besides the default group, every process joins a gloo *control* group with a long timeout: it carries
the few messages that are not training traffic (an error met by rank 0 while preparing the run folder,
"rank 0 has written the run"), so waiting ranks neither time out during rank 0's scoring nor depend on
NCCL for CPU-side objects.
"""

from __future__ import annotations

import logging
import os
import warnings
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from datetime import timedelta
from typing import TypeVar

import numpy as np
import torch
import torch.distributed as dist

from .device import pick_device
from .errors import ClipmemError

T = TypeVar("T")
# Rank 0 computes the signals and writes the run alone after scoring; the others wait this long for it.
WAIT_FOR_MAIN = timedelta(hours=72)
_control: dist.ProcessGroup | None = None
PARALLEL_MODELS_UNDER_TORCHRUN = (
    "--parallel-models trains each model in its own process, and under torchrun (or --nproc) the processes "
    "already train each model together: use one or the other"
)


def requested_world_size() -> int:
    """The number of processes torchrun started (1 outside torchrun)."""
    try:
        return int(os.environ.get("WORLD_SIZE", "1"))
    except ValueError:
        raise ClipmemError(f"WORLD_SIZE={os.environ['WORLD_SIZE']!r} is not a whole number") from None


def active() -> bool:
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def world_size() -> int:
    return dist.get_world_size() if active() else 1


def rank() -> int:
    return dist.get_rank() if active() else 0


def is_main() -> bool:
    return rank() == 0


def barrier() -> None:
    """All ranks meet here (a no-op in a single process)."""
    if active():
        dist.barrier(group=_control)


def check_batch_size(batch_size: int, processes: int | None = None) -> None:
    """``--batch-size`` is the global batch: it must split evenly over the processes."""
    processes = processes or requested_world_size()
    if batch_size % processes:
        raise ClipmemError(
            f"--batch-size {batch_size} does not split over {processes} processes: it is the global batch "
            f"(each process gets batch-size / {processes}); use a multiple of {processes}"
        )


def check_gpu_count(device: str, processes: int) -> None:
    """On CUDA each process takes a GPU of its own (NCCL refuses two ranks on one): refuse at once, in one
    line, where this machine has fewer GPUs than processes. Why before starting them: otherwise torchrun
    starts them all and one fails after half a minute, its message lost in torchrun's failure report (seen
    on a 1-GPU H200, docs/benchmarks.md)."""
    gpus = torch.cuda.device_count()
    if pick_device(device).type == "cuda" and gpus < processes:
        raise ClipmemError(
            f"--nproc {processes} on CUDA starts one process per GPU and this machine has {gpus}: use --nproc "
            f"{gpus} or fewer (--parallel-models trains each model in its own process, several on one GPU)"
        )


def _local_device(device: torch.device) -> torch.device:
    """Under torchrun each process of a node takes the GPU of its LOCAL_RANK."""
    if device.type != "cuda":
        return device
    local = int(os.environ.get("LOCAL_RANK", "0"))
    if local >= torch.cuda.device_count():
        raise ClipmemError(
            f"process with LOCAL_RANK {local} has no GPU: this node has {torch.cuda.device_count()}; "
            "start at most one process per GPU (--nproc-per-node)"
        )
    torch.cuda.set_device(local)
    return torch.device("cuda", local)


@contextmanager
def session(device: torch.device) -> Iterator[torch.device]:
    """Join torchrun's process group for the duration (if torchrun started us); yield this rank's device.

    Outside torchrun, or when the caller already joined a group, nothing is set up or torn down.
    """
    global _control
    if requested_world_size() <= 1 or dist.is_initialized():
        yield device
        return
    device = _local_device(device)
    backend = "nccl" if device.type == "cuda" else "gloo"
    dist.init_process_group(backend=backend, device_id=device if device.type == "cuda" else None)
    _control = dist.new_group(backend="gloo", timeout=WAIT_FOR_MAIN)
    # open_clip's ClipLoss gathers with torch.distributed.nn.all_gather, which torch now calls deprecated
    warnings.filterwarnings("ignore", message=r"torch\.distributed\.nn\.functional\.all_gather", category=FutureWarning)
    progress = logging.getLogger("clipmem")
    level = progress.level
    if not is_main():
        progress.setLevel(logging.WARNING)  # one copy of the progress log: rank 0's
    try:
        yield device
    finally:
        progress.setLevel(level)
        _control = None
        dist.destroy_process_group()


def on_main(work: Callable[[], T]) -> T | None:
    """Run ``work`` on rank 0 only; if it fails with a ClipmemError or OSError, every rank raises it.

    For the steps that write the run folder: the other ranks must not write too, and must not train on
    while rank 0 has given up on an unwritable folder.
    """
    result, error = None, None
    if is_main():
        try:
            result = work()
        except ClipmemError as exc:
            error = str(exc)
        except OSError as exc:
            error = f"{exc.strerror or exc}{': ' + str(exc.filename) if exc.filename else ''}"
    if active():
        message = [error]
        dist.broadcast_object_list(message, src=0, group=_control)
        error = message[0]
    if error is not None:
        raise ClipmemError(error if is_main() else f"rank 0: {error}")
    return result


def gather_batch(local: torch.Tensor) -> torch.Tensor:
    """Every rank's batch rows, concatenated in rank order (the tensor itself outside torchrun).

    Without gradient: for measurements taken beside the training step, e.g. each pair's loss against the
    whole global batch, which every rank then holds alike.
    """
    if not active():
        return local
    parts = [torch.empty_like(local) for _ in range(world_size())]
    dist.all_gather(parts, local.contiguous())
    return torch.cat(parts)


def gather_rows(local: np.ndarray, shards: Sequence[np.ndarray]) -> np.ndarray | None:
    """Rank 0 gets the whole array, each rank's rows taken from that rank; the other ranks get None.

    ``local`` is full-size and holds this rank's rows (``shards[rank]``, a row mask or index); only those
    rows travel. Outside torchrun it is returned as it is.
    """
    if not active():
        return local
    parts: list | None = [None] * world_size() if is_main() else None
    dist.gather_object(local[shards[rank()]], parts, dst=0, group=_control)
    if not is_main():
        return None
    whole = np.empty_like(local)
    for shard, part in zip(shards, parts):
        whole[shard] = part
    return whole
