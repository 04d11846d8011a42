"""Team review: verdicts with attribution, sessions, agreement, reconciliation and export."""
from .agreement import agreement_report, majority_verdicts
from .store import VERDICTS, ReviewStore, normalise_verdict, open_store

__all__ = ["VERDICTS", "ReviewStore", "agreement_report", "majority_verdicts", "normalise_verdict",
           "open_store"]
