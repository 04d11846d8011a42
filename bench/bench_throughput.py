"""Training throughput (issue 8): the data loader's samples/s against the model's, and 1 against 2 processes.

Three measurements on the first ``--n`` samples of a real dataset (default: openclipart, 64 px):

- **loader**: the training DataLoader alone (decode, random crop, tokenise, collate), with images decoded
  once and kept in memory (what runs below ``PRELOAD_LIMIT`` images do), read from disk on every draw
  (what larger runs do), or read on every draw from WebDataset shards in place (the same images packed
  into 512-sample tars: a seek and a read at the member's offset), for each ``--workers`` count;
- **model**: one training step alone (forward, loss, backward, the trainer's AdamW) on a fixed batch, the baseline the
  loader has to keep up with: loader/model above 1 means the loader is not the bottleneck;
- **processes**: a whole full-protocol run's training, ``python -m clipmem_core run`` in one process
  against ``torchrun --nproc_per_node 2`` (gloo on CPU) with the same global batch, and against
  ``--parallel-models`` (the two fold models at once, one process each), training samples/s from each
  run's manifest. On one machine the processes share its cores: this measures what DDP costs and what
  splitting the cores between independent models gains, not what more devices would give.

    OMP_NUM_THREADS=1 python -m bench.bench_throughput --n 2048 --epochs 2

Prints a Markdown table per measurement (docs/benchmarks.md quotes them).
"""

from __future__ import annotations

import argparse
import io
import json
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

import torch
from open_clip.loss import ClipLoss

from clipmem_core import image_list
from clipmem_core.data import read_dataset
from clipmem_core.device import autocast, cpu_has_native_bf16
from clipmem_core.models import create_clip
from clipmem_core.train import PairDataset, TrainConfig, _loader, build_optimizer

DATA = "/work/data/openclipart64/captions.csv"


def subset_csv(source: str, n: int, folder: Path) -> Path:
    """The first ``n`` rows of a CSV dataset, written with absolute image paths."""
    dataset = read_dataset(source, progress=False, check_images=False)
    frame = dataset.samples.head(n)[["filepath", "caption"]].copy()
    frame["filepath"] = [str((dataset.root / p).resolve()) for p in frame["filepath"]]
    path = folder / "subset.csv"
    frame.to_csv(path, index=False)
    return path


def subset_shards(csv: Path, folder: Path, per_shard: int = 512) -> Path:
    """The subset as WebDataset shards (``<key>.png`` + ``<key>.txt``) in ``folder``, which is returned."""
    dataset = read_dataset(csv, progress=False, check_images=False, allow_outside_root=True)
    folder.mkdir()
    rows = list(zip(dataset.samples["filepath"], dataset.samples["caption"]))
    for number, start in enumerate(range(0, len(rows), per_shard)):
        with tarfile.open(folder / f"shard-{number:05d}.tar", "w") as tar:
            for key, (filepath, caption) in enumerate(rows[start : start + per_shard], start=start):
                image = (dataset.root / filepath).read_bytes()
                for name, data in ((f"{key:07d}{Path(filepath).suffix}", image), (f"{key:07d}.txt", caption.encode())):
                    info = tarfile.TarInfo(name)
                    info.size = len(data)
                    tar.addfile(info, io.BytesIO(data))
    return folder


def loader_rate(data: Path, model: str, batch: int, workers: int, in_memory: bool, batches: int) -> float:
    """Samples/s of the training DataLoader over ``batches`` batches (the first one, warm-up, not timed)."""
    dataset = read_dataset(data, progress=False, check_images=False, allow_outside_root=True)
    bundle = create_clip(model)
    limit = image_list.PRELOAD_LIMIT
    image_list.PRELOAD_LIMIT = len(dataset)  # the two paths a run takes, by its size: in memory, or read on demand
    try:
        images = image_list.ImageList(
            dataset.root, dataset.samples["filepath"], 4 * bundle.image_size, preload=in_memory
        )
    finally:
        image_list.PRELOAD_LIMIT = limit
    captions = [[c] for c in dataset.samples["caption"]]
    pairs = PairDataset(images, captions, bundle.train_transform, bundle.tokenizer)
    loader = _loader(pairs, TrainConfig(epochs=1, batch_size=batch, lr=1e-3, num_workers=workers))
    iterator = iter(loader)
    next(iterator)
    started, seen = time.perf_counter(), 0
    for _, (image, _, _) in zip(range(batches), iterator):
        seen += len(image)
    return seen / (time.perf_counter() - started)


def model_rate(model: str, batch: int, steps: int, bf16: bool = False) -> float:
    """Samples/s of training steps alone on one fixed batch (the first step, warm-up, not timed).

    ``bf16``: the forward pass under bf16 autocast, as ``--precision bf16`` runs it (CPU runs default to
    fp32): faster on a CPU with native bf16 instructions, several times slower on one without.
    """
    torch.manual_seed(0)
    bundle = create_clip(model)
    network = bundle.model.train()
    optimizer = build_optimizer(network, lr=1e-3, weight_decay=TrainConfig.weight_decay)
    loss_fn = ClipLoss()
    images = torch.randn(batch, 3, bundle.image_size, bundle.image_size)
    texts = bundle.tokenizer([f"a drawing of thing number {i}" for i in range(batch)])
    started = None
    for step in range(steps + 1):
        if step == 1:
            started = time.perf_counter()
        with autocast(torch.device("cpu"), "bf16" if bf16 else "fp32"):
            image_features, text_features, scale = network(images, texts)[:3]
            loss = loss_fn(image_features, text_features, scale)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
    return steps * batch / (time.perf_counter() - started)


def run_rate(csv: Path, out: Path, processes: int, epochs: int, threads: int, parallel_models: bool = False) -> dict:
    """A full-protocol run in ``processes`` processes (or its models in parallel); training samples/s."""
    cli = ["-m", "clipmem_core", "run", "--data", str(csv), "--out", str(out), "--preset", "cpu"]
    cli += ["--epochs", str(epochs), "--allow-outside-root", *(["--parallel-models"] if parallel_models else [])]
    torchrun = [str(Path(sys.executable).with_name("torchrun")), "--standalone", f"--nproc_per_node={processes}"]
    command = [*torchrun, *cli] if processes > 1 else [sys.executable, *cli]
    env = os.environ | {"OMP_NUM_THREADS": str(threads)}
    started = time.perf_counter()
    subprocess.run(command, check=True, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wall = time.perf_counter() - started
    manifest = json.loads((out / "manifest.json").read_text())
    train_s = sum(v for k, v in manifest["timings"].items() if k.startswith("train_"))
    pairs = sum(m["pairs"] for m in manifest["training"].values())
    how = "in turn" if processes == 1 else "DDP (torchrun)"
    return {
        "how": "models in parallel (a process each)" if parallel_models else how,
        "processes": 2 if parallel_models else processes,
        "threads each": threads // 2 if parallel_models else threads,
        "train s": train_s,
        "run s": wall,
        "samples/s": epochs * pairs / train_s,
    }


def table(rows: list[dict]) -> str:
    """Markdown, numbers with one decimal (two for ratios)."""
    header = list(rows[0])
    cell = lambda k, v: f"{v:.2f}" if k.startswith("÷") else f"{v:,.1f}" if isinstance(v, float) else str(v)  # noqa: E731
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return "\n".join(lines + ["| " + " | ".join(cell(k, r[k]) for k in header) + " |" for r in rows])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default=DATA, help="a CSV dataset (filepath, caption)")
    parser.add_argument("--n", type=int, default=2048, help="samples used")
    parser.add_argument("--model", default="clipmem-cpu")
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--batches", type=int, default=8, help="timed loader batches and model steps")
    parser.add_argument("--workers", default="0,1,2", help="DataLoader worker processes to try")
    parser.add_argument("--epochs", type=int, default=2, help="epochs of the 1- and 2-process runs")
    parser.add_argument("--skip-runs", action="store_true", help="only the loader and the model")
    args = parser.parse_args(argv)
    cores = os.cpu_count() or 1
    native_bf16 = "native" if cpu_has_native_bf16() else "no native"
    print(
        f"machine: {cores} CPUs ({torch.backends.cpu.get_cpu_capability()}, {native_bf16} bf16), load average "
        f"{os.getloadavg()[0]:.1f}; torch {torch.__version__}\n"
    )
    with tempfile.TemporaryDirectory() as tmp:
        csv = subset_csv(args.data, args.n, Path(tmp))
        model = model_rate(args.model, args.batch, args.batches)
        bf16 = model_rate(args.model, args.batch, args.batches, bf16=True)
        step = f"model: one training step ({args.model}, batch {args.batch})"
        rows = [
            {"what": step, "samples/s": model, "÷ model": 1.0},
            {"what": "model: the same under --precision bf16", "samples/s": bf16, "÷ model": bf16 / model},
        ]
        shards = subset_shards(csv, Path(tmp) / "shards")
        sources = [
            ("decoded in memory", csv, True),
            ("read from disk each draw", csv, False),
            ("read from shards in place each draw", shards, False),
        ]
        for where, data, in_memory in sources:
            for workers in map(int, args.workers.split(",")):
                rate = loader_rate(data, args.model, args.batch, workers, in_memory, args.batches)
                rows.append({"what": f"loader: {where}, {workers} workers", "samples/s": rate, "÷ model": rate / model})
        print(table(rows) + "\n")
        if not args.skip_runs:
            runs = []
            for processes, parallel in ((1, False), (2, False), (1, True)):
                out = Path(tmp) / f"run{processes}{parallel}"
                runs.append(run_rate(csv, out, processes, args.epochs, max(1, cores // processes), parallel))
                shutil.rmtree(out, ignore_errors=True)
            for r in runs:
                r["÷ 1 process"] = r["samples/s"] / runs[0]["samples/s"]
            print(table(runs))
    return 0


if __name__ == "__main__":
    sys.exit(main())
