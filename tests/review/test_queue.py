"""The review queue: leases, oldest first, no double claims, abandoned leases come back."""

from __future__ import annotations

import threading
from datetime import timedelta
from typing import Any

import pytest
from django.db import connection
from django.utils import timezone
from rest_framework.test import APIClient

from inspection.models import Project
from inspection.services import inspection_run
from review.models import ReviewItem
from review.services import review_leases_expire
from tests.factories import make_project, make_station, make_user, part_jpeg, upload


def queue_parts(project: Project, count: int) -> list[ReviewItem]:
    station = make_station(project)
    client = APIClient()
    for index in range(count):
        response: Any = client.post(
            "/api/v1/inspections",
            {"part_serial": f"Q-{project.pk}-{index}", "image": upload(part_jpeg(index))},
            format="multipart",
            headers=station.auth,
        )
        inspection_run(inspection_id=response.json()["id"])
    return list(ReviewItem.objects.filter(project=project).order_by("created_at", "id"))


def as_user(user: Any) -> APIClient:
    client = APIClient()
    client.force_authenticate(user)
    return client


@pytest.mark.django_db
def test_a_reviewer_claims_the_oldest_item_and_gets_the_same_one_while_the_lease_lives() -> None:
    project = make_project()
    items = queue_parts(project, 3)
    reviewer = as_user(make_user(project, role="reviewer"))

    first: Any = reviewer.post("/api/v1/review-items/claim", {}, format="json")
    again: Any = reviewer.post("/api/v1/review-items/claim", {}, format="json")

    assert first.json()["id"] == items[0].pk == again.json()["id"]
    assert first.json()["status"] == "claimed" and first.json()["lease_expires_at"]


@pytest.mark.django_db
def test_an_expired_lease_returns_the_item_to_the_queue() -> None:
    project = make_project()
    (item,) = queue_parts(project, 1)
    quiet, other = make_user(project), make_user(project)
    assert as_user(quiet).post("/api/v1/review-items/claim", {}, format="json").json()["id"] == item.pk
    assert as_user(other).post("/api/v1/review-items/claim", {}, format="json").status_code == 204

    ReviewItem.objects.filter(pk=item.pk).update(lease_expires_at=timezone.now() - timedelta(seconds=1))
    returned = review_leases_expire()
    taken: Any = as_user(other).post("/api/v1/review-items/claim", {}, format="json")

    assert returned == 1
    assert taken.json()["id"] == item.pk
    assert ReviewItem.objects.get(pk=item.pk).claimed_by == other


@pytest.mark.django_db
def test_a_reviewer_cannot_decide_an_item_another_reviewer_holds() -> None:
    project = make_project()
    (item,) = queue_parts(project, 1)
    holder, other = make_user(project), make_user(project)
    as_user(holder).post("/api/v1/review-items/claim", {}, format="json")

    response: Any = as_user(other).post(f"/api/v1/review-items/{item.pk}/decide", {"outcome": "pass"}, format="json")

    assert response.status_code == 409 and response.json()["code"] == "claimed_by_other"
    assert not item.part.verdicts.exists()


@pytest.mark.django_db
def test_releasing_puts_the_item_back_and_only_the_holder_may_release() -> None:
    project = make_project()
    (item,) = queue_parts(project, 1)
    holder, other = make_user(project), make_user(project)
    as_user(holder).post("/api/v1/review-items/claim", {}, format="json")

    refused = as_user(other).post(f"/api/v1/review-items/{item.pk}/release")
    released: Any = as_user(holder).post(f"/api/v1/review-items/{item.pk}/release")

    assert refused.status_code == 409
    assert released.status_code == 200 and released.json()["status"] == "open"


@pytest.mark.django_db
def test_claiming_is_scoped_to_the_callers_projects() -> None:
    mine, theirs = make_project(), make_project()
    queue_parts(theirs, 2)
    reviewer = as_user(make_user(mine))

    assert reviewer.post("/api/v1/review-items/claim", {}, format="json").status_code == 204
    assert reviewer.post("/api/v1/review-items/claim", {"project": theirs.pk}, format="json").status_code == 404
    assert not ReviewItem.objects.filter(status="claimed").exists()


@pytest.mark.django_db
def test_the_queue_reports_backlog_and_sla_breaches() -> None:
    project = make_project()
    items = queue_parts(project, 3)
    ReviewItem.objects.filter(pk=items[0].pk).update(created_at=timezone.now() - timedelta(hours=2))
    reviewer = make_user(project)
    as_user(reviewer).post("/api/v1/review-items/claim", {}, format="json")

    stats: Any = as_user(reviewer).get("/api/v1/review-queue")

    (row,) = stats.json()
    assert (row["project"], row["open"], row["claimed"], row["sla_breaches"]) == (project.pk, 2, 1, 1)
    assert row["oldest_waiting_seconds"] >= 7200


@pytest.mark.django_db(transaction=True)
def test_reviewers_claiming_at_the_same_moment_never_get_the_same_item() -> None:
    project = make_project()
    queue_parts(project, 4)
    reviewers = [make_user(project) for _ in range(8)]
    start = threading.Barrier(len(reviewers))
    claimed: dict[int, int | None] = {}

    def claim(user: Any) -> None:
        try:
            start.wait()
            response: Any = as_user(user).post("/api/v1/review-items/claim", {}, format="json")
            claimed[user.pk] = response.json()["id"] if response.status_code == 200 else None
        finally:
            connection.close()

    threads = [threading.Thread(target=claim, args=(user,)) for user in reviewers]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)

    got = [item_id for item_id in claimed.values() if item_id is not None]
    assert len(claimed) == 8
    assert len(got) == 4 and len(set(got)) == 4  # every item to exactly one reviewer
    holders = dict(ReviewItem.objects.values_list("pk", "claimed_by"))
    assert {item_id: holder for holder, item_id in claimed.items() if item_id} == holders


@pytest.mark.django_db
def test_a_reviewer_moving_on_from_a_decision_still_in_its_undo_grace_gets_a_different_item() -> None:
    project = make_project()
    first, second = queue_parts(project, 2)
    user = make_user(project, role="reviewer")
    reviewer = as_user(user)

    held: Any = reviewer.post("/api/v1/review-items/claim", {}, format="json")
    moved_on: Any = reviewer.post("/api/v1/review-items/claim", {"exclude": [first.pk]}, format="json")
    nothing_left: Any = reviewer.post("/api/v1/review-items/claim", {"exclude": [first.pk, second.pk]}, format="json")

    assert held.json()["id"] == first.pk and moved_on.json()["id"] == second.pk
    assert nothing_left.status_code == 204
    first.refresh_from_db()
    assert first.status == "claimed" and first.claimed_by == user  # still mine, to decide or undo
    too_many: Any = reviewer.post("/api/v1/review-items/claim", {"exclude": list(range(11))}, format="json")
    assert too_many.status_code == 400
