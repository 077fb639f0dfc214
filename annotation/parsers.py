"""A JSON parser for label bodies whose cost is bounded before the JSON is decoded.

DRF's ``JSONParser`` hands the body to ``json.load``: 10,000 nested brackets raise
RecursionError there (not ValueError), which DRF does not catch, so the client gets a 500;
and a million-point polygon is fully decoded into Python objects (~150 MB) before any
validator can count it. This parser first measures the raw bytes with C-speed scans
(brackets counted, and the nesting depth taken with a running sum over chunks; brackets
inside string literals are counted too, which can only over-count: a label's strings are
short keys and names of types) and refuses, with a 400, a body that is too deep or holds more
arrays or objects than any valid label can; only then does it decode, refusing NaN and
Infinity (which Python's json accepts by default) as well.
"""

from __future__ import annotations

from rest_framework.exceptions import ParseError

from annotation import shapes as limits
from inspection.parsers import NOT_BRACKETS, SafeJSONParser, max_depth

# Opening brackets: a polygon point is one array, a ring one more, a shape one object.
MAX_DEPTH = 8  # body > shapes > polygon > holes > ring > point is 6 deep
MAX_ARRAYS = limits.MAX_POINTS_TOTAL + 2 * limits.MAX_SHAPES + 16
MAX_OBJECTS = 3 * limits.MAX_SHAPES + 16  # a mask shape is 2 objects


class LabelJSONParser(SafeJSONParser):
    max_depth = MAX_DEPTH

    def check(self, body: bytes) -> None:
        brackets = body.translate(None, NOT_BRACKETS)
        if brackets.count(b"[") > MAX_ARRAYS or brackets.count(b"{") > MAX_OBJECTS:
            raise ParseError(
                f"The label holds more than {limits.MAX_POINTS_TOTAL} points or {limits.MAX_SHAPES} shapes."
            )
        if max_depth(brackets) > MAX_DEPTH:
            raise ParseError(f"The label is nested deeper than {MAX_DEPTH} levels.")
