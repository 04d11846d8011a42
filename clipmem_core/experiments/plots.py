"""Each study's plot: memorization beside utility, mean ± standard deviation over seeds.

Built from an experiment's summary (``summary.parquet``) alone, so the CLI writes it as a static,
self-contained HTML file and the dashboard's Compare page shows the very same figure.
"""

from __future__ import annotations

import os
from pathlib import Path

import pandas as pd
import plotly.express as px
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from ..atomic import atomic_path
from ..formatting import fmt_count

# (column, title) of the left and right panels of each study; the removal study draws one line per strategy.
# E is the experiment's evaluation set: samples of the data held out from every run of a seed.
PANELS = {
    "noise": (("mean_clipmem", "Mean CLIPMem"), ("r1", "Utility on E (held out from every run)")),
    "captions": (("mean_clipmem", "Mean CLIPMem"), ("r1", "Utility on E (held out from every run)")),
    "removal": (
        ("r1", "Utility: R@1 on E (held out from every run)"),
        ("probe_accuracy", "Utility: linear probe accuracy on E"),
    ),
    "encoders": (("image_mem", "Image encoder"), ("text_mem", "Text encoder")),
}
# What a single-line study's solid line is in each panel: the legend named it "mean over seeds" in both.
LINE_NAMES = {"mean_clipmem": "mean CLIPMem, all samples", "r1": "R@1 on E"}
COLOURS = px.colors.qualitative.Plotly  # one colour per line, the same in both panels
AXES = {"noise": "text-noise σ", "captions": "captions per image", "removal": "samples removed"}


def study_figure(study: str, summary: pd.DataFrame) -> go.Figure:
    """The study's two panels from its summary (one row per condition: means and ``*_std``)."""
    if study == "encoders":
        return _encoders_figure(summary)
    left, right = PANELS[study]
    if study == "removal" and summary.get("probe_accuracy", pd.Series(dtype=float)).isna().all():
        right = ("removed_miscaptioned", "Share of the removed that were mis-captioned")
    figure = make_subplots(rows=1, cols=2, subplot_titles=(left[1], right[1]), horizontal_spacing=0.12)
    lines = _lines(study, summary)
    colours = {group: COLOURS[i % len(COLOURS)] for i, (group, _) in enumerate(lines)}
    single = study != "removal"  # one line a panel, each its own measure: named by it
    for col, (column, _) in enumerate((left, right), start=1):
        for group, frame in lines:
            if column not in frame or frame[column].isna().all():
                continue
            name = LINE_NAMES.get(column, group) if single else group
            options = {} if single else {"legendgroup": group, "showlegend": col == 1}
            colour = COLOURS[2 * (col - 1)] if single else colours[group]  # two measures: two colours
            figure.add_trace(_series(frame, column, name, {"color": colour}, **options), row=1, col=col)
        figure.update_xaxes(title_text=AXES[study], row=1, col=col)
    if study in ("noise", "captions"):
        _add_probe(figure, summary)
        _add_ground_truth_split(figure, summary)
    figure.update_layout(title=_title(study, summary), height=420, margin={"t": 80}, legend={"title": ""})
    return figure


def _lines(study: str, summary: pd.DataFrame) -> list[tuple[str, pd.DataFrame]]:
    """One line per removal strategy, each starting from the baseline (nothing removed); else one line."""
    if study != "removal":
        return [("mean over seeds", summary.sort_values("value"))]
    baseline = summary[summary["group"] == "baseline"]
    return [
        (group, pd.concat([baseline, frame]).sort_values("value"))
        for group, frame in summary[summary["group"] != "baseline"].groupby("group", sort=True)
    ]


def _add_ground_truth_split(figure: go.Figure, summary: pd.DataFrame) -> None:
    """With injected mis-captions, their mean CLIPMem and the clean samples' beside the overall mean
    (dotted): whether a mitigation reaches the most memorized samples, not only the average."""
    frame = summary.sort_values("value")
    for column, name, colour in (
        ("clipmem_miscaptioned", "mis-captioned", COLOURS[3]),
        ("clipmem_clean", "clean", COLOURS[4]),
    ):
        if column not in frame or frame[column].isna().all():
            continue
        line = {"dash": "dot", "color": colour}
        figure.add_trace(_series(frame, column, f"mean CLIPMem, {name}", line), row=1, col=1)


def _add_probe(figure: go.Figure, summary: pd.DataFrame) -> None:
    """The linear probe beside R@1 (dashed, in a colour of its own: left to plotly, the saved plot drew it in
    R@1's green), where the data has labels."""
    if "probe_accuracy" not in summary or summary["probe_accuracy"].isna().all():
        return
    frame = summary.sort_values("value")
    line = {"dash": "dash", "color": COLOURS[1]}
    figure.add_trace(_series(frame, "probe_accuracy", "linear probe accuracy on E", line), row=1, col=2)


def _series(frame: pd.DataFrame, column: str, name: str, line: dict, **options) -> go.Scatter:
    """One measured column along the study's axis, its spread over seeds as error bars."""
    return go.Scatter(
        x=frame["value"],
        y=frame[column],
        error_y={"type": "data", "array": frame.get(f"{column}_std"), "visible": True},
        mode="lines+markers",
        line=line,
        name=name,
        **options,
    )


def _encoders_figure(summary: pd.DataFrame) -> go.Figure:
    row = summary.iloc[0] if len(summary) else pd.Series(dtype=float)
    sides = [("Image encoder", "image_mem"), ("Text encoder", "text_mem")]
    figure = go.Figure(
        go.Bar(
            x=[label for label, _ in sides],
            y=[row.get(column) for _, column in sides],
            error_y={"type": "data", "array": [row.get(f"{column}_std") for _, column in sides], "visible": True},
        )
    )
    figure.update_layout(
        title=_title("encoders", summary),
        yaxis_title="memorization (trained − held-out self-alignment)",
        height=420,
    )
    return figure


def _title(study: str, summary: pd.DataFrame) -> str:
    seeds = int(summary["seeds"].max()) if "seeds" in summary and len(summary) else 0
    return f"{study} study: mean ± standard deviation over {fmt_count(seeds, 'seed')}"


def write_figure(figure: go.Figure, path: str | os.PathLike) -> Path:
    """A self-contained HTML file (plotly.js inside), written atomically: opens offline, can be mailed."""
    path = Path(path)
    with atomic_path(path) as tmp:
        figure.write_html(tmp, include_plotlyjs=True, full_html=True)
    return path
