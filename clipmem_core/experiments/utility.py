"""Utility of a run's models on a fixed evaluation set: retrieval R@1/R@5 and a linear probe.

Every run of an experiment leaves the same seeded evaluation set E out of training (it is part of each
run's drop list), so their utilities are measured on the very same pairs, with the same gallery size,
whatever else a run removed. A run's own manifest utility (each model on the fold it held out) cannot
be compared across runs with different data: the held-out folds differ, and so do their sizes.

- Retrieval: image→text and text→image recall@1 and @5 among E's pairs, under each model of the run
  (h0…h{K-1}, or f and g), averaged over the models. Where the data has ``is_miscaptioned``, only E's
  clean pairs count: a mis-captioned pair has no right answer to retrieve.
- Linear probe: where the data has a ``label`` column, a logistic regression on each model's image
  embeddings of the rest of the data (D minus E, at most ``PROBE_TRAIN_LIMIT`` samples, labels describe
  images, so mis-captions do not matter), scored by its accuracy on E; averaged over the models.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
from PIL import Image

from ..cache import CHECKPOINT_DIR, GROUND_TRUTH, Run
from ..data import CLASS_COLUMN, load_image
from ..errors import ClipmemError
from ..metrics import retrieval_recall

if TYPE_CHECKING:  # torch and open_clip load where a model is used: the CLI's parser imports this package
    import torch

    from ..models import ClipBundle

PROBE_TRAIN_LIMIT = 5_000
MIN_PROBE_CLASSES = 2


@dataclass
class EvalData:
    """One seed's evaluation set E and probe training set, images decoded once for every run."""

    eval_frame: pd.DataFrame
    eval_images: list[Image.Image]
    probe_frame: pd.DataFrame
    probe_images: list[Image.Image]

    @property
    def has_labels(self) -> bool:
        return CLASS_COLUMN in self.eval_frame.columns and self.eval_frame[CLASS_COLUMN].nunique() >= 1

    @property
    def retrieval_rows(self) -> np.ndarray:
        """Rows of E that count for retrieval: the clean ones where the data says which are clean."""
        if GROUND_TRUTH in self.eval_frame.columns:
            return np.flatnonzero(~self.eval_frame[GROUND_TRUTH].fillna(False).astype(bool).to_numpy())
        return np.arange(len(self.eval_frame))


def eval_data(samples: pd.DataFrame, root: Path, eval_ids: set[str], seed: int) -> EvalData:
    """Load E's images and, where there are labels, those of the probe's training set."""
    in_eval = samples["sample_id"].isin(eval_ids).to_numpy()
    eval_frame = samples.loc[in_eval].reset_index(drop=True)
    probe_frame = samples.iloc[:0]
    if CLASS_COLUMN in samples.columns:
        rest = samples.loc[~in_eval & samples[CLASS_COLUMN].notna().to_numpy()]
        if len(rest) > PROBE_TRAIN_LIMIT:
            rest = rest.sample(PROBE_TRAIN_LIMIT, random_state=seed)
        probe_frame = rest.reset_index(drop=True)
    return EvalData(
        eval_frame=eval_frame,
        eval_images=[load_image(root, p) for p in eval_frame["filepath"]],
        probe_frame=probe_frame,
        probe_images=[load_image(root, p) for p in probe_frame["filepath"]],
    )


def load_models(run: Run, device: torch.device) -> dict[str, ClipBundle]:
    """Every model of a run, rebuilt from its final checkpoint (``checkpoints/<tag>_last.pt``)."""
    from ..models import create_clip, load_weights

    bundles = {}
    for tag in run.manifest.models:
        checkpoint = run.path / CHECKPOINT_DIR / f"{tag}_last.pt"
        if not checkpoint.is_file():
            raise ClipmemError(f"run {run.name} has no checkpoint of model {tag} ({checkpoint})")
        bundle = create_clip(run.manifest.config["model"], device=device)
        load_weights(bundle.model, checkpoint)
        bundle.model.to(device).eval()
        bundles[tag] = bundle
    return bundles


def linear_probe_accuracy(
    train_features: np.ndarray, train_labels: np.ndarray, test_features: np.ndarray, test_labels: np.ndarray
) -> float:
    """Accuracy on the test set of a logistic regression on standardised features; NaN with < 2 classes."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    if len(set(train_labels)) < MIN_PROBE_CLASSES or not len(test_labels):
        return math.nan
    probe = make_pipeline(StandardScaler(), LogisticRegression(max_iter=2_000))
    probe.fit(train_features, train_labels)
    return float((probe.predict(test_features) == test_labels).mean())


def model_utility(bundle: ClipBundle, data: EvalData, device: torch.device) -> dict[str, float]:
    """R@1/R@5 both ways on E's counted pairs and, with labels, the probe's accuracy on E."""
    from ..scoring import embed_pairs

    image, text = embed_pairs(
        bundle.model,
        data.eval_images,
        data.eval_frame["caption"].tolist(),
        bundle.eval_transform,
        bundle.tokenizer,
        device=device,
        desc="evaluate",
    )
    rows = data.retrieval_rows
    result = retrieval_recall(image[rows], text[rows])
    result["probe_accuracy"] = math.nan
    if data.has_labels and len(data.probe_frame):
        probe_image, _ = embed_pairs(
            bundle.model,
            data.probe_images,
            data.probe_frame["caption"].tolist(),
            bundle.eval_transform,
            bundle.tokenizer,
            device=device,
            desc="probe features",
        )
        labelled = data.eval_frame[CLASS_COLUMN].notna().to_numpy()
        result["probe_accuracy"] = linear_probe_accuracy(
            probe_image,
            data.probe_frame[CLASS_COLUMN].astype(str).to_numpy(),
            image[labelled],
            data.eval_frame.loc[labelled, CLASS_COLUMN].astype(str).to_numpy(),
        )
    return result


def _nanmean(values: list[float]) -> float:
    finite = [v for v in values if not math.isnan(v)]
    return float(np.mean(finite)) if finite else math.nan


def run_utility(run: Run, data: EvalData, device: torch.device) -> dict[str, float]:
    """Mean over the run's models of every utility figure, plus R@1/R@5 averaged over both directions."""
    per_model = [model_utility(bundle, data, device) for bundle in load_models(run, device).values()]
    mean = {key: _nanmean([m[key] for m in per_model]) for key in per_model[0]}
    mean["r1"] = (mean["i2t_r1"] + mean["t2i_r1"]) / 2
    mean["r5"] = (mean["i2t_r5"] + mean["t2i_r5"]) / 2
    mean["n_eval"] = len(data.retrieval_rows)
    return mean
