"""Quality metrics (selectors): what the plant measures about the loop, per project and per
day, line or station: automation rate, escape and false-reject rates measured on audit
samples, agreement between model and people, and each reviewer's throughput and accuracy
on golden items.

Computed from the rows in the window on every call, so meant for short windows; the
manager dashboards (``inspection.dashboards``) read rollups kept current as verdicts
arrive, for plant scale.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from inspection.models import Project, Verdict
from inspection.plant_time import zone
from review.models import ReviewItem

GROUPINGS = ("day", "line", "station")


def _ratio(numerator: int, denominator: int) -> float | None:
    return round(numerator / denominator, 6) if denominator else None


def quality_metrics(
    *, project_id: int, group_by: str | None = None, since: datetime | None = None, until: datetime | None = None
) -> dict[str, Any]:
    """``{"groups": [...], "reviewers": [...]}`` for one project the caller may see. Days are
    the plant's local days (``Project.time_zone``)."""
    verdicts = Verdict.objects.filter(project_id=project_id, is_final=True).select_related("inspection__station__line")
    items = ReviewItem.objects.filter(project_id=project_id, status=ReviewItem.Status.DECIDED).select_related(
        "inspection__station__line", "decided_by"
    )
    if since is not None:
        verdicts, items = verdicts.filter(created_at__gte=since), items.filter(decided_at__gte=since)
    if until is not None:
        verdicts, items = verdicts.filter(created_at__lt=until), items.filter(decided_at__lt=until)

    time_zone = Project.objects.filter(pk=project_id).values_list("time_zone", flat=True).get()
    key = _key(group_by, zone(time_zone))
    groups: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    for verdict in verdicts.iterator(chunk_size=2000):
        bucket = groups[key(verdict.inspection, verdict.created_at)]
        bucket["parts_decided"] += 1
        bucket["automated"] += verdict.source == Verdict.Source.MODEL
        bucket["failed"] += verdict.outcome == Verdict.Outcome.FAIL
        scores = verdict.inspection.scores if verdict.inspection else {}
        if verdict.source == Verdict.Source.HUMAN and isinstance(scores, dict) and "defect_score" in scores:
            model_says_fail = float(scores["defect_score"]) >= 0.5
            bucket["compared"] += 1
            bucket["agreed"] += model_says_fail == (verdict.outcome == Verdict.Outcome.FAIL)
    for item in items.filter(reason=ReviewItem.Reason.AUDIT_SAMPLE).iterator(chunk_size=2000):
        bucket = groups[key(item.inspection, item.decided_at)]
        if item.model_decision == "pass":
            bucket["audited_passes"] += 1
            bucket["escapes"] += item.decided_outcome == "fail"
        elif item.model_decision == "fail":
            bucket["audited_fails"] += 1
            bucket["false_rejects"] += item.decided_outcome == "pass"

    rows = []
    for name in sorted(groups):
        counts = groups[name]
        rows.append(
            {
                "group": name,
                "parts_decided": counts["parts_decided"],
                "first_pass_yield": _ratio(counts["parts_decided"] - counts["failed"], counts["parts_decided"]),
                "automation_rate": _ratio(counts["automated"], counts["parts_decided"]),
                "audited": counts["audited_passes"] + counts["audited_fails"],
                "measured_escape_rate": _ratio(counts["escapes"], counts["audited_passes"]),
                "measured_false_reject_rate": _ratio(counts["false_rejects"], counts["audited_fails"]),
                "model_human_agreement": _ratio(counts["agreed"], counts["compared"]),
            }
        )
    return {"group_by": group_by, "groups": rows, "reviewers": _reviewers(items)}


def _key(group_by: str | None, plant_zone: ZoneInfo) -> Callable[[Any, datetime | None], str]:
    def key(inspection: Any, when: datetime | None) -> str:
        if group_by == "day":
            return when.astimezone(plant_zone).date().isoformat() if when else "unknown"
        if group_by in {"line", "station"}:
            if inspection is None:
                return "unknown"
            station = inspection.station
            return station.line.name if group_by == "line" else f"{station.line.name}/{station.name}"
        return "all"

    return key


def _reviewers(items: Any) -> list[dict[str, Any]]:
    stats: dict[str, dict[str, Any]] = {}
    for item in items.exclude(decided_by=None).iterator(chunk_size=2000):
        row = stats.setdefault(
            item.decided_by.username,
            {"decisions": 0, "golden_answered": 0, "golden_correct": 0, "first": None, "last": None},
        )
        row["decisions"] += 1
        if item.golden_id is not None:
            row["golden_answered"] += 1
            row["golden_correct"] += bool(item.golden_correct)
        row["first"] = min(filter(None, [row["first"], item.decided_at]))
        row["last"] = max(filter(None, [row["last"], item.decided_at]))
    result = []
    for username, row in sorted(stats.items()):
        hours = max((row["last"] - row["first"]).total_seconds() / 3600, 1 / 60) if row["first"] else None
        result.append(
            {
                "reviewer": username,
                "decisions": row["decisions"],
                "decisions_per_hour": round(row["decisions"] / hours, 2) if hours else None,
                "golden_answered": row["golden_answered"],
                "golden_accuracy": _ratio(row["golden_correct"], row["golden_answered"]),
            }
        )
    return result
