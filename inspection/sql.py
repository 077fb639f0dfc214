"""Single-statement writes for the hot paths, where the ORM would need several round trips.

Every function here is one SQL statement that PostgreSQL (9.5+) and SQLite (3.35+) both run
atomically, so the embedded default and production share the code path.
"""

from __future__ import annotations

from typing import Any

from django.db import connection, models


def insert_unless_exists(
    model: type[models.Model], *, values: dict[str, Any], unique: list[str], unique_where: str = ""
) -> int | None:
    """``INSERT ... ON CONFLICT (unique) DO NOTHING RETURNING id``: the new row's id, or None
    when a row with the same ``unique`` key exists (or is being inserted by a transaction that
    then commits). One round trip where ``get_or_create`` takes four (SELECT, SAVEPOINT,
    INSERT, RELEASE), and no exception to recover from when two requests race.

    ``values`` maps field names to Python values (auto_now_add fields must be given).
    ``unique_where`` names a partial unique index by its predicate, a boolean column of the
    model (``"is_final"``): both databases need it to match the index's ``WHERE``.
    """
    meta = model._meta
    quote = connection.ops.quote_name
    fields = [_concrete(model, name) for name in values]
    columns = ", ".join(quote(str(field.column)) for field in fields)
    params = [field.get_db_prep_save(value, connection) for field, value in zip(fields, values.values(), strict=True)]
    conflict = "(" + ", ".join(quote(str(_concrete(model, name).column)) for name in unique) + ")"
    if unique_where:
        conflict += f" WHERE {quote(str(_concrete(model, unique_where).column))}"
    sql = (
        f"INSERT INTO {quote(meta.db_table)} ({columns}) VALUES ({', '.join(['%s'] * len(params))}) "  # noqa: S608  (names are ours, quoted)
        f"ON CONFLICT {conflict} DO NOTHING RETURNING {quote(str(meta.pk.column))}"
    )
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        row = cursor.fetchone()
    return int(row[0]) if row else None


def insert_many_unless_exists(
    model: type[models.Model], *, rows: list[dict[str, Any]], unique: list[str], unique_where: str = ""
) -> list[int | None]:
    """``insert_unless_exists`` for many rows in one statement: for each row, in order, the new
    row's id, or None when its ``unique`` key existed already (or came earlier in ``rows``).
    Every row has the same keys."""
    if not rows:
        return []
    quote = connection.ops.quote_name
    names = list(rows[0])
    fields = [_concrete(model, name) for name in names]
    key_fields = [_concrete(model, name) for name in unique]
    seen: set[tuple[Any, ...]] = set()
    first: list[bool] = []
    params: list[Any] = []
    for row in rows:
        key = tuple(row[field.attname] if field.attname in row else row[field.name] for field in key_fields)
        first.append(key not in seen)
        if key in seen:
            continue
        seen.add(key)
        params.extend(field.get_db_prep_save(row[name], connection) for field, name in zip(fields, names, strict=True))
    count = sum(first)
    columns = ", ".join(quote(str(field.column)) for field in fields)
    conflict = "(" + ", ".join(quote(str(field.column)) for field in key_fields) + ")"
    if unique_where:
        conflict += f" WHERE {quote(str(_concrete(model, unique_where).column))}"
    placeholders = ", ".join(["(" + ", ".join(["%s"] * len(fields)) + ")"] * count)
    returning = ", ".join([quote(str(model._meta.pk.column)), *(quote(str(field.column)) for field in key_fields)])
    sql = (
        f"INSERT INTO {quote(model._meta.db_table)} ({columns}) VALUES {placeholders} "  # noqa: S608  (names are ours, quoted)
        f"ON CONFLICT {conflict} DO NOTHING RETURNING {returning}"
    )
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        inserted = {tuple(found[1:]): int(found[0]) for found in cursor.fetchall()}
    answer: list[int | None] = []
    for row, is_first in zip(rows, first, strict=True):
        key = tuple(row[field.attname] if field.attname in row else row[field.name] for field in key_fields)
        answer.append(inserted.get(key) if is_first else None)
    return answer


def quoted_column(model: type[models.Model], name: str) -> str:
    """The quoted column of field ``name`` of ``model``, for hand-written hot-path SQL."""
    return str(connection.ops.quote_name(str(_concrete(model, name).column)))


def _concrete(model: type[models.Model], name: str) -> models.Field[Any, Any]:
    field = model._meta.get_field(name)
    if not isinstance(field, models.Field) or not field.concrete:
        raise ValueError(f"{model.__name__}.{name} is not a column")
    return field
