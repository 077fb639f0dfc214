"""Inference runs in batches: a task that finds parts of its project waiting claims them and
routes them together, exactly as it would have routed them one by one."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from typing import Any
from unittest import mock

import pytest
from django.utils import timezone
from rest_framework.test import APIClient

from annotation.models import LabelTask
from inspection.models import (
    AuditEvent,
    Inspection,
    ModelVersion,
    Project,
    Verdict,
    Webhook,
    WebhookDelivery,
    YieldRollup,
)
from inspection.services.inspections import inspections_requeue_stale
from inspection.services.model_runs import inspection_run
from inspection.services.run_claims import run_claim
from review.models import ReviewItem
from tests.factories import make_project, make_station, part_jpeg, upload

pytestmark = pytest.mark.django_db

PARTS = 6


def project_with_posted_parts(register: Callable[..., ModelVersion], name: str) -> tuple[Project, list[int]]:
    """A project with a deployed classifier, thresholds 0.2 and 0.8, an active webhook, and
    PARTS parts posted (nothing queued: no task runs them yet)."""
    project = make_project(name)
    register(project, "classifier", status=ModelVersion.Status.DEPLOYED)
    Project.objects.filter(pk=project.pk).update(auto_pass_threshold=0.2, auto_fail_threshold=0.8, audit_rate=0.0)
    Webhook.objects.create(project=project, url="https://mes.example.com/hook", secret="s" * 32)
    station = make_station(project)
    ids = []
    for index in range(PARTS):
        posted: Any = APIClient().post(
            "/api/v1/inspections",
            {"part_serial": f"B-{index}", "image": upload(part_jpeg(index))},
            format="multipart",
            headers=station.auth,
        )
        ids.append(posted.json()["id"])
    # They have been waiting a second: the line is busier than the workers.
    Inspection.objects.filter(pk__in=ids).update(received_at=timezone.now() - timedelta(seconds=1))
    return project, ids


def outcome_by_serial(project: Project) -> dict[str, Any]:
    verdicts = {
        serial: (outcome, source, defect)
        for serial, outcome, source, defect in Verdict.objects.filter(project=project, is_final=True).values_list(
            "part__serial", "outcome", "source", "defect_class__name"
        )
    }
    reviews = dict(ReviewItem.objects.filter(project=project).values_list("part__serial", "reason"))
    yield_hours = YieldRollup.objects.filter(project=project, period="hour")
    return {
        "verdicts": verdicts,
        "reviews": reviews,
        "scores": dict(Inspection.objects.filter(project=project).values_list("part__serial", "scores__defect_score")),
        "audit rows": AuditEvent.objects.filter(project=project, action="verdict.recorded").count(),
        "decided, passed, failed": [
            sum(getattr(row, name) for row in yield_hours) for name in ("parts_decided", "passed", "failed")
        ],
        "webhook deliveries": WebhookDelivery.objects.filter(webhook__project=project).count(),
        "label tasks": LabelTask.objects.filter(project=project).count(),
    }


# What the models say about part B-<i>: two sure passes, two unsure, two sure fails (the
# project's thresholds are 0.2 and 0.8). Fixed, so that every run covers every route; the real
# models are exercised in test_model_registry.
DEFECT_SCORES = [0.05, 0.10, 0.50, 0.55, 0.92, 0.97]


def scripted_models(*, inspection: Inspection, deployed: dict[str, ModelVersion], save_overlays: bool = True) -> Any:
    from inspection.services.model_runs import ModelRun

    score = DEFECT_SCORES[int(inspection.part.serial.split("-")[1])]
    return ModelRun(
        model_version=",".join(sorted(version.serving_label for version in deployed.values())),
        scores={
            "probabilities": {"good": 1 - score, "scratch": score},
            "defect_probability": score,
            "classifier_flag": score >= 0.5,
            "defect_score": score,
            "predicted_class": "scratch",
        },
        latency_ms={"classifier": 1.0},
        defect_score=score,
        defect_class="scratch",
    )


def scripted_batch(
    *, inspections: list[Inspection], deployed: dict[str, ModelVersion], save_overlays: bool = True
) -> list[Any]:
    return [scripted_models(inspection=inspection, deployed=deployed) for inspection in inspections]


def test_a_task_that_finds_parts_waiting_routes_them_together_exactly_as_one_by_one(
    register: Callable[..., ModelVersion],
) -> None:
    one_by_one, single_ids = project_with_posted_parts(register, "One by one")
    together, batch_ids = project_with_posted_parts(register, "Together")

    with mock.patch("inspection.services.model_runs.run_models_many", side_effect=scripted_batch):
        for inspection_id in single_ids:
            inspection_run(inspection_id=inspection_id)
        with mock.patch("inspection.services.verdicts._publish_now") as published:
            inspection_run(inspection_id=batch_ids[0], companions=PARTS)

    batch = Inspection.objects.filter(pk__in=batch_ids)
    assert {row.status for row in batch} == {"done"}
    assert {row.latency_ms.get("batch") for row in batch} == {PARTS}
    assert {row.lease_expires_at for row in batch} == {None}
    assert outcome_by_serial(together) == outcome_by_serial(one_by_one)
    routed = outcome_by_serial(together)
    assert sorted(outcome for outcome, _, _ in routed["verdicts"].values()) == ["fail", "fail", "pass", "pass"]
    assert list(routed["reviews"].values()) == ["uncertain", "uncertain"]
    assert routed["webhook deliveries"] == len(routed["verdicts"])
    assert published.call_count == 0  # nothing leaves before the commit ...


def test_the_batch_publishes_its_verdicts_together_after_its_commit(
    register: Callable[..., ModelVersion], django_capture_on_commit_callbacks: Any
) -> None:
    project, ids = project_with_posted_parts(register, "Published")

    with (
        mock.patch("inspection.services.model_runs.run_models_many", side_effect=scripted_batch),
        mock.patch("inspection.services.verdicts._publish_now") as published,
        django_capture_on_commit_callbacks(execute=True),
    ):
        inspection_run(inspection_id=ids[0], companions=PARTS)

    decided = set(Verdict.objects.filter(project=project, source="model").values_list("pk", flat=True))
    assert len(decided) == 4
    assert published.call_count == 1  # one MQTT round of PUBACKs for the batch
    assert {verdict.pk for verdict in published.call_args.args[0]} == decided


def test_a_part_another_run_claimed_is_left_alone_by_its_own_task(register: Callable[..., ModelVersion]) -> None:
    project, ids = project_with_posted_parts(register, "Claimed")
    leader, companion = ids[0], ids[1]
    claim = run_claim(inspection_id=leader, companions=1)

    answered = inspection_run(inspection_id=companion, companions=PARTS)

    assert claim is not None and claim.inspection_ids == [leader, companion]
    assert answered is not None
    assert (answered.status, answered.deliveries, answered.run_leader) == ("running", 1, leader)
    assert Inspection.objects.filter(project=project, status="pending").count() == PARTS - 2  # it claimed none


def test_a_part_picked_up_as_soon_as_it_arrived_runs_alone(register: Callable[..., ModelVersion]) -> None:
    project, ids = project_with_posted_parts(register, "No queue")
    Inspection.objects.filter(pk=ids[-1]).update(received_at=timezone.now())

    claim = run_claim(inspection_id=ids[-1], companions=PARTS)

    assert claim is not None and claim.inspection_ids == [ids[-1]]
    assert Inspection.objects.filter(project=project, status="pending").count() == PARTS - 1


def test_a_redelivered_part_runs_alone_so_a_poison_image_takes_no_other_part_down(
    register: Callable[..., ModelVersion],
) -> None:
    project, ids = project_with_posted_parts(register, "Redelivered")
    run_claim(inspection_id=ids[0])  # its worker died here: the message comes back

    again = run_claim(inspection_id=ids[0], companions=PARTS)

    assert again is not None and again.inspection_ids == [ids[0]]
    assert Inspection.objects.get(pk=ids[0]).deliveries == 2
    assert Inspection.objects.filter(project=project, status="pending").count() == PARTS - 1


def test_the_reconciler_queues_the_parts_of_a_run_that_died_once_their_lease_expires(
    register: Callable[..., ModelVersion],
) -> None:
    _, ids = project_with_posted_parts(register, "Died")
    run_claim(inspection_id=ids[0], companions=2)  # ... and its worker died
    with mock.patch("inspection.services.inspections._enqueue_inference") as before_expiry:
        inspections_requeue_stale()
    Inspection.objects.filter(pk__in=ids[:3]).update(lease_expires_at=timezone.now() - timedelta(seconds=1))

    with mock.patch("inspection.services.inspections._enqueue_inference") as queued:
        inspections_requeue_stale()
    for call in queued.call_args_list:
        inspection_run(inspection_id=call.args[0])

    assert before_expiry.call_count == 0
    assert sorted(call.args[0] for call in queued.call_args_list) == ids[:3]
    assert set(Inspection.objects.filter(pk__in=ids[:3]).values_list("status", flat=True)) == {"done"}


def test_the_reconciler_queues_a_waiting_part_again_once_per_ten_minutes_not_every_minute(
    register: Callable[..., ModelVersion],
) -> None:
    _, ids = project_with_posted_parts(register, "Backlog")
    Inspection.objects.filter(pk__in=ids).update(received_at=timezone.now() - timedelta(minutes=5))

    runs = []
    for _ in range(3):  # three beat ticks a minute apart, the workers still busy
        with mock.patch("inspection.services.inspections._enqueue_inference") as queued:
            inspections_requeue_stale()
        runs.append(sorted(call.args[0] for call in queued.call_args_list))
    Inspection.objects.filter(pk__in=ids).update(requeued_at=timezone.now() - timedelta(minutes=11))
    with mock.patch("inspection.services.inspections._enqueue_inference") as later:
        inspections_requeue_stale()

    assert runs == [sorted(ids), [], []]  # each waiting part once, not once per tick
    assert sorted(call.args[0] for call in later.call_args_list) == sorted(ids)  # still waiting: again
