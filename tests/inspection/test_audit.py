"""The audit trail records every verdict, decision, threshold change and deployment, and
nothing (API, admin, ORM, raw SQL on PostgreSQL) can change or delete a row."""

from __future__ import annotations

import csv
import io
import warnings
from typing import Any

import pytest
from asgiref.sync import async_to_sync
from django.db import DatabaseError, connection, transaction
from django.test import AsyncClient, Client
from rest_framework.test import APIClient

from inspection.models import AuditEvent, AuditImmutableError
from inspection.services import inspection_run
from review.models import ReviewItem
from review.services import review_decide
from tests.factories import make_project, make_station, make_user, part_jpeg, upload

pytestmark = pytest.mark.django_db


def as_user(user: Any) -> APIClient:
    client = APIClient()
    client.force_authenticate(user)
    return client


def decided_part(project: Any, reviewer: Any) -> ReviewItem:
    station = make_station(project)
    posted: Any = APIClient().post(
        "/api/v1/inspections", {"part_serial": "AUD-1", "image": upload(part_jpeg())}, format="multipart",
        headers=station.auth,
    )  # fmt: skip
    inspection_run(inspection_id=posted.json()["id"])
    item = ReviewItem.objects.get(part__serial="AUD-1")
    review_decide(item=item, reviewer=reviewer, outcome="fail", defect_class_id=project.defect_classes.first().pk)
    return item


def test_a_review_decision_and_a_threshold_change_are_recorded_with_who_before_and_after() -> None:
    project = make_project()
    reviewer, manager = make_user(project, role="reviewer"), make_user(project, role="manager")
    decided_part(project, reviewer)

    as_user(manager).patch(f"/api/v1/projects/{project.pk}", {"auto_fail_threshold": 0.8}, format="json")

    verdict_event = AuditEvent.objects.get(action="verdict.recorded")
    assert verdict_event.actor == reviewer and verdict_event.actor_label == reviewer.username
    assert verdict_event.after["outcome"] == "fail" and verdict_event.after["source"] == "human"
    change = AuditEvent.objects.get(action="project.updated")
    assert change.actor == manager
    assert (change.before, change.after) == ({"auto_fail_threshold": 0.9}, {"auto_fail_threshold": 0.8})


@pytest.mark.parametrize("method", ["put", "patch", "delete"])
def test_no_api_can_change_or_delete_an_audit_row(method: str) -> None:
    project = make_project()
    manager = make_user(project, role="manager")
    as_user(manager).patch(f"/api/v1/projects/{project.pk}", {"description": "x"}, format="json")
    event = AuditEvent.objects.get()

    for url in [f"/api/v1/audit-events/{event.pk}", "/api/v1/audit-events", "/api/v1/audit-events/export"]:
        response = getattr(as_user(manager), method)(url, {"action": "nothing"}, format="json")
        assert response.status_code in {404, 405}, (url, response.status_code)

    assert AuditEvent.objects.get().action == "project.updated"


def test_the_admin_shows_audit_rows_read_only_even_to_a_superuser() -> None:
    from django.contrib.auth import get_user_model

    project = make_project()
    make_user(project, role="manager")
    root = get_user_model().objects.create_superuser("root-audit", password="x" * 20)
    as_user(root)
    from inspection.services import project_update

    project_update(project=project, actor=root, description="changed")
    event = AuditEvent.objects.get()
    client = Client()
    client.force_login(root)

    client.post(f"/admin/inspection/auditevent/{event.pk}/delete/", {"post": "yes"})
    client.post(f"/admin/inspection/auditevent/{event.pk}/change/", {"action": "nothing"})

    assert client.get(f"/admin/inspection/auditevent/{event.pk}/change/").status_code == 200  # viewable
    assert AuditEvent.objects.get().action == "project.updated"


def test_the_orm_refuses_to_update_or_delete_audit_rows() -> None:
    project = make_project()
    from inspection.services import project_update

    project_update(project=project, description="changed")
    event = AuditEvent.objects.get()

    with pytest.raises(AuditImmutableError):
        AuditEvent.objects.filter(pk=event.pk).update(action="rewritten")
    with pytest.raises(AuditImmutableError):
        AuditEvent.objects.filter(pk=event.pk).delete()
    event.action = "rewritten"
    with pytest.raises(AuditImmutableError):
        event.save()
    with pytest.raises(AuditImmutableError):
        event.delete()
    assert AuditEvent.objects.get().action == "project.updated"


@pytest.mark.skipif(connection.vendor != "postgresql", reason="the database trigger guards PostgreSQL deployments")
def test_postgresql_refuses_raw_sql_that_rewrites_the_audit_trail() -> None:
    project = make_project()
    from inspection.services import project_update

    project_update(project=project, description="changed")

    for statement in ["UPDATE inspection_auditevent SET action = 'x'", "DELETE FROM inspection_auditevent"]:
        with pytest.raises(DatabaseError, match="append-only"), transaction.atomic(), connection.cursor() as cursor:
            cursor.execute(statement)
    assert AuditEvent.objects.get().action == "project.updated"


def test_deployments_are_audited(register: Any) -> None:
    project = make_project()
    manager = make_user(project, role="manager")
    old = register(project, "anomaly", status="deployed")
    new = register(project, "anomaly")

    response = as_user(manager).post(f"/api/v1/model-versions/{new.pk}/deploy")

    assert response.status_code == 200
    event = AuditEvent.objects.get(action="model.deployed")
    assert event.actor == manager
    assert event.before["deployed"] == [old.label] and event.after["deployed"] == [new.label]


def test_the_csv_export_has_every_row_of_the_callers_project_and_defuses_formulas() -> None:
    project, other = make_project(), make_project()
    manager = make_user(project, role="manager")
    manager.username = "=HYPERLINK(1)"  # a spreadsheet would run this
    manager.save()
    as_user(manager).patch(f"/api/v1/projects/{project.pk}", {"description": "x"}, format="json")
    as_user(make_user(other, role="manager")).patch(f"/api/v1/projects/{other.pk}", {"description": "y"}, format="json")

    response: Any = as_user(manager).get(f"/api/v1/audit-events/export?project={project.pk}")

    assert response.status_code == 200 and response["Content-Type"].startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(b"".join(response.streaming_content).decode())))
    assert [row["action"] for row in rows] == ["project.updated"]
    assert rows[0]["project"] == str(project.pk)
    assert rows[0]["actor_label"] == "'=HYPERLINK(1)"


def test_reviewers_cannot_read_the_audit_trail() -> None:
    project = make_project()
    reviewer = make_user(project, role="reviewer")
    decided_part(project, reviewer)

    assert as_user(reviewer).get("/api/v1/audit-events").json()["results"] == []


@pytest.mark.django_db(transaction=True)
def test_under_asgi_the_csv_export_is_read_and_sent_a_batch_at_a_time() -> None:
    project = make_project()
    manager = make_user(project, role="manager")
    AuditEvent.objects.bulk_create(
        AuditEvent(project=project, actor_label="line", action="test.event", object_type="part", object_id=str(i))
        for i in range(4_500)
    )

    async def export() -> tuple[Any, list[bytes]]:
        client = AsyncClient()
        await client.aforce_login(manager)
        response: Any = await client.get(f"/api/v1/audit-events/export?project={project.pk}")
        return response, [chunk async for chunk in response.streaming_content]

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        response, chunks = async_to_sync(export)()

    # Django warns, and reads the whole export into a list, when an ASGI response streams a
    # synchronous iterator; this one hands over the header and then one chunk per 2,000 rows.
    assert response.status_code == 200 and response.is_async
    assert not [w for w in caught if "synchronous iterators" in str(w.message)]
    assert len(chunks) == 1 + 3
    rows = list(csv.DictReader(io.StringIO(b"".join(chunks).decode())))
    assert [int(row["object_id"]) for row in rows] == list(range(4_500))
