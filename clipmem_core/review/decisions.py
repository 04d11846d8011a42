"""One meaning for a sample's verdict, wherever it is shown: badges, the flag filter, map colours, exports.

A sample's *decision* is, in this order:

1. the lead's latest resolution;
2. else the majority of the reviewers' counted verdicts (a plurality; a single reviewer's verdict is a
   majority of one);
3. else, on a tie, the viewer's own verdict, marked pending; with no verdict of the viewer's, "tied".

Counted verdicts (`counted_verdicts`): each reviewer's latest verdict per sample, except under a lead list
(``CLIPMEM_LEADS``), where blind mode is enforced for everyone but the leads: there a non-lead's *first*
verdict on a sample counts, the one given before they could see anyone else's. A later change of mind is
kept in the history (and the audit log) but does not count; an undo right after a click
(`ReviewStore.undo_verdict`) takes a verdict back instead.

Blind mode (`visible_decisions` with ``blind=True``): a viewer sees no decision on a sample they have not
judged yet, not even a resolution: only their own verdicts until they have given theirs, and for
``UNDO_GRACE_S`` after it, while an undo may still take it back.

Example::

    table = decisions(store.current_verdicts("demo"), store.resolutions("demo"), viewer="ann")
    table.loc["s00", ["verdict", "source"]]          # ('mis-captioned', 'majority')
"""

from __future__ import annotations

from datetime import UTC, datetime

import numpy as np
import pandas as pd

from .agreement import plurality, vote_counts
from .roles import leads
from .verdicts import MISCAPTIONED, VERDICT_LABELS, VERDICTS

UNDO_GRACE_S = 30.0
"""A verdict's first seconds. An undo this soon is a slip taken back, never a change of mind
(``ReviewStore.undo_verdict``); and blind mode shows the other reviewers' verdicts on the sample only after
them. Why both: a reviewer who judged a card, looked at the sample in another tab and saw the other
verdicts could take theirs back within the grace and judge again (seen done in 7 s)."""

RESOLVED, MAJORITY, OWN_PENDING, TIED = "resolved", "majority", "own (pending)", "tied"
COLUMNS = ["verdict", "source", "n_reviewers", "votes", "own", "accepted_caption"]


def counted_verdicts(history: pd.DataFrame, leads_env: str | None = None) -> pd.DataFrame:
    """Per (sample, reviewer) the verdict that counts, from the full history (oldest first, with ``id``).

    Without a lead list: the latest. With one: a lead's latest, a non-lead's first (blind) verdict.
    """
    keys = ["sample_id", "reviewer"]
    names = leads(leads_env)
    if names is None or history.empty:
        return history.drop_duplicates(keys, keep="last").reset_index(drop=True)
    is_lead = history["reviewer"].isin(names)
    counted = pd.concat(
        [
            history[is_lead].drop_duplicates(keys, keep="last"),
            history[~is_lead].drop_duplicates(keys, keep="first"),
        ]
    )
    return counted.sort_values("id").reset_index(drop=True)


def changed_minds(history: pd.DataFrame) -> int:
    """How many (sample, reviewer) pairs of ``history`` (oldest first) end on another verdict than they
    began with: where counting the latest and counting a non-lead's first (a lead list) give different
    results."""
    if history.empty:
        return 0
    pairs = history.groupby(["sample_id", "reviewer"], sort=False)["verdict"]
    return int((pairs.first() != pairs.last()).sum())


def standing_verdict(history: pd.DataFrame, reviewer: str, leads_env: str | None = None) -> str | None:
    """``reviewer``'s verdict on a sample that a new one of theirs will not replace, from that sample's history
    (oldest first): under a lead list a non-lead's first; None where their next verdict counts (a lead, no
    lead list, or no verdict yet). The pages say so when a change of mind is recorded but does not count."""
    names = leads(leads_env)
    if names is None or reviewer in names:
        return None
    own = history[history["reviewer"] == reviewer]
    return None if own.empty else str(own["verdict"].iloc[0])


def decisions(current: pd.DataFrame, resolutions: pd.DataFrame, viewer: str | None = None) -> pd.DataFrame:
    """One row per judged or resolved sample (index ``sample_id``): verdict, source, n_reviewers, votes, own,
    and the caption a lead accepted when resolving it mis-captioned (``accepted_caption``, else None).

    Args:
        current: counted verdicts, one per (sample, reviewer) (``ReviewStore.current_verdicts``).
        resolutions: the latest resolution per sample (``ReviewStore.resolutions``).
        viewer: whose verdict breaks a tie as "own (pending)"; None for exports (a tie stays undecided).

    ``verdict`` is None where nothing is decided (a tie the viewer has no verdict in).
    """
    counts = vote_counts(current)
    table = pd.DataFrame(index=counts.index.union(pd.Index(resolutions.get("sample_id", []))), columns=COLUMNS)
    table.index.name = "sample_id"
    counts = counts.reindex(table.index, fill_value=0)
    values = counts.to_numpy()
    majority = plurality(counts)
    own = pd.Series(None, index=table.index, dtype=object)
    if viewer is not None and not current.empty:
        mine = current[current["reviewer"] == viewer]
        own.update(pd.Series(mine["verdict"].to_numpy(), index=mine["sample_id"].to_numpy(), dtype=object))
    table["n_reviewers"] = values.sum(axis=1) if len(values) else []
    table["votes"] = [dict(zip(VERDICTS, map(int, row))) for row in values]
    table["own"] = own
    table["verdict"] = majority
    table["source"] = np.where(majority != None, MAJORITY, TIED)  # noqa: E711 (element-wise)
    pending = pd.isna(table["verdict"]) & own.notna()
    table.loc[pending, "verdict"] = own[pending]
    table.loc[pending, "source"] = OWN_PENDING
    table["accepted_caption"] = None
    if len(resolutions):
        settled = resolutions.set_index("sample_id")
        table.loc[settled.index, "verdict"] = settled["verdict"]
        table.loc[settled.index, "source"] = RESOLVED
        if "caption" in settled.columns:  # the caption a lead accepted for a mis-captioned sample
            table.loc[settled.index, "accepted_caption"] = settled["caption"].where(settled["verdict"] == MISCAPTIONED)
    for column in ("verdict", "accepted_caption"):
        table[column] = table[column].astype(object).where(table[column].notna(), None)
    return table


def visible_decisions(
    current: pd.DataFrame,
    resolutions: pd.DataFrame,
    viewer: str | None,
    blind: bool,
    now: datetime | None = None,
) -> pd.DataFrame:
    """The decisions ``viewer`` may see: in blind mode only on samples they have judged themselves, and on
    those judged within ``UNDO_GRACE_S`` (before ``now``) their own verdict alone, as if nobody else had
    judged the sample yet. A lead's resolution shows at once: it is final, so taking one's verdict back and
    judging again after seeing it changes nothing."""
    table = decisions(current, resolutions, viewer)
    if not blind:
        return table
    table = table[table["own"].notna()]
    resolved = set(resolutions.get("sample_id", pd.Series(dtype=object)).astype(str))
    fresh = [sample for sample in judged_within_grace(current, viewer, now) if sample not in resolved]
    if not fresh:
        return table
    mine = current[(current["reviewer"] == viewer) & current["sample_id"].isin(fresh)]
    alone = decisions(mine, resolutions.iloc[:0], viewer)
    return pd.concat([table.drop(alone.index), alone]).reindex(table.index)


def judged_within_grace(current: pd.DataFrame, viewer: str | None, now: datetime | None = None) -> list[str]:
    """The samples whose counted verdict by ``viewer`` (``counted_verdicts``: under a lead list a non-lead's
    first) is at most ``UNDO_GRACE_S`` old at ``now``: the ones an undo may still take back."""
    if viewer is None or current.empty:
        return []
    mine = current[current["reviewer"] == viewer]
    age = pd.Timestamp(now or datetime.now(UTC)) - pd.to_datetime(mine["created_at"], utc=True)
    return mine.loc[age.dt.total_seconds() <= UNDO_GRACE_S, "sample_id"].astype(str).tolist()


def decided(table: pd.DataFrame) -> dict[str, str]:
    """sample_id -> decided verdict (samples with a verdict only): what the flag filter and map colour use."""
    known = table["verdict"].notna()
    return dict(zip(table.index[known], table["verdict"][known]))


def badge_text(row: pd.Series | None) -> str | None:
    """A decision in words for a badge, e.g. "Mis-captioned · lead", "Correct · 2 of 3", "Unsure · tied".

    Short enough for a gallery card at 1280 px (about 22 characters): "tied" shows the viewer's own verdict on
    a tie, which the badge's icon and help text say in full.
    """
    if row is None or (row["verdict"] is None and row["source"] != TIED):
        return None
    if row["source"] == TIED:
        return f"Tied · {row['n_reviewers']} reviewers"
    label = VERDICT_LABELS[row["verdict"]]
    if row["source"] == RESOLVED:
        return f"{label} · lead"
    if row["source"] == OWN_PENDING:
        return f"{label} · tied"
    agreeing, total = row["votes"].get(row["verdict"], 0), row["n_reviewers"]
    return f"{label} · {'yours' if total == 1 and pd.notna(row['own']) else f'{agreeing} of {total}'}"


def unresolved_disagreements(current: pd.DataFrame, resolutions: pd.DataFrame) -> list[str]:
    """Samples two or more reviewers judged differently that no lead has resolved, sorted."""
    if current.empty:
        return []
    kinds = current.groupby("sample_id")["verdict"].nunique()
    disputed = set(kinds.index[kinds > 1])
    return sorted(disputed - set(resolutions.get("sample_id", [])))
