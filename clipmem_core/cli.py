"""Command-line interface: a thin layer over the library.

Each sub-command registers a parser and a handler ``func(args) -> int``. A ``ClipmemError``
anywhere becomes one line on stderr and exit status 2, never a traceback.
"""

from __future__ import annotations

import argparse
import errno
import gc
import json
import logging
import os
import shlex
import signal
import stat
import subprocess
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, NoReturn

from .errors import ClipmemError
from .launch import NPROC_LAUNCHER_ENV, reports_the_stop

if TYPE_CHECKING:
    import pandas as pd

    from .cache import Run

DATA_OPTIONS = ("data", "img_key", "caption_key", "on_error", "allow_outside_root", "extract_shards")


def _add_config_options(parser: argparse.ArgumentParser, names: tuple[str, ...] | None = None) -> None:
    """One flag per `RunConfig` field (``names`` picks some), with the field's help text and default."""
    from .config import (
        ON_ERROR,
        PRECISIONS,
        PRESET_FIELDS,
        PRESETS,
        RunConfig,
        is_preset_switch,
        option_flag,
        option_parser,
    )
    from .splits import PROTOCOLS

    choices = {"on_error": ON_ERROR, "precision": PRECISIONS, "preset": tuple(PRESETS), "protocol": PROTOCOLS}
    for spec in RunConfig.option_fields():
        if names is not None and spec.name not in names:
            continue
        if str(spec.type) == "bool":
            parser.add_argument(option_flag(spec), dest=spec.name, action="store_true", help=spec.metadata["help"])
            continue
        if is_preset_switch(spec):
            parser.add_argument(
                option_flag(spec),
                dest=spec.name,
                action=argparse.BooleanOptionalAction,
                default=None,
                help=spec.metadata["help"] + " (default: the preset's)",
            )
            continue
        required, parse = spec.name in ("data", "out"), option_parser(spec)
        default = "the preset's" if spec.name in PRESET_FIELDS else "none" if spec.default is None else spec.default
        shown = "" if required or "default:" in spec.metadata["help"] else f" (default: {default})"
        parser.add_argument(
            option_flag(spec),
            dest=spec.name,
            type=parse if parse in (int, float, str) else _argument_type(parse),  # split sizes: ClipmemError
            default=spec.default,
            required=required,
            choices=choices.get(spec.name),
            help=spec.metadata["help"] + shown,
        )


def _add_run(commands) -> None:
    p = commands.add_parser(
        "run",
        help="train the models, score every sample, write cache/NAME",
        description="Train CLIP models on your data and score every sample: CLIPMem, held-out and training-side "
        "CLIP scores, retrieval margins, neighbour agreement, and the combined 'likely mis-captioned' ranking. "
        "The full protocol (default) cross-fits K models so every sample is scored; --protocol paper trains the "
        "CLIPMem paper's f and g.",
    )
    _add_config_options(p)
    p.add_argument("--resume", action="store_true", help="continue an interrupted run from its checkpoints")
    p.add_argument(
        "--nproc",
        type=_argument_type(_process_count),
        default=1,
        help="train with N processes on this machine (DDP; one per GPU, or gloo on CPU): relaunches this "
        "command under torchrun --standalone; --batch-size stays the global batch",
    )
    p.set_defaults(func=_cmd_run)


def _process_count(text: str) -> int:
    try:
        count = int(text)
    except ValueError:
        count = 0
    if count < 1:
        raise ClipmemError(f"{text!r}: expected a number of processes, 1 or more")
    return count


def _without_nproc(argv: list[str]) -> list[str]:
    """The command line minus ``--nproc N`` / ``--nproc=N``: what each torchrun process runs."""
    kept, skip = [], False
    for token in argv:
        if skip:
            skip = False
        elif token == "--nproc":
            skip = True
        elif not token.startswith("--nproc="):
            kept.append(token)
    return kept


def _launch(args: argparse.Namespace, config) -> int:
    """``clipmem run --nproc N``: the same command, N times under torchrun on this machine."""
    from .distributed import PARALLEL_MODELS_UNDER_TORCHRUN, check_batch_size, check_gpu_count

    check_batch_size(config.resolved().batch_size, args.nproc)  # one line now, not N tracebacks later
    if config.parallel_models:
        raise ClipmemError(PARALLEL_MODELS_UNDER_TORCHRUN)
    check_gpu_count(config.device, args.nproc)  # likewise: one line, not a torchrun failure report
    command = [sys.executable, "-m", "clipmem_core.torchrun", "--standalone", f"--nproc-per-node={args.nproc}"]
    command += ["-m", "clipmem_core", *_without_nproc(args.argv)]
    logging.getLogger("clipmem").info("starting %d processes: %s", args.nproc, " ".join(command[1:]))
    env = {**os.environ, NPROC_LAUNCHER_ENV: "1"}
    with subprocess.Popen(command, env=env, process_group=0, preexec_fn=_stop_with_the_launcher) as torchrun:
        try:
            return torchrun.wait()
        except KeyboardInterrupt as stop:  # passed on, once: torchrun stops its workers
            torchrun.send_signal(signal.SIGTERM if isinstance(stop, Terminated) else signal.SIGINT)
            _wait_for_the_workers(torchrun)
            raise


def _stop_with_the_launcher() -> None:
    """In torchrun's process, before it starts: SIGTERM it when the launcher dies, however it dies (Linux).

    Why torchrun runs in its own process group, and is told of a stop only by the launcher: a Ctrl-C sent
    to the launcher alone (a script's `kill -INT`) ended the launcher while torchrun and its workers trained
    on, and a Ctrl-C at the terminal reached torchrun twice, once directly and once passed on, which cut
    its own shutdown short (a worker hung 30 s). Its own group takes the terminal's Ctrl-C off it; this
    takes care of a launcher killed outright (SIGKILL), which can pass nothing on."""
    if sys.platform.startswith("linux"):
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


def _wait_for_the_workers(torchrun: subprocess.Popen) -> None:
    """Wait while torchrun stops its workers (it gives them 30 s, then kills them); a second Ctrl-C asks it
    again with SIGTERM rather than leaving it behind."""
    while True:
        try:
            torchrun.wait()
            return
        except KeyboardInterrupt:
            torchrun.terminate()


def _cmd_run(args: argparse.Namespace) -> int:
    from .cache import MANIFEST
    from .config import RunConfig
    from .launch import launched_rank
    from .pipeline import compute_clipmem

    config = RunConfig(**{spec.name: getattr(args, spec.name) for spec in RunConfig.option_fields()})
    config.check_given_for_its_protocol()
    if args.nproc > 1 and "WORLD_SIZE" not in os.environ:
        return _launch(args, config)
    # a --resume of a finished run writes nothing: it said "run written to", with the old run's time
    complete_before = (Path(config.out) / MANIFEST).exists()
    run = compute_clipmem(config, resume=args.resume)
    if launched_rank() == 0:  # under torchrun, one line for the run, not one a process
        done = "nothing to do: it was complete already," if complete_before else "run written to"
        print(f"{done} {run.path} ({len(run.scores)} samples, {run.manifest.seconds:.1f} s)")
    return 0


def _add_inject(commands) -> None:
    p = commands.add_parser(
        "inject-miscaptions",
        help="write a copy of a dataset with swapped captions",
        description="Replace a seeded fraction of captions by other samples' captions "
        "and mark them is_miscaptioned (for validation and demos). Samples the data already flags "
        "is_miscaptioned keep their captions and are not drawn again, so a second round adds new ones.",
    )
    _add_config_options(p, DATA_OPTIONS)
    p.add_argument("--out", required=True, help="output CSV, named .csv")
    p.add_argument("--fraction", type=float, required=True, help="fraction of samples to mis-caption, in (0, 1)")
    p.add_argument("--seed", type=int, default=0, help="which samples and donors are drawn (default 0)")
    p.add_argument(
        "--clustered",
        action="store_true",
        help="mis-caption whole classes (the data's 'label' column, in a seeded order), as a broken source would, "
        "instead of samples spread over the dataset; samples without a label are not drawn",
    )
    p.add_argument(
        "--one-donor-class",
        action="store_true",
        help="with --clustered: each mis-captioned class gets the captions of one other class, as a folder given "
        "another folder's captions would (the hard case for checks against similar images)",
    )
    p.add_argument(
        "--permuted",
        action="store_true",
        help="the drawn samples trade captions among themselves, so no wrong caption is also left on its donor "
        "(without it each gets a copy of another sample's caption); the same samples are drawn either way",
    )
    p.add_argument("--force", action="store_true", help="overwrite --out if it exists (never the input itself)")
    p.set_defaults(func=_cmd_inject)


def _cmd_inject(args: argparse.Namespace) -> int:
    from .data import inject_miscaptions

    summary = inject_miscaptions(
        args.data,
        args.out,
        fraction=args.fraction,
        seed=args.seed,
        img_key=args.img_key,
        caption_key=args.caption_key,
        force=args.force,
        allow_outside_root=args.allow_outside_root,
        on_error=args.on_error,
        extract_shards=args.extract_shards,
        clustered=args.clustered,
        one_donor_class=args.one_donor_class,
        permuted=args.permuted,
    )
    print(json.dumps(summary, default=str))
    return 0


def _add_make_shapes(commands) -> None:
    p = commands.add_parser(
        "make-shapes",
        help="write a small generated dataset (coloured shapes) to try clipmem on",
        description="Write images/*.png and captions.csv (filepath, caption, label) of coloured shapes under --out: "
        "data to try a run, an experiment or the dashboard on in minutes, without a dataset of your own. With "
        "--miscaptioned a seeded share of the captions is swapped and marked is_miscaptioned; with "
        "--captions-per-image above 1 it writes COCO captions.json instead, several paraphrases an image.",
    )
    p.add_argument("--out", required=True, help="folder to write into (new, or with --force)")
    p.add_argument("--n", type=int, default=300, help="how many images (default 300)")
    p.add_argument("--seed", type=int, default=0, help="the shapes, colours and swaps drawn (default 0)")
    p.add_argument("--miscaptioned", type=float, default=0.0, help="share of swapped captions, in [0, 1)")
    p.add_argument("--captions-per-image", type=int, default=1, help="paraphrases an image, 1 to 5 (COCO JSON)")
    p.add_argument("--force", action="store_true", help="write into --out although it holds a dataset already")
    p.set_defaults(func=_cmd_make_shapes)


def _cmd_make_shapes(args: argparse.Namespace) -> int:
    from .synthetic import make_shapes_dataset

    out = Path(args.out)
    held = [name for name in ("captions.csv", "captions.json", "images") if (out / name).exists()]
    if held and not args.force:  # its images would be overwritten one by one, under another dataset's captions
        raise ClipmemError(f"{out} already holds {', '.join(held)}; choose another --out, or pass --force")
    path = make_shapes_dataset(
        out, args.n, seed=args.seed, miscaption_fraction=args.miscaptioned, captions_per_image=args.captions_per_image
    )
    print(f"wrote {args.n:,} images and {path}")
    print(f"next: clipmem run --data {shlex.quote(str(path))} --out cache/shapes --preset tiny")
    return 0


def _add_neighbours(commands) -> None:
    from .index import MODES

    p = commands.add_parser(
        "neighbours",
        help="nearest neighbours of a sample in embedding space",
        description="Print the k nearest neighbours of a sample, one a line.",
    )
    p.add_argument("--run", required=True, help="run folder, e.g. cache/NAME")
    p.add_argument("--sample-id", required=True, help="the sample's id, as the scores and the dashboard show it")
    p.add_argument("--k", type=int, default=10, help="how many neighbours (default 10)")
    p.add_argument(
        "--mode",
        choices=MODES,
        default="image",
        help="image: similar images; text: similar captions; image2text: captions nearest the sample's image; "
        "text2image: images nearest its caption (default image)",
    )
    p.add_argument("--json", action="store_true", help="print JSON instead of lines")
    p.set_defaults(func=_cmd_neighbours)


def _cmd_neighbours(args: argparse.Namespace) -> int:
    from dataclasses import asdict

    from .cache import load_run
    from .index import NeighbourSearch

    run = load_run(args.run)
    search = NeighbourSearch(run)
    found = search.query(_one_sample_id(run, args.sample_id), k=args.k, mode=args.mode)
    approximate = search.approximation(args.mode)
    if approximate:  # on stderr: the table and the JSON stay what a script reads
        print(f"note: {approximate}", file=sys.stderr)
    if len(found) < args.k:  # it gave fewer without a word
        others = len(search.run.scores) - (args.mode in ("image", "text"))
        why = f"the run has {others:,} to offer" if args.k > others else "its approximate index found no more"
        print(f"note: {len(found):,} neighbours, not the {args.k:,} asked for: {why}", file=sys.stderr)
    if args.json:
        print(json.dumps([asdict(n) for n in found], indent=2))
        return 0
    for rank, n in enumerate(found, 1):
        print(f"{rank:>3}  {n.similarity:+.4f}  {n.sample_id}  {n.split:<11}  {n.caption!r}")
    return 0


def _one_sample_id(run: Run, typed: str) -> str:
    """The sample a typed id names: itself, or the one id it starts (or equals but for capitals), said on
    stderr; the dashboard shows ids cut short, and the whole id was needed here."""
    how, ids = run.ids_matching(typed)
    if how == "capitals":
        print(f"note: sample {ids[0]}: {typed!r} differs from its id only in capitals", file=sys.stderr)
    elif how == "prefix" and len(ids) == 1:
        print(f"note: sample {ids[0]}, the one whose id starts with {typed!r}", file=sys.stderr)
    if len(ids) == 1:
        return ids[0]
    if ids:
        raise ClipmemError(f"{len(ids):,} samples' ids start with {typed!r} in run {run.name}: give more of it")
    raise ClipmemError(f"sample_id {typed!r} is not in run {run.name}; `clipmem suspects` lists ids")


def _add_reindex(commands) -> None:
    from .index import KINDS

    p = commands.add_parser(
        "reindex",
        help="rebuild a run's FAISS indexes (e.g. as IVF-PQ to fit RAM)",
        description="Rebuild the image and text indexes of a run from its stored embeddings. auto: exact below "
        "100k rows, IVF-Flat up to 2 GiB of vectors, IVF-PQ above (docs/scaling.md has the memory formula).",
    )
    p.add_argument("--run", required=True, help="run folder, e.g. cache/NAME")
    p.add_argument(
        "--kind",
        choices=KINDS,
        default="auto",
        help="flat: exact; ivf, ivfpq, hnsw: approximate, faster at scale; auto (default): chosen by size as above",
    )
    p.add_argument("--opq", action="store_true", help="rotate vectors with OPQ before PQ (IVF-PQ only)")
    p.set_defaults(func=_cmd_reindex)


def _cmd_reindex(args: argparse.Namespace) -> int:
    from .cache import load_run
    from .index import rebuild_indexes

    if args.opq and args.kind not in ("ivfpq", "auto"):  # it was ignored without a word
        raise ClipmemError(f"--opq rotates the vectors of an ivfpq index; --kind {args.kind} has none to rotate")
    run = load_run(args.run, check_indexes=False)  # a missing or empty index file is what it mends
    for modality, built in rebuild_indexes(run, kind=args.kind, opq=args.opq).items():
        print(f"{modality}: {built}")
    return 0


def _add_rerank(commands) -> None:
    p = commands.add_parser(
        "rerank",
        help="remake a run's Likely mis-captioned ranking with this version's recipe (no training)",
        description="Recompute the combined ranking (Likely mis-captioned) of a finished run from its stored "
        "signals and image embeddings, with the recipe of this clipmem version, and rewrite its scores and "
        "summary. Nothing is trained; other scores, embeddings and indexes stay as they are.",
    )
    p.add_argument("--run", required=True, help="run folder, e.g. cache/NAME")
    p.set_defaults(func=_cmd_rerank)


def _cmd_rerank(args: argparse.Namespace) -> int:
    from .rerank import rerank_run

    done = rerank_run(args.run)
    print(
        f"re-ranked {done.samples:,} samples of run {done.run.name}: "
        f"{done.new_in_top} of the first {done.top} are new to them"
    )
    if done.without:
        print(f"note: {done.without}")
    return 0


def _add_relocate(commands) -> None:
    p = commands.add_parser(
        "relocate",
        help="point a run at its images where they are now (a run copied from the machine that made it)",
        description="Make --data-root the folder a run's image paths are relative to, once its images are found "
        "there: a run computed on one machine and copied to another keeps its thumbnails, but the inspector "
        "and the review pages look for the full-size images where the run was made. Nothing else changes.",
    )
    p.add_argument("--run", required=True, help="run folder, e.g. cache/NAME")
    p.add_argument("--data-root", required=True, help="the folder that now holds the images, as the data had them")
    p.set_defaults(func=_cmd_relocate)


def _cmd_relocate(args: argparse.Namespace) -> int:
    from .relocate import relocate_images

    done = relocate_images(args.run, args.data_root)
    print(
        f"run {done.run.name} now reads its images under {done.run.manifest.dataset.root} (before: {done.before}); "
        f"{done.found:,} of {done.checked:,} looked for are there"
    )
    if done.found < done.checked:  # a folder that shares some names only was taken without a word
        print(
            f"note: {done.checked - done.found:,} of the images looked for are not there: if this is not the folder "
            "the run's images were copied to, run relocate again with the right one (the dashboard shows a missing "
            "image as unavailable, and a same-named other image as if it were the sample's)",
            file=sys.stderr,
        )
    return 0


def _add_summary(commands) -> None:
    p = commands.add_parser(
        "summary",
        help="per-split means, t-tests and mis-caption detection quality",
        description="Summarise a run: per-split means of every score and Welch t-tests; where is_miscaptioned "
        "exists, AUROC, average precision and precision@k of every registered score.",
    )
    p.add_argument("--run", required=True, help="run folder, e.g. cache/NAME")
    p.add_argument("--json", action="store_true", help="print JSON instead of tables")
    p.set_defaults(func=_cmd_summary)


def _cmd_summary(args: argparse.Namespace) -> int:
    from .cache import load_run
    from .metrics import held_out_pools, model_strength, run_summary

    run = load_run(args.run)
    summary = {"run": run.name, "protocol": run.manifest.protocol, **run_summary(run.scores, run.manifest.protocol)}
    summary["utility"] = run.manifest.utility
    pools = held_out_pools(run.manifest.splits, run.manifest.protocol)
    summary["model_strength"] = model_strength(run.manifest.utility, pools)
    summary["compute"] = run.manifest.compute
    summary["data"] = _data_notes(run)
    summary["mitigation"] = {key: run.manifest.config.get(key) for key in ("text_noise", "max_captions")}
    if args.json:
        print(json.dumps(summary, indent=2, default=str))
        return 0
    print(_render_summary(summary))
    return 0


def _data_notes(run: Run) -> dict:
    """What reading the data left out or warned about. The run logged it once, while it ran; a reader of
    the summary days later would otherwise take the scores for the whole input."""
    from .cache import SKIPPED

    dataset = run.manifest.dataset
    from .droplist import exclusion_note

    # scored, not read: under the paper protocol samples outside the split sizes are read and left out
    notes = {"samples": len(run.scores), "skipped": dataset.n_skipped, "excluded": dataset.n_excluded}
    exclude = run.manifest.config.get("exclude")
    notes["exclusion"] = exclusion_note(dataset.n_excluded, dataset.n_exclude_not_found, exclude)
    notes["skip_report"] = str(run.path / SKIPPED) if dataset.n_skipped else None
    notes["warnings"] = [w for w in dataset.warnings if isinstance(w, str)]
    return notes


def _render_data_notes(notes: dict | None) -> list[str]:
    if not notes or not (notes["skipped"] or notes.get("exclusion") or notes["warnings"]):
        return []
    from .formatting import fmt_count

    read = [f"{fmt_count(notes['samples'], 'sample')} scored"]
    if notes["skipped"]:
        read.append(f"{fmt_count(notes['skipped'], 'row')} skipped (each, with its reason, in {notes['skip_report']})")
    if notes.get("exclusion"):
        read.append(notes["exclusion"])
    return ["", "data: " + "; ".join(read), *(f"  note: {warning}" for warning in notes["warnings"])]


def _best_ranking_lines(detection: dict) -> list[str]:
    """Which ranking finds the known mis-captions best, by average precision, and how to sort by it when it is
    not the default: the table alone left a reader to find that the training loss beat the default ranking."""
    from .formatting import fmt_number
    from .metrics import best_detector
    from .scores import column_label
    from .scores.combined import Combined

    best = best_detector(detection)
    if best is None:
        return []
    stats = detection["detectors"]
    said = f"best by average precision: {column_label(best)} (AP {fmt_number(stats[best]['average_precision'])})"
    if best == Combined.name or Combined.name not in stats:
        return [said]
    default = fmt_number(stats[Combined.name]["average_precision"])
    return [
        f"{said}, ahead of the default ranking, {column_label(Combined.name)} (AP {default}): "
        f"`clipmem suspects --by {best}`, or the gallery's sort by it"
    ]


def _render_mitigation(settings: dict | None) -> list[str]:
    """The text-side mitigations a run trained with: a noise run read like a plain one (the drop list is
    said with the data)."""
    settings = settings or {}
    said = []
    if settings.get("text_noise"):
        said.append(f"Gaussian noise σ = {settings['text_noise']:g} on the text embeddings in training")
    if settings.get("max_captions"):
        said.append(f"at most {settings['max_captions']} captions per sample")
    return ["mitigation: " + "; ".join(said)] if said else []


def _table(header: list[str], rows: list[list[str]], left: tuple[int, ...] = (0,)) -> list[str]:
    """Aligned plain-text columns: those in ``left`` (names, text) flush left, the others (numbers) right."""
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    return [
        "  ".join(str(c).ljust(w) if i in left else str(c).rjust(w) for i, (c, w) in enumerate(zip(r, widths))).rstrip()
        for r in [header, *rows]
    ]


def _render_summary(summary: dict) -> str:
    from .cache import computed_on
    from .formatting import fmt_count, fmt_number
    from .metrics import FIRST_PAGE, clipmem_offset_sentence, weak_models_sentence
    from .scores import column_label

    stats = summary["splits"]["splits"]
    columns = [c for c in next(iter(stats.values()), {}) if c != "count"]
    where = computed_on(summary.get("compute") or {})
    protocol = f"{summary['protocol']} protocol" + (f"; {where}" if where else "")
    lines = [
        f"run {summary['run']} ({protocol})",
        *_render_mitigation(summary.get("mitigation")),
        *_render_data_notes(summary.get("data")),
        "",
        "mean per split:",
    ]
    rows = [["samples", *(fmt_number(s["count"]) for s in stats.values())]]
    rows += [[column_label(c), *(fmt_number(s[c]["mean"], 4, signed=True) for s in stats.values())] for c in columns]
    lines += _table(["", *stats], rows)
    for name, test in summary["splits"]["ttests"].items():
        lines.append(
            f"Welch t-test, {name}: t={fmt_number(test.get('t'), 2)} p={fmt_number(test.get('p'), 2, general=True)}"
        )
    for key in ("detection", "detection_candidates"):
        detection = summary.get(key)
        if not detection:
            continue
        lines += [
            "",
            f"mis-caption detection over {detection['scope']}: {fmt_count(detection['n_samples'], 'sample')}, "
            f"{detection['n_miscaptioned']:,} mis-captioned (k = {detection['k']:,}); unscored samples rank last",
        ]
        header = ["score", "AUROC", "AP", "P@k", f"P@{FIRST_PAGE}", "coverage"]
        metric_keys = ["auroc", "average_precision", "precision_at_k", f"precision_at_{FIRST_PAGE}", "coverage"]
        rows = [
            [column_label(name), *(fmt_number(m.get(k)) for k in metric_keys)]
            for name, m in detection["detectors"].items()
        ]
        lines += _table(header, rows)
        if key == "detection":
            lines += _best_ranking_lines(detection)
    utility = summary.get("utility")
    if utility:
        lines += ["", "utility: retrieval recall of each model on samples it never saw:"]
        for tag, recall in utility.items():
            lines.append(f"  {tag}: " + "  ".join(f"{key}={fmt_number(val)}" for key, val in recall.items()))
    weak = weak_models_sentence(summary.get("model_strength"))
    if weak:
        lines += ["", f"warning: {weak}"]
    offset = clipmem_offset_sentence(stats, summary.get("protocol", ""))
    if offset:
        lines += ["", f"note: {offset}"]
    return "\n".join(lines)


def _add_import(commands) -> None:
    p = commands.add_parser(
        "import-run",
        help="build a run from scores and embeddings computed elsewhere",
        description="Join a scores parquet (sample_id plus any registered score columns, or align_f/align_g, "
        "optional split) to a dataset and write a run the dashboard can open.",
    )
    _add_config_options(p, DATA_OPTIONS)
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
        allow_outside_root=args.allow_outside_root,
        extract_shards=args.extract_shards,
    )
    print(f"run written to {run.path} ({len(run.scores)} samples)")
    return 0


def _add_scores(commands) -> None:
    p = commands.add_parser(
        "scores",
        help="list the registered scores: column, direction, meaning",
        description="List every registered score (clipmem_core.scores): its column in scores.parquet, "
        "whether a high or a low value is suspicious, and what it means.",
    )
    p.add_argument("--markdown", action="store_true", help="print the table docs/scores.md holds")
    p.set_defaults(func=_cmd_scores)


def _cmd_scores(args: argparse.Namespace) -> int:
    from .scores import scores_table

    print(scores_table(markdown=args.markdown))
    return 0


def _add_suspects(commands) -> None:
    from .learned import MIN_MISCAPTIONED
    from .suspects import DEFAULT_TOP

    p = commands.add_parser(
        "suspects",
        help="the samples most likely mis-captioned, as a table (before or beside a review)",
        description="List a run's samples most likely mis-captioned, most suspicious first: the gallery's "
        "default sort (Likely mis-captioned), or any registered score's (`clipmem scores`). Prints a short "
        "table, or with --out writes every column (the sample, its scores, the known label) for a "
        "spreadsheet or a labelling tool.",
    )
    p.add_argument("--run", required=True, help="run folder, e.g. cache/NAME")
    p.add_argument(
        "--by",
        type=str.lower,
        help="registered score to rank by, or 'learned' (learned from the team's verdicts once it has called "
        f"{MIN_MISCAPTIONED} samples mis-captioned); default: combined where the run has it",
    )
    p.add_argument("--top", type=int, default=DEFAULT_TOP, help=f"how many (default {DEFAULT_TOP}); 0 for every sample")
    p.add_argument(
        "--out",
        help="file to write (.csv, .tsv or .parquet) instead of printing, or - for the table on standard output; "
        "formula cells escaped",
    )
    p.add_argument("--format", choices=["csv", "parquet"], help="default: from --out's suffix (.parquet), else csv")
    p.add_argument("--force", action="store_true", help="replace --out if it exists")
    p.add_argument(
        "--unjudged",
        action="store_true",
        help="leave out the samples the team has already judged, so --top counts samples still to judge "
        "(ranks stay those of the whole ranking)",
    )
    p.set_defaults(func=_cmd_suspects)


def _cmd_suspects(args: argparse.Namespace) -> int:
    from .cache import load_run
    from .formatting import fmt_count, fmt_number
    from .learned import KEY as LEARNED_KEY
    from .learned import shown_decimals
    from .review.export import STDOUT, check_stream, output_format, stream_table, table_bytes, write_table
    from .suspects import TEAM_VERDICT, suspects

    to_stdout = args.out == STDOUT  # a file named "-" was written, while `review export` took - for a pipe
    fmt = (args.format or "csv") if to_stdout else output_format(args.out, args.format) if args.out else None
    if to_stdout:
        check_stream(fmt)
    run = load_run(args.run)
    if args.out and not to_stdout:
        run.check_output(args.out, force=args.force)
    team = _team_decisions(run)
    table = suspects(run, args.by, args.top, team, unjudged=args.unjudged)
    if to_stdout:
        stream_table(table_bytes(table, fmt, spreadsheet=fmt == "csv"), fmt)
        print(f"wrote {fmt_count(len(table), 'sample')} to standard output", file=sys.stderr)
        return 0
    if args.out:
        path = write_table(table, args.out, fmt, spreadsheet=fmt == "csv", force=args.force)
        print(f"wrote {fmt_count(len(table), 'sample')} to {path}")
        return 0
    ranking = table.columns[4]
    header = ["rank", ranking, "sample_id", "caption"]
    digits = shown_decimals(len(run.scores)) if ranking == LEARNED_KEY else 4
    rows = [
        [f"{r['rank']:,}", fmt_number(r[ranking], digits), r["sample_id"], _cut(r["caption"], 70)]
        for _, r in table.iterrows()
    ]
    if TEAM_VERDICT in table and table[TEAM_VERDICT].notna().any():  # --unjudged: all blank
        header.append("team")
        for row, verdict in zip(rows, table[TEAM_VERDICT]):
            row.append(verdict or "")
    print("\n".join(_table(header, rows, left=(2, 3, 4))))
    return 0


def _team_decisions(run: Run) -> pd.DataFrame | None:
    """The team's decisions on ``run``, or None where no review database exists yet (or it holds none for
    the run): listing suspects is a read, and must not create a database beside the runs."""
    from .review.decisions import decisions
    from .review.store import DB_FILE, DB_URL_ENV, open_store

    if not os.environ.get(DB_URL_ENV) and not (run.path.resolve().parent / DB_FILE).exists():
        return None
    store = open_store(run.path.resolve().parent)
    try:
        team = decisions(store.current_verdicts(run.name), store.resolutions(run.name))
    finally:
        store.close()
    return team if len(team) else None


_JOINERS = frozenset("\u200c\u200d")  # zero-width (non-)joiners: part of emoji and many scripts, harmless


def _cut(text: str, width: int) -> str:
    """One line of at most ``width`` characters: a caption with newlines or of a paragraph kept the table readable.

    Other characters a terminal acts on are shown escaped, as ``\\u202e``: a web-scraped caption holding an
    escape sequence or a right-to-left override otherwise recoloured the terminal or reversed the table's text."""
    flat = " ".join(str(text).split())
    flat = "".join(c if c.isprintable() or c in _JOINERS else c.encode("unicode_escape").decode() for c in flat)
    return flat if len(flat) <= width else flat[: width - 1] + "…"


def _add_list(commands) -> None:
    p = commands.add_parser(
        "list",
        help="list the runs in a cache folder",
        description="List runs, usable or not, with the reason an unusable one is refused.",
    )
    p.add_argument("--cache", default="cache", help="cache folder (default cache)")
    p.set_defaults(func=_cmd_list)


def _cmd_list(args: argparse.Namespace) -> int:
    from .cache import MANIFEST, STATE_FILE, list_runs

    cache = Path(args.cache)
    if not cache.is_dir():
        raise ClipmemError(f"{cache} is not a folder: pass the cache folder that holds the runs (--cache)")
    if (cache / MANIFEST).exists() or (cache / STATE_FILE).exists():
        raise ClipmemError(f"{cache} is a run, not a cache of runs: pass its parent, --cache {cache.parent}")
    infos = list_runs(cache)
    if not infos:
        print(f"no runs in {cache}")
        _list_experiments(args.cache)  # an experiment stopped before its first run finished is one to see
        return 0
    width = max(24, *(len(info.name) for info in infos))  # an experiment's run names run long
    print(f"{'run':<{width}} {'created':<25}  {'protocol':<8} {'samples':>9}  model")
    for info in infos:
        if info.ok:
            manifest = info.manifest
            samples = f"{sum(manifest.splits.values()) or manifest.dataset.n_samples:,}"  # scored ones
            print(
                f"{info.name:<{width}} {manifest.created:<25}  {manifest.protocol:<8} {samples:>9}  "
                f"{manifest.config.get('model', '')}"
            )
        else:
            print(f"{info.name:<{width}} UNUSABLE: {info.error}")
    _list_experiments(args.cache)
    return 0


def _list_experiments(cache_root: str) -> None:
    """The experiments under the cache, after its runs: their runs fill the list above, and without this a
    user saw them only on the Compare page."""
    from .experiments import list_experiments

    rows = []
    for item in list_experiments(cache_root):
        if isinstance(item, tuple):
            folder, why = item
            rows.append((folder.name, f"UNUSABLE: {why}"))
        else:
            # "seed 0", "seeds 0,1,2": a bare "0" under "seeds" read as no seeds at all
            seeds = f"seed{'s' if len(item.settings.seeds) > 1 else ''} " + ",".join(map(str, item.settings.seeds))
            rows.append((item.name, f"{item.study:<9} {item.status:<11} {len(item.runs):>5}  {seeds}"))
    if not rows:
        return
    width = max(24, *(len(name) for name, _ in rows))
    print(f"\n{'experiment':<{width}} {'study':<9} {'status':<11} {'runs':>5}  seeds")
    for name, described in rows:
        print(f"{name:<{width}} {described}")


# The study variable's (RunConfig field, help) per study, under its flag (``Study.values_option``); RunConfig
# options a study varies are not flags of it.
_STUDY_FLAGS = {
    "noise": ("text_noise", "σ values of the text noise, e.g. 0,0.05,0.15,0.3 (default)"),
    "captions": ("max_captions", "captions per image to train with, e.g. 1,2,3 (default: 1 … up to 5)"),
    "removal": (None, "how many to remove: fractions of the training pool below 1, or counts (default 0.01,0.05,0.1)"),
    "encoders": (None, ""),
}
_EXPERIMENT_FIXED = ("data", "out", "seed", "exclude")  # set by the experiment for every run


def _add_experiment(commands) -> None:
    from .experiments import STUDIES
    from .experiments.removal import DEFAULT_BY

    p = commands.add_parser(
        "experiment",
        help="the paper's mitigation studies on your data: noise, captions, removal, encoders",
        description="Run one of the CLIPMem paper's mitigation studies as a series of ordinary runs (registered "
        "in the cache), with memorization beside utility (retrieval R@1/R@5 and, where the data has a label "
        "column, a linear probe) on a seeded evaluation set every run leaves out. Writes "
        "<cache>/experiments/NAME/results.parquet, summary.parquet and plot.html. Rerun the same command to "
        "resume.",
    )
    studies = p.add_subparsers(dest="study", required=True, metavar="STUDY")
    for name, study in STUDIES.items():
        sub = studies.add_parser(name, help=study.description, description=f"{name} study: {study.description}.")
        flag, (varied, help_text) = study.values_option, _STUDY_FLAGS[name]
        sub.add_argument("--name", required=True, help="the experiment's name; runs are CACHE/NAME-s<seed>-<condition>")
        sub.add_argument("--cache", default="cache", help="cache folder the runs and records go to (default cache)")
        sub.add_argument("--seeds", type=_argument_type(_int_list), default=(0,), help="seeds, e.g. 0,1,2 (default 0)")
        sub.add_argument(
            "--eval-fraction",
            type=float,
            default=0.2,
            help="share of the data every run leaves out, to measure utility on (default 0.2)",
        )
        sub.add_argument(
            "--inject",
            type=float,
            default=0.0,
            help="swap this share of captions per seed (is_miscaptioned) before the study, up to 0.5; default 0: none",
        )
        if flag:
            sub.add_argument(flag, dest="values", type=_argument_type(_number_list), default=(), help=help_text)
        if name == "removal":
            sub.add_argument(
                "--by",
                type=_argument_type(_score_names),
                default=(),
                help=f"rank by these registered scores, or random (default {','.join(DEFAULT_BY)}); "
                "clip_score_heldout is the paper's lowest-CLIP-score baseline",
            )
        from .config import RunConfig

        run_options = tuple(
            f.name for f in RunConfig.option_fields() if f.name not in (*_EXPERIMENT_FIXED, varied) or f.name == "data"
        )
        _add_config_options(sub, run_options)
        sub.set_defaults(func=_cmd_experiment)


def _list_items(text: str) -> list[str]:
    """A comma-separated list's items; a trailing comma is allowed, an empty item between two is refused:
    ``--sigmas 0,,0.1`` dropped the value left out and trained the rest without a word."""
    items = [part.strip() for part in text.split(",")]
    if not any(items):  # "" or " , ": an empty list, which _not_empty refuses
        return []
    if not items[-1]:
        items.pop()
    if not all(items):
        raise ClipmemError(f"{text!r}: an empty item between two commas (a value left out?)")
    return items


def _number_list(text: str) -> tuple[float, ...]:
    items = _list_items(text)
    try:
        return _not_empty(tuple(float(part) for part in items), text)
    except ValueError:
        raise ClipmemError(f"{text!r}: expected numbers separated by commas") from None


def _int_list(text: str) -> tuple[int, ...]:
    items = _list_items(text)
    try:
        return _not_empty(tuple(int(part) for part in items), text)
    except ValueError:
        raise ClipmemError(f"{text!r}: expected whole numbers separated by commas") from None


def _score_names(text: str) -> tuple[str, ...]:
    """Comma-separated names, lower-cased: registered scores and ``random`` are all lower case, and a user
    who types RANDOM or CLIPMem means them."""
    return _not_empty(tuple(part.lower() for part in _list_items(text)), text)


def _not_empty(values: tuple, text: str) -> tuple:
    """An empty list (``--sigmas ""``, a shell variable unset) ran the defaults, which the user did not ask for."""
    if not values:
        raise ClipmemError(f"{text!r}: an empty list; leave the option out for its default")
    return values


def _cmd_experiment(args: argparse.Namespace) -> int:
    from .config import RunConfig
    from .experiments import ExperimentSettings, run_experiment
    from .experiments.base import PLOT_FILE, RESULTS_FILE

    defaults = {f.name: f.default for f in RunConfig.option_fields()}
    run_options = {
        name: getattr(args, name)
        for name in defaults
        if name != "data" and hasattr(args, name) and getattr(args, name) != defaults[name]
    }
    settings = ExperimentSettings(
        study=args.study,
        name=args.name,
        data=str(Path(args.data).expanduser().resolve()),
        cache=args.cache,
        seeds=tuple(args.seeds),
        values=tuple(getattr(args, "values", ()) or ()),
        by=tuple(getattr(args, "by", ()) or ()),
        eval_fraction=args.eval_fraction,
        inject=args.inject,
        run_options=run_options,
    )
    results = run_experiment(settings)
    folder = Path(args.cache) / "experiments" / args.name
    print(_render_experiment(results, args.study))
    print(f"\nresults: {folder / RESULTS_FILE}\nplot: {folder / PLOT_FILE}")
    return 0


def _render_experiment(results, study: str) -> str:
    """Mean ± spread over seeds per condition; with injected mis-captions, how memorized and findable they are."""
    from .experiments.base import RESULT_LABELS, summarise, table_cell, table_columns
    from .formatting import fmt_number

    summary = summarise(results)
    columns = table_columns(summary, study)
    header = ["condition", "seeds", *(RESULT_LABELS[c] for c in columns)]  # the Compare page's words
    rows = [
        [
            str(row["condition"]),  # as results.parquet and the Compare page name it ("combined 12" here before)
            str(row["seeds"]),
            *(table_cell(row, column) for column in columns),
        ]
        for _, row in summary.iterrows()
    ]
    lines = _table(header, rows)
    if any("–" in cell for row in rows for cell in row[2:]):
        lines.append(
            "–: not measured for that condition (e.g. no mis-captioned sample left to measure once removed; a "
            "spread needs 2 seeds)"
        )
    if study == "encoders":  # a p-value per run; their mean and spread would mean nothing
        p_values = ", ".join(
            f"seed {r.seed}: {fmt_number(r.text_minus_image_p, 2, general=True)}" for r in results.itertuples()
        )
        lines.append(f"text against image encoder, paired p: {p_values}")
    return "\n".join(lines)


class _Parser(argparse.ArgumentParser):
    """Usage mistakes get the same one line as every other error (and exit 2), pointing to --help: the help of
    the command that was given (an unknown option is found by the top parser, which pointed to
    ``clipmem --help``, where the command's options are not listed)."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.set_defaults(**{_GIVEN_PARSER: self})  # the innermost command's, once parsed

    def parse_args(
        self, args: list[str] | None = None, namespace: argparse.Namespace | None = None
    ) -> argparse.Namespace:
        parsed, unknown = self.parse_known_args(args, namespace)
        given = vars(parsed).pop(_GIVEN_PARSER, self)
        if unknown:
            given.error(f"unrecognized arguments: {' '.join(unknown)}")
        return parsed

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"clipmem: error: {message} (see: {self.prog} --help)\n")


_GIVEN_PARSER = "_given_parser"


def _argument_type(convert):
    """Let a converter's ClipmemError reach argparse as a usage error on that option."""

    def wrapped(text: str):
        try:
            return convert(text)
        except ClipmemError as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None

    wrapped.__name__ = getattr(convert, "__name__", "value")
    return wrapped


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="clipmem",
        description="Measure memorization in CLIP models (CLIPMem) and find mis-captioned pairs.",
    )
    from . import __version__

    parser.add_argument("--version", action="version", version=f"clipmem {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    from .review.commands import add_review_parser

    for add in (
        _add_run,
        _add_inject,
        _add_make_shapes,
        _add_neighbours,
        _add_reindex,
        _add_rerank,
        _add_relocate,
        _add_summary,
        _add_import,
        _add_scores,
        _add_suspects,
        _add_list,
        _add_experiment,
        add_review_parser,
    ):
        add(commands)
    return parser


def _stdout_is_a_pipe() -> bool:
    try:
        return stat.S_ISFIFO(os.fstat(sys.stdout.fileno()).st_mode)
    except (OSError, ValueError, AttributeError):  # closed, or replaced by an object without a descriptor
        return False


def _reader_left() -> int:
    """`clipmem list | head -3`: the reader closed the pipe, which is its choice, not an error. Why: it
    printed "clipmem: error: Broken pipe" and exited 2, or a traceback at exit, depending on timing. Exit
    as a program killed by SIGPIPE does (128 + 13), with the unwritten output sent nowhere so that the
    interpreter's last flush does not fail too."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
    os.close(devnull)
    return 128 + signal.SIGPIPE


def _error(message: str) -> int:
    """Print one line, whatever the message holds (library messages may quote multi-line texts)."""
    one_line = " ".join(part.strip() for part in message.splitlines() if part.strip())
    print(f"clipmem: error: {one_line}", file=sys.stderr)
    return 2


def _os_error(exc: OSError) -> str:
    where = f": {exc.filename}" if exc.filename else ""
    full = exc.errno in (errno.ENOSPC, errno.EDQUOT)
    return f"{exc.strerror or exc}{where}" + (
        "; free some space there and run the command again (a run goes on with --resume)" if full else ""
    )


def _configure_logging() -> None:
    """clipmem's progress at INFO, as "clipmem: ..." lines; other libraries only from WARNING, under their own
    name. Why: open_clip logs every model it builds at INFO on the root logger, which read as clipmem's own.
    Under torchrun only the first process says what every process would (the others, their errors): each
    line of the run ("skipped 15 of 205 rows …") came once a process."""
    from .launch import launched_rank

    logging.basicConfig(level=logging.WARNING, format="%(name)s: %(message)s", stream=sys.stderr)
    logging.getLogger("clipmem").setLevel(logging.INFO if launched_rank() == 0 else logging.ERROR)


def main(argv: list[str] | None = None) -> int:
    try:  # building the parser imports the sub-commands' modules: most of a second a Ctrl-C may land in
        args = build_parser().parse_args(argv)
    except KeyboardInterrupt:
        print("clipmem: interrupted; rerun the same command to start it again", file=sys.stderr)
        return 128 + signal.SIGINT
    args.argv = list(sys.argv[1:] if argv is None else argv)  # for a relaunch under torchrun (run --nproc)
    _configure_logging()
    try:
        with _sigterm_as_interrupt():
            code = int(args.func(args) or 0)
            sys.stdout.flush()  # here, not at exit: a reader that left early (`| head`) is seen below
            return code
    except BrokenPipeError as exc:
        if not _stdout_is_a_pipe():
            return _error(_os_error(exc))
        return _reader_left()
    except ClipmemError as exc:
        return _error(str(exc))
    except OSError as exc:  # a full disk, a read-only folder, a vanished file: the user's to fix, no traceback
        return _error(_os_error(exc))
    except KeyboardInterrupt as exc:
        stopped = "terminated" if isinstance(exc, Terminated) else "interrupted"
        _close_progress_bars()
        if reports_the_stop():
            print(f"clipmem: {stopped}; {_how_to_go_on(args)}", file=sys.stderr)
        code = 128 + (signal.SIGTERM if isinstance(exc, Terminated) else signal.SIGINT)
        if argv is None:  # the `clipmem` command itself, not a host calling main(): its process ends here
            _end_promptly(code)
        return code


def _close_progress_bars() -> None:
    """Close the progress bars a stop left open, each ending its line: the stop's message was written after
    the bar, on its line ("images  40%|████      | 12/30 [00:03<00:05]clipmem: interrupted; …")."""
    from tqdm import tqdm

    for bar in list(getattr(tqdm, "_instances", ())):
        bar.close()


def _end_promptly(code: int) -> None:
    """After a stop the command is over, but the interpreter's exit still runs the libraries' clean-up
    (torch's exit handlers): a second Ctrl-C there printed a traceback, and now ends the process at once,
    with the same exit status. The exit's last garbage collection, over every object the run made, is
    skipped (``gc.freeze``): it took 3–5 s in a ``--nproc`` worker, which the launcher waited for before it
    could say the run had stopped. The run's files are written and closed by then."""
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGINT, lambda signum, frame: os._exit(code))
    gc.freeze()


def _how_to_go_on(args: argparse.Namespace) -> str:
    """What a stopped command's user does next: only `run` has --resume (an `import-run` stopped midway told
    its user to pass an option it refuses); an experiment picks up its finished runs by itself."""
    if hasattr(args, "resume"):
        return _how_to_resume(Path(args.out), args.checkpoint_every)
    if args.command == "experiment":
        return "rerun the same command to continue"
    return "rerun the same command to start it again"


def _how_to_resume(out: Path, checkpoint_every: float) -> str:
    """Whether --resume has anything to continue from. It was suggested even where nothing had been written:
    a stop while the data were read, or in a model's first minute of training, before its first checkpoint."""
    from .cache import MANIFEST, trained_nothing

    if (out / MANIFEST).is_file():  # stopped after the run's last write: nothing is lost
        return f"the run in {out} had been written whole before the stop; nothing to resume"
    if trained_nothing(out):
        first = f"{checkpoint_every:g} s of training" if checkpoint_every else "its first epoch"
        return (
            f"nothing was saved yet (a model's first checkpoint is written after {first}, --checkpoint-every); "
            "rerun the same command to start it again"
        )
    return "rerun with --resume to continue from the last checkpoint"


class Terminated(KeyboardInterrupt):
    """SIGTERM, as an interrupt: what `kill`, a batch scheduler's time limit or `docker stop` send."""


@contextmanager
def _sigterm_as_interrupt() -> Iterator[None]:
    """Let SIGTERM end a command the way Ctrl-C does: the open files are cleaned up and the user is told how
    to resume. Why: by default it ended the process without a word, and a user whose job a scheduler stopped
    could not tell a crash from a stop. The previous handler comes back afterwards (a host calling ``main``)."""
    if threading.current_thread() is not threading.main_thread():  # only the main thread may set handlers
        yield
        return

    def raise_terminated(signum: int, frame: object) -> NoReturn:
        raise Terminated

    previous = signal.signal(signal.SIGTERM, raise_terminated)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)
