"""The combined ranking, "Likely mis-captioned": a label-free average of complementary signals.

Each signal is turned so that high means suspicious, standardised over the samples it scores
((value − mean) / sd), and the standardised values are averaged over the signals a sample has. The signals
were chosen by measurement on generated shapes, openclipart and tuxpaint (docs/detection.md,
bench/bench_detection.py): held-out CSLS and neighbour agreement rank well overall; the training-side CSLS
and the training loss are precise at the top (a model struggles to fit a wrong caption even when it trains
on it). The training loss, averaged over every epoch, replaced the training-side CLIP score of the finished
model: on seed 0 of each dataset it raised AUROC and AP on openclipart and shapes and AUROC on tuxpaint.
Retained alignment takes the training loss's place where a run measures it (``--retain-epochs``, opt-in):
the fit left after the model went on to train on the pairs it held out, which a memorised wrong caption
loses and a supported one keeps (clipmem_core.retention). On openclipart (8k pairs) it found more on every
seed of three; on tuxpaint (950) it found fewer, so no preset measures it (docs/detection.md, "Retained
alignment").

Standardised rather than ranked: a rank average gives a training loss far above every other the same
weight as one just inside the top percent, so the precise training-side signals were diluted by the broad
held-out ones at the top of the list. Averaging standardised values keeps how far into the tail a sample
lies; it raised AP on openclipart in all three seeds and on the held-out emoji data (docs/detection.md,
"Standardised, not ranked").

Relative to its neighbourhood: each sample's average is then lowered by the mean of the averages of its
``NEIGHBOURHOOD`` nearest images. Some kinds of picture are hard for a small model to match with any
caption (patterns, icons of one theme under one template caption): every sample there scores as
suspicious, and the average alone put them among the mis-captions. A mis-caption stands out from the
images like it; a hard kind of picture as a whole does not. No weighting of the per-sample signals could
find this: a logistic regression on every registered score, fitted on all the labels (cross-validated),
reached precision@k 0.681 on openclipart against the average's 0.670. The neighbourhood raised it to
0.695 and AP from 0.719 to 0.755, and on three fresh seeds from 0.646 to 0.671 and 0.695 to 0.726; on
tuxpaint and the held-out emoji data it moved by less than their spread (docs/detection.md, "Relative
to its image neighbourhood").

Each fold on its own scale: under the full protocol every member is standardised within each fold, whose
samples share the models that scored them; on one scale for all, a weak run's top 100 held 81 samples of one
fold of two (``scaling_groups``; docs/detection.md, "Each fold on its own scale").

Word agreement with similar images' captions (``agreement_caption_words``) joined as a fifth member under a
rule written before the runs: neighbour agreement compares captions through the small held-out text
encoder, which blurs rare words; exact word overlap does not. On openclipart it raised precision@k on every
seed of three (0.695 to 0.708, AP 0.755 to 0.767) and on three fresh seeds (0.671 to 0.676), and moved
tuxpaint and emoji by less than their spread (docs/detection.md, "Word agreement with similar images'
captions").

Word agreement with the same picture's other captions (``agreement_duplicate_images``) joined as a sixth
member under a rule written before its runs: a picture the data shows more than once (found from its pixels)
under captions that share no word cannot be right under all of them. Only samples whose picture another
sample shows have it (28 % of openclipart; almost none of tuxpaint, emoji or generated shapes); on the others
the average is over the five. On openclipart it raised precision@k on every seed of nine, from 0.690 to 0.718
and from 0.681 to 0.704 on two sets of three seeds it was not chosen on, and from 0.670 to 0.692 where the
mis-captions were traded rather than copied (docs/detection.md, "The same picture under other captions").
"""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd

from ..splits import FOLD_PREFIX
from ._neighbourhood import mean_over_nearest_images
from .base import HIGH, Score, ScoringContext, get_score, rank01, register, registry, standardised

SIGNALS = (
    "csls_heldout",
    "csls_train",
    "agreement_image_neighbours",
    "agreement_caption_words",
    "agreement_duplicate_images",
    "retained_alignment",
)
# A run without a signal fuses the first stand-in it has, the recipe such runs were measured with: without
# retained alignment (the paper protocol, --retain-epochs 0, runs made before it) the training loss; without a
# training loss either (imported, or made before clipmem recorded it) the training-side CLIP score.
STAND_INS = {"retained_alignment": ("fit_loss", "clip_score_train"), "fit_loss": ("clip_score_train",)}
# How each signal's suspicion is put on a common scale before the average (docs/detection.md compares them).
SCALINGS = {"rank": rank01, "standardised": standardised}
SCALING = "standardised"
NEIGHBOURHOOD = 100  # nearest images whose mean suspicion is subtracted (chosen among 10 to 200)
# Stamped into each run's summary with the ranking it was made with (metrics.run_summary): a run whose stamp
# differs was ranked by an earlier recipe, and `clipmem rerank` remakes it. Change it with the recipe.
RECIPE = "2026-12-08: six members, each fold on its own scale, less the 100 nearest images"


@register
class Combined(Score):
    name = "combined"
    label = "Likely mis-captioned"
    sort_wording = "Most likely mis-captioned"
    suspicious = HIGH
    order = 0
    meaning = (
        "mean of the standardised (within each fold) held-out CSLS, training-side CSLS, neighbour agreement, "
        "word agreement with similar images' captions, word agreement with the same picture's other captions "
        "and retained alignment (else the training loss), "
        f"less that of the {NEIGHBOURHOOD} nearest images: the default ranking"
    )

    @property
    def depends_on(self) -> tuple[str, ...]:  # type: ignore[override]
        """The recipe's members and their stand-ins, then every other registered score (but one that ranks by
        this one): a run without a member (imported) is ranked by the other scores it has, which must be
        made first. An import of ``align_f`` and ``align_g`` derived CLIPMem after this ranking had found
        nothing to rank by, and said "not made"."""
        stand_ins = (name for names in STAND_INS.values() for name in names)
        others = (name for name, score in registry().items() if name != self.name and self.name not in score.depends_on)
        return tuple(dict.fromkeys([*SIGNALS, *stand_ins, *others]))

    def compute(self, ctx: ScoringContext) -> np.ndarray | None:
        return fuse(ctx.frame, images=ctx.reference_images)


def fuse(
    frame: pd.DataFrame,
    signals: tuple[str, ...] = SIGNALS,
    scaling: str = SCALING,
    *,
    images: np.ndarray | None = None,
) -> np.ndarray | None:
    """The combined ranking from a scores frame's stored signal columns and, when given, the run's stored
    image embeddings (so a finished run can be re-ranked with today's recipe from its files); None when the
    frame has no registered signal. ``signals`` and ``scaling`` are the recipe (bench/bench_recipes.py
    measures others); without ``images`` (imported runs) the average is not made relative to a
    neighbourhood."""
    present = _fused_members(frame, signals)
    if not present:
        return None
    return combine(list(present.values()), images, scaling, groups=scaling_groups(frame))


def ranking_inputs(frame: pd.DataFrame) -> list[str]:
    """The columns ``fuse`` makes the ranking from, for saying so: an import learns what its ranking rests on."""
    return list(_fused_members(frame, SIGNALS))


def _fused_members(frame: pd.DataFrame, signals: tuple[str, ...]) -> dict[str, np.ndarray]:
    """The recipe's members the frame has; without any (imported, or from an older clipmem), every other
    registered score it has."""
    present = members(frame, signals)
    return present or members(frame, tuple(name for name in registry() if name != Combined.name))


def scaling_groups(frame: pd.DataFrame) -> np.ndarray | None:
    """The fold of each sample under the full protocol, within which every member is put on the common scale;
    None otherwise (the paper protocol's splits, a run without splits): one scale over all samples.

    Why: each fold's samples are scored by their own models (its held-out model, and the models that trained
    on it), and two small models differ in how high they score everything. On one scale for all, that
    offset ranks one fold's samples above the other's: a user's weak runs put 81 of their top 100 in one
    fold of two. Within each fold, on the strength sweep's 12 tuxpaint runs (bench/bench_strength.py), the
    top-k's fold share came twice as close to the injected share (off by 0.057 against 0.111 on average), AP
    0.195 against 0.197 and precision@k 0.224 against 0.220; a tie on openclipart and on tuxpaint at the
    preset (docs/detection.md, "Each fold on its own scale"). Integer codes, not the split names: a run may
    hold ten million rows."""
    if "split" not in frame.columns:
        return None
    codes, names = pd.factorize(frame["split"].astype(str))
    return codes if all(str(name).startswith(FOLD_PREFIX) for name in names) else None


def members(frame: pd.DataFrame, signals: tuple[str, ...] = SIGNALS) -> dict[str, np.ndarray]:
    """Column -> suspicion (high = suspicious) of each signal the frame has, or of its first stand-in."""
    found = (_column_for(name, frame) for name in signals)
    return {name: get_score(name).suspicion(frame[name]) for name in found if name is not None}


def _column_for(signal: str, frame: pd.DataFrame) -> str | None:
    """The signal's column, else its first stand-in the frame has, else None. A column without a single value
    does not count: scores derived from an import's columns are all NaN until dropped, and one of those
    stood in for the rest, so an import with only held-out CLIP scores got no ranking at all."""
    names = (signal, *STAND_INS.get(signal, ()))
    return next((name for name in names if name in frame.columns and frame[name].notna().any()), None)


def combine(
    suspicions: list[np.ndarray],
    images: np.ndarray | None = None,
    scaling: str = SCALING,
    *,
    groups: np.ndarray | None,
) -> np.ndarray:
    """The recipe on given members (high = suspicious): their ``average`` (each member scaled within each of
    ``groups``, the ``scaling_groups`` of the run), made relative to each sample's nearest images when
    ``images`` (N, D unit vectors) are given. ``groups`` has no default: a caller that left it out measured
    the recipe before each fold had its own scale without saying so."""
    fused = average(suspicions, scaling, groups)
    if images is None:
        return fused
    return relative_to_neighbourhood(fused, mean_over_nearest_images(fused, images, NEIGHBOURHOOD))


def average(suspicions: list[np.ndarray], scaling: str = SCALING, groups: np.ndarray | None = None) -> np.ndarray:
    """The recipe's average: each suspicion (high = suspicious) put on the common scale, within each group of
    ``groups`` when given, then averaged over the signals a sample has (a sample no signal scores stays
    NaN)."""
    masks = None if groups is None else [groups == group for group in np.unique(groups)]  # once, for every member
    values = np.stack([_scaled(np.asarray(suspicion, dtype=np.float64), scaling, masks) for suspicion in suspicions])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        return np.nanmean(values, axis=0).astype(np.float32)


def _scaled(suspicion: np.ndarray, scaling: str, masks: list[np.ndarray] | None) -> np.ndarray:
    scale = SCALINGS[scaling]
    if masks is None:
        return scale(suspicion)
    scaled = np.full(suspicion.shape, np.nan)
    for rows in masks:
        scaled[rows] = scale(suspicion[rows])
    return scaled


def relative_to_neighbourhood(suspicion: np.ndarray, around: np.ndarray) -> np.ndarray:
    """Each sample's suspicion less ``around``, the mean suspicion of its nearest images; a sample with no
    scored neighbour (``around`` NaN) keeps its own, and an unscored one stays NaN."""
    return (np.asarray(suspicion, np.float64) - np.nan_to_num(around, nan=0.0)).astype(np.float32)
