"""Model factory: open_clip architectures by name, with clipmem's small CPU configs registered.

Models are always built with ``pretrained=None``: nothing is downloaded. Fine-tuning starts from a
local checkpoint file instead (``init_checkpoint``).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import open_clip
import torch

from .errors import ClipmemError
from .transforms import eval_transform, train_transform

CONFIG_DIR = Path(__file__).parent / "model_configs"
BUNDLED_MODELS = tuple(sorted(p.stem for p in CONFIG_DIR.glob("*.json")))
open_clip.add_model_config(CONFIG_DIR)
# A clipmem trainer checkpoint also holds numpy's RNG state (a uint32 array): allow exactly what that needs.
_TRAINER_STATE_GLOBALS = [np._core.multiarray._reconstruct, np.ndarray, np.dtype, type(np.dtype("uint32"))]


@dataclass
class ClipBundle:
    """A model with the tokenizer and transforms that belong to it."""

    name: str
    model: torch.nn.Module
    tokenizer: Callable[[list[str]], torch.Tensor]
    train_transform: Callable[[Any], torch.Tensor]
    eval_transform: Callable[[Any], torch.Tensor]
    image_size: int


def image_size_of(model_name: str) -> int:
    config = _config(model_name)
    size = config["vision_cfg"].get("image_size", 224)
    return int(size if isinstance(size, int) else size[0])


def _config(model_name: str) -> dict:
    config = open_clip.get_model_config(model_name)
    if config is None:
        raise ClipmemError(
            f"unknown model {model_name!r}: use a bundled config ({', '.join(BUNDLED_MODELS)}) "
            "or an open_clip architecture name such as ViT-B-32"
        )
    return config


def create_clip(
    model_name: str, *, init_checkpoint: str | Path | None = None, device: str | torch.device = "cpu"
) -> ClipBundle:
    """Build a randomly initialised model (seed the RNG first), or load a local checkpoint into it."""
    _config(model_name)
    logging.disable(logging.WARNING)  # open_clip warns that no pretrained weights load: that is the intent
    try:
        model = open_clip.create_model(model_name, pretrained=None, device=device)
    finally:
        logging.disable(logging.NOTSET)
    if init_checkpoint is not None:
        load_weights(model, init_checkpoint)
    size = image_size_of(model_name)
    preprocess = model.visual.preprocess_cfg if hasattr(model.visual, "preprocess_cfg") else {}
    mean, std = preprocess.get("mean"), preprocess.get("std")
    return ClipBundle(
        name=model_name,
        model=model,
        tokenizer=open_clip.get_tokenizer(model_name),
        train_transform=train_transform(size, mean=mean, std=std),
        eval_transform=eval_transform(size, mean=mean, std=std),
        image_size=size,
    )


def load_weights(model: torch.nn.Module, checkpoint: str | Path) -> None:
    """Load an open_clip checkpoint, or one written by clipmem's trainer ({'model': state_dict})."""
    path = Path(checkpoint)
    if not path.is_file():
        raise ClipmemError(f"checkpoint {path} does not exist")
    try:
        with torch.serialization.safe_globals(_TRAINER_STATE_GLOBALS):
            state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises several types for a damaged or foreign file
        raise ClipmemError(f"checkpoint {path} is unreadable: {exc}") from None
    if isinstance(state, dict) and "model" in state and isinstance(state["model"], dict):
        state = state["model"]
    if isinstance(state, dict) and "state_dict" in state:
        state = state["state_dict"]
    state = {k.removeprefix("module."): v for k, v in state.items()}
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        first = str(exc).splitlines()[0]
        raise ClipmemError(f"checkpoint {path} does not fit this model: {first}") from None
