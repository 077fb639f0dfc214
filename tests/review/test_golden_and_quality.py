"""Golden items measure reviewers; quality metrics report what the loop really does."""

from __future__ import annotations

import hashlib
import random
from typing import Any

import pytest
from django.utils import timezone
from rest_framework.test import APIClient

from annotation.models import Annotation
from inspection.models import Image, Inspection, Part, Project, Verdict
from review.models import ReviewItem
from review.services import review_claim_next, review_decide
from tests.factories import make_project, make_station, make_user

pytestmark = pytest.mark.django_db


def as_user(user: Any) -> APIClient:
    client = APIClient()
    client.force_authenticate(user)
    return client


def part_with_view(
    project: Project, serial: str, *, station: Any = None, scores: dict[str, Any] | None = None
) -> tuple[Part, Inspection]:
    station = station or make_station(project).station
    part = Part.objects.create(project=project, serial=serial)
    image = Image.objects.create(
        sha256=hashlib.sha256(serial.encode()).hexdigest(), file="x.png", format="PNG", width=1, height=1, bytes=1
    )
    inspection = Inspection.objects.create(
        project=project, part=part, station=station, image=image, captured_at=timezone.now(), status="done",
        scores=scores or {},
    )  # fmt: skip
    return part, inspection


def test_a_golden_item_scores_the_reviewer_and_leaves_the_part_alone() -> None:
    project = make_project()
    Project.objects.filter(pk=project.pk).update(golden_rate=1.0)
    manager, reviewer = make_user(project, role="manager"), make_user(project, role="reviewer")
    crack = project.defect_classes.get(name="crack")
    known_bad, _ = part_with_view(project, "G-BAD")
    known_good, _ = part_with_view(project, "G-GOOD")
    assert (
        as_user(manager)
        .post(
            "/api/v1/golden-parts", {"part": known_bad.pk, "outcome": "fail", "defect_class": crack.pk}, format="json"
        )
        .status_code
        == 201
    )
    assert (
        as_user(manager)
        .post("/api/v1/golden-parts", {"part": known_good.pk, "outcome": "pass"}, format="json")
        .status_code
        == 201
    )

    answers = []
    for _ in range(2):
        item = review_claim_next(reviewer=reviewer, project_ids=[project.pk], rng=random.Random(0))
        assert item is not None and item.reason == "golden"
        # The reviewer fails both: right for the known-bad part, wrong for the known-good one.
        verdict = review_decide(item=item, reviewer=reviewer, outcome="fail", defect_class_id=crack.pk)
        answers.append((item.part_id, verdict))

    assert all(verdict is None for _, verdict in answers)
    assert not Verdict.objects.exists() and not Annotation.objects.exists()
    correct = dict(ReviewItem.objects.filter(golden__isnull=False).values_list("part_id", "golden_correct"))
    assert correct == {known_bad.pk: True, known_good.pk: False}
    quality: Any = as_user(manager).get(f"/api/v1/quality?project={project.pk}")
    (row,) = quality.json()["reviewers"]
    assert (row["golden_answered"], row["golden_accuracy"]) == (2, 0.5)
    # Each golden part is shown to a reviewer once: the queue is now empty for them.
    assert review_claim_next(reviewer=reviewer, project_ids=[project.pk], rng=random.Random(0)) is None


def test_a_reviewer_cannot_tell_a_golden_item_from_the_rest_of_the_queue() -> None:
    project = make_project()
    Project.objects.filter(pk=project.pk).update(golden_rate=1.0)
    manager, reviewer = make_user(project, role="manager"), as_user(make_user(project, role="reviewer"))
    routed, inspection = part_with_view(project, "G-ROUTED")
    ReviewItem.objects.create(
        project=project, part=routed, inspection=inspection, reason="uncertain", status="decided",
        model_version="classifier v3",
    )  # fmt: skip
    never_routed, _ = part_with_view(project, "G-AUTO")
    for part in (routed, never_routed):
        marked = as_user(manager).post("/api/v1/golden-parts", {"part": part.pk, "outcome": "pass"}, format="json")
        assert marked.status_code == 201

    first = reviewer.post("/api/v1/review-items/claim", {}, format="json")
    second = reviewer.post("/api/v1/review-items/claim", {"exclude": [first.json()["id"]]}, format="json")
    shown = [first, second]

    items = {response.json()["part"]["serial"]: response.json() for response in shown}
    # Each is shown as its part was first routed (or as an audit), with the model it was shown with.
    assert (items["G-ROUTED"]["reason"], items["G-ROUTED"]["model_version"]) == ("uncertain", "classifier v3")
    assert items["G-AUTO"]["reason"] == "audit_sample"
    assert all("golden" not in response.content.decode() for response in shown)
    # Nor does filtering the queue give them away.
    assert reviewer.get(f"/api/v1/review-items?project={project.pk}&reason=golden").json()["results"] == []
    listed = reviewer.get(f"/api/v1/review-items?project={project.pk}&reason=uncertain&status=claimed").json()
    assert [row["id"] for row in listed["results"]] == [items["G-ROUTED"]["id"]]
    assert ReviewItem.objects.filter(golden__isnull=False, reason="golden").count() == 2


def test_deciding_a_golden_item_answers_exactly_as_deciding_a_routed_one() -> None:
    project = make_project()
    reviewer = as_user(make_user(project, role="reviewer"))
    manager = as_user(make_user(project, role="manager"))
    routed, inspection = part_with_view(project, "R-1")
    ReviewItem.objects.create(project=project, part=routed, inspection=inspection, reason="uncertain")
    known, _ = part_with_view(project, "G-1")
    assert manager.post("/api/v1/golden-parts", {"part": known.pk, "outcome": "pass"}, format="json").status_code == 201
    Project.objects.filter(pk=project.pk).update(golden_rate=1.0)

    first = reviewer.post("/api/v1/review-items/claim", {}, format="json").json()
    second = reviewer.post("/api/v1/review-items/claim", {"exclude": [first["id"]]}, format="json").json()
    answers = {
        claimed["part"]["serial"]: reviewer.post(
            f"/api/v1/review-items/{claimed['id']}/decide", {"outcome": "pass"}, format="json"
        )
        for claimed in (first, second)
    }

    golden, real = answers["G-1"], answers["R-1"]
    assert golden.status_code == real.status_code == 201
    # Same fields, same kinds of value, the same decided state: nothing marks the golden one.
    assert golden.json().keys() == real.json().keys()
    assert (golden.json()["status"], real.json()["status"]) == ("decided", "decided")
    assert {k: type(v) for k, v in golden.json().items()} == {k: type(v) for k, v in real.json().items()}
    assert "golden" not in golden.content.decode()
    # Yet only the routed part got a verdict from it.
    assert Verdict.objects.filter(part=routed, source="human").count() == 1
    assert not Verdict.objects.filter(part=known).exists()


def test_only_managers_mark_golden_parts() -> None:
    project = make_project()
    part, _ = part_with_view(project, "G-1")

    response = as_user(make_user(project, role="reviewer")).post(
        "/api/v1/golden-parts", {"part": part.pk, "outcome": "pass"}, format="json"
    )

    assert response.status_code == 403


def test_quality_metrics_measure_automation_escapes_false_rejects_and_agreement_per_station() -> None:
    project = make_project()
    station_a, station_b = make_station(project, "A").station, make_station(project, "B").station
    reviewer = make_user(project)
    manager = make_user(project, role="manager")
    # Station A: three parts decided by the model, one by a person who agreed with the model.
    for index, outcome in enumerate(["pass", "pass", "fail"]):
        part, inspection = part_with_view(project, f"A-{index}", station=station_a)
        Verdict.objects.create(project=project, part=part, inspection=inspection, outcome=outcome, source="model")
    part, inspection = part_with_view(project, "A-h", station=station_a, scores={"defect_score": 0.9})
    Verdict.objects.create(
        project=project, part=part, inspection=inspection, outcome="fail", source="human", decided_by=reviewer
    )
    # Station B: four audited auto-passes, one of which a person failed (an escape), and
    # two audited auto-fails, one of which a person passed (a false reject).
    for index, (model_said, human_said) in enumerate(
        [("pass", "pass"), ("pass", "pass"), ("pass", "pass"), ("pass", "fail"), ("fail", "fail"), ("fail", "pass")]
    ):
        part, inspection = part_with_view(project, f"B-{index}", station=station_b, scores={"defect_score": 0.3})
        Verdict.objects.create(
            project=project, part=part, inspection=inspection, outcome=human_said, source="human", decided_by=reviewer
        )
        ReviewItem.objects.create(
            project=project, part=part, inspection=inspection, reason="audit_sample", status="decided",
            model_decision=model_said, decided_outcome=human_said, decided_by=reviewer, decided_at=timezone.now(),
        )  # fmt: skip

    response: Any = as_user(manager).get(f"/api/v1/quality?project={project.pk}&group_by=station")

    rows = {row["group"]: row for row in response.json()["groups"]}
    a, b = rows["Line 1/A"], rows["Line 1/B"]
    assert (a["parts_decided"], a["automation_rate"], a["model_human_agreement"]) == (4, 0.75, 1.0)
    assert (b["audited"], b["measured_escape_rate"], b["measured_false_reject_rate"]) == (6, 0.25, 0.5)
    assert b["automation_rate"] == 0.0
    assert a["first_pass_yield"] == 0.5


def test_quality_metrics_are_for_managers_of_the_project() -> None:
    project, other = make_project(), make_project()

    assert as_user(make_user(project, role="reviewer")).get(f"/api/v1/quality?project={project.pk}").status_code == 403
    assert as_user(make_user(other, role="manager")).get(f"/api/v1/quality?project={project.pk}").status_code == 404
    assert (
        as_user(make_user(project, role="manager"))
        .get(f"/api/v1/quality?project={project.pk}&group_by=shoe")
        .status_code
        == 400
    )
