"""Image retention: a line stores millions of part images a day, most of parts nobody but the
models ever looked at. A project may keep those for ``image_retention_days``; after that their
bytes, annotation tiles and model overlays are removed.

What stays, always: every row (inspections with their scores, verdicts, the audit trail), and
the images of parts a person decided, reviewed or labelled, golden parts, and images that carry
an annotation (the training pool). An image shared by several inspections (the same content
posted twice, or to two projects) goes only when every one of them may let it go.

The database is changed first, in one transaction per batch; files are deleted after the
commit. A crash between the two leaves orphan files (space), never a row pointing at nothing.
"""

from __future__ import annotations

import logging
import time
from datetime import datetime, timedelta

from django.core.files.storage import default_storage
from django.db import transaction
from django.db.models import Exists, OuterRef, Q
from django.utils import timezone

from inspection.errors import Gone
from inspection.models import Image, Inspection, Project, Verdict
from inspection.services.audit import audit_record

logger = logging.getLogger(__name__)

BATCH = 500


def image_require_stored(image: Image) -> None:
    """Raise ``Gone`` (410) for an image whose bytes the retention policy removed."""
    if image.purged_at is not None:
        raise Gone(
            f"This image was removed on {image.purged_at.date().isoformat()} by the project's image retention "
            "policy; its inspection, scores and verdict are kept.",
            code="image_removed",
        )


def _kept_by_people() -> Q:
    """Inspections whose image stays whatever its age (people's work or training data)."""
    from annotation.models import Annotation, LabelTask
    from review.models import GoldenPart, ReviewItem

    return (
        Q(Exists(Verdict.objects.filter(part=OuterRef("part"), source=Verdict.Source.HUMAN)))
        | Q(Exists(ReviewItem.objects.filter(part=OuterRef("part"))))
        | Q(Exists(GoldenPart.objects.filter(part=OuterRef("part"))))
        | Q(Exists(LabelTask.objects.filter(inspection=OuterRef("pk"), labels_submitted__gt=0)))
        | Q(Exists(Annotation.objects.filter(image=OuterRef("image"))))
        | Q(status__in=[Inspection.Status.PENDING, Inspection.Status.RUNNING])
    )


def _expired(project: Project, now: datetime) -> Q:
    assert project.image_retention_days is not None
    return Q(project=project, received_at__lt=now - timedelta(days=project.image_retention_days))


def _purgeable_image_ids(candidates: list[int], now: datetime) -> list[int]:
    """Of ``candidates``, the images whose every inspection has expired under its own
    project's window and is kept by nothing people did."""
    rows = (
        Inspection.objects.filter(image_id__in=candidates)
        .annotate(kept=_kept_by_people())
        .values_list("image_id", "kept", "received_at", "project__image_retention_days")
    )
    blocked = set()
    for image_id, kept, received_at, days in rows:
        if kept or days is None or received_at >= now - timedelta(days=days):
            blocked.add(image_id)
    return [image_id for image_id in candidates if image_id not in blocked]


def images_purge_expired(*, now: datetime | None = None, batch: int = BATCH, max_seconds: float = 480.0) -> int:
    """Remove the images that every project's retention lets go; returns how many. Idempotent
    (a removed image is never picked again). Works through each project in batches of
    ``batch`` images, walking image ids upwards so images that must stay never hold the rest
    back, until nothing is left or ``max_seconds`` have passed (the hourly task's budget: a line
    posting a part a second adds 3,600 images an hour)."""
    now = now or timezone.now()
    deadline = time.monotonic() + max_seconds
    removed = 0
    for project in Project.objects.filter(image_retention_days__isnull=False).only("id", "image_retention_days"):
        after = 0
        while time.monotonic() < deadline:
            candidates = list(
                Inspection.objects.filter(_expired(project, now), image__purged_at__isnull=True, image_id__gt=after)
                .exclude(_kept_by_people())
                .order_by("image_id")
                .values_list("image_id", flat=True)
                .distinct()[:batch]
            )
            if not candidates:
                break
            after = candidates[-1]
            image_ids = _purgeable_image_ids(candidates, now)
            if image_ids:
                removed += _purge(project, image_ids, now)
    return removed


def _purge(project: Project, image_ids: list[int], now: datetime) -> int:
    from annotation.models import LabelTask
    from annotation.tiles import tile_folder

    files: list[str] = []
    tile_folders: list[str] = []
    with transaction.atomic():
        locked = list(Image.objects.select_for_update().filter(pk__in=image_ids, purged_at__isnull=True))
        # Asked again under the lock: a part posted with the same bytes (or labelled) since
        # the candidates were chosen keeps its image.
        still = set(_purgeable_image_ids([image.pk for image in locked], now))
        images = [image for image in locked if image.pk in still]
        if not images:
            return 0
        ids = [image.pk for image in images]
        for image in images:
            files.append(image.file)
            tile_folders.append(tile_folder(image))
        inspections = Inspection.objects.filter(image_id__in=ids)
        for heatmap, mask in inspections.values_list("heatmap_file", "mask_file"):
            files += [key for key in (heatmap, mask) if key]
        inspections.update(heatmap_file="", mask_file="")
        # Nobody labelled these (that would have kept them): their open tasks have nothing to show.
        LabelTask.objects.filter(inspection__image_id__in=ids, labels_submitted=0).delete()
        Image.objects.filter(pk__in=ids).update(purged_at=now)
        assert project.image_retention_days is not None
        audit_record(
            project_id=project.pk,
            actor=None,
            action="images.purged",
            subject=project,
            after={
                "images": len(ids),
                "bytes": sum(image.bytes for image in images),
                "received_before": (now - timedelta(days=project.image_retention_days)).isoformat(),
                "retention_days": project.image_retention_days,
            },
        )
        image_files = {image.pk: image.file for image in images}
        transaction.on_commit(lambda: _delete_files(files, tile_folders, image_files), robust=True)
    return len(images)


def _delete_files(files: list[str], tile_folders: list[str], image_files: dict[int, str]) -> None:
    for key in files:
        if key not in image_files.values():
            _delete_quietly(key)  # model overlays
    for image_id, key in image_files.items():
        # Under the image's row lock, and only if it is still purged: a part posted with the
        # same bytes since the commit has restored it, and its file must stay. A post that
        # restores it after this deletion finds the file gone and writes it again (image_record).
        with transaction.atomic():
            if Image.objects.select_for_update().filter(pk=image_id, purged_at__isnull=False).exists():
                _delete_quietly(key)
    for folder in tile_folders:
        _delete_tree(folder)


def _delete_tree(folder: str) -> None:
    if not default_storage.exists(folder):
        return
    directories, names = default_storage.listdir(folder)
    for name in names:
        _delete_quietly(f"{folder}/{name}")
    for directory in directories:
        _delete_tree(f"{folder}/{directory}")


def _delete_quietly(key: str) -> None:
    try:
        default_storage.delete(key)
    except OSError as error:  # gone already, or the store refused: the row is marked either way
        logger.warning("retention: could not delete %s (%s)", key, error)
