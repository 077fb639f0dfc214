"""Manager dashboards: rollups kept current as verdicts arrive, charts read from them only."""

from __future__ import annotations

import csv
import hashlib
import io
import itertools
import threading
from datetime import UTC, datetime
from typing import Any

import pytest
from django.db import connection, connections
from django.test.utils import CaptureQueriesContext
from rest_framework.test import APIClient

from inspection.models import (
    DefectClass,
    DefectRollup,
    Image,
    Inspection,
    Part,
    Project,
    Station,
    Verdict,
    YieldRollup,
)
from inspection.services import station_create, verdict_record_final
from inspection.services.rollups import rollup_record_verdict, rollups_rebuild, shift_bucket, shift_of_hour
from review.models import ReviewItem
from review.services import review_decide, review_item_open
from tests.factories import make_project, make_user

pytestmark = pytest.mark.django_db

_serials = itertools.count(1)
MARCH_10 = datetime(2025, 3, 10, tzinfo=UTC)


def as_user(user: Any) -> APIClient:
    client = APIClient()
    client.force_authenticate(user)
    return client


def at(day: int, hour: int, minute: int = 30) -> datetime:
    return datetime(2025, 3, day, hour, minute, tzinfo=UTC)


def viewed_part(project: Project, station: Station, *, sku: str, captured_at: datetime) -> tuple[Part, Inspection]:
    serial = f"P-{next(_serials)}"
    part = Part.objects.create(project=project, serial=serial, sku=sku)
    image = Image.objects.create(
        sha256=hashlib.sha256(serial.encode()).hexdigest(), file="x.png", format="PNG", width=8, height=8, bytes=1
    )
    inspection = Inspection.objects.create(
        project=project, part=part, station=station, image=image, captured_at=captured_at, status="done"
    )
    return part, inspection


def decide_by_model(
    project: Project, station: Station, outcome: str, *, sku: str = "SKU-1", when: datetime, defect: str | None = None
) -> Verdict:
    part, inspection = viewed_part(project, station, sku=sku, captured_at=when)
    defect_class = DefectClass.objects.get(project=project, name=defect) if defect else None
    return verdict_record_final(
        part=part, outcome=outcome, source="model", defect_class=defect_class, inspection=inspection, model_version="m1"
    )


def decide_by_person(
    project: Project,
    station: Station,
    outcome: str,
    *,
    reviewer: Any,
    sku: str = "SKU-1",
    when: datetime,
    defect: str | None = None,
    audit_of: str | None = None,
) -> Verdict:
    """A part routed to a person (an audit sample of what the models would do, when
    ``audit_of`` says it) and decided through the review service."""
    part, inspection = viewed_part(project, station, sku=sku, captured_at=when)
    item, _ = review_item_open(
        part=part, inspection=inspection, reason="audit_sample" if audit_of else "uncertain", model_version="m1"
    )
    if audit_of:
        ReviewItem.objects.filter(pk=item.pk).update(model_decision=audit_of)
        item.refresh_from_db()
    defect_id = DefectClass.objects.get(project=project, name=defect).pk if defect else None
    verdict = review_decide(item=item, reviewer=reviewer, outcome=outcome, defect_class_id=defect_id)
    assert verdict is not None
    return verdict


def rollup_snapshot(project: Project) -> tuple[set[tuple[Any, ...]], set[tuple[Any, ...]]]:
    """Every rollup row of ``project``, without ids."""
    yield_fields = [f.attname for f in YieldRollup._meta.fields if f.name != "id"]
    defect_fields = [f.attname for f in DefectRollup._meta.fields if f.name != "id"]
    return (
        set(YieldRollup.objects.filter(project=project).values_list(*yield_fields)),
        set(DefectRollup.objects.filter(project=project).values_list(*defect_fields)),
    )


@pytest.fixture
def plant() -> dict[str, Any]:
    """Two lines: L1 with stations S1 and S2, L2 with S3; a manager and a reviewer."""
    project = make_project(classes=("scratch", "pit", "crack"))
    return {
        "project": project,
        "s1": station_create(project=project, line_name="L1", station_name="S1"),
        "s2": station_create(project=project, line_name="L1", station_name="S2"),
        "s3": station_create(project=project, line_name="L2", station_name="S3"),
        "manager": make_user(project, role="manager"),
        "reviewer": make_user(project, role="reviewer"),
    }


def build_hand_set(plant: dict[str, Any]) -> None:
    """March 10, 2025 (UTC), default shifts A 6-14, B 14-22, C 22-6:

    - S1 (L1), SKU-1, shift A: 3 model passes, 1 model fail (scratch).
    - S2 (L1), SKU-2, shift B: 1 model pass, 1 person fail (pit).
    - S3 (L2), SKU-1, shift C (23:30): 1 person pass; audits on S3 at 23:30: a model pass
      failed by a person (escape, crack), a model fail passed by a person (false reject),
      a model pass confirmed.
    - S3, SKU-2, 02:30 (shift C, same day): 1 model fail with no defect class.
    """
    project, reviewer = plant["project"], plant["reviewer"]
    s1, s2, s3 = plant["s1"], plant["s2"], plant["s3"]
    for _ in range(3):
        decide_by_model(project, s1, "pass", when=at(10, 8))
    decide_by_model(project, s1, "fail", when=at(10, 9), defect="scratch")
    decide_by_model(project, s2, "pass", sku="SKU-2", when=at(10, 15))
    decide_by_person(project, s2, "fail", reviewer=reviewer, sku="SKU-2", when=at(10, 16), defect="pit")
    decide_by_person(project, s3, "pass", reviewer=reviewer, when=at(10, 23))
    decide_by_person(project, s3, "fail", reviewer=reviewer, when=at(10, 23), defect="crack", audit_of="pass")
    decide_by_person(project, s3, "pass", reviewer=reviewer, when=at(10, 23), audit_of="fail")
    decide_by_person(project, s3, "pass", reviewer=reviewer, when=at(10, 23), audit_of="pass")
    decide_by_model(project, s3, "fail", sku="SKU-2", when=at(10, 2))


def chart(plant: dict[str, Any], name: str, query: str = "", user: Any = None) -> Any:
    project = plant["project"]
    url = f"/api/v1/projects/{project.pk}/dashboard/{name}?from=2025-03-10&to=2025-03-10&interval=day"
    response = as_user(user or plant["manager"]).get(url + (f"&{query}" if query else ""))
    assert response.status_code == 200, response.content
    return response.json()


# --- rollups --------------------------------------------------------------------------


def test_rollups_kept_as_verdicts_arrive_equal_a_rebuild_from_the_verdicts(plant: dict[str, Any]) -> None:
    build_hand_set(plant)
    project = plant["project"]
    live = rollup_snapshot(project)

    written = rollups_rebuild(project=project)

    assert rollup_snapshot(project) == live
    # Hour rows: S1 08 and 09, S2 15 and 16, S3 23, S3/SKU-2 02; day rows: 4 station/SKU
    # pairs; shift rows: S1 in A, S2 in B, S3 in the C that began on the 10th and the C
    # that began on the 9th (02:30 on the 10th).
    assert written == {"yield_rows": 6 + 4 + 4, "defect_rows": 3 + 3 + 3}
    day = YieldRollup.objects.filter(project=project, period="day", station=plant["s3"], sku="SKU-1").get()
    assert (day.parts_decided, day.passed, day.failed, day.human_passed, day.human_failed) == (4, 3, 1, 3, 1)
    assert (day.audited_auto_passes, day.escapes, day.audited_auto_fails, day.false_rejects) == (2, 1, 1, 1)


def test_the_rebuild_command_restores_lost_rollups(plant: dict[str, Any]) -> None:
    from django.core.management import call_command

    build_hand_set(plant)
    project = plant["project"]
    live = rollup_snapshot(project)
    YieldRollup.objects.filter(project=project).delete()
    DefectRollup.objects.filter(project=project).delete()
    out = io.StringIO()

    call_command("rebuild_rollups", "--project", project.name, stdout=out)

    assert rollup_snapshot(project) == live
    assert '"yield_rows": 14' in out.getvalue()


def test_a_rolled_back_verdict_leaves_no_count(plant: dict[str, Any]) -> None:
    from django.db import transaction

    project, s1 = plant["project"], plant["s1"]
    part, inspection = viewed_part(project, s1, sku="SKU-1", captured_at=at(10, 8))

    def decide_then_fail() -> None:
        with transaction.atomic():
            verdict_record_final(part=part, outcome="pass", source="model", inspection=inspection)
            raise RuntimeError("the worker's transaction fails after the verdict")

    with pytest.raises(RuntimeError):
        decide_then_fail()

    assert not YieldRollup.objects.filter(project=project).exists()


def test_a_second_final_verdict_for_a_part_is_refused_and_not_counted(plant: dict[str, Any]) -> None:
    from inspection.errors import Conflict

    project, s1 = plant["project"], plant["s1"]
    verdict = decide_by_model(project, s1, "pass", when=at(10, 8))

    with pytest.raises(Conflict):
        verdict_record_final(part=verdict.part, outcome="fail", source="model", inspection=verdict.inspection)

    assert YieldRollup.objects.get(project=project, period="hour").parts_decided == 1


@pytest.mark.skipif(connection.vendor != "postgresql", reason="parallel writers need a server database")
@pytest.mark.django_db(transaction=True)
def test_parallel_workers_counting_the_same_bucket_lose_no_count() -> None:
    project = make_project()
    station = station_create(project=project, line_name="L1", station_name="S1")
    verdicts = []
    for _ in range(40):
        part, inspection = viewed_part(project, station, sku="SKU-1", captured_at=at(10, 8))
        verdicts.append(Verdict(project=project, part=part, outcome="pass", source="model", inspection=inspection))
    barrier = threading.Barrier(8)

    def worker(share: list[Verdict]) -> None:
        from django.db import transaction

        try:
            barrier.wait()
            for verdict in share:
                with transaction.atomic():
                    rollup_record_verdict(verdict=verdict)
        finally:
            connections.close_all()

    threads = [threading.Thread(target=worker, args=(verdicts[index::8],)) for index in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert YieldRollup.objects.get(project=project, period="hour").parts_decided == 40
    assert YieldRollup.objects.get(project=project, period="day").passed == 40


# --- charts ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("group_by", "expected"),
    [
        # group: (parts decided, passed, failed, first-pass yield)
        ("none", {"all": (11, 7, 4, 0.636364)}),
        ("line", {"L1": (6, 4, 2, 0.666667), "L2": (5, 3, 2, 0.6)}),
        ("station", {"L1/S1": (4, 3, 1, 0.75), "L1/S2": (2, 1, 1, 0.5), "L2/S3": (5, 3, 2, 0.6)}),
        ("sku", {"SKU-1": (8, 6, 2, 0.75), "SKU-2": (3, 1, 2, 0.333333)}),
        # Per day, a shift counts on the day it began: 02:30 on the 10th is the 9th's shift C.
        ("shift", {"A": (4, 3, 1, 0.75), "B": (2, 1, 1, 0.5), "C": (4, 3, 1, 0.75)}),
    ],
)
def test_first_pass_yield_by_line_station_sku_and_shift(
    plant: dict[str, Any], group_by: str, expected: dict[str, tuple[int, int, int, float]]
) -> None:
    build_hand_set(plant)

    body = chart(plant, "yield", f"group_by={group_by}")

    assert body["columns"] == ["bucket", "group", "group_id", "parts_decided", "passed", "failed", "first_pass_yield"]
    got = {
        row["group"]: (row["parts_decided"], row["passed"], row["failed"], row["first_pass_yield"])
        for row in body["rows"]
    }
    assert got == expected
    assert {row["bucket"] for row in body["rows"]} == {"2025-03-10T00:00:00Z"}
    if group_by == "line":
        lines = {row["group"]: row["group_id"] for row in body["rows"]}
        assert lines == {"L1": plant["s1"].line_id, "L2": plant["s3"].line_id}


def test_short_ranges_are_hourly_and_shifts_follow_the_projects_definition(plant: dict[str, Any]) -> None:
    build_hand_set(plant)
    project = plant["project"]
    Project.objects.filter(pk=project.pk).update(shifts=[{"name": "Day", "start": 7}, {"name": "Night", "start": 19}])
    url = f"/api/v1/projects/{project.pk}/dashboard/throughput?from=2025-03-10&to=2025-03-10&group_by=shift"

    body = as_user(plant["manager"]).get(url).json()

    assert body["interval"] == "hour"
    rows = [(row["bucket"][11:13], row["group"], row["parts_decided"], row["parts_per_hour"]) for row in body["rows"]]
    assert rows == [
        ("02", "Night", 1, 1.0),
        ("08", "Day", 3, 3.0),
        ("09", "Day", 1, 1.0),
        ("15", "Day", 1, 1.0),
        ("16", "Day", 1, 1.0),
        ("23", "Night", 4, 4.0),
    ]


@pytest.mark.parametrize(
    ("hour", "shift"), [(0, "C"), (5, "C"), (6, "A"), (13, "A"), (14, "B"), (21, "B"), (22, "C"), (23, "C")]
)
def test_a_shift_runs_until_the_next_one_starts_and_wraps_past_midnight(hour: int, shift: str) -> None:
    shifts = [{"name": "B", "start": 14}, {"name": "A", "start": 6}, {"name": "C", "start": 22}]
    began = {"A": at(10, 6, 0), "B": at(10, 14, 0), "C": at(10 if hour >= 22 else 9, 22, 0)}[shift]

    assert shift_of_hour(shifts, hour) == shift
    assert shift_bucket(at(10, hour, 45), shifts) == began


def test_automation_and_audit_rates(plant: dict[str, Any]) -> None:
    build_hand_set(plant)

    automation = chart(plant, "automation")["rows"]
    audits = chart(plant, "audits", "group_by=station")["rows"]

    assert [(r["auto_passed"], r["auto_failed"], r["human_passed"], r["human_failed"]) for r in automation] == [
        (4, 2, 3, 2)
    ]
    assert automation[0]["automation_rate"] == round(6 / 11, 6)
    # Only S3 had audits: 2 audited auto-passes (1 escape), 1 audited auto-fail (a false reject).
    assert audits == [
        {
            "bucket": "2025-03-10T00:00:00Z",
            "group": "L2/S3",
            "group_id": plant["s3"].pk,
            "audited_auto_passes": 2,
            "escapes": 1,
            "escape_rate": 0.5,
            "audited_auto_fails": 1,
            "false_rejects": 1,
            "false_reject_rate": 1.0,
        }
    ]


def test_pareto_puts_the_most_frequent_defect_first_with_cumulative_share(plant: dict[str, Any]) -> None:
    project, s1 = plant["project"], plant["s1"]
    for defect, count in [("pit", 1), ("scratch", 5), ("crack", 3)]:
        for _ in range(count):
            decide_by_model(project, s1, "fail", when=at(10, 8), defect=defect)
    decide_by_model(project, s1, "fail", when=at(10, 8))  # the models named no class
    decide_by_model(project, s1, "pass", when=at(10, 8))

    body = chart(plant, "pareto")

    assert body["failed_total"] == 10
    assert [(r["defect_class"], r["failed"], r["share"], r["cumulative_share"]) for r in body["rows"]] == [
        ("scratch", 5, 0.5, 0.5),
        ("crack", 3, 0.3, 0.8),
        ("pit", 1, 0.1, 0.9),
        (None, 1, 0.1, 1.0),
    ]
    assert body["rows"][0]["defect_class_id"] == DefectClass.objects.get(project=project, name="scratch").pk


@pytest.mark.parametrize(
    ("query", "parts"),
    [
        ("", 11),
        ("line={l2}", 5),
        ("station={s2}", 2),
        ("sku=SKU-2", 3),
        ("line={l1}&sku=SKU-2", 2),
        ("sku=NONE", 0),
    ],
)
def test_filters_by_line_station_and_sku(plant: dict[str, Any], query: str, parts: int) -> None:
    build_hand_set(plant)
    query = query.format(l1=plant["s1"].line_id, l2=plant["s3"].line_id, s2=plant["s2"].pk)

    summary = chart(plant, "summary", query)

    assert summary["rows"][0]["parts_decided"] == parts


def test_the_date_range_includes_both_days_and_nothing_outside(plant: dict[str, Any]) -> None:
    project, s1 = plant["project"], plant["s1"]
    for day in (9, 10, 11, 12):
        decide_by_model(project, s1, "pass", when=at(day, 0, 0))
        decide_by_model(project, s1, "pass", when=at(day, 23, 59))
    url = f"/api/v1/projects/{project.pk}/dashboard/yield?from=2025-03-10&to=2025-03-11"

    body = as_user(plant["manager"]).get(url + "&interval=day").json()

    assert [(row["bucket"], row["parts_decided"]) for row in body["rows"]] == [
        ("2025-03-10T00:00:00Z", 2),
        ("2025-03-11T00:00:00Z", 2),
    ]
    assert sum(row["parts_decided"] for row in as_user(plant["manager"]).get(url).json()["rows"]) == 4


def test_summary_has_totals_and_the_review_backlog(plant: dict[str, Any]) -> None:
    build_hand_set(plant)
    part, inspection = viewed_part(plant["project"], plant["s1"], sku="SKU-1", captured_at=at(10, 8))
    review_item_open(part=part, inspection=inspection, reason="uncertain")

    body = chart(plant, "summary")

    (row,) = body["rows"]
    assert (row["parts_decided"], row["first_pass_yield"], row["escape_rate"], row["false_reject_rate"]) == (
        11,
        0.636364,
        0.5,
        1.0,
    )
    assert (body["review_queue"]["open"], body["review_queue"]["claimed"]) == (1, 0)


# --- CSV, labels ------------------------------------------------------------------------


def test_csv_export_holds_the_charts_rows_and_defuses_formulas(plant: dict[str, Any]) -> None:
    project, manager = plant["project"], plant["manager"]
    evil = station_create(project=project, line_name="=HYPERLINK(1)", station_name="@cam")
    decide_by_model(project, evil, "pass", sku="+SKU", when=at(10, 8))
    decide_by_model(project, evil, "fail", sku="+SKU", when=at(10, 8))
    base = f"/api/v1/projects/{project.pk}/dashboard/yield?from=2025-03-10&to=2025-03-10&interval=day"

    by_param = as_user(manager).get(base + "&group_by=station&format=csv")
    by_accept = as_user(manager).get(base + "&group_by=sku", HTTP_ACCEPT="text/csv")

    assert by_param.status_code == 200 and by_param["Content-Type"].startswith("text/csv")
    assert by_param["Content-Disposition"] == (
        f'attachment; filename="loupe-yield-{project.pk}-2025-03-10-2025-03-10.csv"'
    )
    rows = list(csv.reader(io.StringIO(by_param.content.decode())))
    assert rows == [
        ["bucket", "group", "group_id", "parts_decided", "passed", "failed", "first_pass_yield"],
        ["2025-03-10T00:00:00Z", "'=HYPERLINK(1)/@cam", str(evil.pk), "2", "1", "1", "0.5"],
    ]
    assert by_accept.status_code == 200
    assert list(csv.reader(io.StringIO(by_accept.content.decode())))[1][1:3] == ["'+SKU", ""]


def test_label_text_comes_back_as_plain_json_strings(plant: dict[str, Any]) -> None:
    project = plant["project"]
    label = "<img src=x onerror=alert(1)>"
    DefectClass.objects.filter(project=project, name="scratch").update(name=label)
    decide_by_model(project, plant["s1"], "fail", when=at(10, 8), defect=label)
    url = f"/api/v1/projects/{project.pk}/dashboard/pareto?from=2025-03-10&to=2025-03-10"

    response = as_user(plant["manager"]).get(url, HTTP_ACCEPT="application/json")

    assert response["Content-Type"] == "application/json"
    assert response.json()["rows"][0]["defect_class"] == label
    assert label.encode() in response.content  # neither escaped nor rewritten


# --- access and parameters ------------------------------------------------------------


@pytest.mark.parametrize(("role", "status"), [("admin", 200), ("manager", 200), ("reviewer", 403), ("annotator", 403)])
def test_dashboards_are_for_managers_and_admins_of_the_project(plant: dict[str, Any], role: str, status: int) -> None:
    user = make_user(plant["project"], role=role)

    for name in ("yield", "throughput", "automation", "audits", "pareto", "summary"):
        response = as_user(user).get(f"/api/v1/projects/{plant['project'].pk}/dashboard/{name}")
        assert response.status_code == status, (name, response.content)


def test_another_projects_dashboard_answers_404_and_anonymous_callers_are_refused(plant: dict[str, Any]) -> None:
    outsider = make_user(make_project(), role="admin")
    url = f"/api/v1/projects/{plant['project'].pk}/dashboard/yield"

    assert as_user(outsider).get(url).status_code == 404
    assert as_user(outsider).get(url + "?format=csv").json()["code"] == "not_found"
    assert APIClient().get(url).status_code in {401, 403}


@pytest.mark.parametrize(
    ("chart_name", "query", "reason"),
    [
        ("yield", "from=2025-13-01", "from"),
        ("yield", "from=10/03/2025", "from"),
        ("yield", "from=2025-03-10&to=2025-03-01", "'from' must not be after 'to'."),
        ("yield", "from=2024-01-01&to=2025-03-01", "The range may span at most 400 days."),
        ("yield", "from=2025-01-01&to=2025-03-01&interval=hour", "An hourly series may span at most 31 days."),
        ("yield", "group_by=colour", "group_by"),
        ("yield", "colour=red", "colour"),
        ("yield", "line=abc", "line"),
        ("yield", "line={other_line}", "Unknown line for this project."),
        ("yield", "station={other_station}", "Unknown station for this project."),
        ("yield", "format=xml", "format"),
        ("pareto", "group_by=line", "group_by"),
        ("summary", "interval=week", "interval"),
    ],
)
def test_bad_parameters_are_a_400_that_says_why(
    plant: dict[str, Any], chart_name: str, query: str, reason: str
) -> None:
    other = make_project()
    other_station = station_create(project=other, line_name="Other", station_name="X")
    query = query.format(other_line=other_station.line_id, other_station=other_station.pk)
    url = f"/api/v1/projects/{plant['project'].pk}/dashboard/{chart_name}?{query}"

    response = as_user(plant["manager"]).get(url)

    assert response.status_code == 400, response.content
    assert response["Content-Type"] == "application/json"
    body = response.json()
    assert body["detail"] == reason or reason in body.get("errors", {}), body


def test_a_manager_sets_the_shifts_and_bad_ones_are_refused(plant: dict[str, Any]) -> None:
    build_hand_set(plant)
    project, client = plant["project"], as_user(plant["manager"])
    url = f"/api/v1/projects/{project.pk}"
    shifts = [{"name": "Night", "start": 18}, {"name": "Day", "start": 6}]

    ok = client.patch(url, {"shifts": shifts}, format="json")
    overlap = client.patch(url, {"shifts": [{"name": "X", "start": 6}, {"name": "Y", "start": 6}]}, format="json")
    late = client.patch(url, {"shifts": [{"name": "X", "start": 24}]}, format="json")

    in_order = [{"name": "Day", "start": 6}, {"name": "Night", "start": 18}]
    assert ok.status_code == 200 and ok.json()["shifts"] == in_order
    # The shift rows were re-cut: 15:00 and 16:00 are now the day shift, 23:00 the night.
    by_shift = {row["group"]: row["parts_decided"] for row in chart(plant, "yield", "group_by=shift")["rows"]}
    assert by_shift == {"Day": 6, "Night": 4}
    recut = rollup_snapshot(project)
    rollups_rebuild(project=project)
    assert rollup_snapshot(project) == recut
    assert (overlap.status_code, late.status_code) == (400, 400)
    project.refresh_from_db()
    assert project.shifts == in_order


# --- bad-inputs case 39: big tables stay cheap -----------------------------------------

CHART_REQUESTS = [
    *[("yield", f"group_by={group}") for group in ("none", "line", "station", "sku", "shift")],
    ("throughput", "group_by=line"),
    ("automation", "group_by=sku"),
    ("audits", "group_by=station"),
    ("pareto", ""),
    ("summary", ""),
    ("yield", "interval=hour&group_by=station&format=csv"),
]


@pytest.mark.parametrize(("chart_name", "query"), CHART_REQUESTS)
def test_dashboards_read_rollups_only_never_the_inspection_or_verdict_tables(
    plant: dict[str, Any], chart_name: str, query: str
) -> None:
    build_hand_set(plant)

    with CaptureQueriesContext(connection) as captured:
        chart_body = as_user(plant["manager"]).get(
            f"/api/v1/projects/{plant['project'].pk}/dashboard/{chart_name}?from=2025-03-01&to=2025-03-20&{query}"
        )

    assert chart_body.status_code == 200
    statements = [entry["sql"] for entry in captured.captured_queries]
    assert any("inspection_yieldrollup" in sql or "inspection_defectrollup" in sql for sql in statements)
    for sql in statements:
        assert "inspection_inspection" not in sql and "inspection_verdict" not in sql, sql
        assert "COUNT(DISTINCT" not in sql.upper(), sql
    assert len(statements) <= 10


@pytest.mark.parametrize("url", ["/api/v1/inspections", "/api/v1/verdicts", "/api/v1/parts"])
def test_list_endpoints_are_paginated_bounded_and_never_count_the_table(plant: dict[str, Any], url: str) -> None:
    project, s1 = plant["project"], plant["s1"]
    for _ in range(55):
        decide_by_model(project, s1, "pass", when=at(10, 8))

    with CaptureQueriesContext(connection) as captured:
        response = as_user(plant["manager"]).get(f"{url}?page_size=100000")

    body = response.json()
    assert response.status_code == 200
    assert len(body["results"]) == 50 and body["next"] is not None
    statements = [entry["sql"].upper() for entry in captured.captured_queries]
    assert not [sql for sql in statements if "COUNT(" in sql]
    assert len(statements) <= 12
