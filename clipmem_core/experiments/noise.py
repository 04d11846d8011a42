"""The text-noise study: Gaussian noise on the text embeddings during training, σ by σ.

The paper (COCO, ViT-B-32) finds a sweet spot: σ = 0.15 lowers CLIPMem (0.438 → 0.417) and raises the
linear probe (63.1 → 65.4 %), while σ = 0.3 makes both worse again (0.447, 61.5 %). Each σ here is one
run per seed with ``--text-noise σ`` (see ``clipmem_core.train.add_text_noise`` for where it is added).
"""

from __future__ import annotations

from ..config import MAX_TEXT_NOISE
from ..errors import ClipmemError
from .base import Condition, Experiment, ExperimentSettings, Study


class NoiseStudy(Study):
    name = "noise"
    axis = "text-noise σ"
    values_option = "--sigmas"
    default_values = (0.0, 0.05, 0.15, 0.3)
    description = "mean CLIPMem and utility per σ of the Gaussian noise on the text embeddings in training"

    def check(self, settings: ExperimentSettings, dataset) -> None:
        """Every σ a run accepts, and each its own run name (σ is named to 6 significant digits)."""
        sigmas = _values(settings)
        bad = [sigma for sigma in sigmas if not 0 <= sigma <= MAX_TEXT_NOISE]  # NaN too; the run's own check
        if bad:  # named --text-noise
            raise ClipmemError(f"{self.values_option}: each σ must be from 0 to {MAX_TEXT_NOISE:g}, not {bad[0]:g}")
        for sigma in sigmas:
            settings.run_defaults(text_noise=float(sigma))
        names = [_name(sigma) for sigma in sigmas]
        clash = next((name for name in names if names.count(name) > 1), None)
        if clash:
            raise ClipmemError(
                f"{self.values_option}: two values share the run name {clash}; give σ to 6 significant digits"
            )

    def conditions(self, experiment: Experiment, seed: int) -> list[Condition]:
        sigmas = _values(experiment.settings)
        return [Condition(_name(sigma), sigma, options={"text_noise": float(sigma)}) for sigma in sigmas]


def _name(sigma: float) -> str:
    return f"sigma{sigma:g}"


def _values(settings: ExperimentSettings) -> tuple[float, ...]:
    return settings.values or NoiseStudy.default_values
