"""The removal study: remove the top N samples by a score, retrain, and compare utility per N.

The paper (COCO) removes the most memorized samples by CLIPMem and retrains: utility rises (linear probe
63.1 → 66.4 % after removing the top 100) more than after removing random samples or those with the
lowest CLIP similarity, and falls again past about 400 removed. Here, per seed:

1. a baseline run on the data minus the evaluation set E scores every sample of the training pool;
2. for each strategy in ``by`` (any registered score, ranked by its suspicion, e.g. ``combined``,
   ``clipmem``; ``clip_score_heldout`` is the paper's lowest-CLIP-score baseline; ``random`` draws N
   seeded samples) and each N, the top N of the pool are removed and the models retrained;
3. every run's utility is measured on the same E.
"""

from __future__ import annotations

import logging
import math
import zlib

import numpy as np

from ..data import Dataset
from ..errors import ClipmemError
from ..scores import get_score
from .base import Condition, Experiment, ExperimentSettings, Study

RANDOM = "random"
BASELINE = "baseline"
log = logging.getLogger("clipmem")
DEFAULT_BY = ("combined", "clipmem", "clip_score_heldout", RANDOM)


class RemovalStudy(Study):
    name = "removal"
    axis = "samples removed"
    values_option = "--remove"
    default_values = (0.01, 0.05, 0.1)
    description = "utility after removing the top N by a score, against N random and N lowest CLIP score"

    def check(self, settings: ExperimentSettings, dataset: Dataset) -> None:
        resolved = settings.run_defaults()
        for strategy in strategies(settings):
            if strategy != RANDOM:
                option = _score(strategy).needs_option
                if option and not getattr(resolved, option):
                    flag = "--" + option.replace("_", "-")
                    raise ClipmemError(f"--by {strategy}: its runs have that score only with {flag} (add it)")
        if any(v <= 0 for v in settings.values):
            raise ClipmemError(
                f"{self.values_option}: numbers to remove must be positive (fractions below 1, or counts)"
            )
        fractional = [v for v in settings.values if v > 1 and v != int(v)]
        if fractional:
            raise ClipmemError(
                f"{self.values_option}: {fractional[0]:g} is neither a fraction below 1 nor a whole count"
            )
        pool = len(dataset.samples) - settings.eval_size(len(dataset.samples))
        refuse_shared_counts(settings.values, pool)
        counts = removal_counts(settings.values or self.default_values, pool)  # said before the baseline trains
        if not settings.values and len(counts) < len(self.default_values):
            log.warning(
                "%s: the default fractions %s of a training pool of %d make %s; give counts with %s",
                self.values_option,
                ",".join(f"{v:g}" for v in self.default_values),
                pool,
                _samples_list(counts),
                self.values_option,
            )

    def conditions(self, experiment: Experiment, seed: int) -> list[Condition]:
        baseline = Condition(BASELINE, 0, group=BASELINE)
        scores = experiment.run(seed, baseline).scores
        pool = scores["sample_id"].to_numpy()
        conditions = [baseline]
        for strategy in strategies(experiment.settings):
            order = _ranking(scores, strategy, seed)
            counts = removal_counts(experiment.settings.values or self.default_values, len(pool))
            _refuse_unscored_top(scores, strategy, max(counts))
            for n in counts:
                drop = frozenset(pool[order[:n]])
                conditions.append(Condition(f"{strategy}-n{n}", n, group=strategy, drop=drop))
        return conditions


def _score(strategy: str):
    """The registered score a strategy names; the error lists ``random`` beside the registered ones."""
    try:
        return get_score(strategy)
    except ClipmemError as exc:
        raise ClipmemError(f"--by: {exc}, or {RANDOM}") from None


def strategies(settings: ExperimentSettings) -> tuple[str, ...]:
    return settings.by or DEFAULT_BY


def removal_counts(values: tuple[float, ...], pool: int) -> list[int]:
    """Fractions of the pool (below 1) or counts, as distinct counts between 1 and half the pool."""
    counts = sorted({_count(value, pool) for value in values})
    too_many = [n for n in counts if n > pool // 2]
    if too_many:
        raise ClipmemError(f"cannot remove {too_many[0]} of a training pool of {pool}: remove at most half")
    return counts


def refuse_shared_counts(values: tuple[float, ...], pool: int) -> None:
    """Refuse given values that make the same count, as a repeated value is: ``0.05,8`` of a pool of 160 made
    one condition, and the study silently had a value fewer."""
    by_count: dict[int, list[float]] = {}
    for value in dict.fromkeys(values):
        by_count.setdefault(_count(value, pool), []).append(value)
    shared = next(((n, group) for n, group in by_count.items() if len(group) > 1), None)
    if shared:
        n, group = shared
        names = " and ".join(f"{value:g}" for value in group)
        raise ClipmemError(
            f"{RemovalStudy.values_option}: {names} {'both' if len(group) == 2 else 'all'} mean "
            f"{_samples_list([n])} of a training pool of {pool}: give values that remove different numbers"
        )


def _count(value: float, pool: int) -> int:
    return max(1, round(value * pool)) if value < 1 else int(value)


def _samples_list(counts: list[int]) -> str:
    return ", ".join(map(str, counts)) + (" sample" if counts == [1] else " samples")


def _refuse_unscored_top(scores, strategy: str, n: int) -> None:
    """Refuse to remove the top ``n`` by a score that ranks fewer samples: under the paper protocol CLIPMem
    ranks only S_C and S_I, and "clipmem-n55" removed 48 of them and 7 unscored samples in file order."""
    if strategy == RANDOM:
        return
    scored = int((~np.isnan(get_score(strategy).suspicion(scores[strategy]))).sum())
    if n > scored:
        raise ClipmemError(
            f"--by {strategy} ranks {scored} of the baseline's {len(scores)} samples (the paper protocol scores "
            f"CLIPMem on S_C and S_I only), too few to remove the top {n} by it: give {RemovalStudy.values_option} "
            f"up to {scored}, or use --protocol full, which scores every sample"
        )


def _ranking(scores, strategy: str, seed: int) -> np.ndarray:
    """Rows, most suspicious first (unscored rows last), or a seeded shuffle for ``random``."""
    if strategy == RANDOM:
        return np.random.default_rng([seed, zlib.crc32(b"removal")]).permutation(len(scores))
    if strategy not in scores.columns:
        raise ClipmemError(f"the baseline run has no {strategy!r} scores to rank by")
    suspicion = get_score(strategy).suspicion(scores[strategy])
    ranked = np.where(np.isnan(suspicion), -math.inf, suspicion)
    return np.argsort(-ranked, kind="stable")
