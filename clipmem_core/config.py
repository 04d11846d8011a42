"""Run configuration and presets: the one place presets and run options are defined.

Every `RunConfig` field is a command-line flag (``clipmem run --help`` lists them all; the CLI builds
its options from these fields). ``None`` means "take it from the preset". The resolved config is
stored in the manifest, so a run can be redone exactly.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import Field, asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from .errors import ClipmemError
from .splits import PROTOCOLS, parse_split_sizes

# The options a protocol does not use: given for it, they are refused (``check_given_for_its_protocol``);
# recorded by a run of it (a resolved config holds every field), they mean nothing, and Compare leaves them out.
UNUSED_BY_PROTOCOL = {"paper": ("folds", "retain_epochs"), "full": ("split_sizes",)}


@dataclass(frozen=True)
class Preset:
    """Defaults for a class of machine and data size."""

    model: str
    epochs: int
    batch_size: int
    lr: float
    warmup_steps: int
    split_sizes: tuple[float, float, float, float]
    protocol: str = "full"
    folds: int = 2
    augmentations: int = 8
    caption_dropout: float = 0.0
    mask_duplicate_captions: bool = False
    retain_epochs: int = 0
    description: str = ""


PRESETS: dict[str, Preset] = {
    "tiny": Preset(
        "clipmem-tiny",
        epochs=40,
        batch_size=32,
        lr=2e-3,
        warmup_steps=20,
        split_sizes=(0.5, 0.2, 0.2, 0.1),
        description="tests and demos: a few hundred to 2k images, minutes on 2 CPU cores",
    ),
    "cpu": Preset(
        "clipmem-cpu-patch8",
        epochs=15,
        batch_size=128,
        lr=1e-3,
        warmup_steps=50,
        split_sizes=(0.7, 0.1, 0.1, 0.1),
        caption_dropout=0.3,  # found more mis-captions on openclipart at the same compute (docs/detection.md)
        description="thousands of images on a laptop (8k in 16–18 min on 2 cores)",
    ),
    "paper": Preset(
        "ViT-B-32",
        epochs=100,
        batch_size=256,
        lr=5e-4,
        warmup_steps=1000,
        split_sizes=(65_000, 5_000, 5_000, 5_000),
        protocol="paper",
        description="the paper's setup: ViT-B-32 at 224 px, 65k/5k/5k/5k, on a GPU server",
    ),
}
# The bundled open_clip configs (models.py registers them): listed here, without importing torch, so that
# `--help` names every one of them and never goes stale when a config is added.
CONFIG_DIR = Path(__file__).parent / "model_configs"
BUNDLED_MODELS = tuple(sorted(p.stem for p in CONFIG_DIR.glob("*.json")))
ON_ERROR = ("skip", "fail")
SPEED_ONLY = ("num_workers", "parallel_models", "checkpoint_every")  # how fast a run is, never its result
PRECISIONS = ("auto", "fp32", "bf16")  # --precision (device.resolved_precision says what auto means where)
# Seconds of training between a model's resume checkpoints. Why not after every epoch: a checkpoint holds
# the weights and both AdamW moments (40 MB for the tiny model, whose token table is most of it), and on
# small data, where an epoch takes a second or two, writing and fsyncing one per epoch took a third of a run.
CHECKPOINT_EVERY_S = 60.0
MAX_TEXT_NOISE = 1.0  # σ of --text-noise: beyond it the noise outweighs every cosine's whole range
# (minimum, maximum) of each whole-number option: the maxima only stop typos that would exhaust memory
# or the disk (a thumbnail is small, K views and folds are few) or that numpy cannot seed.
_WHOLE_NUMBER_RANGES = {
    "epochs": (1, 10**6),
    "batch_size": (1, 10**7),
    "augmentations": (1, 1_000),
    "folds": (2, 100),
    "retain_epochs": (0, 10**6),
    "warmup_steps": (0, 10**9),
    "seed": (0, 2**32 - 1),
    "num_workers": (0, 1_024),
    "thumbnail_size": (16, 1_024),
    "score_batch_size": (1, 10**6),
}
PRESET_FIELDS = frozenset(f.name for f in fields(Preset)) - {"description"}  # RunConfig fields a preset fills


def _option(help_text: str, *, default: Any = None, flag: str | None = None) -> Any:
    """A config field with the text ``--help`` shows (and the flag's name when it is not the field's)."""
    return field(default=default, metadata={"help": help_text, "flag": flag})


@dataclass(frozen=True)
class RunConfig:
    """Everything that determines a run's result, plus where its input and output live.

    Example::

        config = RunConfig(data="noisy.csv", out="cache/mydata", preset="tiny", epochs=10).resolved()
        config.model, config.protocol  # ('clipmem-tiny', 'full')
    """

    data: str = _option("dataset: CSV/TSV, COCO captions JSON, image folder with .txt files, or WebDataset shards")
    out: str = _option("run folder to write, e.g. cache/NAME")
    preset: str = _option(f"defaults for the options below: {', '.join(PRESETS)}", default="tiny")
    protocol: str | None = _option(
        "full: cross-fitting, every sample scored (default for tiny and cpu); "
        "paper: the CLIPMem paper's f/g splits (default for the paper preset)"
    )
    folds: int | None = _option("full protocol: number of folds K; K models, each holds one fold out")
    model: str | None = _option(
        f"bundled config ({', '.join(BUNDLED_MODELS)}), open_clip name (e.g. ViT-B-32) or an open_clip JSON config file"
    )
    epochs: int | None = _option("training epochs of every model")
    batch_size: int | None = _option("training batch size")
    lr: float | None = _option("peak learning rate of AdamW")
    warmup_steps: int | None = _option("linear warm-up steps before the cosine decay (0: none)")
    split_sizes: tuple[float, ...] | None = _option(
        "paper protocol: shared,candidate,independent,extra as fractions or counts"
    )
    augmentations: int | None = _option("K augmented views per sample for the alignment A")
    score_batch_size: int = _option(
        "samples per batch when scoring the K views (each batch draws its views from its own seed, so this is "
        "part of the run; under torchrun the batches are shared out to the processes)",
        default=64,
    )
    seed: int = _option("seeds splits, initialisation, data order and views", default=0)
    init_checkpoint: str | None = _option("local checkpoint every model starts from (fine-tuning)")
    text_noise: float = _option(
        "mitigation: std σ of Gaussian noise N(0, σ²) added to every coordinate of the L2-normalised text "
        "embeddings in training only (never when scoring); 0: none, at most 1",
        default=0.0,
    )
    exclude: str | None = _option(
        "mitigation: drop list (CSV/TSV/parquet with a sample_id column, or .txt with one id a line, e.g. "
        "`clipmem review export --what droplist`): train and score without these samples"
    )
    caption_dropout: float | None = _option(
        "training-time caption augmentation: each comma-, semicolon- or colon-separated part of a caption "
        "(a title, a keyword) is left out of a draw with this probability, at least one part kept; 0: none"
    )
    mask_duplicate_captions: bool | None = _option(
        "contrastive training: pairs of a batch with the same caption are not each other's negatives, so a "
        "common caption (a template, boilerplate alt text) does not inflate its samples' training loss"
    )
    retain_epochs: int | None = _option(
        "full protocol: after its own training, each model trains this many epochs on the fold it held out, and "
        "the pairs it trained on are scored again (retained alignment: a memorised wrong caption fades), and "
        "it takes the training loss's place in the combined ranking; 0 (every preset's): not measured. Found "
        "more mis-captions on 8k images with 3, fewer on 950"
    )
    max_captions: int | None = _option(
        "use at most this many captions per sample (the first ones) in training and scoring; default: all"
    )
    on_error: str = _option("bad rows: skip them and list them in skipped.csv, or fail", default="skip")
    img_key: str = _option("image column of a CSV/TSV", default="filepath", flag="--csv-img-key")
    caption_key: str = _option("caption column of a CSV/TSV", default="caption", flag="--csv-caption-key")
    allow_outside_root: bool = _option(
        "accept relative image paths that leave the dataset's folder with '..' (absolute paths are always accepted)",
        default=False,
    )
    extract_shards: bool = _option(
        "WebDataset shards: extract their images to $CLIPMEM_DATA_CACHE once instead of reading them in place "
        "(for small data, or tools that need plain files)",
        default=False,
    )
    device: str = _option("auto (CUDA if present), cpu, cuda, cuda:1 …", default="auto")
    precision: str = _option(
        "precision of training and scoring: auto (bf16 mixed precision on CUDA, fp32 on CPU), fp32, or bf16 "
        "(on a CPU only where bf16 is native, AVX512-BF16 or AMX: a training step 1.28x faster there, 6-13x "
        "slower elsewhere; every score changes a little)",
        default="auto",
    )
    num_workers: int = _option("data-loader worker processes", default=0)
    checkpoint_every: float = _option(
        "seconds of training between a model's resume checkpoints (one is written at the end of the first epoch "
        "that ends this long after the last one, and after the last epoch); 0: after every epoch. A resume "
        "repeats at most this much training, and gives the same result either way",
        default=CHECKPOINT_EVERY_S,
    )
    parallel_models: bool = _option(
        "train the protocol's models at the same time, each in its own process (on CUDA model i on GPU i mod "
        "the GPU count; on CPU the cores are split between them); the result is the one of training them in turn",
        default=False,
    )
    thumbnail_size: int = _option("longest side of the dashboard's thumbnails, in pixels", default=96)

    def resolved(self) -> RunConfig:
        """Fill every unset field from the preset and check every value; ClipmemError names a bad one."""
        if self.preset not in PRESETS:
            raise ClipmemError(f"unknown preset {self.preset!r}; choose one of {', '.join(PRESETS)}")
        preset = PRESETS[self.preset]
        filled = replace(
            self,
            protocol=self.protocol or preset.protocol,
            folds=preset.folds if self.folds is None else self.folds,
            model=self.model or preset.model,
            epochs=preset.epochs if self.epochs is None else self.epochs,
            batch_size=preset.batch_size if self.batch_size is None else self.batch_size,
            lr=preset.lr if self.lr is None else self.lr,
            warmup_steps=preset.warmup_steps if self.warmup_steps is None else self.warmup_steps,
            split_sizes=tuple(preset.split_sizes if self.split_sizes is None else self.split_sizes),
            augmentations=preset.augmentations if self.augmentations is None else self.augmentations,
            caption_dropout=preset.caption_dropout if self.caption_dropout is None else self.caption_dropout,
            mask_duplicate_captions=(
                preset.mask_duplicate_captions if self.mask_duplicate_captions is None else self.mask_duplicate_captions
            ),
            retain_epochs=preset.retain_epochs if self.retain_epochs is None else self.retain_epochs,
        )
        filled.check()
        return filled

    def check_given_for_its_protocol(self) -> None:
        """Refuse an option a user gave for the other protocol: it was silently ignored, and the manifest
        recorded it as if used ("folds: 3" on a paper-protocol run). Asked of the options as given (unset ones
        None), by the CLI and the Compute form; a resolved config holds every field, used or not."""
        preset = PRESETS.get(self.preset)
        protocol = self.protocol or (preset.protocol if preset else "full")
        unused = UNUSED_BY_PROTOCOL.get(protocol, ())  # an unknown protocol is refused by check()
        given = next((name for name in unused if getattr(self, name) not in (None, 0)), None)
        if given is None:
            return
        flag = "--" + given.replace("_", "-")
        if protocol == "paper":
            raise ClipmemError(
                f"{flag} applies to the full protocol, and this run uses the paper protocol (its f and g "
                "train on the splits of --split-sizes): drop it, or use --protocol full"
            )
        raise ClipmemError(
            f"{flag} applies to the paper protocol, and this run uses the full protocol (it splits the "
            "data into --folds): drop it, or use --protocol paper"
        )

    def check(self) -> None:
        """Refuse values no run could use, before anything is read or written."""
        if not self.data or not self.out:
            raise ClipmemError("a run needs --data and --out")
        if self.protocol not in PROTOCOLS:
            raise ClipmemError(f"--protocol must be one of {', '.join(PROTOCOLS)}, not {self.protocol!r}")
        check_precision(self.precision)
        if self.on_error not in ON_ERROR:
            raise ClipmemError(f"--on-error must be skip or fail, not {self.on_error!r}")
        for name, (minimum, maximum) in _WHOLE_NUMBER_RANGES.items():
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or not minimum <= value <= maximum:
                raise ClipmemError(
                    f"--{name.replace('_', '-')} must be a whole number from {minimum} to {maximum:,}, not {value!r}"
                )
        if not (_finite(self.lr) and self.lr > 0):
            raise ClipmemError(f"--lr must be a positive finite number, not {_shown(self.lr)}")
        sizes = self.split_sizes
        if sizes is not None and (len(sizes) != 4 or not all(_finite(s) and s >= 0 for s in sizes)):
            raise ClipmemError(f"--split-sizes must be four finite, non-negative numbers, not {list(sizes)}")
        for name in ("img_key", "caption_key"):
            if not str(getattr(self, name)).strip():
                raise ClipmemError(f"--{name.replace('_', '-')} is empty")
        noise = self.text_noise
        if isinstance(noise, bool) or not (isinstance(noise, (int, float)) and math.isfinite(noise) and noise >= 0):
            raise ClipmemError(f"--text-noise must be a finite number of at least 0, not {_shown(noise)}")
        if noise > MAX_TEXT_NOISE:  # 1e9 trained on, to a loss of 1.7e10 and a run that meant nothing
            raise ClipmemError(
                f"--text-noise {noise:g} drowns the captions: each cosine in the loss, between -1 and 1, moves by "
                f"N(0, σ²); σ is at most {MAX_TEXT_NOISE:g}"
            )
        every = self.checkpoint_every
        if isinstance(every, bool) or not (_finite(every) and every >= 0):
            raise ClipmemError(
                f"--checkpoint-every must be a finite number of seconds, at least 0, not {_shown(every)}"
            )
        dropout = self.caption_dropout
        if isinstance(dropout, bool) or not (isinstance(dropout, (int, float)) and 0 <= dropout < 1):
            raise ClipmemError(
                f"--caption-dropout must be a number from 0 up to (not including) 1, not {_shown(dropout)}"
            )
        if not isinstance(self.mask_duplicate_captions, bool):
            raise ClipmemError(f"--mask-duplicate-captions must be true or false, not {self.mask_duplicate_captions!r}")
        if self.max_captions is not None and (not isinstance(self.max_captions, int) or self.max_captions < 1):
            raise ClipmemError(f"--max-captions must be a whole number of at least 1, not {self.max_captions!r}")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def option_fields(cls) -> list:
        """The fields with their help text: what the CLI turns into flags."""
        return list(fields(cls))


def check_precision(precision: str) -> None:
    """Refuse a ``--precision`` that is not one of PRECISIONS."""
    if precision not in PRECISIONS:
        raise ClipmemError(f"--precision must be one of {', '.join(PRECISIONS)}, not {precision!r}")


def option_flag(spec: Field) -> str:
    """The CLI flag of a RunConfig field (its ``flag`` metadata, else --its-name): one spelling for the CLI
    and the Compute page's command."""
    return spec.metadata.get("flag") or f"--{spec.name.replace('_', '-')}"


def option_parser(spec: Field) -> Callable[[str], Any]:
    """How a run option's typed text becomes its value: one reading for the CLI's flags and the Compute form's
    fields (split sizes, whole numbers, numbers, else the text)."""
    if spec.name == "split_sizes":
        return parse_split_sizes
    kind = str(spec.type)
    return int if kind.startswith("int") else float if kind.startswith("float") else str


def is_preset_switch(spec: Field) -> bool:
    """A yes/no option the preset fills: the CLI offers it as --flag / --no-flag, left out = the preset's."""
    return str(spec.type) == "bool | None"


def _shown(value: Any) -> str:
    """A refused value as the user typed it: the CLI reads ``2`` as the float 2.0, and "not 2.0" reads as if
    clipmem had changed their input; numbers in their shortest form, anything else as its repr."""
    if isinstance(value, float) and math.isfinite(value):
        return format(value, "g") if value == float(format(value, "g")) else repr(value)
    return repr(value)


def _finite(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
