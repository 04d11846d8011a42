"""Team review: verdicts with attribution, sessions, agreement, reconciliation and export.

The names below are loaded on first use (PEP 562): importing a light module of this package, such as the
CLI's ``review.commands``, no longer imports the review store, SQLAlchemy and pandas with it.
"""

from __future__ import annotations

from importlib import import_module
from typing import Any

_HOMES = {
    "agreement_report": "agreement",
    "majority_verdicts": "agreement",
    "LEADS_ENV": "roles",
    "is_lead": "roles",
    "require_lead": "roles",
    "ReviewStore": "store",
    "VerdictStands": "store",
    "check_reviewer": "store",
    "open_store": "store",
    "VERDICT_LABELS": "verdicts",
    "VERDICTS": "verdicts",
    "normalise_verdict": "verdicts",
}

__all__ = sorted(_HOMES)


def __getattr__(name: str) -> Any:
    if name not in _HOMES:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(import_module(f".{_HOMES[name]}", __name__), name)
    globals()[name] = value  # looked up once
    return value
