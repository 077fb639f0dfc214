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
from datetime import UTC, datetime
from typing import Any

from django.db import connection, transaction
from django.db.models import Count, F, FilteredRelation, Q
from django.db.models.functions import TruncDay, TruncHour

from inspection.models import DefectRollup, Period, Project, Verdict, YieldRollup

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


def hour_bucket(moment: datetime) -> datetime:
    return moment.replace(minute=0, second=0, microsecond=0)


def rollup_record_verdict(*, verdict: Verdict, audited_model_decision: str = "") -> None:
    """Count one final verdict in the hour and day of its part's production.

    Call inside the transaction that writes the verdict (``verdict_record_final`` does). The
    bucket is the ``captured_at`` of the verdict's inspection, in UTC; a verdict without an
    inspection (its inspection deleted) is not counted, here and in ``rollups_rebuild`` alike.
    Cost: two upserts, plus two for the defect class of a failed part.
    """
    inspection = verdict.inspection
    if inspection is None:
        return
    captured = inspection.captured_at.astimezone(UTC)
    counters = verdict_counters(
        outcome=verdict.outcome, source=verdict.source, audited_model_decision=audited_model_decision
    )
    sku = verdict.part.sku
    for period, bucket in ((Period.HOUR, hour_bucket(captured)), (Period.DAY, _day_bucket(captured))):
        key = {
            "project_id": verdict.project_id,
            "period": period.value,
            "bucket": bucket,
            "station_id": inspection.station_id,
            "sku": sku,
        }
        _upsert(YieldRollup._meta.db_table, key=key, counters=counters)
        if verdict.defect_class_id is not None and counters["failed"]:
            _upsert(
                DefectRollup._meta.db_table,
                key={**key, "defect_class_id": verdict.defect_class_id},
                counters={"failed": 1},
            )


def _day_bucket(moment: datetime) -> datetime:
    return moment.replace(hour=0, minute=0, second=0, microsecond=0)


def _upsert(table: str, *, key: dict[str, Any], counters: dict[str, int]) -> None:
    quote = connection.ops.quote_name
    columns = [*key, *counters]
    values = [
        connection.ops.adapt_datetimefield_value(value) if isinstance(value, datetime) else value
        for value in [*key.values(), *counters.values()]
    ]
    increments = ", ".join(
        f"{quote(name)} = {quote(table)}.{quote(name)} + excluded.{quote(name)}" for name in counters
    )
    sql = (
        f"INSERT INTO {quote(table)} ({', '.join(quote(c) for c in columns)}) "  # noqa: S608  (names are ours, quoted)
        f"VALUES ({', '.join(['%s'] * len(columns))}) "
        f"ON CONFLICT ({', '.join(quote(c) for c in key)}) DO UPDATE SET {increments}"
    )
    with connection.cursor() as cursor:
        cursor.execute(sql, values)


def rollups_rebuild(*, project: Project) -> dict[str, int]:
    """Recompute ``project``'s rollups from its final verdicts; returns rows written per table.

    One aggregate query over the verdicts fills the hourly rows, and the daily rows are
    added up from the hourly ones. For maintenance (after an import, a migration or a change
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
        _days_from_hours(project=project)
    return {
        "yield_rows": YieldRollup.objects.filter(project=project).count(),
        "defect_rows": DefectRollup.objects.filter(project=project).count(),
    }


def _days_from_hours(*, project: Project) -> None:
    from django.db.models import Sum

    hours = YieldRollup.objects.filter(project=project, period=Period.HOUR).annotate(
        r_station=F("station_id"), r_sku=F("sku"), r_bucket=TruncDay("bucket")
    )
    daily = hours.values("r_station", "r_sku", "r_bucket").annotate(
        **{f"n_{name}": Sum(name) for name in YIELD_COUNTERS}
    )
    _insert_select(
        YieldRollup._meta.db_table,
        project=project,
        period=Period.DAY,
        select=daily.order_by(),
        key_aliases=("r_station", "r_sku", "r_bucket"),
        counters=YIELD_COUNTERS,
    )
    defect_hours = DefectRollup.objects.filter(project=project, period=Period.HOUR).annotate(
        r_station=F("station_id"), r_sku=F("sku"), r_bucket=TruncDay("bucket"), r_defect_class=F("defect_class_id")
    )
    defect_days = defect_hours.values("r_station", "r_sku", "r_bucket", "r_defect_class").annotate(
        n_failed=Sum("failed")
    )
    _insert_select(
        DefectRollup._meta.db_table,
        project=project,
        period=Period.DAY,
        select=defect_days.order_by(),
        key_aliases=("r_station", "r_sku", "r_bucket", "r_defect_class"),
        counters=("failed",),
    )


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
        f"SELECT %s, %s, {picked} FROM ({inner}) AS rollup_source WHERE 1 = 1 "
        f"ON CONFLICT ({', '.join(quote(c) for c in conflict)}) DO UPDATE SET {increments}"
    )
    with connection.cursor() as cursor:
        cursor.execute(sql, [project.pk, str(period), *params])
