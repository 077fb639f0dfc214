"""Selectors for the manager dashboards. They read the rollup tables only
(``inspection.models.rollups``), plus the project's lines, stations and defect classes for
their names: never the inspection or verdict tables, so their cost follows the number of
buckets in the range (stations x SKUs x days or hours), not the number of parts
(bad-inputs case 39).

Every chart is ``{"columns": [...], "rows": [...]}``: the rows are what the chart draws and
what its CSV export holds. Buckets with no decided part are absent, not zero. Dates and
times are the plant's (``Project.time_zone``; buckets are written with its UTC offset): a
day is the plant's local day, a shift the set of local hours that ``Project.shifts`` gives
it, and in a daily series a shift counts on the day it began (a night shift from 22:00
belongs to that day).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from django.db.models import QuerySet, Sum

from inspection.errors import InvalidInput
from inspection.models import DefectClass, DefectRollup, Line, Period, Project, Station, YieldRollup
from inspection.plant_time import day_bucket, local_hour, shift_of_hour, zone
from inspection.services.rollups import YIELD_COUNTERS

GROUPINGS = ("none", "line", "station", "sku", "shift")
MAX_RANGE_DAYS = 400
MAX_HOURLY_RANGE_DAYS = 31  # an hourly series longer than a month is unreadable anyway
AUTO_HOURLY_RANGE_DAYS = 2  # ranges this short are drawn per hour unless asked otherwise


@dataclass(frozen=True)
class DashboardQuery:
    """What a dashboard request asks for, validated. ``date_to`` is inclusive."""

    project: Project
    date_from: date
    date_to: date
    line_id: int | None = None
    station_id: int | None = None
    sku: str | None = None
    group_by: str = "none"
    interval: str = Period.DAY

    @property
    def zone(self) -> ZoneInfo:
        return zone(self.project.time_zone)

    @property
    def start(self) -> datetime:
        """When the plant's ``date_from`` began."""
        return datetime.combine(self.date_from, time.min, tzinfo=self.zone)

    @property
    def end(self) -> datetime:
        """When the plant's day after ``date_to`` began."""
        return datetime.combine(self.date_to + timedelta(days=1), time.min, tzinfo=self.zone)


def dashboard_query(
    *,
    project: Project,
    date_from: date | None = None,
    date_to: date | None = None,
    line_id: int | None = None,
    station_id: int | None = None,
    sku: str | None = None,
    group_by: str | None = None,
    interval: str | None = None,
    today: date | None = None,
) -> DashboardQuery:
    """Check a request's range and filters against ``project``; InvalidInput says what is wrong.

    Defaults: the 30 days up to the plant's today; per hour when the range is two days or less.
    """
    date_to = date_to or today or datetime.now(zone(project.time_zone)).date()
    date_from = date_from or date_to - timedelta(days=29)
    days = (date_to - date_from).days + 1
    if days < 1:
        raise InvalidInput("'from' must not be after 'to'.", code="invalid_range")
    if days > MAX_RANGE_DAYS:
        raise InvalidInput(f"The range may span at most {MAX_RANGE_DAYS} days.", code="range_too_long")
    if interval is None:
        interval = Period.HOUR if days <= AUTO_HOURLY_RANGE_DAYS else Period.DAY
    if interval == Period.HOUR and days > MAX_HOURLY_RANGE_DAYS:
        raise InvalidInput(f"An hourly series may span at most {MAX_HOURLY_RANGE_DAYS} days.", code="range_too_long")
    group_by = group_by or "none"
    if group_by not in GROUPINGS:
        raise InvalidInput(f"group_by must be one of {', '.join(GROUPINGS)}.")
    if line_id is not None and not Line.objects.filter(pk=line_id, project=project).exists():
        raise InvalidInput("Unknown line for this project.", code="unknown_line")
    if station_id is not None and not Station.objects.filter(pk=station_id, project=project).exists():
        raise InvalidInput("Unknown station for this project.", code="unknown_station")
    return DashboardQuery(
        project=project,
        date_from=date_from,
        date_to=date_to,
        line_id=line_id,
        station_id=station_id,
        sku=sku,
        group_by=group_by,
        interval=str(interval),
    )


def _rollups(model: type[Any], query: DashboardQuery, *, period: str) -> QuerySet[Any]:
    rows: QuerySet[Any] = model.objects.filter(
        project=query.project, period=period, bucket__gte=query.start, bucket__lt=query.end
    )
    if query.line_id is not None:
        rows = rows.filter(station__line_id=query.line_id)
    if query.station_id is not None:
        rows = rows.filter(station_id=query.station_id)
    if query.sku is not None:
        rows = rows.filter(sku=query.sku)
    return rows.order_by()


def _labels(query: DashboardQuery) -> dict[Any, str]:
    if query.group_by == "line":
        return dict(Line.objects.filter(project=query.project).values_list("pk", "name"))
    if query.group_by == "station":
        return {
            station.pk: f"{station.line.name}/{station.name}"
            for station in Station.objects.filter(project=query.project).select_related("line")
        }
    return {}


_GROUP_FIELD = {"line": "station__line_id", "station": "station_id", "sku": "sku"}

# One point of a series: (bucket, group name, group id, sums of the counters asked for).
Point = tuple[datetime, str, Any, tuple[int, ...]]


def _series(query: DashboardQuery, counters: Sequence[str]) -> list[Point]:
    """Sums of ``counters`` per (bucket, group), sorted by bucket then group name.

    One aggregate query over the rollup rows of the range: day rows, hour rows for hourly
    intervals, shift rows for the shift breakdown per day (a shift counts on the day it began).
    """
    # Never NULL: every row of a group has NOT NULL counters.
    sums = {f"n_{name}": Sum(name) for name in counters}
    points: list[Point] = []
    if query.group_by == "shift":
        shifts, time_zone = query.project.shifts, query.project.time_zone
        period = Period.HOUR if query.interval == Period.HOUR else Period.SHIFT
        merged: dict[tuple[datetime, str], list[int]] = {}
        rows = _rollups(YieldRollup, query, period=period).values("bucket").annotate(**sums)
        for bucket, *counts in rows.values_list("bucket", *sums):
            name = shift_of_hour(shifts, local_hour(bucket, time_zone))
            key = (bucket if period == Period.HOUR else day_bucket(bucket, time_zone), name)
            into = merged.setdefault(key, [0] * len(counters))
            for index, count in enumerate(counts):
                into[index] += int(count or 0)
        points = [(bucket, name, None, tuple(counts)) for (bucket, name), counts in merged.items()]
    elif query.group_by in _GROUP_FIELD:
        field, labels = _GROUP_FIELD[query.group_by], _labels(query)
        rows = _rollups(YieldRollup, query, period=query.interval).values("bucket", field).annotate(**sums)
        for bucket, group, *counts in rows.values_list("bucket", field, *sums):
            name = str(group) if query.group_by == "sku" else labels.get(group, str(group))
            group_id = None if query.group_by == "sku" else group
            points.append((bucket, name, group_id, tuple(counts)))
    else:
        rows = _rollups(YieldRollup, query, period=query.interval).values("bucket").annotate(**sums)
        for bucket, *counts in rows.values_list("bucket", *sums):
            points.append((bucket, "all", None, tuple(counts)))
    points.sort(key=lambda point: (point[0], point[1]))
    return points


class _Iso(dict[datetime, str]):
    """ISO 8601 text of each bucket in the plant's time, with its UTC offset ("Z" for UTC),
    formatted once per bucket (they repeat across groups)."""

    def __init__(self, time_zone: str) -> None:
        super().__init__()
        self.zone = zone(time_zone)

    def __missing__(self, moment: datetime) -> str:
        local = moment.astimezone(self.zone)
        offset = local.strftime("%z")
        suffix = "Z" if offset == "+0000" else f"{offset[:3]}:{offset[3:]}"
        text = self[moment] = local.strftime("%Y-%m-%dT%H:%M:%S") + suffix
        return text


def _ratio(numerator: int, denominator: int) -> float | None:
    return round(numerator / denominator, 6) if denominator else None


_SERIES_KEYS = ["bucket", "group", "group_id"]


def dashboard_yield(query: DashboardQuery) -> dict[str, Any]:
    """First-pass yield: parts passed at their first and only decision over parts decided."""
    iso = _Iso(query.project.time_zone)
    rows = [
        {
            "bucket": iso[bucket],
            "group": name,
            "group_id": group_id,
            "parts_decided": decided,
            "passed": passed,
            "failed": failed,
            "first_pass_yield": _ratio(passed, decided),
        }
        for bucket, name, group_id, (decided, passed, failed) in _series(query, ("parts_decided", "passed", "failed"))
    ]
    return {"columns": [*_SERIES_KEYS, "parts_decided", "passed", "failed", "first_pass_yield"], "rows": rows}


def dashboard_throughput(query: DashboardQuery) -> dict[str, Any]:
    """Parts decided per bucket, and per hour of the bucket (1 or 24 hours)."""
    hours = 1 if query.interval == Period.HOUR else 24
    iso = _Iso(query.project.time_zone)
    rows = [
        {
            "bucket": iso[bucket],
            "group": name,
            "group_id": group_id,
            "parts_decided": decided,
            "parts_per_hour": round(decided / hours, 3),
        }
        for bucket, name, group_id, (decided,) in _series(query, ("parts_decided",))
    ]
    return {"columns": [*_SERIES_KEYS, "parts_decided", "parts_per_hour"], "rows": rows}


_AUTOMATION = ("parts_decided", "auto_passed", "auto_failed", "human_passed", "human_failed")


def dashboard_automation(query: DashboardQuery) -> dict[str, Any]:
    """Share of parts whose final verdict came from the models, and how the rest was decided."""
    iso = _Iso(query.project.time_zone)
    rows = [
        {
            "bucket": iso[bucket],
            "group": name,
            "group_id": group_id,
            **dict(zip(_AUTOMATION, counts, strict=True)),
            "automation_rate": _ratio(counts[1] + counts[2], counts[0]),
        }
        for bucket, name, group_id, counts in _series(query, _AUTOMATION)
    ]
    return {"columns": [*_SERIES_KEYS, *_AUTOMATION, "automation_rate"], "rows": rows}


_AUDITS = ("audited_auto_passes", "escapes", "audited_auto_fails", "false_rejects")


def dashboard_audits(query: DashboardQuery) -> dict[str, Any]:
    """Escape and false-reject rates measured on audit samples: escapes over audited parts
    the models would have passed; false rejects over audited parts they would have failed.
    Buckets without audits are left out."""
    iso = _Iso(query.project.time_zone)
    rows = [
        {
            "bucket": iso[bucket],
            "group": name,
            "group_id": group_id,
            "audited_auto_passes": audited_passes,
            "escapes": escapes,
            "escape_rate": _ratio(escapes, audited_passes),
            "audited_auto_fails": audited_fails,
            "false_rejects": false_rejects,
            "false_reject_rate": _ratio(false_rejects, audited_fails),
        }
        for bucket, name, group_id, (audited_passes, escapes, audited_fails, false_rejects) in _series(query, _AUDITS)
        if audited_passes or audited_fails
    ]
    columns = [*_SERIES_KEYS, "audited_auto_passes", "escapes", "escape_rate"]
    return {"columns": [*columns, "audited_auto_fails", "false_rejects", "false_reject_rate"], "rows": rows}


def dashboard_pareto(query: DashboardQuery) -> dict[str, Any]:
    """Failed parts by defect class, most frequent first, with each class's share and the
    cumulative share. Failed parts without a class (a model fail naming none) are one row
    with ``defect_class_id`` null, so the shares add up to the failed total."""
    classified = dict(
        _rollups(DefectRollup, query, period=query.interval)
        .values("defect_class_id")
        .annotate(n_failed=Sum("failed"))
        .values_list("defect_class_id", "n_failed")
    )
    failed_total = (
        _rollups(YieldRollup, query, period=query.interval).aggregate(n_failed=Sum("failed"))["n_failed"] or 0
    )
    names = dict(DefectClass.objects.filter(project=query.project).values_list("pk", "name"))
    entries: list[tuple[int | None, str | None, int]] = [
        (class_id, names.get(class_id, ""), int(count)) for class_id, count in classified.items() if count
    ]
    unclassified = failed_total - sum(count for _, _, count in entries)
    if unclassified > 0:
        entries.append((None, None, unclassified))
    entries.sort(key=lambda entry: (-entry[2], entry[1] is None, entry[1] or ""))
    rows, running = [], 0
    for class_id, name, count in entries:
        running += count
        rows.append(
            {
                "defect_class_id": class_id,
                "defect_class": name,
                "failed": count,
                "share": _ratio(count, failed_total),
                "cumulative_share": _ratio(running, failed_total),
            }
        )
    return {
        "columns": ["defect_class_id", "defect_class", "failed", "share", "cumulative_share"],
        "rows": rows,
        "failed_total": failed_total,
    }


def dashboard_summary(query: DashboardQuery) -> dict[str, Any]:
    """Totals over the range (one row) and the project's review backlog now."""
    sums = _rollups(YieldRollup, query, period=query.interval).aggregate(
        **{f"n_{name}": Sum(name) for name in YIELD_COUNTERS}
    )
    totals = {name: int(sums[f"n_{name}"] or 0) for name in YIELD_COUNTERS}
    row = {
        **totals,
        "first_pass_yield": _ratio(totals["passed"], totals["parts_decided"]),
        "automation_rate": _ratio(totals["auto_passed"] + totals["auto_failed"], totals["parts_decided"]),
        "escape_rate": _ratio(totals["escapes"], totals["audited_auto_passes"]),
        "false_reject_rate": _ratio(totals["false_rejects"], totals["audited_auto_fails"]),
    }
    return {"columns": list(row), "rows": [row], "review_queue": review_backlog(project=query.project)}


def review_backlog(*, project: Project) -> dict[str, Any]:
    """Open and claimed review items, the oldest wait and SLA breaches: a bounded query over
    the items still waiting (the review app's queue statistics, for one project)."""
    from django.conf import settings
    from django.db.models import Count, Min, Q

    from review.models import ReviewItem

    now = datetime.now(UTC)
    breach_before = now - timedelta(minutes=settings.LOUPE_REVIEW_SLA_MINUTES)
    waiting = ReviewItem.objects.filter(
        project=project, status__in=[ReviewItem.Status.OPEN, ReviewItem.Status.CLAIMED]
    ).aggregate(
        open=Count("id", filter=Q(status=ReviewItem.Status.OPEN)),
        claimed=Count("id", filter=Q(status=ReviewItem.Status.CLAIMED)),
        oldest=Min("created_at"),
        sla_breaches=Count("id", filter=Q(created_at__lt=breach_before)),
    )
    oldest = waiting["oldest"]
    return {
        "open": waiting["open"],
        "claimed": waiting["claimed"],
        "oldest_waiting_seconds": round((now - oldest).total_seconds(), 1) if oldest else None,
        "sla_breaches": waiting["sla_breaches"],
        "sla_minutes": settings.LOUPE_REVIEW_SLA_MINUTES,
    }


CHARTS = {
    "yield": dashboard_yield,
    "throughput": dashboard_throughput,
    "automation": dashboard_automation,
    "audits": dashboard_audits,
    "pareto": dashboard_pareto,
    "summary": dashboard_summary,
}
