"""The captions study: training with 1, 2, … captions per image, where the data has several.

The paper (COCO, 5 captions per image) finds that more captions lower memorization and raise utility:
CLIPMem 0.438 → 0.422 from 1 to 5 captions, linear probe 63.1 → 64.9 %. Here each count k is one run per
seed with ``--max-captions k``: every sample keeps its first k captions, and training draws one of
them per step (multi-caption sampling, ``clipmem_core.train.PairDataset``). With ``--inject`` a
mis-captioned sample carries its donor's whole set, so it too trains on k wrong captions, and the results
say whether more captions lower the memorization of the mis-captions themselves (``clipmem_miscaptioned``).
"""

from __future__ import annotations

from ..data import Dataset
from ..errors import ClipmemError
from .base import Condition, Experiment, ExperimentSettings, Study

MAX_DEFAULT = 5


class CaptionsStudy(Study):
    name = "captions"
    axis = "captions per image"
    values_option = "--counts"
    description = "mean CLIPMem and utility when training on the first 1…n captions of each sample"

    def check(self, settings: ExperimentSettings, dataset: Dataset) -> None:
        most = max(len(c) for c in dataset.samples["captions"])
        if most < 2:
            raise ClipmemError(
                f"{settings.data} has one caption per sample; the captions study needs several "
                "(a COCO captions JSON, or an image folder whose .txt files hold several lines)"
            )
        odd = [k for k in settings.values if k != int(k) or not 1 <= k <= most]
        if odd:
            raise ClipmemError(
                f"{self.values_option}: {odd[0]:g} is not a whole number of captions from 1 to {most}, "
                f"the most any sample of {settings.data} has"
            )

    def conditions(self, experiment: Experiment, seed: int) -> list[Condition]:
        counts = experiment.settings.values
        if not counts:
            most = max(len(c) for c in experiment.dataset(seed)[1].samples["captions"])
            counts = tuple(range(1, min(most, MAX_DEFAULT) + 1))
        return [Condition(f"captions{int(k)}", int(k), options={"max_captions": int(k)}) for k in counts]
