"""Dashboards follow the plant's clock: its local days and shifts, daylight saving included."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from inspection.models import AuditEvent, Project, Verdict, YieldRollup
from inspection.plant_time import day_bucket, shift_bucket
from inspection.services.rollups import rollups_rebuild

from .test_dashboards import as_user, build_hand_set, chart, decide_by_model, plant, rollup_snapshot

__all__ = ["plant"]  # the fixture, imported for this module's tests

pytestmark = pytest.mark.django_db

SHIFTS = [{"name": "A", "start": 6}, {"name": "B", "start": 14}, {"name": "C", "start": 22}]


def utc(month: int, day: int, hour: int, minute: int = 0) -> datetime:
    return datetime(2025, month, day, hour, minute, tzinfo=UTC)


@pytest.mark.parametrize(
    ("moment", "day_began"),
    [
        # Berlin in winter is UTC+1: its day begins at 23:00 UTC the evening before.
        (utc(3, 10, 22, 59), utc(3, 9, 23)),
        (utc(3, 10, 23, 0), utc(3, 10, 23)),
        # March 30, 2025: clocks go from 02:00 to 03:00; the day began in winter time and
        # lasts 23 hours, the next one begins at 22:00 UTC.
        (utc(3, 30, 12), utc(3, 29, 23)),
        (utc(3, 30, 22, 30), utc(3, 30, 22)),
        # October 26, 2025: back from 03:00 to 02:00, a 25-hour day.
        (utc(10, 26, 22, 59), utc(10, 25, 22)),
        (utc(10, 26, 23, 0), utc(10, 26, 23)),
    ],
)
def test_a_local_day_begins_at_the_plants_midnight_whatever_the_season(moment: datetime, day_began: datetime) -> None:
    assert day_bucket(moment, "Europe/Berlin") == day_began


@pytest.mark.parametrize(
    ("moment", "shift_began"),
    [
        # Shift C starts at 22:00 local: 21:00 UTC in winter, 20:00 UTC in summer.
        (utc(3, 10, 21, 30), utc(3, 10, 21)),
        (utc(3, 11, 4, 30), utc(3, 10, 21)),
        (utc(3, 11, 5, 0), utc(3, 11, 5)),  # 06:00 local: shift A
        # The night clocks spring forward, shift C keeps the start it had (22:00 CET) and
        # ends at 06:00 CEST, seven hours later.
        (utc(3, 30, 3, 30), utc(3, 29, 21)),
        (utc(3, 30, 4, 0), utc(3, 30, 4)),
        # The night they fall back, C runs nine hours, 02:00-03:00 twice.
        (utc(10, 26, 0, 30), utc(10, 25, 20)),
        (utc(10, 26, 1, 30), utc(10, 25, 20)),
        (utc(10, 26, 4, 59), utc(10, 25, 20)),
        (utc(10, 26, 5, 0), utc(10, 26, 5)),
    ],
)
def test_a_shift_keeps_one_start_across_a_daylight_saving_change(moment: datetime, shift_began: datetime) -> None:
    assert shift_bucket(moment, SHIFTS, "Europe/Berlin") == shift_began


def test_shifts_in_a_zone_with_a_half_hour_offset_start_at_local_hours() -> None:
    # Kolkata is UTC+05:30 all year: shift A (06:00) begins at 00:30 UTC.
    assert shift_bucket(utc(3, 10, 2, 15), SHIFTS, "Asia/Kolkata") == utc(3, 10, 0, 30)
    assert day_bucket(utc(3, 10, 18, 30), "Asia/Kolkata") == utc(3, 10, 18, 30)


def test_the_dashboards_count_days_and_shifts_on_the_plants_clock(plant: dict[str, Any]) -> None:
    """The hand set's parts at 23:30 UTC on March 10 were made on March 11 in Berlin."""
    project = plant["project"]
    Project.objects.filter(pk=project.pk).update(time_zone="Europe/Berlin")
    project.refresh_from_db()
    build_hand_set(plant)

    day = chart(plant, "yield")["rows"]
    by_shift = {row["group"]: row["parts_decided"] for row in chart(plant, "yield", "group_by=shift")["rows"]}

    assert [(row["bucket"], row["parts_decided"]) for row in day] == [("2025-03-10T00:00:00+01:00", 7)]
    # 08:30-16:30 UTC is 09:30-17:30 local: A has S1's four parts, B S2's two. A shift counts
    # on the day it began: the 02:30 UTC part (03:30 local) on the 9th, the four 00:30 parts
    # of the 11th on the 10th, whose C began at 22:00.
    assert by_shift == {"A": 4, "B": 2, "C": 4}
    live = rollup_snapshot(project)
    rollups_rebuild(project=project)
    assert rollup_snapshot(project) == live


def test_on_the_day_clocks_change_the_plants_day_is_one_bucket(plant: dict[str, Any]) -> None:
    """New York moved to summer time at 02:00 on March 9, 2025: that day ran 23 hours."""
    project = plant["project"]
    Project.objects.filter(pk=project.pk).update(time_zone="America/New_York")
    project.refresh_from_db()
    for when in (utc(3, 9, 5, 30), utc(3, 9, 12), utc(3, 10, 3, 30)):  # 00:30 EST, 08:00 and 23:30 EDT
        decide_by_model(project, plant["s1"], "pass", when=when)
    decide_by_model(project, plant["s1"], "pass", when=utc(3, 10, 4, 30))  # 00:30 EDT on the 10th

    url = f"/api/v1/projects/{project.pk}/dashboard/yield?from=2025-03-09&to=2025-03-10&interval=day"
    rows = as_user(plant["manager"]).get(url).json()["rows"]

    assert [(row["bucket"], row["parts_decided"]) for row in rows] == [
        ("2025-03-09T00:00:00-05:00", 3),
        ("2025-03-10T00:00:00-04:00", 1),
    ]


def test_a_manager_sets_the_time_zone_and_the_days_are_recut(plant: dict[str, Any]) -> None:
    build_hand_set(plant)
    project, client = plant["project"], as_user(plant["manager"])
    assert [row["parts_decided"] for row in chart(plant, "yield")["rows"]] == [11]  # all of March 10, UTC

    response = client.patch(f"/api/v1/projects/{project.pk}", {"time_zone": "Europe/Berlin"}, format="json")

    assert response.status_code == 200 and response.json()["time_zone"] == "Europe/Berlin"
    assert [row["parts_decided"] for row in chart(plant, "yield")["rows"]] == [7]
    event = AuditEvent.objects.filter(project=project, action="project.updated").latest("id")
    assert (event.before, event.after) == ({"time_zone": "UTC"}, {"time_zone": "Europe/Berlin"})
    # The re-cut rows are what a rebuild from the verdicts writes; hour rows are untouched UTC hours.
    hours = set(YieldRollup.objects.filter(project=project, period="hour").values_list("bucket", flat=True))
    recut = rollup_snapshot(project)
    rollups_rebuild(project=project)
    assert rollup_snapshot(project) == recut
    assert all(bucket.minute == 0 for bucket in hours)


@pytest.mark.parametrize("bad", ["Mars/Olympus_Mons", "", "Europe/../../etc/passwd", "x" * 65, 5])
def test_an_unknown_time_zone_is_refused_with_the_reason(plant: dict[str, Any], bad: Any) -> None:
    project, client = plant["project"], as_user(plant["manager"])

    response = client.patch(f"/api/v1/projects/{project.pk}", {"time_zone": bad}, format="json")

    assert response.status_code == 400
    assert "time_zone" in response.json()["errors"]
    project.refresh_from_db()
    assert project.time_zone == "UTC"


def test_only_a_manager_sets_the_time_zone(plant: dict[str, Any]) -> None:
    project = plant["project"]

    response = as_user(plant["reviewer"]).patch(
        f"/api/v1/projects/{project.pk}", {"time_zone": "Asia/Tokyo"}, format="json"
    )

    assert response.status_code == 403
    project.refresh_from_db()
    assert project.time_zone == "UTC"


def test_quality_metrics_by_day_use_the_plants_days(plant: dict[str, Any]) -> None:
    project = plant["project"]
    Project.objects.filter(pk=project.pk).update(time_zone="Europe/Berlin")
    late = decide_by_model(project, plant["s1"], "pass", when=utc(3, 10, 23, 30))
    early = decide_by_model(project, plant["s1"], "pass", when=utc(3, 10, 22, 30))
    Verdict.objects.filter(pk=late.pk).update(created_at=utc(3, 10, 23, 30))  # 00:30 on the 11th in Berlin
    Verdict.objects.filter(pk=early.pk).update(created_at=utc(3, 10, 22, 30))  # 23:30 on the 10th

    body = as_user(plant["manager"]).get(f"/api/v1/quality?project={project.pk}&group_by=day").json()

    assert [(group["group"], group["parts_decided"]) for group in body["groups"]] == [
        ("2025-03-10", 1),
        ("2025-03-11", 1),
    ]
