"""Tables and binned data for the Overview page, read from the manifest and scores (no recompute).

Histograms are binned here, so the browser gets bins, not one value per sample.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from clipmem_core.cache import SPLITS

MAX_POINTS = 20_000
SPLIT_COLOURS = {"candidate": "#d62728", "independent": "#1f77b4", "extra": "#7f7f7f", "shared": "#bcbd22"}


def run_facts(manifest: dict) -> dict[str, str]:
    """Headline numbers; long values (model, split sizes) go in ``run_line`` instead."""
    dataset = manifest.get("dataset", {})
    seconds = sum(v for v in manifest.get("timings", {}).values() if isinstance(v, (int, float)))
    return {
        "Samples": f"{dataset.get('n_samples', 0):,}",
        "Skipped": f"{dataset.get('n_skipped', 0):,}",
        "Candidates (S_C)": f"{manifest.get('splits', {}).get('candidate', 0):,}",
        "Compute time": f"{seconds / 60:.1f} min" if seconds >= 120 else f"{seconds:.0f} s",
    }


def run_line(manifest: dict) -> str:
    """Model, preset, data and split sizes in one line of plain text."""
    config, dataset = manifest.get("config", {}), manifest.get("dataset", {})
    splits = ", ".join(f"{s} {manifest.get('splits', {}).get(s, 0):,}" for s in SPLITS)
    return (
        f"model {config.get('model', '–')} · preset {config.get('preset', '–')} · "
        f"data {dataset.get('path', '–')} · splits: {splits} · created {manifest.get('created', '–')}"
    )


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


def split_histograms(scores: pd.DataFrame, bins: int = 60) -> pd.DataFrame:
    """Counts of clipmem_from_f per split on shared bin edges: (split, clipmem_from_f, count)."""
    values = scores["clipmem_from_f"].to_numpy(dtype=np.float64, na_value=np.nan)
    finite = np.isfinite(values)
    if not finite.any():
        return pd.DataFrame(columns=["split", "clipmem_from_f", "count"])
    edges = np.histogram_bin_edges(values[finite], bins=bins)
    centres = (edges[:-1] + edges[1:]) / 2
    splits = scores["split"].to_numpy()
    frames = []
    for split in SPLITS:
        chosen = values[finite & (splits == split)]
        if chosen.size:
            counts, _ = np.histogram(chosen, bins=edges)
            frames.append(pd.DataFrame({"split": split, "clipmem_from_f": centres, "count": counts}))
    return pd.concat(frames, ignore_index=True)


def _summary(manifest: dict) -> dict:
    return (manifest.get("summary") or {}).get("splits") or {}


def split_means(manifest: dict) -> pd.DataFrame:
    """Per split: count and mean ± std of each score, from the manifest summary."""
    rows = []
    for split, stats in (_summary(manifest).get("splits") or {}).items():
        row: dict[str, Any] = {"split": split, "count": stats.get("count")}
        for column, value in stats.items():
            if isinstance(value, dict):
                row[column] = f"{_num(value.get('mean'))} ± {_num(value.get('std'))}"
        rows.append(row)
    return pd.DataFrame(rows)


def ttests(manifest: dict) -> pd.DataFrame:
    rows = []
    for name, test in (_summary(manifest).get("ttests_clipmem_from_f") or {}).items():
        rows.append(
            {
                "comparison": name.replace("_vs_", " vs "),
                "t": test.get("t"),
                "p": test.get("p"),
                "mean S_C": test.get("mean_a"),
                "mean other": test.get("mean_b"),
                "n S_C": test.get("n_a"),
                "n other": test.get("n_b"),
            }
        )
    return pd.DataFrame(rows)


def utility_table(manifest: dict) -> pd.DataFrame:
    """Image→text and text→image R@1/R@5 of f and g on S_E."""
    utility = manifest.get("utility") or {}
    return pd.DataFrame(
        [{"model": model, **metrics} for model, metrics in utility.items() if isinstance(metrics, dict)]
    )


def detection_table(manifest: dict) -> pd.DataFrame:
    detection = (manifest.get("summary") or {}).get("detection") or {}
    return pd.DataFrame([{"detector": name, **metrics} for name, metrics in (detection.get("detectors") or {}).items()])


def alignment_points(scores: pd.DataFrame, max_points: int = MAX_POINTS, seed: int = 0) -> pd.DataFrame:
    """Scored samples for the A(g) vs A(f) scatter, a seeded subsample of at most ``max_points``."""
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
            "clipmem": frame["clipmem_from_f"].to_numpy(),
            "ground truth": truth.to_numpy(),
        }
    )


def _num(value: Any) -> str:
    return "–" if value is None else f"{value:.3f}"
