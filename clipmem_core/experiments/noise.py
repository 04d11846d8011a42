"""The text-noise study: Gaussian noise on the text embeddings during training, σ by σ.

The paper (COCO, ViT-B-32) finds a sweet spot: σ = 0.15 lowers CLIPMem (0.438 → 0.417) and raises the
linear probe (63.1 → 65.4 %), while σ = 0.3 makes both worse again (0.447, 61.5 %). Each σ here is one
run per seed with ``--text-noise σ`` (see ``clipmem_core.train.add_text_noise`` for where it is added).
"""

from __future__ import annotations

from .base import Condition, Experiment, Study


class NoiseStudy(Study):
    name = "noise"
    axis = "text-noise σ"
    default_values = (0.0, 0.05, 0.15, 0.3)
    description = "mean CLIPMem and utility per σ of the Gaussian noise on the text embeddings in training"

    def conditions(self, experiment: Experiment, seed: int) -> list[Condition]:
        return [
            Condition(f"sigma{sigma:g}", sigma, options={"text_noise": float(sigma)}) for sigma in _values(experiment)
        ]


def _values(experiment: Experiment) -> tuple[float, ...]:
    return experiment.settings.values or NoiseStudy.default_values
