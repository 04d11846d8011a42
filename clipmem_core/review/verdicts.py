"""The verdict vocabulary: the one place verdict names, their labels and their order are defined."""

from __future__ import annotations

from ..errors import ClipmemError

MISCAPTIONED, CORRECT, UNSURE = "mis-captioned", "correct", "unsure"
VERDICTS = (MISCAPTIONED, CORRECT, UNSURE)
VERDICT_LABELS = {MISCAPTIONED: "Mis-captioned", CORRECT: "Correct", UNSURE: "Unsure"}
_ALIASES = {"miscaptioned": MISCAPTIONED, "mis captioned": MISCAPTIONED}


def normalise_verdict(value: str) -> str:
    """Accept any case and the common spellings of mis-captioned; refuse anything else."""
    text = str(value).strip().lower()
    text = _ALIASES.get(text, text)
    if text not in VERDICTS:
        raise ClipmemError(f"verdict {value!r} is not one of {', '.join(VERDICTS)}")
    return text
