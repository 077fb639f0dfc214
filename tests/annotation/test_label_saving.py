"""Saving a label: optimistic versions (bad-inputs case 38), history, submission, agreement
between k annotators, adjudication and what enters training."""

from __future__ import annotations

import threading
from typing import Any

import pytest
from django.db import connection

from annotation.models import Annotation, Label, LabelRevision, LabelTask
from inspection.models import AuditEvent
from inspection.services.model_versions import labelled_images
from inspection.storage import read_pixels
from tests.annotation.conftest import Studio, client_for, fail_label, post_json, put_json

pytestmark = pytest.mark.django_db


def url(task: LabelTask, action: str = "label") -> str:
    return f"/api/v1/label-tasks/{task.pk}/{action}"


def test_version_zero_creates_the_callers_label_and_a_revision(studio: Studio) -> None:
    task = studio.task()

    response = put_json(studio.client(studio.annotator), url(task), fail_label(studio))

    assert response.status_code == 200
    body = response.json()
    assert set(body) == {"id", "version", "outcome", "defect_class", "shapes", "submitted", "updated_at"}
    assert body["version"] == 1 and body["outcome"] == "fail" and body["submitted"] is False
    assert body["shapes"] == [
        {"type": "box", "x": 10.0, "y": 10.0, "width": 20.0, "height": 20.0, "defect_class": studio.class_id("scratch")}
    ]
    assert LabelRevision.objects.filter(label_id=body["id"], version=1).count() == 1


def test_saving_the_stored_version_bumps_it(studio: Studio) -> None:
    task = studio.task()
    client = studio.client(studio.annotator)
    put_json(client, url(task), fail_label(studio))

    response = put_json(client, url(task), fail_label(studio, version=1, name="pit"))

    assert response.status_code == 200
    assert response.json()["version"] == 2 and response.json()["defect_class"] == studio.class_id("pit")
    assert list(LabelRevision.objects.order_by("version").values_list("version", flat=True)) == [1, 2]


def test_a_second_tab_saving_the_same_version_gets_409_with_the_stored_label_and_writes_nothing(
    studio: Studio,
) -> None:
    task = studio.task()
    first_tab = studio.client(studio.annotator)
    second_tab = studio.client(studio.annotator)
    put_json(first_tab, url(task), fail_label(studio))
    assert put_json(first_tab, url(task), fail_label(studio, version=1, name="pit")).status_code == 200

    response = put_json(second_tab, url(task), fail_label(studio, version=1, name="crack"))

    assert response.status_code == 409
    body = response.json()
    assert body["code"] == "stale_version" and body["detail"]
    assert body["current"]["version"] == 2 and body["current"]["defect_class"] == studio.class_id("pit")
    label = Label.objects.get()
    assert label.version == 2 and label.defect_class_id == studio.class_id("pit")
    assert LabelRevision.objects.count() == 2


def test_creating_a_label_twice_from_version_zero_is_a_conflict(studio: Studio) -> None:
    task = studio.task()
    client = studio.client(studio.annotator)
    put_json(client, url(task), fail_label(studio))

    response = put_json(client, url(task), fail_label(studio, name="crack"))

    assert response.status_code == 409 and response.json()["current"]["version"] == 1
    assert Label.objects.get().defect_class_id == studio.class_id("scratch")


def test_a_version_that_was_never_stored_is_a_conflict_with_no_current_label(studio: Studio) -> None:
    task = studio.task()

    response = put_json(studio.client(studio.annotator), url(task), fail_label(studio, version=3))

    assert response.status_code == 409 and response.json()["current"] is None
    assert not Label.objects.exists()


@pytest.mark.skipif(connection.vendor != "postgresql", reason="needs concurrent transactions (PostgreSQL)")
@pytest.mark.django_db(transaction=True)
def test_two_concurrent_saves_of_the_same_version_one_wins_one_gets_409(studio: Studio) -> None:
    task = studio.task()
    put_json(studio.client(studio.annotator), url(task), fail_label(studio))
    barrier = threading.Barrier(2)
    answers: list[Any] = []

    def save(name: str) -> None:
        try:
            client = client_for(studio.annotator)
            barrier.wait()
            answers.append(put_json(client, url(task), fail_label(studio, version=1, name=name)))
        finally:
            connection.close()

    threads = [threading.Thread(target=save, args=(name,)) for name in ("pit", "crack")]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert sorted(answer.status_code for answer in answers) == [200, 409]
    winner = next(answer for answer in answers if answer.status_code == 200).json()
    loser = next(answer for answer in answers if answer.status_code == 409).json()
    assert loser["current"]["version"] == 2 and loser["current"]["defect_class"] == winner["defect_class"]
    label = Label.objects.get()
    assert label.version == 2 and label.defect_class_id == winner["defect_class"]
    assert LabelRevision.objects.count() == 2


@pytest.mark.skipif(connection.vendor != "postgresql", reason="needs concurrent transactions (PostgreSQL)")
@pytest.mark.django_db(transaction=True)
def test_two_concurrent_first_saves_create_one_label(studio: Studio) -> None:
    task = studio.task()
    barrier = threading.Barrier(2)
    answers: list[Any] = []

    def save(name: str) -> None:
        try:
            client = client_for(studio.annotator)
            barrier.wait()
            answers.append(put_json(client, url(task), fail_label(studio, name=name)))
        finally:
            connection.close()

    threads = [threading.Thread(target=save, args=(name,)) for name in ("pit", "crack")]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert sorted(answer.status_code for answer in answers) == [200, 409]
    assert Label.objects.count() == 1 and LabelRevision.objects.count() == 1


def test_a_submitted_label_with_k_1_labels_the_task_and_becomes_training_data(studio: Studio) -> None:
    task = studio.task()

    response = put_json(studio.client(studio.annotator), url(task), fail_label(studio, submit=True))

    assert response.status_code == 200 and response.json()["submitted"] is True
    task.refresh_from_db()
    assert task.status == "labelled" and task.labels_submitted == 1
    annotation = Annotation.objects.get(label_task=task)
    inspection = task.inspection
    assert annotation.source == "annotator" and annotation.author == studio.annotator
    assert (annotation.project_id, annotation.part_id, annotation.image_id) == (
        inspection.project_id, inspection.part_id, inspection.image_id,
    )  # fmt: skip
    assert annotation.outcome == "fail" and annotation.defect_class_id == studio.class_id("scratch")
    assert [image.annotation_id for image in labelled_images(project=studio.project)][-1] == annotation.pk


def test_editing_a_submitted_label_keeps_it_submitted_and_updates_the_training_label(studio: Studio) -> None:
    task = studio.task()
    client = studio.client(studio.annotator)
    put_json(client, url(task), fail_label(studio, submit=True))

    response = put_json(client, url(task), fail_label(studio, version=1, name="crack"))

    assert response.json()["submitted"] is True
    assert Annotation.objects.get(label_task=task).defect_class_id == studio.class_id("crack")
    assert Annotation.objects.filter(source="annotator").count() == 1


def test_with_adjudicated_training_a_submitted_label_does_not_train(studio: Studio) -> None:
    studio.project.training_labels = "adjudicated"
    studio.project.save()
    task = studio.task()

    put_json(studio.client(studio.annotator), url(task), fail_label(studio, submit=True))

    task.refresh_from_db()
    assert task.status == "labelled"
    assert not Annotation.objects.filter(source="annotator").exists()


@pytest.mark.parametrize(
    ("first", "second", "status", "trains"),
    [
        ("scratch", "scratch", "labelled", True),
        ("scratch", "pit", "needs_adjudication", False),
    ],
    ids=["agree", "disagree"],
)
def test_with_k_2_the_task_settles_on_the_second_submission(
    studio: Studio, first: str, second: str, status: str, trains: bool
) -> None:
    studio.project.labels_per_image = 2
    studio.project.save()
    task = studio.task()

    put_json(studio.client(studio.annotator), url(task), fail_label(studio, submit=True, name=first))
    task.refresh_from_db()
    assert task.status == "open" and task.labels_submitted == 1
    assert not Annotation.objects.filter(source="annotator").exists()
    put_json(studio.client(studio.second_annotator), url(task), fail_label(studio, submit=True, name=second))

    task.refresh_from_db()
    assert task.status == status and task.labels_submitted == 2
    assert Annotation.objects.filter(label_task=task).exists() is trains


def test_a_manager_adjudicates_a_dispute_into_training_data_and_the_audit_trail(studio: Studio) -> None:
    studio.project.labels_per_image = 2
    studio.project.save()
    task = studio.task()
    put_json(studio.client(studio.annotator), url(task), fail_label(studio, submit=True, name="scratch"))
    put_json(studio.client(studio.second_annotator), url(task), fail_label(studio, submit=True, name="pit"))
    verdict = {"outcome": "fail", "defect_class": studio.class_id("pit"), "shapes": []}

    response = post_json(studio.client(studio.manager), url(task, "adjudicate"), verdict)

    assert response.status_code == 200
    assert response.json()["status"] == "adjudicated"
    assert response.json()["adjudication"]["defect_class"] == studio.class_id("pit")
    annotation = Annotation.objects.get(label_task=task)
    assert annotation.author == studio.manager and annotation.defect_class_id == studio.class_id("pit")
    event = AuditEvent.objects.get(action="label.adjudicated")
    assert event.object_id == str(task.pk) and event.before["status"] == "needs_adjudication"


def test_an_adjudicated_task_takes_no_more_labels(studio: Studio) -> None:
    task = studio.task()
    post_json(studio.client(studio.manager), url(task, "adjudicate"), {"outcome": "pass"})

    response = put_json(studio.client(studio.annotator), url(task), fail_label(studio))

    assert response.status_code == 409 and response.json()["code"] == "task_closed"
    assert not Label.objects.exists()


@pytest.mark.parametrize("role", ["annotator", "reviewer"])
def test_only_managers_adjudicate(studio: Studio, role: str) -> None:
    task = studio.task()
    user = studio.annotator if role == "annotator" else studio.reviewer

    response = post_json(studio.client(user), url(task, "adjudicate"), {"outcome": "pass"})

    assert response.status_code == 403
    task.refresh_from_db()
    assert task.status == "open" and not AuditEvent.objects.filter(action="label.adjudicated").exists()


def test_history_lists_revisions_newest_first(studio: Studio) -> None:
    task = studio.task()
    client = studio.client(studio.annotator)
    put_json(client, url(task), fail_label(studio))
    put_json(client, url(task), fail_label(studio, version=1, shapes=[], submit=True))

    response = client.get(url(task, "history"))

    assert response.status_code == 200
    assert [(row["version"], row["shapes_count"], row["submitted"]) for row in response.json()] == [
        (2, 0, True), (1, 1, False),
    ]  # fmt: skip
    assert response.json()[0]["author"] == studio.annotator.username


def test_with_k_2_annotators_see_only_their_own_history_and_managers_everyones(studio: Studio) -> None:
    studio.project.labels_per_image = 2
    studio.project.save()
    task = studio.task()
    put_json(studio.client(studio.annotator), url(task), fail_label(studio))
    put_json(studio.client(studio.second_annotator), url(task), fail_label(studio))

    mine = studio.client(studio.annotator).get(url(task, "history")).json()
    everyone = studio.client(studio.manager).get(url(task, "history")).json()

    assert {row["author"] for row in mine} == {studio.annotator.username}
    assert len(everyone) == 2


def test_a_mask_and_a_holed_polygon_train_as_one_mask_file(studio: Studio) -> None:
    task = studio.task()
    scratch = studio.class_id("scratch")
    counts = [96 * 10 + 20, 30, 96 * 96 - (96 * 10 + 20) - 30]  # column 10, rows 20..49 (column-major)
    shapes = [
        {"type": "mask", "rle": {"size": [96, 96], "counts": counts}, "defect_class": scratch},
        {"type": "polygon", "points": [[50, 50], [90, 50], [90, 90], [50, 90]],
         "holes": [[[60, 60], [80, 60], [80, 80], [60, 80]]], "defect_class": scratch},
    ]  # fmt: skip

    response = put_json(studio.client(studio.annotator), url(task), fail_label(studio, shapes=shapes, submit=True))

    assert response.status_code == 200
    assert response.json()["shapes"][0]["rle"] == {"size": [96, 96], "counts": counts}
    stored = Annotation.objects.get(label_task=task).shapes
    mask_shape = next(shape for shape in stored if shape["type"] == "mask")
    trained = [image for image in labelled_images(project=studio.project) if image.image_id == task.inspection.image_id]
    assert trained[0].mask_key == mask_shape["file"]
    pixels = read_pixels(mask_shape["file"])[:, :, 0]
    assert pixels[20:50, 10].all() and not pixels[19, 10] and not pixels[50, 10]
    assert pixels[55, 55] and not pixels[70, 70]  # the hole is cut out


# --- single-pass projects: one shared label per image ------------------------------------


def test_two_annotators_editing_the_same_image_share_one_label_and_the_stale_save_gets_409(
    studio: Studio,
) -> None:
    task = studio.task()
    ana, ben = studio.client(studio.annotator), studio.client(studio.second_annotator)
    assert put_json(ana, url(task), fail_label(studio)).status_code == 200
    # Ben opens the image: he sees Ana's label, version 1, and both edit it.
    seen = ben.get(f"/api/v1/label-tasks/{task.pk}").json()["label"]
    assert seen["version"] == 1
    assert put_json(ana, url(task), fail_label(studio, version=1, name="pit")).status_code == 200

    stale = put_json(ben, url(task), fail_label(studio, version=1, name="crack"))

    assert stale.status_code == 409
    assert stale.json()["code"] == "stale_version"
    assert stale.json()["current"]["version"] == 2
    assert stale.json()["current"]["defect_class"] == studio.class_id("pit")
    assert Label.objects.filter(task=task).count() == 1
    assert Label.objects.get(task=task).defect_class_id == studio.class_id("pit")  # Ben's write did nothing
    # Saving again from the version he was shown (after merging) goes through, as his.
    merged = put_json(ben, url(task), fail_label(studio, version=2, name="crack"))
    assert merged.status_code == 200 and merged.json()["version"] == 3
    assert Label.objects.get(task=task).author == studio.second_annotator


def test_a_second_annotators_first_save_on_a_labelled_image_is_stale_not_a_second_label(studio: Studio) -> None:
    task = studio.task()
    assert put_json(studio.client(studio.annotator), url(task), fail_label(studio)).status_code == 200

    response = put_json(studio.client(studio.second_annotator), url(task), fail_label(studio, name="pit"))

    assert response.status_code == 409
    assert response.json()["current"]["version"] == 1
    assert Label.objects.filter(task=task).count() == 1


def test_the_shared_labels_history_is_everyones_to_see(studio: Studio) -> None:
    task = studio.task()
    put_json(studio.client(studio.annotator), url(task), fail_label(studio))
    put_json(studio.client(studio.second_annotator), url(task), fail_label(studio, version=1, name="pit"))

    history = studio.client(studio.annotator).get(url(task, "history")).json()

    assert [row["author"] for row in history] == [studio.second_annotator.username, studio.annotator.username]


# --- mask files no annotation needs ------------------------------------------------------


def test_the_sweep_removes_mask_files_left_by_rolled_back_and_changed_labels_and_keeps_the_rest(
    studio: Studio,
) -> None:
    from datetime import timedelta

    from django.core.files.storage import default_storage
    from django.db import transaction
    from django.utils import timezone

    from annotation.services.annotations import MASK_SWEEP_GRACE, annotation_masks_sweep, training_shapes
    from annotation.tasks import annotation_masks_sweep_task

    scratch = studio.class_id("scratch")
    mask = [{"type": "mask", "rle": {"size": [96, 96], "counts": [970, 30, 8216]}, "defect_class": scratch}]
    task = studio.task()
    # given a label whose mask file is then replaced by a second save ...
    put_json(studio.client(studio.annotator), url(task), fail_label(studio, shapes=mask, submit=True))
    first = next(s["file"] for s in Annotation.objects.get(label_task=task).shapes if s["type"] == "mask")
    moved = [{**mask[0], "rle": {"size": [96, 96], "counts": [1970, 30, 7216]}}]
    again = put_json(
        studio.client(studio.annotator), url(task), fail_label(studio, version=1, shapes=moved, submit=True)
    )
    assert again.status_code == 200, again.json()
    current = next(s["file"] for s in Annotation.objects.get(label_task=task).shapes if s["type"] == "mask")
    # ... and a save whose transaction rolled back after its mask file was written
    written: list[str] = []

    def save_then_fail() -> None:
        with transaction.atomic():
            written.extend(s["file"] for s in training_shapes(mask, width=96, height=96) if s["type"] == "mask")
            raise RuntimeError("the save failed")

    with pytest.raises(RuntimeError):
        save_then_fail()
    (rolled_back,) = written
    assert len({first, current, rolled_back}) == 3
    assert all(default_storage.exists(key) for key in (first, current, rolled_back))

    # a sweep now keeps them all (too young: their transactions may still be open) ...
    assert annotation_masks_sweep() == 0
    # ... and once they are old, removes exactly the two no annotation refers to
    later = timezone.now() + MASK_SWEEP_GRACE + timedelta(minutes=1)
    assert annotation_masks_sweep(now=later) == 2
    assert default_storage.exists(current)
    assert not default_storage.exists(first) and not default_storage.exists(rolled_back)
    [image] = [i for i in labelled_images(project=studio.project) if i.image_id == task.inspection.image_id]
    assert image.mask_key == current
    annotation_masks_sweep_task.apply()  # the periodic task runs the same sweep: nothing left to remove
    assert default_storage.exists(current)
