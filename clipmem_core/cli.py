"""Command-line interface: a thin layer over the library.

Each sub-command registers a parser and a handler ``func(args) -> int``. A ``ClipmemError``
anywhere becomes one line on stderr and exit status 2, never a traceback.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import sys

from .errors import ClipmemError


def _add_data_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--data",
        required=True,
        help="CSV/TSV file, COCO captions JSON, folder of images+.txt, or WebDataset shards "
        "(a .tar, a folder of .tar files, or a pattern like 'train-{0000..0009}.tar')",
    )
    parser.add_argument("--csv-img-key", dest="img_key", default="filepath", help="image column (default filepath)")
    parser.add_argument(
        "--csv-caption-key", dest="caption_key", default="caption", help="caption column (default caption)"
    )
    parser.add_argument(
        "--on-error",
        choices=("skip", "fail"),
        default="skip",
        help="bad rows: skip them and list them in skipped.csv (default), or stop",
    )


def _add_run(commands) -> None:
    from .config import PRESETS

    p = commands.add_parser(
        "run",
        help="train f and g, score CLIPMem, write cache/NAME",
        description="Train CLIP models f (on S_S+S_C) and g (on S_S+S_I) and write a run.",
    )
    _add_data_options(p)
    p.add_argument("--out", required=True, help="run folder, e.g. cache/NAME")
    p.add_argument("--preset", choices=tuple(PRESETS), default="tiny", help="defaults for the rest (default tiny)")
    p.add_argument("--model", help="bundled config (clipmem-tiny, clipmem-cpu) or open_clip name, e.g. ViT-B-32")
    p.add_argument("--epochs", type=int, default=0, help="training epochs of f and of g (default: preset's)")
    p.add_argument("--batch-size", type=int, default=0, help="default: preset's")
    p.add_argument("--lr", type=float, default=0.0, help="peak learning rate of AdamW (default: preset's)")
    p.add_argument("--seed", type=int, default=0, help="seeds splits, initialisation, order and views (default 0)")
    p.add_argument("--augmentations", type=int, default=0, help="K augmented views per sample (default 8)")
    p.add_argument("--split-sizes", help="shared,candidate,independent,extra as fractions or counts")
    p.add_argument("--init-checkpoint", help="local checkpoint that f and g both start from (fine-tuning)")
    p.add_argument("--device", default="auto", help="auto (CUDA if present), cpu, cuda, cuda:1 ...")
    p.add_argument("--num-workers", type=int, default=0, help="data-loader worker processes")
    p.add_argument("--resume", action="store_true", help="continue an interrupted run from its checkpoints")
    p.set_defaults(func=_cmd_run)


def _cmd_run(args: argparse.Namespace) -> int:
    from .config import RunConfig
    from .pipeline import compute_clipmem
    from .splits import parse_split_sizes

    config = RunConfig(
        data=args.data,
        out=args.out,
        preset=args.preset,
        model=args.model or "",
        epochs=args.epochs,
        batch_size=args.batch_size,
        lr=args.lr,
        seed=args.seed,
        augmentations=args.augmentations,
        split_sizes=parse_split_sizes(args.split_sizes) if args.split_sizes else (),
        init_checkpoint=args.init_checkpoint,
        on_error=args.on_error,
        img_key=args.img_key,
        caption_key=args.caption_key,
        device=args.device,
        num_workers=args.num_workers,
    )
    run = compute_clipmem(config, resume=args.resume)
    print(f"run written to {run.path} ({len(run.scores)} samples, {sum(run.manifest['timings'].values()):.1f} s)")
    return 0


def _add_inject(commands) -> None:
    p = commands.add_parser(
        "inject-miscaptions",
        help="write a copy of a dataset with swapped captions",
        description="Replace a seeded fraction of captions by other samples' captions "
        "and mark them is_miscaptioned (for validation and demos).",
    )
    _add_data_options(p)
    p.add_argument("--out", required=True, help="output CSV")
    p.add_argument("--fraction", type=float, required=True, help="fraction of samples to mis-caption, in (0, 1)")
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=_cmd_inject)


def _cmd_inject(args: argparse.Namespace) -> int:
    from .data import inject_miscaptions

    summary = inject_miscaptions(
        args.data, args.out, fraction=args.fraction, seed=args.seed, img_key=args.img_key, caption_key=args.caption_key
    )
    print(json.dumps(summary, default=str))
    return 0


def _add_neighbours(commands) -> None:
    from .index import MODES

    p = commands.add_parser(
        "neighbours",
        help="nearest neighbours of a sample in embedding space",
        description="Print the k nearest neighbours of a sample, one a line.",
    )
    p.add_argument("--run", required=True, help="run folder, e.g. cache/NAME")
    p.add_argument("--sample-id", required=True)
    p.add_argument("--k", type=int, default=10)
    p.add_argument("--mode", choices=MODES, default="image")
    p.add_argument("--json", action="store_true", help="print JSON instead of lines")
    p.set_defaults(func=_cmd_neighbours)


def _cmd_neighbours(args: argparse.Namespace) -> int:
    from dataclasses import asdict

    from .cache import load_run
    from .index import neighbours

    found = neighbours(load_run(args.run), args.sample_id, k=args.k, mode=args.mode)
    if args.json:
        print(json.dumps([asdict(n) for n in found], indent=2))
        return 0
    for rank, n in enumerate(found, 1):
        print(f"{rank:>3}  {n.similarity:+.4f}  {n.sample_id}  {n.split:<11}  {n.caption!r}")
    return 0


def _add_summary(commands) -> None:
    p = commands.add_parser(
        "summary",
        help="per-split means, t-tests and mis-caption detection quality",
        description="Summarise a run: per-split means and Welch t-tests; where "
        "is_miscaptioned exists, AUROC and precision@k of CLIPMem and baselines.",
    )
    p.add_argument("--run", required=True, help="run folder, e.g. cache/NAME")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=_cmd_summary)


def _fmt(value) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    return f"{value:+.4f}" if isinstance(value, float) else str(value)


def _fmt_p(value) -> str:
    return "-" if value is None or math.isnan(value) else f"{value:.2g}"


def _cmd_summary(args: argparse.Namespace) -> int:
    from .cache import load_run
    from .metrics import detection_summary, split_summary

    run = load_run(args.run)
    summary = {
        "run": run.name,
        "splits": split_summary(run.scores),
        "detection": detection_summary(run.scores),
        "utility": run.manifest.get("utility"),
    }
    if args.json:
        print(json.dumps(summary, indent=2, default=str))
        return 0
    print(_render_summary(summary))
    return 0


def _render_summary(summary: dict) -> str:
    columns = ("clipmem_from_f", "align_f", "align_g", "clip_score_f", "clip_score_g")
    lines = [f"run {summary['run']}", "", f"{'split':<12}{'n':>6}  " + "  ".join(f"{c:>14}" for c in columns)]
    for name, stats in summary["splits"]["splits"].items():
        means = "  ".join(f"{_fmt(stats[c]['mean']):>14}" for c in columns)
        lines.append(f"{name:<12}{stats['count']:>6}  {means}")
    lines.append("")
    for name, test in summary["splits"]["ttests_clipmem_from_f"].items():
        lines.append(
            f"Welch t-test of CLIPMem(f-g), {name.replace('_', ' ')}: t={_fmt(test.get('t'))} p={_fmt_p(test.get('p'))}"
        )
    detection = summary.get("detection")
    if detection:
        lines += [
            "",
            f"mis-caption detection among {detection['n_candidates']} candidates "
            f"({detection['n_miscaptioned']} mis-captioned, base rate {_fmt(detection['base_rate'])}):",
        ]
        for name, stats in detection["detectors"].items():
            cells = "  ".join(f"{key}={_fmt(val)}" for key, val in stats.items())
            lines.append(f"  {name:<13} {cells}")
    utility = summary.get("utility")
    if utility:
        lines += ["", "utility on S_E (retrieval recall):"]
        for tag, stats in utility.items():
            lines.append(f"  {tag}: " + "  ".join(f"{key}={_fmt(val)}" for key, val in stats.items()))
    return "\n".join(lines)


def _add_import(commands) -> None:
    p = commands.add_parser(
        "import-run",
        help="build a run from scores and embeddings computed elsewhere",
        description="Join a scores parquet (sample_id plus align_f/align_g or clipmem, "
        "optional split) to a dataset and write a run the dashboard can open.",
    )
    _add_data_options(p)
    p.add_argument("--scores", required=True, help="parquet with sample_id and scores")
    p.add_argument("--image-embeddings", help=".npy (N, D), row i = scores row i")
    p.add_argument("--text-embeddings", help=".npy (N, D), row i = scores row i")
    p.add_argument("--out", required=True, help="run folder, e.g. cache/NAME")
    p.set_defaults(func=_cmd_import)


def _cmd_import(args: argparse.Namespace) -> int:
    from .importer import import_run

    run = import_run(
        args.data,
        args.scores,
        args.out,
        image_embeddings=args.image_embeddings,
        text_embeddings=args.text_embeddings,
        img_key=args.img_key,
        caption_key=args.caption_key,
        on_error=args.on_error,
    )
    print(f"run written to {run.path} ({len(run.scores)} samples)")
    return 0


def _add_list(commands) -> None:
    p = commands.add_parser(
        "list",
        help="list the runs in a cache folder",
        description="List runs, usable or not, with the reason an unusable one is refused.",
    )
    p.add_argument("--cache", default="cache", help="cache folder (default cache)")
    p.set_defaults(func=_cmd_list)


def _cmd_list(args: argparse.Namespace) -> int:
    from .cache import list_runs

    for info in list_runs(args.cache):
        if info.ok:
            print(f"{info.name:<24} {info.manifest.get('created', '')}  {info.manifest['config'].get('model', '')}")
        else:
            print(f"{info.name:<24} UNUSABLE: {info.error}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="clipmem",
        description="Measure memorization in CLIP models (CLIPMem) and find mis-captioned pairs.",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    from .review.cli import add_review_parser

    for add in (_add_run, _add_inject, _add_neighbours, _add_summary, _add_import, _add_list, add_review_parser):
        add(commands)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="clipmem: %(message)s", stream=sys.stderr)
    try:
        return int(args.func(args) or 0)
    except ClipmemError as exc:
        print(f"clipmem: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("clipmem: interrupted; rerun with --resume to continue", file=sys.stderr)
        return 130
