"""Classes over-represented at the top: does a class-level view find mis-captions that fill whole classes?

When a broken source gives a whole class another class's captions, the per-sample signals go partly blind
(docs/detection.md, "One other class's captions"). A curator would still see something odd if one class
crowded the top of the ranking. This measures that view on finished tuxpaint runs of
``bench/bench_detection.py`` before any of it is built: for each run, k = the number injected; for each
class (the stamp's sub-category) with n members of which x sit in the combined ranking's top k, the
one-sided hypergeometric p-value P(X >= x); Benjamini-Hochberg q-values over the classes; a class is
flagged at q < ``--q``. A victim class has at least half its members injected. Per run it reports the
flagged classes, how many are victims (precision), the share of victim classes flagged (recall), and the
share of injected samples inside flagged classes; uniform runs show its false alarms.

    python -m bench.bench_class_enrichment --runs /work/bench/cluster/runs \
        --datasets tuxpaint-clustered,tuxpaint-donor-class,tuxpaint
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import pandas as pd
from scipy.stats import false_discovery_control, hypergeom

from bench.bench_detection import mean_spread, subcategory_of
from clipmem_core import load_run
from clipmem_core.scores import get_score, suspicion_order
from clipmem_core.scores.combined import fuse


def enriched_classes(labels: np.ndarray, top: np.ndarray, q: float) -> pd.DataFrame:
    """One row per class: members, members in ``top`` (a boolean mask), p, BH q, and whether it is flagged."""
    frame = pd.DataFrame({"label": labels, "top": top})
    per_class = frame.groupby("label")["top"].agg(members="size", at_top="sum")
    total, drawn = len(frame), int(top.sum())
    per_class["p"] = hypergeom.sf(per_class["at_top"] - 1, total, per_class["members"], drawn)
    per_class["q"] = false_discovery_control(per_class["p"].to_numpy())
    per_class["flagged"] = per_class["q"] < q
    return per_class


def groups_of(scores: pd.DataFrame, images: np.ndarray, groups: str) -> np.ndarray:
    """Each row's group: ``subcategory`` (from the file path) or ``kmeans:N``, N clusters of the run's image
    embeddings, the view a dataset without a class column could have."""
    if groups == "subcategory":
        return np.array([subcategory_of(path) for path in scores["filepath"]])
    from sklearn.cluster import KMeans

    count = int(groups.removeprefix("kmeans:"))
    return KMeans(n_clusters=count, n_init=4, random_state=0).fit_predict(images).astype(str)


def measure(scores: pd.DataFrame, images: np.ndarray, q: float, groups: str = "subcategory") -> dict:
    """The class view on one run: flagged classes against the victim classes of its injection."""
    truth = scores["is_miscaptioned"].fillna(False).to_numpy(bool)
    combined = get_score("combined").suspicion(fuse(scores, images=images))
    top = np.zeros(len(scores), bool)
    top[suspicion_order(combined)[: truth.sum()]] = True
    labels = groups_of(scores, images, groups)
    classes = enriched_classes(labels, top, q)
    injected = pd.Series(truth, index=labels).groupby(level=0).mean()
    victims = set(injected[injected >= 0.5].index)
    flagged = set(classes.index[classes["flagged"]])
    return {
        "flagged": len(flagged),
        "victims": len(victims),
        "precision": len(flagged & victims) / len(flagged) if flagged else float("nan"),
        "recall": len(flagged & victims) / len(victims) if victims else float("nan"),
        "covered": float(truth[np.isin(labels, list(flagged))].sum() / truth.sum()),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", required=True, help="bench_detection's runs folder (its --work)/runs")
    parser.add_argument("--datasets", default="tuxpaint-clustered,tuxpaint-donor-class,tuxpaint")
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--protocols", default="full,paper")
    parser.add_argument("--q", type=float, default=0.05, help="Benjamini-Hochberg level of a flagged class")
    parser.add_argument(
        "--groups", default="subcategory", help="subcategory (from the file path) or kmeans:N over the image embeddings"
    )
    args = parser.parse_args(argv)
    print("| dataset | protocol | flagged classes | victim classes | precision | recall | injected inside flagged |")
    print("|---|---|---|---|---|---|---|")
    for dataset in args.datasets.split(","):
        for protocol in args.protocols.split(","):
            folders = [Path(args.runs) / f"{dataset}_s{seed}_{protocol}" for seed in args.seeds.split(",")]
            missing = [str(f) for f in folders if not (f / "manifest.json").exists()]
            if missing:
                print(f"no finished run at {', '.join(missing)}", file=sys.stderr)
                return 2
            rows = []
            for folder in folders:
                run = load_run(folder)
                rows.append(measure(run.scores, np.asarray(run.image_embeddings), args.q, args.groups))
            cells = [mean_spread([row[key] for row in rows]) for key in ("flagged", "victims", "precision", "recall")]
            cells.append(mean_spread([row["covered"] for row in rows]))
            print(f"| {dataset} | {protocol} | " + " | ".join(cells) + " |")
            per_seed = "; ".join(str({key: round(value, 3) for key, value in row.items()}) for row in rows)
            print(f"  per seed: {per_seed}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
