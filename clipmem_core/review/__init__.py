"""Team review: verdicts with attribution, sessions, agreement, reconciliation and export."""

from .agreement import agreement_report, majority_verdicts
from .roles import LEADS_ENV, is_lead, require_lead
from .store import ReviewStore, VerdictStands, check_reviewer, open_store
from .verdicts import VERDICT_LABELS, VERDICTS, normalise_verdict

__all__ = [
    "LEADS_ENV",
    "VERDICTS",
    "VERDICT_LABELS",
    "ReviewStore",
    "VerdictStands",
    "agreement_report",
    "check_reviewer",
    "is_lead",
    "majority_verdicts",
    "normalise_verdict",
    "open_store",
    "require_lead",
]
