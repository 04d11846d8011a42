"""Team review: verdicts with attribution, sessions, agreement, reconciliation and export."""

from .agreement import agreement_report, majority_verdicts
from .roles import LEADS_ENV, is_lead, require_lead
from .store import VERDICTS, ReviewStore, normalise_verdict, open_store

__all__ = [
    "LEADS_ENV",
    "VERDICTS",
    "ReviewStore",
    "agreement_report",
    "is_lead",
    "majority_verdicts",
    "normalise_verdict",
    "open_store",
    "require_lead",
]
