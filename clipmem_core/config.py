"""Run configuration and presets. The whole config is stored in the manifest, so a run can be redone."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, replace
from typing import Any

from .errors import ClipmemError


@dataclass(frozen=True)
class Preset:
    model: str
    epochs: int
    batch_size: int
    lr: float
    warmup_steps: int
    split_sizes: tuple[float, float, float, float]
    augmentations: int = 8


PRESETS: dict[str, Preset] = {
    # A few hundred images, minutes on 2 CPU cores: tests and demos.
    "tiny": Preset(
        "clipmem-tiny", epochs=40, batch_size=32, lr=2e-3, warmup_steps=20, split_sizes=(0.5, 0.2, 0.2, 0.1)
    ),
    # Thousands of 64 px images on a laptop.
    "cpu": Preset("clipmem-cpu", epochs=15, batch_size=128, lr=1e-3, warmup_steps=50, split_sizes=(0.7, 0.1, 0.1, 0.1)),
    # The paper's setup: ViT-B-32 at 224 px, 65k/5k/5k/5k, on a GPU server.
    "paper": Preset(
        "ViT-B-32", epochs=100, batch_size=256, lr=5e-4, warmup_steps=1000, split_sizes=(65_000, 5_000, 5_000, 5_000)
    ),
}


@dataclass(frozen=True)
class RunConfig:
    """Everything that determines a run's result (plus where its input and output live)."""

    data: str
    out: str
    preset: str = "tiny"
    model: str = ""
    epochs: int = 0
    batch_size: int = 0
    lr: float = 0.0
    warmup_steps: int = 0
    split_sizes: tuple[float, ...] = ()
    augmentations: int = 0
    seed: int = 0
    init_checkpoint: str | None = None
    on_error: str = "skip"
    img_key: str = "filepath"
    caption_key: str = "caption"
    device: str = "auto"
    num_workers: int = 0
    thumbnail_size: int = 96
    extra: dict[str, Any] = field(default_factory=dict)

    def resolved(self) -> RunConfig:
        """Fill every unset field from the preset."""
        if self.preset not in PRESETS:
            raise ClipmemError(f"unknown preset {self.preset!r}; choose one of {', '.join(PRESETS)}")
        preset = PRESETS[self.preset]
        if self.on_error not in ("skip", "fail"):
            raise ClipmemError(f"--on-error must be skip or fail, not {self.on_error!r}")
        filled = replace(
            self,
            model=self.model or preset.model,
            epochs=self.epochs or preset.epochs,
            batch_size=self.batch_size or preset.batch_size,
            lr=self.lr or preset.lr,
            warmup_steps=self.warmup_steps or preset.warmup_steps,
            split_sizes=tuple(self.split_sizes or preset.split_sizes),
            augmentations=self.augmentations or preset.augmentations,
        )
        for name in ("epochs", "batch_size", "augmentations"):
            if getattr(filled, name) < 1:
                raise ClipmemError(f"--{name.replace('_', '-')} must be at least 1")
        return filled

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)
