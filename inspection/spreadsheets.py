"""Cells for CSV files that people open in spreadsheets."""

from __future__ import annotations

import csv
import json
from collections.abc import AsyncIterator, Iterator
from typing import Any

from asgiref.sync import sync_to_async
from django.db.models import QuerySet

_FORMULA_PREFIXES = ("=", "+", "-", "@", "\t", "\r")


def csv_cell(value: Any) -> str:
    """``value`` as CSV text that no spreadsheet evaluates: text is written as it is,
    anything else as JSON, and a cell that would start like a formula gets a leading
    apostrophe (CSV injection)."""
    text = value if isinstance(value, str) else json.dumps(value, default=str, sort_keys=True)
    return "'" + text if text.startswith(_FORMULA_PREFIXES) else text


class _Echo:
    def write(self, value: str) -> str:
        return value


def csv_rows_streamed(
    rows: QuerySet[Any], columns: list[tuple[str, str]], *, asynchronous: bool, batch: int = 2000
) -> Iterator[str] | AsyncIterator[str]:
    """The CSV lines of ``rows`` (header first), read ``batch`` rows at a time by primary key.

    ``columns`` pairs each header with the attribute it is read from. ``asynchronous`` gives
    an async iterator for an ASGI server: Django consumes a synchronous one there by reading
    it whole into a list first (the whole table in memory), so each batch is fetched in a
    thread instead and written out before the next one is read.
    """
    writer = csv.writer(_Echo())
    header = writer.writerow([name for name, _ in columns])

    def lines(chunk: list[Any]) -> str:
        return "".join(writer.writerow([csv_cell(getattr(row, field)) for _, field in columns]) for row in chunk)

    def fetch(after: int) -> list[Any]:
        return list(rows.filter(pk__gt=after).order_by("pk")[:batch])

    def sync_stream() -> Iterator[str]:
        yield header
        after = 0
        while chunk := fetch(after):
            yield lines(chunk)
            after = chunk[-1].pk

    async def async_stream() -> AsyncIterator[str]:
        yield header
        after = 0
        while chunk := await sync_to_async(fetch)(after):
            yield lines(chunk)
            after = chunk[-1].pk

    return async_stream() if asynchronous else sync_stream()
