"""Label tasks: one per done inspection, ordered by how much the models would learn, offered
to each annotator until enough labels are in; scoped to the caller's projects."""

from __future__ import annotations

import io
import json
from typing import Any

import pytest
from django.core.management import call_command

from annotation.models import LabelSkip, LabelTask
from annotation.services import label_task_create_for, label_task_priority
from tests.annotation.conftest import Studio, fail_label, post_json, put_json

pytestmark = pytest.mark.django_db


def test_a_done_inspection_gets_one_label_task_and_creating_it_again_is_a_no_op(studio: Studio) -> None:
    task = studio.task()

    again = label_task_create_for(inspection=task.inspection)

    assert again.pk == task.pk and LabelTask.objects.count() == 1
    assert task.project_id == studio.project.pk and task.status == "open"
    assert (task.priority, task.reasons) == (1.0, ["no_model"])  # cold start: no model scores


def test_sync_label_tasks_backfills_the_done_inspections_without_a_task(studio: Studio) -> None:
    tasks = [studio.task() for _ in range(3)]
    LabelTask.objects.filter(pk__in=[tasks[0].pk, tasks[2].pk]).delete()
    out = io.StringIO()

    call_command("sync_label_tasks", "--project", studio.project.name, stdout=out)
    call_command("sync_label_tasks", "--project", str(studio.project.pk), stdout=out)

    lines = [json.loads(line) for line in out.getvalue().splitlines()]
    assert [line["created"] for line in lines] == [2, 0]
    assert LabelTask.objects.filter(project=studio.project).count() == 3


@pytest.mark.parametrize(
    ("scores", "priority", "reasons"),
    [
        ({}, 1.0, ["no_model"]),
        ({"defect_probability": 0.5}, 1.0, ["uncertain"]),
        ({"defect_probability": 0.99}, 0.02, []),
        ({"defect_probability": 0.02, "classifier_flag": False, "anomaly_flag": True, "anomaly_ratio": 2.5}, 1.54,
         ["disagreement"]),
        ({"defect_probability": 0.7, "classifier_flag": True, "anomaly_flag": True, "anomaly_ratio": 9.0}, 1.6,
         ["uncertain", "novel"]),
        ({"defect_score": 0.25, "anomaly_ratio": 0.3}, 0.5, ["uncertain"]),
    ],
    ids=["cold-start", "coin-flip", "sure", "disagreement", "uncertain-and-novel", "anomaly-only"],
)  # fmt: skip
def test_priority_is_uncertainty_plus_disagreement_plus_novelty(
    scores: dict[str, Any], priority: float, reasons: list[str]
) -> None:
    # novelty = clamp((ratio - 1) / (4 - 1), 0, 1) with the default out_of_distribution_ratio 4
    computed, why = label_task_priority(scores=scores, out_of_distribution_ratio=4.0)
    assert computed == pytest.approx(priority) and why == reasons


def test_the_list_shows_tasks_with_their_image_and_label_counts(studio: Studio) -> None:
    task = studio.task()

    response = studio.client(studio.annotator).get(f"/api/v1/label-tasks?project={studio.project.pk}&status=open")

    assert response.status_code == 200
    [row] = response.json()["results"]
    image = task.inspection.image
    assert row == {
        "id": task.pk, "project": studio.project.pk, "inspection": task.inspection_id, "status": "open",
        "priority": 1.0, "reasons": ["no_model"], "labels_submitted": 0, "labels_required": 1,
        "image": {"width": image.width, "height": image.height,
                  "url": f"/api/v1/inspections/{task.inspection_id}/image",
                  "tiles": f"/api/v1/inspections/{task.inspection_id}/tiles",
                  "region": None, "ignore_zones": []},  # the station's view: the whole frame
    }  # fmt: skip


def test_unknown_list_filters_are_refused(studio: Studio) -> None:
    response = studio.client(studio.annotator).get("/api/v1/label-tasks?inspection__image__file=x")

    assert response.status_code == 400


def test_another_projects_tasks_are_404_everywhere(studio: Studio, outsider: Any) -> None:
    task = studio.task()
    base = f"/api/v1/label-tasks/{task.pk}"

    answers = {
        "detail": outsider.get(base).status_code,
        "label": put_json(outsider, f"{base}/label", fail_label(studio)).status_code,
        "skip": outsider.post(f"{base}/skip").status_code,
        "history": outsider.get(f"{base}/history").status_code,
        "prelabels": outsider.get(f"{base}/prelabels").status_code,
        "assist": post_json(outsider, f"{base}/assist", {"box": [1, 1, 9, 9], "defect_class": 1}).status_code,
        "adjudicate": post_json(outsider, f"{base}/adjudicate", {"outcome": "pass"}).status_code,
        "next": post_json(outsider, "/api/v1/label-tasks/next", {"project": studio.project.pk}).status_code,
        "labelling": outsider.get(f"/api/v1/projects/{studio.project.pk}/labelling").status_code,
        "list": len(outsider.get("/api/v1/label-tasks").json()["results"]),
    }

    assert answers == {name: 0 if name == "list" else 404 for name in answers}
    task.refresh_from_db()
    assert task.status == "open" and not LabelSkip.objects.exists() and not task.labels.exists()


def test_next_in_active_order_is_the_most_informative_task(studio: Studio) -> None:
    low, high, middle = studio.task(), studio.task(), studio.task()
    LabelTask.objects.filter(pk=low.pk).update(priority=0.1)
    LabelTask.objects.filter(pk=high.pk).update(priority=2.5)
    LabelTask.objects.filter(pk=middle.pk).update(priority=1.2)
    client = studio.client(studio.annotator)

    active = post_json(client, "/api/v1/label-tasks/next", {"project": studio.project.pk, "order": "active"})
    sequential = post_json(client, "/api/v1/label-tasks/next", {"project": studio.project.pk, "order": "sequential"})
    random = post_json(client, "/api/v1/label-tasks/next", {"project": studio.project.pk, "order": "random"})

    assert active.status_code == 200 and active.json()["id"] == high.pk
    assert sequential.json()["id"] == low.pk
    assert random.json()["id"] in {low.pk, high.pk, middle.pk}
    assert {"label", "previous_task", "defect_classes", "image"} <= set(active.json())


def test_next_skips_what_the_caller_skipped_or_submitted_and_answers_204_when_nothing_is_left(
    studio: Studio,
) -> None:
    first, second = studio.task(), studio.task()
    client = studio.client(studio.annotator)
    next_task = {"project": studio.project.pk, "order": "sequential"}

    assert client.post(f"/api/v1/label-tasks/{first.pk}/skip").status_code == 204
    assert post_json(client, "/api/v1/label-tasks/next", next_task).json()["id"] == second.pk
    put_json(client, f"/api/v1/label-tasks/{second.pk}/label", fail_label(studio, submit=True))

    response = post_json(client, "/api/v1/label-tasks/next", next_task)

    assert response.status_code == 204
    # Someone else still gets the task this annotator skipped.
    other = post_json(studio.client(studio.second_annotator), "/api/v1/label-tasks/next", next_task)
    assert other.json()["id"] == first.pk


def test_next_offers_a_task_until_it_has_k_submitted_labels(studio: Studio) -> None:
    studio.project.labels_per_image = 2
    studio.project.save()
    task = studio.task()
    put_json(studio.client(studio.annotator), f"/api/v1/label-tasks/{task.pk}/label", fail_label(studio, submit=True))
    next_task = {"project": studio.project.pk}

    offered = post_json(studio.client(studio.second_annotator), "/api/v1/label-tasks/next", next_task)
    put_json(studio.client(studio.second_annotator), f"/api/v1/label-tasks/{task.pk}/label",
             fail_label(studio, submit=True))  # fmt: skip
    after = post_json(studio.client(studio.manager), "/api/v1/label-tasks/next", next_task)

    assert offered.json()["id"] == task.pk and offered.json()["labels_submitted"] == 1
    assert offered.json()["labels_required"] == 2
    assert after.status_code == 204


def test_detail_has_the_label_the_previous_task_and_the_classes(studio: Studio) -> None:
    earlier, current = studio.task(), studio.task()
    client = studio.client(studio.annotator)
    put_json(client, f"/api/v1/label-tasks/{earlier.pk}/label", fail_label(studio))
    put_json(studio.client(studio.second_annotator), f"/api/v1/label-tasks/{current.pk}/label", fail_label(studio))

    body = client.get(f"/api/v1/label-tasks/{current.pk}").json()

    # Single-pass: the image's one shared label, whoever saved it (with k > 1 it would be None).
    assert body["label"]["version"] == 1
    assert body["previous_task"] == earlier.pk
    assert body["adjudication"] is None
    assert [(c["name"], c["hotkey"]) for c in body["defect_classes"]] == [("scratch", 1), ("pit", 2), ("crack", 3)]
    assert set(body["defect_classes"][0]) == {"id", "name", "color", "hotkey"}
    mine = client.get(f"/api/v1/label-tasks/{earlier.pk}").json()["label"]
    assert mine["version"] == 1 and mine["outcome"] == "fail"


def test_next_for_a_project_the_caller_is_not_in_is_404_and_a_bad_order_400(studio: Studio) -> None:
    client = studio.client(studio.annotator)

    missing = post_json(client, "/api/v1/label-tasks/next", {"project": 999_999})
    bad_order = post_json(client, "/api/v1/label-tasks/next", {"project": studio.project.pk, "order": "-priority"})

    assert (missing.status_code, bad_order.status_code) == (404, 400)


def test_with_k_2_the_detail_shows_only_the_callers_own_label(studio: Studio) -> None:
    studio.project.labels_per_image = 2
    studio.project.save()
    task = studio.task()
    put_json(studio.client(studio.second_annotator), f"/api/v1/label-tasks/{task.pk}/label", fail_label(studio))

    body = studio.client(studio.annotator).get(f"/api/v1/label-tasks/{task.pk}").json()

    assert body["label"] is None  # someone else's independent label is not the caller's


def test_the_adjudicator_sees_every_submitted_label_and_annotators_none(studio: Studio) -> None:
    studio.project.labels_per_image = 2
    studio.project.save()
    task = studio.task()
    put_json(studio.client(studio.annotator), f"/api/v1/label-tasks/{task.pk}/label", fail_label(studio, submit=True))
    put_json(
        studio.client(studio.second_annotator),
        f"/api/v1/label-tasks/{task.pk}/label",
        fail_label(studio, submit=True, name="pit"),
    )

    seen_by_manager = studio.client(studio.manager).get(f"/api/v1/label-tasks/{task.pk}").json()
    seen_by_annotator = studio.client(studio.annotator).get(f"/api/v1/label-tasks/{task.pk}").json()

    assert seen_by_manager["status"] == "needs_adjudication"
    assert sorted(label["author"] for label in seen_by_manager["submitted_labels"]) == sorted(
        [studio.annotator.username, studio.second_annotator.username]
    )
    assert {label["defect_class"] for label in seen_by_manager["submitted_labels"]} == {
        studio.class_id("scratch"),
        studio.class_id("pit"),
    }
    assert seen_by_annotator["submitted_labels"] == []


def test_a_labels_image_is_served_to_the_projects_members_only(studio: Studio, outsider: Any) -> None:
    from annotation.models import Annotation

    task = studio.task()
    put_json(studio.client(studio.annotator), f"/api/v1/label-tasks/{task.pk}/label", fail_label(studio, submit=True))
    annotation = Annotation.objects.get(label_task=task)

    mine = studio.client(studio.manager).get(f"/api/v1/annotations/{annotation.pk}/image")
    theirs = outsider.get(f"/api/v1/annotations/{annotation.pk}/image")

    assert mine.status_code == 200 and mine["Content-Type"] == "image/jpeg"
    assert mine["X-Content-Type-Options"] == "nosniff"
    assert b"".join(mine.streaming_content)[:2] == b"\xff\xd8"  # type: ignore[attr-defined]  # a FileResponse
    assert theirs.status_code == 404
