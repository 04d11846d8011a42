"""Image transforms: open_clip's, plus the horizontal flip that CLIPMem's views use."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import open_clip
import torch
from torchvision import transforms as T

CROP_SCALE = (0.5, 1.0)


def train_transform(image_size: int, *, mean: Any = None, std: Any = None) -> Callable[[Any], torch.Tensor]:
    """Random resized crop + flip: used for training and for the K augmented views."""
    base = open_clip.image_transform(
        image_size,
        is_train=True,
        mean=mean,
        std=std,
        aug_cfg=open_clip.AugmentationCfg(scale=CROP_SCALE),
    )
    crop, *rest = base.transforms
    return T.Compose([crop, T.RandomHorizontalFlip(), *rest])


def eval_transform(image_size: int, *, mean: Any = None, std: Any = None) -> Callable[[Any], torch.Tensor]:
    """Resize + centre crop: the un-augmented view behind CLIP scores and embeddings."""
    return open_clip.image_transform(image_size, is_train=False, mean=mean, std=std)
