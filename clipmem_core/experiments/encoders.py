"""The encoders study: which encoder memorizes more, the image or the text one? SSLMem-style.

SSLMem measures memorization in a self-supervised encoder as how much better the model that trained on
a sample aligns two augmentations of it than a model that did not. Applied to each tower of CLIP, per
sample and per model:

- image side: the mean cosine, under the image encoder, between K augmented views of the image (the
  training crops and flips; every model sees the same views);
- text side: the mean cosine, under the text encoder, between the sample's captions, taken pairwise
  (only samples with two or more captions: a caption has no other augmentation here).

Each is turned into memorization as CLIPMem is: the mean over the models that trained on the sample
minus the mean over those that did not (``ScoringContext.training`` / ``heldout``). The paper argues
the text encoder contributes more (its Table 1: more captions per image lower CLIPMem at least as much
as more generated images). Caveat: views and paraphrases are different augmentations, so the two
figures share a unit (a cosine difference) but not a difficulty; the study reports both, their
SSLMem-normalised forms, and a paired test on the samples that have both.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pandas as pd

from ..atomic import write_parquet
from ..cache import Run
from ..data import Dataset
from ..errors import ClipmemError
from .base import Condition, Experiment, ExperimentSettings, Study


class EncodersStudy(Study):
    name = "encoders"
    axis = "run"
    description = "per-encoder memorization (image views, caption paraphrases), SSLMem-style"

    def check(self, settings: ExperimentSettings, dataset: Dataset) -> None:
        if max(len(c) for c in dataset.samples["captions"]) < 2:
            raise ClipmemError(
                f"{settings.data} has one caption per sample: the text side needs two or more captions per sample"
            )

    def conditions(self, experiment: Experiment, seed: int) -> list[Condition]:
        return [Condition("base", 0)]

    def measure(self, experiment: Experiment, seed: int, condition: Condition, run: Run) -> dict[str, Any]:
        from .encoder_alignment import encoder_memorization  # torch: only where the study runs

        per_sample = encoder_memorization(run, experiment.device)
        write_parquet(experiment.folder / "encoders" / f"{run.name}.parquet", per_sample)
        return summarise_encoders(per_sample)


def summarise_encoders(per_sample: pd.DataFrame) -> dict[str, float]:
    """Mean memorization per encoder, SSLMem-normalised means, and a paired test where both are measured."""
    from scipy import stats  # on use: the CLI's parser imports this module

    image, text = per_sample["image_mem"].to_numpy(np.float64), per_sample["text_mem"].to_numpy(np.float64)
    both = np.isfinite(image) & np.isfinite(text)
    test = stats.ttest_rel(text[both], image[both]) if both.sum() >= 2 else None
    return {
        "image_mem": _mean(image),
        "text_mem": _mean(text),
        "image_mem_norm": _mean(_normalised(image)),
        "text_mem_norm": _mean(_normalised(text)),
        "image_mem_paired": _mean(image[both]),
        "n_text_samples": int(both.sum()),
        "text_minus_image_t": float(test.statistic) if test is not None else math.nan,
        "text_minus_image_p": float(test.pvalue) if test is not None else math.nan,
    }


def _normalised(values: np.ndarray) -> np.ndarray:
    """values / (max − min) over the finite ones, as SSLMem normalises."""
    finite = values[np.isfinite(values)]
    spread = float(finite.max() - finite.min()) if finite.size else 0.0
    return values / spread if spread > 0 else np.full_like(values, np.nan)


def _mean(values: np.ndarray) -> float:
    finite = values[np.isfinite(values)]
    return float(finite.mean()) if finite.size else math.nan
