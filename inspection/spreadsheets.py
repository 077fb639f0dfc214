"""Cells for CSV files that people open in spreadsheets."""

from __future__ import annotations

import json
from typing import Any

_FORMULA_PREFIXES = ("=", "+", "-", "@", "\t", "\r")


def csv_cell(value: Any) -> str:
    """``value`` as CSV text that no spreadsheet evaluates: text is written as it is,
    anything else as JSON, and a cell that would start like a formula gets a leading
    apostrophe (CSV injection)."""
    text = value if isinstance(value, str) else json.dumps(value, default=str, sort_keys=True)
    return "'" + text if text.startswith(_FORMULA_PREFIXES) else text
