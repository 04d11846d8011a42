"""Compare: runs side by side, a run against its cleaned re-run, and the runs and plot of an experiment."""

from __future__ import annotations

from pathlib import Path

import streamlit as st

from clipmem_core import list_runs
from clipmem_core.experiments import experiment_holding
from clipmem_core.formatting import fmt_count, fmt_number
from dashboard import compare, resources, state, ui

cache_root = Path(st.session_state.get(state.CACHE_ROOT, state.default_cache_root()))
infos = [info for info in list_runs(cache_root) if info.ok]
names = [info.name for info in infos]
current = resources.current_run()
store = resources.store()

st.title("Compare runs")
# Only the open tab runs and is sent (on_change="rerun"): the hidden tabs' tables and plot no longer cost
# the server their work or the browser their code on every load.
state.keep_values(st.session_state, compare.CHOICES)  # only the open tab draws its widgets
side, cleaning, experiments = st.tabs(compare.TABS, key=compare.TAB_KEY, on_change="rerun", bind="query-params")


def side_by_side() -> None:
    """The chosen runs' measures, mean CLIPMem per split and differing settings, as tables."""
    if compare.RUNS_KEY not in st.session_state:
        first = [current.name] if current is not None else []
        st.session_state[compare.RUNS_KEY] = (first + [n for n in names if n not in first])[:2]
    chosen = st.multiselect("Runs", names, key=compare.RUNS_KEY, placeholder="pick two or more runs")
    if len(chosen) < 2:
        st.info("Pick two or more runs to compare them.")
    else:
        runs = [resources.run_at(cache_root / name) for name in chosen]
        flagged = {run.name: compare.flagged_count(store, run.name) for run in runs}
        ui.static_table(compare.side_by_side(runs, flagged))
        st.caption(compare.SIDE_BY_SIDE_NOTE)
        st.markdown("**Mean CLIPMem per split**")
        ui.static_table(compare.clipmem_per_split(runs))
        if any(run.manifest.protocol == "full" for run in runs):
            st.caption(compare.FOLD_SHIFT_NOTE)
        st.markdown("**Settings that differ**")
        ui.table(compare.config_differences(runs), "The runs share every setting.")


def cleaning_effect() -> None:
    """A run against its re-run without the flagged samples: what removing them changed."""
    if len(names) < 2:
        st.info("Comparing needs two runs: the original and its re-run with `clipmem run … --exclude DROPLIST`.")
    else:
        if st.session_state.get(compare.ORIGINAL_KEY) not in names:  # the default, given as state: state.keep_values
            shown = compare.default_original(
                current.name if current is not None else None, infos, lambda name: compare.flagged_ids(store, name)
            )
            st.session_state[compare.ORIGINAL_KEY] = shown if shown in names else names[0]
        original_name = st.selectbox("Original run", names, key=compare.ORIGINAL_KEY)
        candidates = compare.cleaned_candidates(original_name, infos, current.name if current is not None else None)
        cleaned_name = st.selectbox(
            "Cleaned re-run",
            candidates,
            key=compare.CLEANED_KEY,
            help="runs on the same data with a drop list (--exclude) are listed first",
        )
        original = resources.run_at(cache_root / original_name)
        cleaned = resources.run_at(cache_root / cleaned_name)
        unrelated = compare.unrelated_note(original, cleaned)
        if unrelated:
            st.warning(unrelated, icon=":material/link_off:")
            return
        effect = compare.cleaning_effect(original, cleaned, compare.flagged_ids(store, original_name))
        swapped = compare.swapped_note(original, cleaned)
        if swapped:
            st.warning(swapped, icon=":material/swap_horiz:")
        confounders = compare.confounders(original, cleaned)
        if not confounders.empty:
            st.warning(
                "These runs differ in more than their data, so the changes below are not the cleaning's alone: "
                "re-run with the original's settings and `--exclude DROPLIST` to measure cleaning.",
                icon=":material/warning:",
            )
            ui.table(confounders, empty="")
        by_measure = effect.set_index("Measure")
        left, middle, right = st.columns(3)
        r1 = by_measure.loc[by_measure.index.str.startswith("R@1")].iloc[0]
        left.metric(
            r1.name,
            fmt_number(r1["Cleaned"]),
            help=compare.COMMON_FOOTING_HELP,
            **compare.metric_change(r1["Change"], 3),
        )
        memo = by_measure.loc["Mean CLIPMem, samples in both"]
        middle.metric(
            "Mean CLIPMem, samples in both",
            fmt_number(memo["Cleaned"], 4),
            **compare.metric_change(memo["Change"], 4, lower_is_better=True),
        )
        right.metric("Samples removed", fmt_number(int(by_measure.loc[compare.COUNT_MEASURES[1], "Cleaned"])))
        st.text(compare.cleaning_verdict(effect, experiment_holding(cache_root, [original_name, cleaned_name])))
        st.dataframe(compare.display_effect(effect), hide_index=True)


def experiment_results() -> None:
    """An experiment's settings, plot and table, and a way to compare its runs."""
    # Imported when this tab opens: the studies import torch and the plot Plotly, seconds that every
    # other tab would otherwise wait for before its first table on a fresh server (docs/benchmarks.md).
    from clipmem_core.experiments import list_experiments
    from clipmem_core.experiments.plots import study_figure

    found = list_experiments(cache_root)
    records = {record.name: record for record in found if not isinstance(record, tuple)}
    broken = [entry for entry in found if isinstance(entry, tuple)]
    if broken:
        with st.expander(f"{len(broken)} unreadable experiment(s)"):
            for folder, why in broken:
                st.text(f"{folder.name}: {why}")
    if not records:
        st.info("No experiment yet: `clipmem experiment removal --data … --name …` runs one (see the README).")
    else:
        record = records[st.selectbox("Experiment", list(records), key=compare.EXPERIMENT_KEY)]
        settings = record.settings
        st.text(
            f"{record.study} study on {settings.data} · seed{'s' if len(settings.seeds) > 1 else ''} "
            f"{', '.join(map(str, settings.seeds))} · "
            f"evaluation set {fmt_number(settings.eval_fraction, 2)} of the data · "
            + (f"{fmt_number(settings.inject, 2)} of the captions swapped · " if settings.inject else "")
            + f"status {record.status}"
        )
        if record.summary.empty:
            st.info("No results yet: rerun the experiment's command to finish it.")
        else:
            st.plotly_chart(study_figure(record.study, record.summary), key="experiment_plot")
            st.dataframe(  # the condition stays in view, whole, as the measures scroll: it was cut ("combined-r")
                compare.experiment_table(record.summary, record.study),
                hide_index=True,
                column_config={"Condition": st.column_config.TextColumn(width="medium", pinned=True)},
            )
            st.caption(compare.EXPERIMENT_NOTE)
        its_runs = [name for name in record.runs if name in names]
        st.button(
            f"Compare its {fmt_count(len(its_runs), 'run')} side by side",
            on_click=compare.choose_runs,
            args=(st.session_state, its_runs),
            disabled=len(its_runs) < 2,
        )


for tab, draw in ((side, side_by_side), (cleaning, cleaning_effect), (experiments, experiment_results)):
    if tab.open:
        with tab:
            draw()
