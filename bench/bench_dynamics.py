"""Training dynamics and snapshots as detectors: which epochs, which weights, which neighbourhoods.

The combined ranking ("Likely mis-captioned") fuses four signals of each run's finished models
(clipmem_core/scores/combined.py). This benchmark asks whether other moments of the same training find
more, at no extra training cost: it makes the usual `bench_detection` run of a dataset and seed under the
full protocol while recording, after every epoch of every model, its weights and each pair's loss so far
(`compute_clipmem(on_epoch=...)`), then re-fuses the combined ranking with one member swapped:

- **the training loss over other epochs** (it is averaged over all of them): only the later or the
  earlier epochs, weights rising with the epoch, the last epoch alone, or its spread over the epochs as a
  fifth member (the "variability" of dataset cartography);
- **the training-side CSLS of an earlier checkpoint**, before the models fit the wrong captions;
- **the held-out members of an earlier checkpoint** (held-out CSLS and neighbour agreement), beside the
  finished models' training side: a model that has fitted its own pairs less may judge unseen pairs better;
- **neighbour agreement averaged over every model**, training-side too (an ensemble of neighbourhoods);
- **snapshot ensembles** of the last third of the epochs: their embeddings averaged, or their weights;
- with ``--views K``, **more augmented views**: the finished models' mean view embeddings over K views
  against the run's own K (recomputed, so the control reproduces the run's members).

Each swapped member is measured against a control recomputed the same way (centre views at the last
epoch), since the run's own embeddings average K augmented views. Figures: AUROC / AP / precision@k,
mean ± spread over seeds, and precision@k per seed (docs/detection.md, "Training dynamics and snapshots").

    OMP_NUM_THREADS=1 python -m bench.bench_dynamics --datasets openclipart --seeds 0 --work /work/bench/s30
    # one command per seed makes the runs side by side; the table needs every seed in one call, which
    # reads what they recorded and embeds the checkpoints again (about 10 minutes a seed of openclipart):
    python -m bench.bench_dynamics --datasets openclipart --seeds 0,1,2 --work /work/bench/s30

Recording costs about 25 MB of weights per model and epoch of the `cpu` preset (750 MB a run).
"""

from __future__ import annotations

import argparse
import json
import sys
import warnings
from collections import defaultdict
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from bench.bench_detection import DEFAULT_PRESETS, make_run, mean_spread
from clipmem_core.errors import ClipmemError
from clipmem_core.image_list import ImageList
from clipmem_core.metrics import detection_scores
from clipmem_core.models import create_clip, image_size_of
from clipmem_core.pipeline import DOWNSCALE_FACTOR, EpochEnd
from clipmem_core.scores._neighbourhood import csls, neighbour_agreement, per_model, same_modal
from clipmem_core.scores.base import ScoringContext
from clipmem_core.scores.combined import combine, members, scaling_groups
from clipmem_core.scoring import embed_pairs, view_alignments

METRICS = ("auroc", "average_precision", "precision_at_k")
SNAPSHOT_SHARE = 1 / 3  # snapshot ensembles average the last third of the epochs
LOSS = "fit_loss"
TRAIN_CSLS, HELD_CSLS, AGREEMENT = "csls_train", "csls_heldout", "agreement_image_neighbours"
# The study's control is the run's own ranking (RecordedRun.stored_members). Its runs keep no retained
# alignment, so the training loss stands in for it there, and the loss variants below swap that member.
# The "(5th member)" labels are those of the runs in docs/detection.md, measured with four members.
LOSS_SPREAD = "loss spread over epochs (5th member)"  # added to the members, not swapped for the loss
EARLY_SHARES = (0.3, 0.5, 0.7)  # earlier checkpoints, as shares of training


class EpochRecorder:
    """``on_epoch`` for `compute_clipmem`: each model's weights and cumulative pair losses, per epoch."""

    def __init__(self, folder: Path):
        self.folder = folder
        folder.mkdir(parents=True, exist_ok=True)

    def __call__(self, end: EpochEnd) -> None:
        np.save(self.folder / f"{end.tag}_rows.npy", end.rows)
        np.save(self.folder / f"{end.tag}_sums_e{end.epoch:02d}.npy", end.pair_losses.sums)
        np.save(self.folder / f"{end.tag}_counts_e{end.epoch:02d}.npy", end.pair_losses.counts)
        torch.save(end.model.state_dict(), self.folder / f"{end.tag}_e{end.epoch:02d}.pt")


def epoch_losses(sums: list[np.ndarray], counts: list[np.ndarray]) -> np.ndarray:
    """(epochs, pairs) each pair's mean loss within each epoch, from the cumulative sums and counts that
    `PairLosses` keeps (NaN for a pair an epoch did not draw)."""
    cumulative_sums, cumulative_counts = np.stack(sums), np.stack(counts).astype(np.float64)
    zero = np.zeros((1, cumulative_sums.shape[1]))
    step_sums = np.diff(cumulative_sums, axis=0, prepend=zero)
    step_counts = np.diff(cumulative_counts, axis=0, prepend=zero)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(step_counts > 0, step_sums / step_counts, np.nan)


def loss_variants(losses: np.ndarray) -> dict[str, np.ndarray]:
    """Per pair, other summaries of its (epochs, pairs) losses than the mean over every epoch."""
    epochs = losses.shape[0]
    weights = np.arange(1, epochs + 1, dtype=np.float64)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # a pair never drawn stays NaN
        variants = {f"loss over epochs {a + 1}–{epochs}": np.nanmean(losses[a:], axis=0) for a in (3, 5, 8, 10)}
        variants |= {f"loss over epochs 1–{b}": np.nanmean(losses[:b], axis=0) for b in (5, 8, 10)}
        variants["loss, weights rising with the epoch"] = np.nansum(losses * weights[:, None], axis=0) / weights.sum()
        variants["loss of the last epoch"] = losses[-1]
        variants[LOSS_SPREAD] = np.nanstd(losses, axis=0)
    return {name: v for name, v in variants.items() if not np.isnan(v).all()}


class RecordedRun:
    """A run and what its `EpochRecorder` saved: per-epoch losses, and the embeddings of any snapshot."""

    def __init__(self, run_dir: Path, folder: Path):
        self.run_dir, self.folder = run_dir, folder
        self.frame = pd.read_parquet(run_dir / "scores.parquet")
        manifest = json.loads((run_dir / "manifest.json").read_text(encoding="utf-8"))
        self.config = manifest["config"]
        self.models, self.model_name = manifest["models"], self.config["model"]
        self.root = Path(manifest["dataset"]["root"])
        self.epochs = int(self.config["epochs"])
        missing = [
            f"{tag} epoch {e + 1}"
            for tag in self.models
            for e in range(self.epochs)
            if not (folder / f"{tag}_e{e:02d}.pt").exists() or not (folder / f"{tag}_sums_e{e:02d}.npy").exists()
        ]
        if missing:
            raise ClipmemError(
                f"{run_dir} has no recording of {len(missing)} model epochs ({missing[0]} …): it was made, or "
                "resumed, without recording them; remove it or use another --work"
            )
        self.trained = np.zeros((len(self.models), len(self.frame)), bool)
        for m, tag in enumerate(self.models):
            self.trained[m, np.load(folder / f"{tag}_rows.npy")] = True
        self._images: ImageList | None = None
        self.reference_images = np.load(run_dir / "image_embeddings.npy")

    def stored_members(self) -> dict[str, np.ndarray]:
        """The run's own fusion members as suspicions (high = suspicious): combined.members, so that the
        study's control follows the shipped recipe when a member joins or leaves it."""
        return members(self.frame)

    def training_losses(self) -> np.ndarray:
        """(epochs, samples) each sample's loss under the model(s) that trained on it (one, under K = 2)."""
        per_model = np.full((len(self.models), self.epochs, len(self.frame)), np.nan)
        for m, tag in enumerate(self.models):
            sums = [np.load(self.folder / f"{tag}_sums_e{e:02d}.npy") for e in range(self.epochs)]
            counts = [np.load(self.folder / f"{tag}_counts_e{e:02d}.npy") for e in range(self.epochs)]
            per_model[m][:, self.trained[m]] = epoch_losses(sums, counts)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            return np.nanmean(per_model, axis=0)

    def weights(self, tag: str, epoch: int) -> dict:
        return torch.load(self.folder / f"{tag}_e{epoch:02d}.pt", weights_only=True)

    def images(self) -> ImageList:
        if self._images is None:
            self._images = ImageList(
                self.root, self.frame["filepath"], DOWNSCALE_FACTOR * image_size_of(self.model_name)
            )
        return self._images

    def embed(self, tag: str, state: dict) -> tuple[np.ndarray, np.ndarray]:
        """Centre-view image and caption embeddings of every sample under the given weights."""
        bundle = create_clip(self.model_name)
        bundle.model.load_state_dict(state)
        return embed_pairs(
            bundle.model,
            self.images(),
            self.frame["caption"].tolist(),
            bundle.eval_transform,
            bundle.tokenizer,
            device=torch.device("cpu"),
            desc=f"embed {tag}",
        )

    def context(self, embeddings: list[tuple[np.ndarray, np.ndarray]]) -> ScoringContext:
        nan = np.full(self.trained.shape, np.nan, np.float32)
        return ScoringContext(
            frame=self.frame,
            trained=self.trained,
            align=nan,
            pair_cosine=nan,
            image=[image for image, _ in embeddings],
            text=[text for _, text in embeddings],
        )


def neighbourhood_members(ctx: ScoringContext) -> dict[str, np.ndarray]:
    """The fusion's embedding-based members (as suspicions: high = suspicious), and agreement over all models."""
    own = per_model(ctx, lambda m: csls(ctx, m))
    agreement = per_model(ctx, lambda m: neighbour_agreement(ctx.text[m], same_modal(ctx, m).image_neighbours))
    return {
        HELD_CSLS: -ctx.heldout(own),
        TRAIN_CSLS: -ctx.training(own),
        AGREEMENT: -ctx.heldout(agreement),
        "agreement over every model": -np.nanmean(agreement, axis=0),
    }


def fused(members: dict[str, np.ndarray], run: RecordedRun) -> np.ndarray:
    """Today's recipe (combined.combine) over the given members' suspicions, relative to the run's stored
    image neighbourhood as the run's own ranking is."""
    return combine(list(members.values()), run.reference_images, groups=scaling_groups(run.frame))


def _normalise(vectors: np.ndarray) -> np.ndarray:
    return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)


def _averaged(states: list[dict]) -> dict:
    return {k: torch.stack([s[k].float() for s in states]).mean(0).to(states[-1][k].dtype) for k in states[-1]}


def candidates(run: RecordedRun) -> dict[str, np.ndarray]:
    """Every ranking this benchmark compares, on one run."""
    stored = run.stored_members()
    rankings = {"shipped recipe (the run's own signals)": fused(stored, run)}
    for name, loss in loss_variants(run.training_losses()).items():
        rankings[name] = fused(stored | ({"spread": loss} if name == LOSS_SPREAD else {LOSS: loss}), run)
    last = run.epochs - 1
    snapshot_epochs = range(run.epochs - max(1, round(run.epochs * SNAPSHOT_SHARE)), run.epochs)
    per_epoch: dict[int, list] = defaultdict(list)
    for tag in run.models:
        for epoch in sorted({*snapshot_epochs, *_early_epochs(run.epochs)}):
            per_epoch[epoch].append(run.embed(tag, run.weights(tag, epoch)))
    control = neighbourhood_members(run.context(per_epoch[last]))
    base = stored | {k: control[k] for k in (HELD_CSLS, TRAIN_CSLS, AGREEMENT)}
    rankings["control: members recomputed at the last epoch (centre views)"] = fused(base, run)
    rankings["agreement over every model"] = fused(base | {AGREEMENT: control["agreement over every model"]}, run)
    rankings["held-out CSLS alone, last epoch (centre views)"] = control[HELD_CSLS]
    for epoch in _early_epochs(run.epochs):
        early_members = neighbourhood_members(run.context(per_epoch[epoch]))
        early = early_members[TRAIN_CSLS]
        rankings[f"training-side CSLS of epoch {epoch + 1}"] = fused(base | {TRAIN_CSLS: early}, run)
        rankings[f"training-side CSLS of epoch {epoch + 1} (5th member)"] = fused(base | {"early": early}, run)
        # the held-out side from the checkpoint and the training side from the finished models: a model that
        # has fitted its own pairs less may judge pairs it never saw better (the wide model at fewer epochs did)
        held_out = {k: early_members[k] for k in (HELD_CSLS, AGREEMENT)}
        rankings[f"held-out members of epoch {epoch + 1}"] = fused(base | held_out, run)
        rankings[f"held-out CSLS alone, epoch {epoch + 1}"] = held_out[HELD_CSLS]
        rankings[f"held-out CSLS of epoch {epoch + 1} (5th member)"] = fused(base | {"early": held_out[HELD_CSLS]}, run)
    ensemble = [
        tuple(_normalise(np.mean([per_epoch[e][m][part] for e in snapshot_epochs], axis=0)) for part in (0, 1))
        for m in range(len(run.models))
    ]
    averaged = [run.embed(tag, _averaged([run.weights(tag, e) for e in snapshot_epochs])) for tag in run.models]
    for name, embeddings in (("snapshot: embeddings", ensemble), ("snapshot: weights", averaged)):
        members = neighbourhood_members(run.context(embeddings))
        label = f"{name} of epochs {snapshot_epochs[0] + 1}–{run.epochs} averaged"
        rankings[label] = fused(base | {k: members[k] for k in (HELD_CSLS, TRAIN_CSLS, AGREEMENT)}, run)
    return rankings


def _early_epochs(epochs: int) -> list[int]:
    """0-based epochs of the checkpoints at ``EARLY_SHARES`` of training (5, 8 and 11 of 15)."""
    return sorted({int(epochs * share) for share in EARLY_SHARES} - {epochs - 1})


def view_candidates(run: RecordedRun, views: int) -> dict[str, np.ndarray]:
    """The fusion's embedding-based members from the finished models' mean over ``views`` augmented views,
    and over the run's own number of views, both scored by `view_alignments` as a run scores them."""
    stored = run.stored_members()
    bundles = {tag: create_clip(run.model_name) for tag in run.models}
    for tag, bundle in bundles.items():
        bundle.model.load_state_dict(run.weights(tag, run.epochs - 1))
    texts = [run.embed(tag, run.weights(tag, run.epochs - 1))[1] for tag in run.models]
    first, rankings = next(iter(bundles.values())), {}
    for count in (run.config["augmentations"], views):
        scored = view_alignments(
            {tag: bundle.model for tag, bundle in bundles.items()},
            run.images(),
            [list(c) for c in run.frame["captions"]],
            first.train_transform,
            first.tokenizer,
            views=count,
            seed=run.config["seed"],
            device=torch.device("cpu"),
            batch_size=run.config["score_batch_size"],
        )
        means = [(scored.image_means[tag], text) for tag, text in zip(run.models, texts)]
        members = neighbourhood_members(run.context(means))
        swapped = stored | {k: members[k] for k in (HELD_CSLS, TRAIN_CSLS, AGREEMENT)}
        rankings[f"members from {count} augmented views"] = fused(swapped, run)
    return rankings


def measure(run: RecordedRun, views: int = 0) -> dict[str, dict[str, float]]:
    truth = run.frame["is_miscaptioned"].fillna(False).to_numpy(bool)
    rankings = candidates(run) | (view_candidates(run, views) if views else {})
    return {name: detection_scores(ranking, truth) for name, ranking in rankings.items()}


def table(results: dict[str, list[dict]]) -> str:
    lines = ["| ranking | AUROC | AP | P@k | P@k per seed |", "|---|---|---|---|---|"]
    for name, per_seed in results.items():
        cells = [mean_spread([r[m] for r in per_seed]) for m in METRICS]
        seeds = " / ".join(f"{r['precision_at_k']:.3f}" for r in per_seed)
        lines.append(f"| {name} | " + " | ".join(cells) + f" | {seeds} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--datasets", default="openclipart")
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--work", required=True, help="runs and recordings (kept, so a second call only reads)")
    parser.add_argument("--json", help="write every figure here")
    parser.add_argument("--views", type=int, default=0, help="also score the finished models with this many views")
    args = parser.parse_args(argv)
    work, everything = Path(args.work), {}
    for dataset in args.datasets.split(","):
        results: dict[str, list[dict]] = defaultdict(list)
        for seed in (int(s) for s in args.seeds.split(",")):
            name = f"{dataset}_s{seed}_full"
            folder = work / "dynamics" / name
            try:
                make_run(dataset, seed, "full", DEFAULT_PRESETS[dataset], work, {}, on_epoch=EpochRecorder(folder))
                recorded = RecordedRun(work / "runs" / name, folder)
            except ClipmemError as exc:
                print(f"{dataset} seed {seed}: {exc}", file=sys.stderr)
                return 2
            for ranking, found in measure(recorded, args.views).items():
                results[ranking].append(found)
        print(f"### {dataset}, full protocol ({len(results[next(iter(results))])} seeds)\n\n{table(results)}\n")
        everything[dataset] = results
    if args.json:
        Path(args.json).write_text(json.dumps(everything, indent=1), encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
