"""Embedding map: the core's 2-D projection, coloured by CLIPMem, split or flag; select to act."""

from __future__ import annotations

import plotly.express as px
import streamlit as st

from dashboard import embedding_map as emap
from dashboard import navigation, resources, state, ui
from dashboard.gallery import filter_mask, rows_with_verdict

run = resources.require_run()

st.title("Embedding map")
if run.scores["proj_x"].isna().all():
    st.warning("This run stores no 2-D projection.")
    st.stop()

verdicts = resources.verdicts(run)
mask = filter_mask(run.scores, resources.current_filters(run), run.row_of, verdicts)
rows = emap.map_rows(mask, keep=rows_with_verdict(run.row_of, verdicts, None))
points = emap.map_frame(run.scores, rows, run.row_of, verdicts)
colour = st.radio("Colour by", emap.COLOUR_BY, horizontal=True)
unscored = " Dark points are S_S samples, which have no CLIPMem." if colour == "CLIPMem" else ""
st.caption(
    f"{len(points):,} of {int(mask.sum()):,} matching samples shown (flagged ones always). "
    f"Use box or lasso select, then act on the selection below.{unscored}"
)
fig = px.scatter(
    points,
    x="x",
    y="y",
    color=colour,
    custom_data=["row"],
    hover_data={"caption": True},
    render_mode="webgl",
    color_continuous_scale="RdBu_r",
    height=650,
)
fig.update_traces(marker={"size": 5})
fig.update_layout(dragmode="lasso", xaxis={"visible": False}, yaxis={"visible": False})
event = st.plotly_chart(fig, width="stretch", key="embedding_map", on_select="rerun", selection_mode=("box", "lasso"))
chosen = emap.selected_rows(event)
if chosen.size:
    st.write(f"{chosen.size:,} samples selected.")
    left, right = st.columns(2)
    if left.button("Open selection in the gallery", type="primary"):
        st.session_state[state.SELECTION] = chosen.tolist()
        st.session_state[state.PAGE] = 1
        st.switch_page(navigation.GALLERY.path)
    name = ui.reviewer()
    if right.button(
        "Flag selection as mis-captioned",
        disabled=name is None,
        help=None if name else "turn on flag mode in the sidebar first",
    ):
        ui.record_verdict(run.name, run.scores["sample_id"].iloc[chosen].tolist(), "mis-captioned", name)
        st.success(f"Flagged {chosen.size:,} samples as mis-captioned.")
