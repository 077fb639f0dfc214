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

import json
from collections.abc import Mapping
from typing import IO, Any

import numpy as np
from django.conf import settings
from rest_framework.exceptions import ParseError
from rest_framework.parsers import JSONParser

from annotation import shapes as limits

# Opening brackets: a polygon point is one array, a ring one more, a shape one object.
MAX_DEPTH = 8  # body > shapes > polygon > holes > ring > point is 6 deep
MAX_ARRAYS = limits.MAX_POINTS_TOTAL + 2 * limits.MAX_SHAPES + 16
MAX_OBJECTS = 3 * limits.MAX_SHAPES + 16  # a mask shape is 2 objects
_NOT_BRACKETS = bytes(value for value in range(256) if value not in b"[]{}")
_CHUNK = 1 << 20


def _refuse_constant(name: str) -> None:
    raise ValueError(f"{name} is not valid JSON.")


def max_depth(brackets: bytes) -> int:
    """Deepest nesting of a string of ``[]{}`` only; memory bounded by the chunk size."""
    raw = np.frombuffer(brackets, dtype=np.uint8)
    deepest = depth = 0
    for start in range(0, raw.size, _CHUNK):
        chunk = raw[start : start + _CHUNK]
        steps = np.where((chunk == ord("[")) | (chunk == ord("{")), 1, -1).astype(np.int32)
        running = np.cumsum(steps) + depth
        deepest = max(deepest, int(running.max()))
        depth = int(running[-1])
    return deepest


class LabelJSONParser(JSONParser):
    media_type = "application/json"

    def parse(
        self, stream: IO[Any], media_type: str | None = None, parser_context: Mapping[str, Any] | None = None
    ) -> Any:
        limit = settings.LOUPE_MAX_UPLOAD_BYTES  # the edge's 413 limit; the test client has no edge
        body = stream.read(limit + 1) if stream is not None else b""
        if len(body) > limit:
            raise ParseError(f"The label is larger than {limit} bytes.")
        brackets = body.translate(None, _NOT_BRACKETS)
        if brackets.count(b"[") > MAX_ARRAYS or brackets.count(b"{") > MAX_OBJECTS:
            raise ParseError(
                f"The label holds more than {limits.MAX_POINTS_TOTAL} points or {limits.MAX_SHAPES} shapes."
            )
        if max_depth(brackets) > MAX_DEPTH:
            raise ParseError(f"The label is nested deeper than {MAX_DEPTH} levels.")
        try:
            return json.loads(body, parse_constant=_refuse_constant)
        except (ValueError, RecursionError) as exc:  # RecursionError: "]" in strings can hide depth
            raise ParseError(f"JSON parse error - {exc}") from None
