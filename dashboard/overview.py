"""Tables and binned data for the Overview page, read from the manifest and scores (no recompute).

Histograms are binned here, so the browser gets bins, not one value per sample.
"""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

import numpy as np
import pandas as pd

from clipmem_core.cache import Manifest
from clipmem_core.formatting import fmt_number
from clipmem_core.scores import column_label, registry
from clipmem_core.splits import split_order

MAX_POINTS = 20_000
SPLIT_COLOURS = {"candidate": "#d62728", "independent": "#1f77b4", "extra": "#7f7f7f", "shared": "#bcbd22"}


def run_facts(manifest: Manifest) -> dict[str, str]:
    """Headline numbers; long values (model, split sizes) go in ``run_line`` instead."""
    seconds = manifest.seconds
    return {
        "Samples": fmt_number(manifest.dataset.n_samples),
        "Skipped": fmt_number(manifest.dataset.n_skipped),
        "Protocol": manifest.protocol,
        "Compute time": f"{seconds / 60:.1f} min" if seconds >= 120 else f"{seconds:.0f} s",
    }


def run_line(manifest: Manifest) -> str:
    """Model, preset, data and split sizes in one line of plain text."""
    config = manifest.config
    splits = ", ".join(f"{s} {fmt_number(manifest.splits[s])}" for s in split_order(manifest.splits))
    return (
        f"model {config.get('model', '–')} · preset {config.get('preset', '–')} · "
        f"data {manifest.dataset.path or '–'} · splits: {splits} · created {manifest.created}"
    )


def manifest_sections(manifest: Manifest) -> dict[str, dict]:
    """The manifest's parts a person may want to read, as plain dicts."""
    return {
        "config": manifest.config,
        "dataset": asdict(manifest.dataset),
        "timings": manifest.timings,
        "versions": manifest.versions,
    }


def key_values(mapping: dict, value_name: str = "value") -> pd.DataFrame:
    """A nested dict as a two-column table of strings (dotted keys), for st.dataframe."""
    rows: list[tuple[str, str]] = []

    def walk(prefix: str, value: Any) -> None:
        if isinstance(value, dict):
            for k, v in value.items():
                walk(f"{prefix}.{k}" if prefix else str(k), v)
        else:
            rows.append((prefix, str(value)))

    walk("", mapping or {})
    return pd.DataFrame(rows, columns=["key", value_name])


def histogram_column(scores: pd.DataFrame) -> str:
    """The paper's A(f) − A(g) under the paper protocol (it separates the splits), else CLIPMem."""
    return "clipmem_from_f" if "clipmem_from_f" in scores.columns else "clipmem"


def split_histograms(scores: pd.DataFrame, bins: int = 60) -> pd.DataFrame:
    """Counts of the histogram column per split on shared bin edges: (split, value, count)."""
    column = histogram_column(scores)
    values = scores[column].to_numpy(dtype=np.float64, na_value=np.nan) if column in scores else np.array([])
    finite = np.isfinite(values)
    if not finite.any():
        return pd.DataFrame(columns=["split", "value", "count"])
    edges = np.histogram_bin_edges(values[finite], bins=bins)
    centres = (edges[:-1] + edges[1:]) / 2
    splits = scores["split"].to_numpy()
    frames = []
    for split in split_order(scores["split"].unique()):
        chosen = values[finite & (splits == split)]
        if chosen.size:
            counts, _ = np.histogram(chosen, bins=edges)
            frames.append(pd.DataFrame({"split": split, "value": centres, "count": counts}))
    return pd.concat(frames, ignore_index=True)


def split_means(manifest: Manifest) -> pd.DataFrame:
    """Per split: count and mean ± std of each score, from the manifest summary."""
    rows = []
    for split, stats in ((manifest.summary.get("splits") or {}).get("splits") or {}).items():
        row: dict[str, Any] = {"split": split, "count": stats.get("count")}
        for column, value in stats.items():
            if isinstance(value, dict):
                row[column_label(column)] = f"{fmt_number(value.get('mean'))} ± {fmt_number(value.get('std'))}"
        rows.append(row)
    return pd.DataFrame(rows)


def ttests(manifest: Manifest) -> pd.DataFrame:
    rows = []
    for name, test in ((manifest.summary.get("splits") or {}).get("ttests") or {}).items():
        rows.append(
            {
                "comparison": name,
                "t": test.get("t"),
                "p": test.get("p"),
                "mean A": test.get("mean_a"),
                "mean B": test.get("mean_b"),
                "n A": test.get("n_a"),
                "n B": test.get("n_b"),
            }
        )
    return pd.DataFrame(rows)


def utility_table(manifest: Manifest) -> pd.DataFrame:
    """Image→text and text→image R@1/R@5 of each model on samples it never saw."""
    utility = manifest.utility or {}
    return pd.DataFrame(
        [{"model": model, **metrics} for model, metrics in utility.items() if isinstance(metrics, dict)]
    )


def detection_table(manifest: Manifest) -> pd.DataFrame:
    """One row per registered score, in listing order (the manifest's JSON keeps no order)."""
    detectors = (manifest.summary.get("detection") or {}).get("detectors") or {}
    return pd.DataFrame([{"score": column_label(name), **detectors[name]} for name in registry() if name in detectors])


def alignment_points(scores: pd.DataFrame, max_points: int = MAX_POINTS, seed: int = 0) -> pd.DataFrame:
    """Scored samples for the A(g) vs A(f) scatter, a seeded subsample of at most ``max_points``."""
    if not {"align_f", "align_g"} <= set(scores.columns):
        return pd.DataFrame(columns=["row", "align_f", "align_g", "clipmem", "ground truth"])
    scored = np.flatnonzero(scores["align_f"].notna().to_numpy() & scores["align_g"].notna().to_numpy())
    if scored.size > max_points:
        scored = np.sort(np.random.default_rng(seed).choice(scored, max_points, replace=False))
    frame = scores.iloc[scored]
    truth = (
        frame["is_miscaptioned"].map({True: "mis-captioned", False: "clean"}).fillna("unknown")
        if "is_miscaptioned" in frame.columns
        else pd.Series("unknown", index=frame.index)
    )
    return pd.DataFrame(
        {
            "row": scored,
            "align_f": frame["align_f"].to_numpy(),
            "align_g": frame["align_g"].to_numpy(),
            "clipmem": frame["clipmem"].to_numpy(),
            "ground truth": truth.to_numpy(),
        }
    )
