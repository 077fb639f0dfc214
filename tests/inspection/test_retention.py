"""Image retention: images of parts only the models decided go after the project's window;
everything people touched, and every record, stays."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import numpy as np
import pytest
from django.core.files.storage import default_storage
from django.utils import timezone
from rest_framework.test import APIClient

from annotation.tiles import tile_folder
from inspection.models import AuditEvent, Image, Inspection, Project, Verdict
from inspection.services import inspection_run
from inspection.services.retention import images_purge_expired
from inspection.storage import save_png
from review.models import ReviewItem
from review.services import golden_mark
from tests.factories import make_project, make_station, make_user, part_jpeg, upload

pytestmark = pytest.mark.django_db


@pytest.fixture
def line(register: Any) -> Any:
    """A project whose deployed classifier passes every part by itself, with a 30-day window."""
    project = make_project()
    Project.objects.filter(pk=project.pk).update(
        auto_pass_threshold=1.0, auto_fail_threshold=1.0, audit_rate=0.0, image_retention_days=30
    )
    register(project, "classifier", status="deployed")
    project.refresh_from_db()
    return project, make_station(project)


def inspect(station: Any, serial: str, *, seed: int, days_ago: int) -> Inspection:
    posted: Any = APIClient().post(
        "/api/v1/inspections", {"part_serial": serial, "image": upload(part_jpeg(seed))}, format="multipart",
        headers=station.auth,
    )  # fmt: skip
    inspection_run(inspection_id=posted.json()["id"])
    Inspection.objects.filter(pk=posted.json()["id"]).update(received_at=timezone.now() - timedelta(days=days_ago))
    return Inspection.objects.select_related("image").get(pk=posted.json()["id"])


def files_under(folder: str) -> list[str]:
    if not default_storage.exists(folder):
        return []
    directories, names = default_storage.listdir(folder)
    return [f"{folder}/{n}" for n in names] + [f for d in directories for f in files_under(f"{folder}/{d}")]


def purge(capture: Any) -> int:
    with capture(execute=True):  # files go after the commit
        return images_purge_expired()


def test_an_auto_decided_parts_image_goes_after_the_window_and_its_records_stay(
    line: Any, django_capture_on_commit_callbacks: Any
) -> None:
    project, station = line
    inspection = inspect(station, "OLD-1", seed=1, days_ago=31)
    assert Verdict.objects.get(part=inspection.part, is_final=True).source == Verdict.Source.MODEL
    viewer = APIClient()
    viewer.force_authenticate(make_user(project, role="manager"))
    assert viewer.get(f"/api/v1/inspections/{inspection.pk}/tiles/0/0/0").status_code == 200  # makes a tile
    heatmap = save_png(f"heatmaps/{inspection.pk}.png", np.zeros((8, 8), np.uint8))
    Inspection.objects.filter(pk=inspection.pk).update(heatmap_file=heatmap)
    image = inspection.image
    assert default_storage.exists(image.file) and files_under(tile_folder(image))

    assert purge(django_capture_on_commit_callbacks) == 1

    assert not default_storage.exists(image.file)
    assert files_under(tile_folder(image)) == []
    assert not default_storage.exists(heatmap)
    image.refresh_from_db()
    assert image.purged_at is not None
    kept = Inspection.objects.get(pk=inspection.pk)
    assert kept.scores and kept.heatmap_file == ""
    assert Verdict.objects.filter(part=inspection.part, is_final=True).exists()
    answer = viewer.get(f"/api/v1/inspections/{inspection.pk}/image")
    assert answer.status_code == 410 and answer.json()["code"] == "image_removed"
    assert viewer.get(f"/api/v1/inspections/{inspection.pk}/tiles").status_code == 410
    event = AuditEvent.objects.get(project=project, action="images.purged")
    assert event.after["images"] == 1 and event.after["retention_days"] == 30

    assert purge(django_capture_on_commit_callbacks) == 0  # idempotent


def test_an_image_posted_again_after_its_purge_is_served_and_expires_again(
    line: Any, django_capture_on_commit_callbacks: Any
) -> None:
    project, station = line
    first = inspect(station, "AGAIN-1", seed=11, days_ago=31)
    with default_storage.open(first.image.file, "rb") as stored:
        original = stored.read()
    assert purge(django_capture_on_commit_callbacks) == 1
    assert not default_storage.exists(first.image.file)
    viewer = APIClient()
    viewer.force_authenticate(make_user(project, role="manager"))

    again = inspect(station, "AGAIN-2", seed=11, days_ago=0)  # the same bytes, a new part

    assert again.image_id == first.image_id and again.image.purged_at is None
    answer: Any = viewer.get(f"/api/v1/inspections/{again.pk}/image")
    assert answer.status_code == 200 and b"".join(answer.streaming_content) == original
    assert viewer.get(f"/api/v1/inspections/{again.pk}/tiles").status_code == 200
    assert viewer.get(f"/api/v1/inspections/{again.pk}/tiles/0/0/0").status_code == 200
    assert purge(django_capture_on_commit_callbacks) == 0  # the new inspection is inside the window

    Inspection.objects.filter(pk=again.pk).update(received_at=timezone.now() - timedelta(days=31))
    assert purge(django_capture_on_commit_callbacks) == 1

    image = Image.objects.get(pk=first.image_id)
    assert image.purged_at is not None
    assert not default_storage.exists(image.file) and files_under(tile_folder(image)) == []
    answer = viewer.get(f"/api/v1/inspections/{again.pk}/image")
    assert answer.status_code == 410 and answer.json()["code"] == "image_removed"
    assert AuditEvent.objects.filter(project=project, action="images.purged").count() == 2


def test_images_inside_the_window_or_in_projects_without_a_policy_stay(
    line: Any, register: Any, django_capture_on_commit_callbacks: Any
) -> None:
    _, station = line
    recent = inspect(station, "NEW-1", seed=2, days_ago=29)
    forever = make_project()
    Project.objects.filter(pk=forever.pk).update(auto_pass_threshold=1.0, auto_fail_threshold=1.0, audit_rate=0.0)
    register(forever, "classifier", status="deployed")
    ancient = inspect(make_station(forever), "ANCIENT-1", seed=3, days_ago=3650)

    assert purge(django_capture_on_commit_callbacks) == 0

    assert Image.objects.filter(pk__in=[recent.image_id, ancient.image_id], purged_at__isnull=True).count() == 2
    assert default_storage.exists(recent.image.file) and default_storage.exists(ancient.image.file)


def test_parts_people_reviewed_and_golden_parts_keep_their_images(
    line: Any, django_capture_on_commit_callbacks: Any
) -> None:
    project, station = line
    Project.objects.filter(pk=project.pk).update(
        auto_pass_threshold=-1.0, auto_fail_threshold=2.0
    )  # all to review (a sure model scores 0.0 or 1.0)
    reviewed = inspect(station, "REVIEWED-1", seed=4, days_ago=400)
    assert ReviewItem.objects.filter(part=reviewed.part).exists()
    Project.objects.filter(pk=project.pk).update(auto_pass_threshold=1.0, auto_fail_threshold=1.0)
    golden = inspect(station, "GOLDEN-1", seed=5, days_ago=400)
    golden_mark(part=golden.part, outcome="pass", defect_class_id=None)
    plain = inspect(station, "PLAIN-1", seed=6, days_ago=400)

    assert purge(django_capture_on_commit_callbacks) == 1

    assert Image.objects.get(pk=plain.image_id).purged_at is not None
    assert Image.objects.filter(pk__in=[reviewed.image_id, golden.image_id], purged_at__isnull=True).count() == 2


def test_an_image_another_project_still_keeps_is_not_removed(
    line: Any, register: Any, django_capture_on_commit_callbacks: Any
) -> None:
    _, station = line
    shared_old = inspect(station, "SHARED-1", seed=7, days_ago=90)
    other = make_project()
    Project.objects.filter(pk=other.pk).update(auto_pass_threshold=1.0, auto_fail_threshold=1.0, audit_rate=0.0)
    register(other, "classifier", status="deployed")
    same_bytes = inspect(make_station(other), "SHARED-1", seed=7, days_ago=90)  # no policy there
    assert same_bytes.image_id == shared_old.image_id

    assert purge(django_capture_on_commit_callbacks) == 0
    assert default_storage.exists(shared_old.image.file)


def test_only_managers_set_the_window_and_it_must_be_a_positive_number_of_days(line: Any) -> None:
    project, _ = line
    manager, reviewer = APIClient(), APIClient()
    manager.force_authenticate(make_user(project, role="manager"))
    reviewer.force_authenticate(make_user(project, role="reviewer"))
    url = f"/api/v1/projects/{project.pk}"

    assert reviewer.patch(url, {"image_retention_days": 7}, format="json").status_code == 403
    for bad in (0, -1, "soon", 10**9):
        answer = manager.patch(url, {"image_retention_days": bad}, format="json")
        assert answer.status_code == 400 and "image_retention_days" in str(answer.json())
    assert manager.patch(url, {"image_retention_days": 7}, format="json").json()["image_retention_days"] == 7
    assert manager.patch(url, {"image_retention_days": None}, format="json").json()["image_retention_days"] is None
    changes = AuditEvent.objects.filter(project=project, action="project.updated").order_by("id")
    assert [e.after.get("image_retention_days") for e in changes][-2:] == [7, None]


def test_a_part_posted_with_the_same_bytes_while_the_purge_runs_keeps_the_image(
    line: Any, django_capture_on_commit_callbacks: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    from inspection.services import retention

    _project, station = line
    old = inspect(station, "OLD-1", seed=7, days_ago=400)
    choose = retention._purgeable_image_ids
    raced: list[Inspection] = []

    def choose_then_a_station_posts(candidates: list[int], now: Any) -> list[int]:
        chosen = choose(candidates, now)
        if not raced:  # between choosing the images and locking them
            raced.append(inspect(station, "NEW-1", seed=7, days_ago=0))
        return chosen

    monkeypatch.setattr(retention, "_purgeable_image_ids", choose_then_a_station_posts)

    assert purge(django_capture_on_commit_callbacks) == 0
    assert raced[0].image_id == old.image_id
    assert Image.objects.get(pk=old.image_id).purged_at is None
    assert default_storage.exists(Image.objects.get(pk=old.image_id).file)


def test_one_run_works_through_every_batch_of_expired_images(
    line: Any, django_capture_on_commit_callbacks: Any
) -> None:
    _project, station = line
    old = [inspect(station, f"BATCH-{index}", seed=20 + index, days_ago=400) for index in range(5)]

    with django_capture_on_commit_callbacks(execute=True):
        removed = images_purge_expired(batch=2)

    assert removed == 5  # three batches of at most 2 in one run, not one batch an hour
    assert Image.objects.filter(pk__in=[i.image_id for i in old], purged_at__isnull=True).count() == 0


def test_a_repost_between_the_purge_commit_and_its_file_deletion_keeps_the_bytes(
    line: Any, django_capture_on_commit_callbacks: Any
) -> None:
    project, station = line
    first = inspect(station, "GAP-1", seed=13, days_ago=31)
    with django_capture_on_commit_callbacks(execute=False) as deletions:  # committed, files not yet deleted
        assert images_purge_expired() == 1
    assert default_storage.exists(first.image.file)

    again = inspect(station, "GAP-2", seed=13, days_ago=0)  # finds the file still there: writes nothing
    for delete_files in deletions:
        delete_files()  # the purge's deletion runs late

    viewer = APIClient()
    viewer.force_authenticate(make_user(project, role="manager"))
    answer: Any = viewer.get(f"/api/v1/inspections/{again.pk}/image")
    assert answer.status_code == 200 and b"".join(answer.streaming_content)
    assert default_storage.exists(Image.objects.get(pk=first.image_id).file)


def test_a_repost_after_the_files_were_deleted_writes_the_bytes_again(
    line: Any, django_capture_on_commit_callbacks: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    from inspection.services import inspections

    _project, station = line
    first = inspect(station, "LATE-1", seed=14, days_ago=31)
    key = first.image.file
    store = inspections.store_image_bytes

    def saw_the_file_just_before_it_went(normalised: Any) -> tuple[str, bool]:
        stored = store(normalised)
        default_storage.delete(key)  # the purge's deletion lands right after the existence check
        return stored

    assert purge(django_capture_on_commit_callbacks) == 1
    with default_storage.open(key, "wb") as leftover:  # as if the deletion had not run yet
        leftover.write(b"old")
    monkeypatch.setattr(inspections, "store_image_bytes", saw_the_file_just_before_it_went)
    again = inspect(station, "LATE-2", seed=14, days_ago=0)

    assert Image.objects.get(pk=first.image_id).purged_at is None
    assert default_storage.exists(key) and again.image.file == key
    with default_storage.open(key, "rb") as stored:
        assert stored.read()[:2] == b"\xff\xd8"  # the part's JPEG, written again
