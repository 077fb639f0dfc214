"""Selectors for the manager dashboards. They read the rollup tables only
(``inspection.models.rollups``), plus the project's lines, stations and defect classes for
their names: never the inspection or verdict tables, so their cost follows the number of
buckets in the range (stations x SKUs x days or hours), not the number of parts
(bad-inputs case 39).

Every chart is ``{"columns": [...], "rows": [...]}``: the rows are what the chart draws and
what its CSV export holds. Buckets with no decided part are absent, not zero. Times are UTC;
a shift is the set of hours of the day that ``Project.shifts`` gives it.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

from django.db.models import QuerySet, Sum

from inspection.errors import InvalidInput
from inspection.models import DefectClass, DefectRollup, Line, Period, Project, Station, YieldRollup
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
    def start(self) -> datetime:
        return datetime.combine(self.date_from, time.min, tzinfo=UTC)

    @property
    def end(self) -> datetime:
        return datetime.combine(self.date_to + timedelta(days=1), time.min, tzinfo=UTC)


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

    Defaults: the 30 days up to today (UTC); per hour when the range is two days or less.
    """
    date_to = date_to or today or datetime.now(UTC).date()
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


def shift_of_hour(shifts: list[dict[str, Any]], hour: int) -> str:
    """The shift running at ``hour`` (0-23, UTC): the last one started by then, else the one
    that started the evening before."""
    ordered = sorted(shifts, key=lambda shift: int(shift["start"]))
    running = [shift for shift in ordered if int(shift["start"]) <= hour]
    return str((running or ordered)[-1]["name"])


def _labels(query: DashboardQuery) -> dict[Any, str]:
    if query.group_by == "line":
        return dict(Line.objects.filter(project=query.project).values_list("pk", "name"))
    if query.group_by == "station":
        return {
            station.pk: f"{station.line.name}/{station.name}"
            for station in Station.objects.filter(project=query.project).select_related("line")
        }
    return {}


_GROUP_FIELD = {"none": None, "line": "station__line_id", "station": "station_id", "sku": "sku", "shift": None}


def _counter_series(query: DashboardQuery) -> list[dict[str, Any]]:
    """Sums of every counter per (bucket, group), sorted by bucket then group name."""
    totals: dict[tuple[datetime, Any], dict[str, int]] = defaultdict(lambda: dict.fromkeys(YIELD_COUNTERS, 0))
    names: dict[Any, str] = {}
    if query.group_by == "shift":
        # Shifts are hours of the day: add up hourly rows, then fold each hour into its shift.
        shifts = query.project.shifts
        for row in _rollups(YieldRollup, query, period=Period.HOUR).values("bucket").annotate(**_SUMS):
            hour = row["bucket"].astimezone(UTC)
            bucket = hour if query.interval == Period.HOUR else hour.replace(hour=0)
            shift = shift_of_hour(shifts, hour.hour)
            names[shift] = shift
            _add(totals[(bucket, shift)], row)
    else:
        field = _GROUP_FIELD[query.group_by]
        labels = _labels(query)
        grouped = ["bucket", field] if field else ["bucket"]
        for row in _rollups(YieldRollup, query, period=query.interval).values(*grouped).annotate(**_SUMS):
            group = row[field] if field else None
            if query.group_by in {"line", "station"}:
                names[group] = labels.get(group, str(group))
            else:
                names[group] = str(group) if query.group_by == "sku" else "all"
            _add(totals[(row["bucket"].astimezone(UTC), group)], row)
    series = []
    for (bucket, group), counts in sorted(totals.items(), key=lambda item: (item[0][0], names[item[0][1]])):
        series.append(
            {
                "bucket": _iso(bucket),
                "group": names[group],
                "group_id": group if query.group_by in {"line", "station"} else None,
                **counts,
            }
        )
    return series


# Aliases differ from the field names: Django refuses an annotation named like a field.
_SUMS = {f"n_{name}": Sum(name) for name in YIELD_COUNTERS}


def _add(into: dict[str, int], row: dict[str, Any]) -> None:
    for name in YIELD_COUNTERS:
        into[name] += int(row[f"n_{name}"] or 0)


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _ratio(numerator: int, denominator: int) -> float | None:
    return round(numerator / denominator, 6) if denominator else None


_SERIES_KEYS = ["bucket", "group", "group_id"]


def dashboard_yield(query: DashboardQuery) -> dict[str, Any]:
    """First-pass yield: parts passed at their first and only decision over parts decided."""
    columns = [*_SERIES_KEYS, "parts_decided", "passed", "failed", "first_pass_yield"]
    rows = [
        {**_pick(row, columns), "first_pass_yield": _ratio(row["passed"], row["parts_decided"])}
        for row in _counter_series(query)
    ]
    return {"columns": columns, "rows": rows}


def dashboard_throughput(query: DashboardQuery) -> dict[str, Any]:
    """Parts decided per bucket, and per hour of the bucket (1 or 24 hours)."""
    hours = 1 if query.interval == Period.HOUR else 24
    columns = [*_SERIES_KEYS, "parts_decided", "parts_per_hour"]
    rows = [
        {**_pick(row, columns), "parts_per_hour": round(row["parts_decided"] / hours, 3)}
        for row in _counter_series(query)
    ]
    return {"columns": columns, "rows": rows}


def dashboard_automation(query: DashboardQuery) -> dict[str, Any]:
    """Share of parts whose final verdict came from the models, and how the rest was decided."""
    columns = [
        *_SERIES_KEYS,
        "parts_decided",
        "auto_passed",
        "auto_failed",
        "human_passed",
        "human_failed",
        "automation_rate",
    ]
    rows = [
        {
            **_pick(row, columns),
            "automation_rate": _ratio(row["auto_passed"] + row["auto_failed"], row["parts_decided"]),
        }
        for row in _counter_series(query)
    ]
    return {"columns": columns, "rows": rows}


def dashboard_audits(query: DashboardQuery) -> dict[str, Any]:
    """Escape and false-reject rates measured on audit samples: escapes over audited parts
    the models would have passed; false rejects over audited parts they would have failed."""
    columns = [
        *_SERIES_KEYS,
        "audited_auto_passes",
        "escapes",
        "escape_rate",
        "audited_auto_fails",
        "false_rejects",
        "false_reject_rate",
    ]
    rows = [
        {
            **_pick(row, columns),
            "escape_rate": _ratio(row["escapes"], row["audited_auto_passes"]),
            "false_reject_rate": _ratio(row["false_rejects"], row["audited_auto_fails"]),
        }
        for row in _counter_series(query)
        if row["audited_auto_passes"] or row["audited_auto_fails"]
    ]
    return {"columns": columns, "rows": rows}


def _pick(row: dict[str, Any], columns: list[str]) -> dict[str, Any]:
    return {name: row[name] for name in columns if name in row}


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
    sums = _rollups(YieldRollup, query, period=query.interval).aggregate(**_SUMS)
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
