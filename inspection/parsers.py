"""The JSON parser every endpoint uses: bounded before the JSON is decoded.

DRF's ``JSONParser`` hands the body to ``json.load``: a few thousand nested brackets raise
RecursionError there (not ValueError), which DRF does not catch, so the client got a 500; and
Python's json accepts NaN and Infinity, which are not JSON. This parser measures the nesting
depth of the raw bytes first with C-speed scans (brackets inside strings are counted too,
which can only over-count), refuses a body deeper than ``MAX_DEPTH`` with a 400, and refuses
NaN and Infinity while decoding. It also refuses a string (key or value, at any depth) that
holds U+0000: PostgreSQL's text and jsonb reject it, so it would otherwise be a 500 at the
first write. Label bodies get a stricter subclass (``annotation.parsers.LabelJSONParser``)
that also bounds their size; it replaces ``check`` but shares ``decode``.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import IO, Any

import numpy as np
from django.conf import settings
from rest_framework.exceptions import ParseError
from rest_framework.parsers import JSONParser

MAX_DEPTH = 32  # no Loupe request body nests deeper than a handful of levels
NOT_BRACKETS = bytes(value for value in range(256) if value not in b"[]{}")
_CHUNK = 1 << 20
# The escape \u0000, but not the text "\\u0000" (an escaped backslash, then "u0000"): the
# backslash run before it is odd. Backslashes only occur inside JSON strings.
_NUL_ESCAPE = re.compile(r"(?<!\\)(?:\\\\)*\\u0000")


def refuse_constant(name: str) -> None:
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


def decode(body: bytes) -> Any:
    """The JSON value of ``body``; a ParseError (400) for what is not JSON Loupe can store."""
    try:
        # What json.loads does with bytes (UTF-8, -16 or -32), done here so the NUL scan
        # below reads the same text in any of them.
        text = body.decode(json.detect_encoding(body), "surrogatepass")
        # A raw NUL byte is already invalid JSON; only the escape can put one in a string.
        if "\\u0000" in text and _NUL_ESCAPE.search(text):
            raise ParseError("JSON strings may not contain the NUL character (\\u0000).")
        return json.loads(text, parse_constant=refuse_constant)
    except (ValueError, RecursionError) as exc:  # RecursionError: "]" in strings can hide depth
        raise ParseError(f"JSON parse error - {exc}") from None


class SafeJSONParser(JSONParser):
    media_type = "application/json"
    max_depth = MAX_DEPTH

    def parse(
        self, stream: IO[Any], media_type: str | None = None, parser_context: Mapping[str, Any] | None = None
    ) -> Any:
        limit = settings.LOUPE_MAX_UPLOAD_BYTES  # the edge's 413 limit; the test client has no edge
        body = stream.read(limit + 1) if stream is not None else b""
        if len(body) > limit:
            raise ParseError(f"The request body is larger than {limit} bytes.")
        self.check(body)
        return decode(body)

    def check(self, body: bytes) -> None:
        """Refuse, before decoding, what no valid body holds. Subclasses add their limits."""
        if max_depth(body.translate(None, NOT_BRACKETS)) > self.max_depth:
            raise ParseError(f"The JSON is nested deeper than {self.max_depth} levels.")
