"""The score registry's building blocks: `Score`, `register` and the `ScoringContext` scores read from.

A score is a small class, one module per score under ``clipmem_core/scores/``, in the pattern of
cleanlab Datalab's issue managers: it declares its column, label, direction and meaning, and computes
one value per sample from the run's models. Every consumer (summary, CLI, gallery sorts, review
queues, inspector, map colours, import-run, the docs table) iterates over the registry, so adding a
score means adding one file and its test.

Models and who trained on what
------------------------------
A run has M models (f and g under the paper protocol, h0…h{K-1} under the full protocol) and a boolean
matrix ``trained[m, i]``: did model m train on sample i? A sample's *training-side* value of a
per-model quantity is its mean over the models that trained on it; its *held-out* value is the mean
over the models that did not. Under the paper protocol that makes CLIPMem A(f)−A(g) on S_C and
A(g)−A(f) on S_I exactly as in the paper; under the full protocol it is mean_{k≠j} A(h_k) − A(h_j).
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import ClassVar

import numpy as np
import pandas as pd

from ..errors import ClipmemError

HIGH, LOW = "high", "low"


@dataclass
class ScoringContext:
    """Everything a score may read. Arrays have one row per model (M) and one column per sample (N).

    Attributes:
        frame: the run's rows (sample_id, split, caption, …) and every score computed before this one.
        trained: (M, N) bool, model m trained on sample i.
        align: (M, N) A(h_m, x_i, y_i), the mean cosine over augmented views; NaN where not computed.
        pair_cosine: (M, N) cosine of the un-augmented pair (the plain CLIP score); NaN where not computed.
        image, text: per model, (N, D) L2-normalised embeddings of every sample, or None when the run has
            no embeddings (an imported run, a version 1 run). A fresh run's images are the mean of the K
            augmented views where a row was scored over them, else the centre view; captions are centre.
        neighbours: k of the neighbour-based scores (CSLS, neighbour agreement).
        fit_loss: (M, N) each pair's mean contrastive loss over the epochs model m trained on it (NaN where
            m did not), or None when the run did not record it (imported and older runs).
        retained: (M, N) the cosine of each pair model m trained on after m trained on the pairs it held out
            (clipmem_core.retention; NaN elsewhere), or None when the run did not measure it (the paper
            protocol, ``--retain-epochs 0``, imported and older runs).
        reference_images: (N, D) the image embeddings the run stores (its reference model's centre views),
            in which the combined ranking compares a sample with its nearest images; stored, so that a
            finished run can be re-ranked from its files. None for older runs and imports without embeddings.
    """

    frame: pd.DataFrame
    trained: np.ndarray
    align: np.ndarray
    pair_cosine: np.ndarray
    image: list[np.ndarray] | None = None
    text: list[np.ndarray] | None = None
    neighbours: int = 10
    fit_loss: np.ndarray | None = None
    retained: np.ndarray | None = None
    reference_images: np.ndarray | None = None
    _memo: dict = field(default_factory=dict, repr=False)

    @property
    def n_models(self) -> int:
        return int(self.trained.shape[0])

    @property
    def has_embeddings(self) -> bool:
        return self.image is not None and self.text is not None

    def heldout(self, per_model: np.ndarray) -> np.ndarray:
        """Per sample: mean over the models that did not train on it (NaN if there is none)."""
        return _masked_mean(per_model, ~self.trained)

    def training(self, per_model: np.ndarray) -> np.ndarray:
        """Per sample: mean over the models that trained on it (NaN if there is none)."""
        return _masked_mean(per_model, self.trained)

    def memo(self, key: object, compute: Callable[[], object]) -> object:
        """Compute once per context what several scores share (e.g. a model's k-NN search)."""
        if key not in self._memo:
            self._memo[key] = compute()
        return self._memo[key]


def _masked_mean(values: np.ndarray, mask: np.ndarray) -> np.ndarray:
    values = np.where(mask, np.asarray(values, dtype=np.float64), np.nan)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN columns are expected: they stay NaN
        return np.nanmean(values, axis=0).astype(np.float32)


class Score:
    """One registered score. Subclasses set the class attributes and implement ``compute``.

    Attributes:
        name: registry key and parquet column, e.g. ``"clipmem"``.
        label: what people read, e.g. ``"CLIPMem"``.
        suspicious: ``"high"`` if a high value suggests a mis-caption, ``"low"`` if a low one does.
        meaning: one line for tooltips and the docs table.
        depends_on: names of scores that must be computed first (e.g. the combined ranking).
        order: where it is listed in menus and tables (lower first).
        needs_option: the run option (a RunConfig field) without which a run has no such score, if any:
            what a run asked to rank by this score is told before it trains.
        sort_wording: the sort's name where "Highest"/"Lowest" before the label reads badly
            ("Highest Likely mis-captioned").
    """

    name: ClassVar[str]
    label: ClassVar[str]
    suspicious: ClassVar[str]
    meaning: ClassVar[str]
    depends_on: ClassVar[tuple[str, ...]] = ()
    order: ClassVar[int] = 100
    needs_option: ClassVar[str | None] = None
    sort_wording: ClassVar[str | None] = None

    def compute(self, ctx: ScoringContext) -> np.ndarray | None:
        """One float per sample (NaN where undefined), or None when this run lacks the inputs."""
        raise NotImplementedError

    def suspicion(self, values: np.ndarray | pd.Series) -> np.ndarray:
        """Values turned so that higher always means more suspicious (what sorts and metrics rank by)."""
        array = np.asarray(values, dtype=np.float64)
        return array if self.suspicious == HIGH else -array

    @property
    def sort_label(self) -> str:
        """The sort's name in menus and queues: "Lowest CLIP score (held-out)", "Highest training loss …"."""
        return self.sort_wording or f"{self._extreme} {_mid_sentence(self.label)}"

    @property
    def link_names(self) -> frozenset[str]:
        """Every name a link may give this sort by, in lower case: its column (``?sort=clipmem``, as the CLI
        names it), its label, its sort's name, and that name as it read before it had its own words
        ("Highest Likely mis-captioned"), so that a link a teammate shared then still opens it."""
        names = (self.name, self.label, self.sort_label, f"{self._extreme} {self.label}")
        return frozenset(name.lower() for name in names)

    @property
    def _extreme(self) -> str:
        return "Highest" if self.suspicious == HIGH else "Lowest"


def _mid_sentence(label: str) -> str:
    """A label as words inside a sentence: "Training loss" -> "training loss"; an acronym (CLIP, CSLS,
    CLIPMem: a second capital in its first word) stays as it is."""
    first_word = label.split(" ", 1)[0]
    if sum(ch.isupper() for ch in first_word) > 1:
        return label
    return label[:1].lower() + label[1:]


_REGISTRY: dict[str, Score] = {}


def register(cls: type[Score]) -> type[Score]:
    """Class decorator: add a score to the registry (a second score of the same name is an error)."""
    for attribute in ("name", "label", "suspicious", "meaning"):
        if not getattr(cls, attribute, None):
            raise TypeError(f"score {cls.__name__} must set {attribute}")
    if cls.suspicious not in (HIGH, LOW):
        raise TypeError(f"score {cls.__name__}: suspicious must be {HIGH!r} or {LOW!r}")
    if cls.name in _REGISTRY and type(_REGISTRY[cls.name]) is not cls:
        raise TypeError(f"a score named {cls.name!r} is already registered")
    _REGISTRY[cls.name] = cls()
    return cls


def unregister(name: str) -> None:
    """Remove a score (for tests that register a temporary one)."""
    _REGISTRY.pop(name, None)


def registry() -> dict[str, Score]:
    """name -> score, in listing order (``Score.order``, then name): what menus and tables show."""
    return dict(sorted(_REGISTRY.items(), key=lambda item: (item[1].order, item[0])))


def computation_order() -> list[Score]:
    """Every score after the scores it depends on."""
    ordered: dict[str, Score] = {}

    def visit(name: str, path: tuple[str, ...]) -> None:
        if name in ordered:
            return
        if name in path:
            raise ClipmemError(f"scores depend on each other in a cycle: {' -> '.join((*path, name))}")
        for dependency in _REGISTRY[name].depends_on:
            if dependency in _REGISTRY:
                visit(dependency, (*path, name))
        ordered[name] = _REGISTRY[name]

    for name in registry():
        visit(name, ())
    return list(ordered.values())


def get_score(name: str) -> Score:
    try:
        return _REGISTRY[name]
    except KeyError:
        raise ClipmemError(f"unknown score {name!r}; registered: {', '.join(_REGISTRY)}") from None


def suspicion_order(suspicion: np.ndarray) -> np.ndarray:
    """Rows from most to least suspicious, unscored (NaN) last, stable on ties so pages never overlap."""
    return np.argsort(np.where(np.isnan(suspicion), np.inf, -suspicion), kind="stable")


def score_order(frame: pd.DataFrame, name: str) -> np.ndarray:
    """Rows of ``frame`` in registered score ``name``'s order, most suspicious first."""
    values = frame[name].to_numpy(dtype=np.float64, na_value=np.nan)
    return suspicion_order(get_score(name).suspicion(values))


def rank01(suspicion: np.ndarray) -> np.ndarray:
    """Ranks scaled to [0, 1] (1 = most suspicious); ties share their mean rank; NaN stays NaN."""
    values = np.asarray(suspicion, dtype=np.float64)
    known = ~np.isnan(values)
    out = np.full(values.shape, np.nan)
    if known.sum() == 1:
        out[known] = 1.0
    elif known.any():
        ranks = pd.Series(values[known]).rank(method="average").to_numpy()
        out[known] = (ranks - 1) / (known.sum() - 1)
    return out


def standardised(suspicion: np.ndarray) -> np.ndarray:
    """(value − mean) / standard deviation over the scored samples; 0 where every value is the same; NaN
    stays NaN. Unlike ``rank01`` it keeps how far into the tail a sample lies: a training loss far above
    every other is more telling than one just above the 99th percentile, and ranks make the two alike."""
    values = np.asarray(suspicion, dtype=np.float64)
    known = values[~np.isnan(values)]
    if not known.size:
        return values.copy()
    spread = known.std()
    return (values - known.mean()) / spread if spread > 0 else np.where(np.isnan(values), np.nan, 0.0)
