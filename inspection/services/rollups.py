"""Writes for the dashboards' rollups: one upsert per bucket as each final verdict arrives,
and a rebuild from the verdicts with one aggregate query.

The upserts are ``INSERT ... ON CONFLICT (bucket key) DO UPDATE SET n = n + excluded.n``,
which PostgreSQL (9.5+) and SQLite (3.24+) both run atomically: parallel workers deciding
parts of the same station and hour never lose a count, and there is no read-modify-write
race to retry. They run inside the caller's transaction, so a rolled-back verdict leaves no
count behind.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from django.db import connection, transaction
from django.db.models import Count, F, FilteredRelation, Q
from django.db.models.functions import TruncHour

from inspection.models import DefectRollup, Part, Period, Project, Verdict, YieldRollup
from inspection.plant_time import day_bucket, hour_bucket, hours_into_shift, shift_bucket, shift_of_hour

__all__ = [  # the plant-time helpers are part of this module's interface too
    "hour_bucket",
    "hours_into_shift",
    "rollup_record_verdict",
    "rollup_record_verdicts",
    "rollups_rebuild",
    "rollups_rebuild_local",
    "shift_bucket",
    "shift_of_hour",
    "verdict_counters",
]

YIELD_COUNTERS = (
    "parts_decided",
    "passed",
    "failed",
    "auto_passed",
    "auto_failed",
    "human_passed",
    "human_failed",
    "audited_auto_passes",
    "escapes",
    "audited_auto_fails",
    "false_rejects",
)
_YIELD_KEY = ("project_id", "period", "bucket", "station_id", "sku")
_DEFECT_KEY = ("project_id", "period", "bucket", "station_id", "sku", "defect_class_id")

AUDIT_SAMPLE = "audit_sample"  # review.models.ReviewItem.Reason.AUDIT_SAMPLE (review imports inspection)


def verdict_counters(*, outcome: str, source: str, audited_model_decision: str = "") -> dict[str, int]:
    """What one final verdict adds to its buckets.

    ``audited_model_decision`` is what the models would have decided alone ("pass" or
    "fail") when the part was drawn for the audit sample, else "": the person's verdict on
    an audited auto-pass that fails is an escape; on an audited auto-fail that passes, a
    false reject.
    """
    failed = outcome == Verdict.Outcome.FAIL
    by_model = source == Verdict.Source.MODEL
    return {
        "parts_decided": 1,
        "passed": int(not failed),
        "failed": int(failed),
        "auto_passed": int(by_model and not failed),
        "auto_failed": int(by_model and failed),
        "human_passed": int(not by_model and not failed),
        "human_failed": int(not by_model and failed),
        "audited_auto_passes": int(audited_model_decision == "pass"),
        "escapes": int(audited_model_decision == "pass" and failed),
        "audited_auto_fails": int(audited_model_decision == "fail"),
        "false_rejects": int(audited_model_decision == "fail" and not failed),
    }


def rollup_record_verdict(*, verdict: Verdict, audited_model_decision: str = "") -> None:
    """Count one final verdict in the hour, day and shift of its part's production.

    Call inside the transaction that writes the verdict (``verdict_record_final`` does). The
    buckets follow the ``captured_at`` of the verdict's inspection: its UTC hour, and the day
    and shift of the plant's clock (``inspection.plant_time``); a verdict without
    an inspection (its inspection deleted) is not counted, here and in ``rollups_rebuild``
    alike. Cost: one multi-row upsert, plus one for the defect class of a failed part, plus a
    read of the project's shifts and time zone unless the verdict's part has its project loaded.
    """
    rollup_record_verdicts(verdicts=[(verdict, audited_model_decision)])


def rollup_record_verdicts(*, verdicts: Sequence[tuple[Verdict, str]]) -> None:
    """``rollup_record_verdict`` for several ``(verdict, audited_model_decision)`` at once: the
    counts are added up per bucket first, so a batch costs one upsert per table however many
    verdicts share a station and hour."""
    yield_rows: dict[tuple[Any, ...], dict[str, int]] = {}
    defect_rows: dict[tuple[Any, ...], dict[str, int]] = {}
    clock_of: dict[int, tuple[list[dict[str, Any]], str]] = {}
    for verdict, audited_model_decision in verdicts:
        inspection = verdict.inspection
        if inspection is None:
            continue
        part = verdict.part
        if verdict.project_id not in clock_of:
            if Part.project.is_cached(part):
                clock_of[verdict.project_id] = (part.project.shifts, part.project.time_zone)
            else:
                clock_of[verdict.project_id] = (
                    Project.objects.filter(pk=verdict.project_id).values_list("shifts", "time_zone").get()
                )
        shifts, time_zone = clock_of[verdict.project_id]
        counters = verdict_counters(
            outcome=verdict.outcome, source=verdict.source, audited_model_decision=audited_model_decision
        )
        hour = hour_bucket(inspection.captured_at)
        for period, bucket in (
            (Period.HOUR, hour),
            (Period.DAY, day_bucket(hour, time_zone)),
            (Period.SHIFT, shift_bucket(hour, shifts, time_zone)),
        ):
            key = (verdict.project_id, period.value, bucket, inspection.station_id, part.sku)
            total = yield_rows.setdefault(key, dict.fromkeys(counters, 0))
            for name, value in counters.items():
                total[name] += value
            if verdict.defect_class_id is not None and counters["failed"]:
                defect = defect_rows.setdefault((*key, verdict.defect_class_id), {"failed": 0})
                defect["failed"] += 1
    if yield_rows:
        _upsert_rows(YieldRollup._meta.db_table, key_names=_YIELD_KEY, rows=yield_rows)
    if defect_rows:
        _upsert_rows(DefectRollup._meta.db_table, key_names=_DEFECT_KEY, rows=defect_rows)


def _upsert_rows(table: str, *, key_names: Sequence[str], rows: dict[tuple[Any, ...], dict[str, int]]) -> None:
    """Add each row's counters to the row of its key, creating it: one statement, one round
    trip. Keys are distinct (PostgreSQL refuses to update one row twice in a statement)."""
    quote = connection.ops.quote_name
    counter_names = list(next(iter(rows.values())))
    columns = [*key_names, *counter_names]
    values = [
        connection.ops.adapt_datetimefield_value(value) if isinstance(value, datetime) else value
        for key, counters in rows.items()
        for value in [*key, *(counters[name] for name in counter_names)]
    ]
    placeholders = ", ".join(["(" + ", ".join(["%s"] * len(columns)) + ")"] * len(rows))
    sql = (
        f"INSERT INTO {quote(table)} ({', '.join(quote(c) for c in columns)}) "  # noqa: S608  (names are ours, quoted)
        f"VALUES {placeholders} "
        f"ON CONFLICT ({', '.join(quote(c) for c in key_names)}) DO UPDATE SET {_increments(table, counter_names)}"
    )
    with connection.cursor() as cursor:
        cursor.execute(sql, values)


def _increments(table: str, counters: Sequence[str]) -> str:
    quote = connection.ops.quote_name
    return ", ".join(f"{quote(c)} = {quote(table)}.{quote(c)} + excluded.{quote(c)}" for c in counters)


def rollups_rebuild(*, project: Project) -> dict[str, int]:
    """Recompute ``project``'s rollups from its final verdicts; returns rows written per table.

    One aggregate query over the verdicts fills the hour rows; the day and shift rows of the
    plant's clock are added up from the hour rows. For maintenance (after an import, a migration or a change
    of counting rules) and the benchmark; verdicts recorded while it runs are counted once
    either way, because its inserts add to rows that appeared meanwhile instead of failing.
    """
    with transaction.atomic():
        YieldRollup.objects.filter(project=project).delete()
        DefectRollup.objects.filter(project=project).delete()
        verdicts = Verdict.objects.filter(project=project, is_final=True, inspection__isnull=False).annotate(
            audit=FilteredRelation(
                "part__review_items",
                condition=Q(part__review_items__reason=AUDIT_SAMPLE, part__review_items__status="decided"),
            ),
            r_station=F("inspection__station_id"),
            r_sku=F("part__sku"),
            r_bucket=TruncHour("inspection__captured_at"),
        )
        fail, by_model = Q(outcome=Verdict.Outcome.FAIL), Q(source=Verdict.Source.MODEL)
        audited_pass, audited_fail = Q(audit__model_decision="pass"), Q(audit__model_decision="fail")
        hourly = verdicts.values("r_station", "r_sku", "r_bucket").annotate(
            n_parts_decided=Count("id"),
            n_passed=Count("id", filter=~fail),
            n_failed=Count("id", filter=fail),
            n_auto_passed=Count("id", filter=by_model & ~fail),
            n_auto_failed=Count("id", filter=by_model & fail),
            n_human_passed=Count("id", filter=~by_model & ~fail),
            n_human_failed=Count("id", filter=~by_model & fail),
            n_audited_auto_passes=Count("id", filter=audited_pass),
            n_escapes=Count("id", filter=audited_pass & fail),
            n_audited_auto_fails=Count("id", filter=audited_fail),
            n_false_rejects=Count("id", filter=audited_fail & ~fail),
        )
        _insert_select(
            YieldRollup._meta.db_table,
            project=project,
            period=Period.HOUR,
            select=hourly.order_by(),
            key_aliases=("r_station", "r_sku", "r_bucket"),
            counters=YIELD_COUNTERS,
        )
        defects = (
            verdicts.filter(outcome=Verdict.Outcome.FAIL, defect_class__isnull=False)
            .annotate(r_defect_class=F("defect_class_id"))
            .values("r_station", "r_sku", "r_bucket", "r_defect_class")
            .annotate(n_failed=Count("id"))
        )
        _insert_select(
            DefectRollup._meta.db_table,
            project=project,
            period=Period.HOUR,
            select=defects.order_by(),
            key_aliases=("r_station", "r_sku", "r_bucket", "r_defect_class"),
            counters=("failed",),
        )
        _local_rows_from_hours(project=project)
    return {
        "yield_rows": YieldRollup.objects.filter(project=project).count(),
        "defect_rows": DefectRollup.objects.filter(project=project).count(),
    }


def rollups_rebuild_local(*, project: Project) -> None:
    """Re-cut ``project``'s day and shift rows from its hour rows, after its shifts or time zone
    changed.

    Cost: four aggregate inserts over the project's hour rows (about stations x SKUs x 8,760 a
    year) per 5,000 distinct hours, the hours mapped to the plant's days and shifts by the same
    ``plant_time`` functions the verdict path uses. A verdict
    committed while the settings change may still land in an old bucket; ``rebuild_rollups``
    settles that.
    """
    with transaction.atomic():
        YieldRollup.objects.filter(project=project, period__in=[Period.DAY, Period.SHIFT]).delete()
        DefectRollup.objects.filter(project=project, period__in=[Period.DAY, Period.SHIFT]).delete()
        _local_rows_from_hours(project=project)


_HOURS_PER_STATEMENT = 5000  # 3 parameters each: under every backend's parameter limit


def _local_rows_from_hours(*, project: Project) -> None:
    """Add the project's hour rows up into day and shift rows of the plant's clock.

    The plant's clock is applied in Python, once per distinct hour (``plant_time``, the same
    functions the verdict path uses); the adding up runs in the database: the hour -> (day,
    shift) table goes in as a ``VALUES`` list joined to the hour rows, one aggregate insert
    per table, period and chunk of hours.
    """
    # As committed: the caller may have changed them in this transaction.
    shifts, time_zone = Project.objects.filter(pk=project.pk).values_list("shifts", "time_zone").get()
    hours = sorted(
        YieldRollup.objects.filter(project=project, period=Period.HOUR)
        .order_by()
        .values_list("bucket", flat=True)
        .distinct()
    )
    adapt = connection.ops.adapt_datetimefield_value
    quote = connection.ops.quote_name
    for start in range(0, len(hours), _HOURS_PER_STATEMENT):
        chunk = hours[start : start + _HOURS_PER_STATEMENT]
        mapping = [
            value
            for hour in chunk
            for value in (adapt(hour), adapt(day_bucket(hour, time_zone)), adapt(shift_bucket(hour, shifts, time_zone)))
        ]
        values = ", ".join(["(%s, %s, %s)"] * len(chunk))
        for model, key_names, counters in (
            (YieldRollup, _YIELD_KEY, YIELD_COUNTERS),
            (DefectRollup, _DEFECT_KEY, ("failed",)),
        ):
            table = quote(model._meta.db_table)
            keys = [quote(name) for name in key_names if name not in {"project_id", "period", "bucket"}]
            columns = ", ".join([quote("project_id"), quote("period"), quote("bucket"), *keys, *map(quote, counters)])
            picked = ", ".join(f"r.{key}" for key in keys)
            sums = ", ".join(f"SUM(r.{quote(name)})" for name in counters)
            conflict = ", ".join(quote(name) for name in key_names)
            increments = _increments(model._meta.db_table, counters)
            for period, column in ((Period.DAY, "day_bucket"), (Period.SHIFT, "shift_bucket")):
                sql = (
                    f"WITH clock (hour_bucket, day_bucket, shift_bucket) AS (VALUES {values}) "  # noqa: S608  (names are ours, quoted)
                    f"INSERT INTO {table} ({columns}) "
                    f"SELECT %s, %s, clock.{column}, {picked}, {sums} "
                    f"FROM {table} AS r JOIN clock ON r.{quote('bucket')} = clock.hour_bucket "
                    f"WHERE r.{quote('project_id')} = %s AND r.{quote('period')} = %s "
                    f"GROUP BY clock.{column}, {picked} "
                    f"ON CONFLICT ({conflict}) DO UPDATE SET {increments}"
                )
                with connection.cursor() as cursor:
                    cursor.execute(sql, [*mapping, project.pk, str(period), project.pk, str(Period.HOUR)])


def _insert_select(
    table: str, *, project: Project, period: str, select: Any, key_aliases: Sequence[str], counters: Sequence[str]
) -> None:
    """``INSERT INTO table SELECT ... FROM (aggregate) ON CONFLICT DO UPDATE`` in the database.

    The aggregate is compiled by the ORM (so date truncation is each backend's own) and read
    by alias in an outer select, which keeps the column order independent of the ORM's.
    """
    quote = connection.ops.quote_name
    inner, params = select.query.sql_with_params()
    key_columns = ["station_id", "sku", "bucket", *(["defect_class_id"] if "r_defect_class" in key_aliases else [])]
    columns = ["project_id", "period", *key_columns, *counters]
    picked = ", ".join([*(quote(alias) for alias in key_aliases), *(quote(f"n_{name}") for name in counters)])
    conflict = _DEFECT_KEY if "r_defect_class" in key_aliases else _YIELD_KEY
    increments = ", ".join(
        f"{quote(name)} = {quote(table)}.{quote(name)} + excluded.{quote(name)}" for name in counters
    )
    sql = (
        f"INSERT INTO {quote(table)} ({', '.join(quote(c) for c in columns)}) "  # noqa: S608  (names are ours, quoted)
        # Inserted in bucket order, so that a range of buckets lies in few pages.
        f"SELECT %s, %s, {picked} FROM ({inner}) AS rollup_source WHERE 1 = 1 ORDER BY {quote('r_bucket')} "
        f"ON CONFLICT ({', '.join(quote(c) for c in conflict)}) DO UPDATE SET {increments}"
    )
    with connection.cursor() as cursor:
        cursor.execute(sql, [project.pk, str(period), *params])
