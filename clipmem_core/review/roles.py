"""Who may reconcile: the optional lead list in ``CLIPMEM_LEADS``.

Reconciliation shows every reviewer's verdicts, which would defeat blind review, and its decisions
override the majority; so when a team names its leads, only they may do it. Without a list (small
teams) everyone is a lead. Names are trimmed and compared exactly, as reviewer names are everywhere.
"""

from __future__ import annotations

import os

from ..errors import ClipmemError

LEADS_ENV = "CLIPMEM_LEADS"


def leads(leads_env: str | None = None) -> frozenset[str] | None:
    """The named leads (``leads_env``, else $CLIPMEM_LEADS), or None when no list is set."""
    text = os.environ.get(LEADS_ENV, "") if leads_env is None else leads_env
    if not text.strip():
        return None
    return frozenset(name.strip() for name in text.split(",") if name.strip())


def is_lead(reviewer: str, leads_env: str | None = None) -> bool:
    """Whether ``reviewer`` may see every verdict and resolve disagreements."""
    names = leads(leads_env)
    return names is None or str(reviewer).strip() in names


def require_lead(reviewer: str, leads_env: str | None = None) -> None:
    """Refuse a non-lead with a message naming who may reconcile (one message for page and store)."""
    if not is_lead(reviewer, leads_env):
        allowed = ", ".join(sorted(leads(leads_env) or ())) or "nobody"
        raise ClipmemError(
            f"{reviewer} is not a lead: only {allowed} (listed in {LEADS_ENV}) may see "
            "every reviewer's verdicts and resolve disagreements"
        )
