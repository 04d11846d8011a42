"""Overview: what the run is, how CLIPMem is distributed per split, and how useful f and g are."""

from __future__ import annotations

import plotly.express as px
import plotly.graph_objects as go
import streamlit as st

from clipmem_core.scores import column_label
from dashboard import overview, resources

run = resources.require_run()

st.title(f"Run: {run.name}")
st.text(overview.run_line(run.manifest))
info = overview.run_facts(run.manifest)
cols = st.columns(len(info))
for col, (label, value) in zip(cols, info.items()):
    col.metric(label, value)

with st.expander("Manifest: configuration, dataset, versions and timings"):
    left, right = st.columns(2)
    sections = overview.manifest_sections(run.manifest)
    left.dataframe(overview.key_values(sections["config"]), hide_index=True, width="stretch")
    right.dataframe(overview.key_values(sections["dataset"]), hide_index=True, width="stretch")
    left.dataframe(overview.key_values(sections["timings"], "seconds"), hide_index=True, width="stretch")
    right.dataframe(overview.key_values(sections["versions"]), hide_index=True, width="stretch")

st.subheader("CLIPMem per split")
st.caption("A(f) − A(g): positive where f trained on the sample (S_C), negative on S_I, near zero on S_E.")
hist = overview.split_histograms(run.scores)
if hist.empty:
    st.warning("This run has no CLIPMem scores.")
else:
    st.plotly_chart(
        px.bar(
            hist,
            x="value",
            y="count",
            color="split",
            barmode="overlay",
            opacity=0.6,
            labels={"value": column_label(overview.histogram_column(run.scores))},
            color_discrete_map=overview.SPLIT_COLOURS,
        ),
        width="stretch",
        key="hist",
    )
left, right = st.columns(2)
left.markdown("**Means per split**")
left.dataframe(overview.split_means(run.manifest), hide_index=True, width="stretch")
right.markdown("**Welch t-tests of CLIPMem, S_C against S_I and S_E**")
right.dataframe(
    overview.ttests(run.manifest),
    hide_index=True,
    width="stretch",
    column_config={
        "p": st.column_config.NumberColumn(format="%.2e"),
        "t": st.column_config.NumberColumn(format="%.2f"),
    },
)

st.subheader("Alignment under g against f")
points = overview.alignment_points(run.scores)
fig = px.scatter(
    points,
    x="align_f",
    y="align_g",
    color="clipmem",
    symbol="ground truth",
    hover_data={"row": True},
    render_mode="webgl",
    color_continuous_scale="RdBu_r",
    labels={"align_f": "A(f)", "align_g": "A(g)"},
)
fig.add_trace(
    go.Scatter(
        x=[points["align_f"].min(), points["align_f"].max()],
        y=[points["align_f"].min(), points["align_f"].max()],
        mode="lines",
        line={"dash": "dot", "color": "grey"},
        name="A(f) = A(g)",
    )
)
st.plotly_chart(fig, width="stretch", key="alignment")
if len(points) < run.scores["align_f"].notna().sum():
    st.caption(f"{len(points):,} of {run.scores['align_f'].notna().sum():,} scored samples shown.")

st.subheader("Utility: retrieval on S_E")
utility = overview.utility_table(run.manifest)
if utility.empty:
    st.info("The run stores no retrieval utility.")
else:
    st.dataframe(utility, hide_index=True, width="stretch")
detection = overview.detection_table(run.manifest)
if not detection.empty:
    st.subheader("Mis-caption detection against the ground truth")
    st.dataframe(detection, hide_index=True, width="stretch")
