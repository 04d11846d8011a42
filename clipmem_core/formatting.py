"""Numbers for people and for JSON: the one formatter every command and page uses.

A missing value (None, NaN, inf) prints as an en dash and serialises as ``null``, so a half-scored run
never shows "nan" in a table or breaks ``json.dumps``.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

MISSING = "–"


def is_missing(value: Any) -> bool:
    """None, NaN, inf, pandas NA: anything that is not a finite number or a non-numeric value."""
    if value is None:
        return True
    if isinstance(value, (float, np.floating)):
        return not math.isfinite(value)
    import pandas as pd  # on use: every command's parser imports this module, and pandas took 0.3 s of its start

    try:
        return bool(pd.isna(value))
    except (TypeError, ValueError):  # a list or an array is a value, not a missing one
        return False


def fmt_number(
    value: Any, digits: int = 3, *, signed: bool = False, percent: bool = False, general: bool = False
) -> str:
    """``0.123`` -> ``'0.123'``; ``signed`` adds a + to positives, ``percent`` scales by 100 and adds %,
    ``general`` uses ``digits`` significant digits (p-values); integers keep thousands separators."""
    if is_missing(value):
        return MISSING
    if isinstance(value, (bool, np.bool_)):
        return str(bool(value))
    if not isinstance(value, (int, float, np.number)):
        return str(value)
    if isinstance(value, (int, np.integer)) and not percent:
        return f"{int(value):,}"
    number = float(value) * (100 if percent else 1)
    # "z": a value that rounds to zero shows as 0.000, not -0.000 (a map hover read "CLIPMem: -0.000")
    spec = f"{'+' if signed else ''}z.{digits}{'g' if general else 'f'}"
    return f"{number:{spec}}" + ("%" if percent else "")


def fmt_count(count: int, noun: str, plural: str | None = None) -> str:
    """``1 sample``, ``2,000 samples``: a count with its noun agreeing (``plural`` where it is not noun + s)."""
    return f"{count:,} {noun if count == 1 else plural or noun + 's'}"


def fmt_bytes(size: float) -> str:
    """``3_100_000`` -> ``'3.1 MB'``, ``4e8`` -> ``'400 MB'``, ``4e9`` -> ``'4.0 GB'`` (decimal units): in GB
    alone a 100,000-sample index read "~0.00 GB"."""
    for unit, scale in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if size >= scale:
            value = size / scale
            return f"{value:.1f} {unit}" if value < 10 else f"{value:,.0f} {unit}"
    return f"{int(size)} bytes"


def fmt_yes_no(value: bool) -> str:
    """How the dashboard shows a yes/no setting (a form's choice, a run's switch)."""
    return "yes" if value else "no"


def json_safe(obj: Any) -> Any:
    """NaN/inf -> None and numpy scalars -> Python, recursively, so ``json.dumps`` accepts it."""
    if isinstance(obj, dict):
        return {str(k): json_safe(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [json_safe(v) for v in obj]
    if isinstance(obj, (np.integer, np.bool_)):
        return obj.item()
    if isinstance(obj, (float, np.floating)):
        return float(obj) if math.isfinite(obj) else None
    return obj
