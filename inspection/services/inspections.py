"""Writes for intake: a station's part images stored as inspections, their inference queued."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import IO

from django.conf import settings
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from django.db import IntegrityError, transaction
from django.db.models import Q, QuerySet
from django.utils import timezone

from inspection.errors import Conflict
from inspection.imaging import NormalisedImage, normalise_image
from inspection.models import Image, Inspection, Part, Station
from inspection.sql import insert_unless_exists


@dataclass(frozen=True)
class SubmitResult:
    inspection: Inspection
    created: bool
    # The inspection, its part, station and image are loaded, and the part is new (so it has
    # no verdict): the answer can be written without reading anything back.
    complete: bool = False


def inspection_submit(
    *,
    station: Station,
    image_file: IO[bytes],
    part_serial: str,
    sku: str = "",
    lot: str = "",
    captured_at: datetime | None = None,
    idempotency_key: str | None = None,
) -> SubmitResult:
    """Store a part image posted by ``station`` and queue its inference.

    Idempotent: the same ``idempotency_key`` from the same station, or the same image of the
    same part from the same station, returns the first inspection (``created=False``) and
    queues nothing. Nothing is stored unless the image passes every check; a failure after
    the file was written removes the file again.

    Cost on the line's hot path: one transaction of three single-statement inserts (image,
    part, inspection); a race with a concurrent or repeated post rolls it back whole and
    answers with the post that won.
    """
    normalised = normalise_image(
        image_file, max_bytes=settings.LOUPE_MAX_UPLOAD_BYTES, max_pixels=settings.LOUPE_MAX_IMAGE_PIXELS
    )
    if idempotency_key:
        existing = (
            Inspection.objects.filter(station=station, idempotency_key=idempotency_key).select_related("image").first()
        )
        if existing is not None:
            return _same_or_conflict(existing, normalised)

    key, wrote_file = store_image_bytes(normalised)
    try:
        with transaction.atomic():
            image = image_record(normalised, key)
            part, part_created = part_record(project_id=station.project_id, serial=part_serial, sku=sku, lot=lot)
            inspection = Inspection.objects.create(
                project_id=station.project_id,
                part=part,
                station=station,
                image=image,
                captured_at=captured_at or timezone.now(),
                idempotency_key=idempotency_key or None,
            )
            if part_created:
                part.final_verdicts = []  # type: ignore[attr-defined]  # the selectors' prefetch: a new part has none
            inspection_id = inspection.pk
            # robust: if the broker is down the row stays pending and the reconciler queues it.
            transaction.on_commit(lambda: _enqueue_inference(inspection_id), robust=True)
    except IntegrityError:
        # A concurrent or repeated post won the race (same key, or same image of the same part):
        # this transaction rolled back whole; answer with the inspection that won.
        _remove_unreferenced(key, wrote_file)
        existing = _find_duplicate(
            station=station, part_serial=part_serial, sha256=normalised.sha256, idempotency_key=idempotency_key
        )
        if existing is None:
            raise
        return _same_or_conflict(existing, normalised)
    except BaseException:
        _remove_unreferenced(key, wrote_file)
        raise
    return SubmitResult(inspection=inspection, created=True, complete=part_created)


def _remove_unreferenced(key: str, wrote_file: bool) -> None:
    # A purged row does not count: its bytes were written again for a post that rolled back,
    # and retention never looks at a purged image again, so the file would stay for ever.
    if wrote_file and not Image.objects.filter(file=key, purged_at__isnull=True).exists():
        default_storage.delete(key)


def _find_duplicate(
    *, station: Station, part_serial: str, sha256: str, idempotency_key: str | None
) -> Inspection | None:
    found = Inspection.objects.select_related("image")
    if idempotency_key:
        by_key = found.filter(station=station, idempotency_key=idempotency_key).first()
        if by_key is not None:
            return by_key
    return found.filter(station=station, part__serial=part_serial, image__sha256=sha256).first()


def _same_or_conflict(existing: Inspection, normalised: NormalisedImage) -> SubmitResult:
    if existing.image.sha256 != normalised.sha256:
        raise Conflict("This Idempotency-Key was already used for a different image.", code="idempotency_key_reused")
    return SubmitResult(inspection=existing, created=False)


def image_record(normalised: NormalisedImage, key: str) -> Image:
    """The Image row of stored content (one per SHA-256), created on first sight.

    The caller has stored the bytes under ``key`` (``store_image_bytes``) and calls this inside
    the transaction that references the image. A row whose bytes the retention policy purged
    is restored in that transaction: it serves again, and retention may purge it again.
    """
    values = {
        "sha256": normalised.sha256,
        "file": key,
        "format": normalised.format,
        "width": normalised.width,
        "height": normalised.height,
        "bytes": len(normalised.content),
        "created_at": timezone.now(),
    }
    image_id = insert_unless_exists(Image, values=values, unique=["sha256"])
    if image_id is not None:
        return Image(pk=image_id, **values)
    image = Image.objects.get(sha256=normalised.sha256)
    if image.purged_at is not None:
        # Retention removed the bytes. Conditional: a concurrent post of the same content
        # restores the row once. The update waits for retention's row lock while it deletes
        # the file, so the file is checked after it: store_image_bytes may have seen the file
        # that was just being deleted. The inspections that lost their overlays to the purge
        # keep none; tiles are made again on demand.
        Image.objects.filter(pk=image.pk, purged_at__isnull=False).update(purged_at=None, file=key)
        image.purged_at, image.file = None, key
        if not default_storage.exists(key):
            saved = default_storage.save(key, ContentFile(normalised.content))
            if saved != key:  # another post wrote it meanwhile
                default_storage.delete(saved)
    return image


def part_record(*, project_id: int, serial: str, sku: str = "", lot: str = "") -> tuple[Part, bool]:
    """``(part, created)``: the project's part with this serial, created on first sight with
    ``sku`` and ``lot`` (a later post does not change them)."""
    values = {"project_id": project_id, "serial": serial, "sku": sku, "lot": lot, "created_at": timezone.now()}
    part_id = insert_unless_exists(Part, values=values, unique=["project", "serial"])
    if part_id is None:
        return Part.objects.get(project_id=project_id, serial=serial), False
    return Part(pk=part_id, **values), True


def store_image_bytes(normalised: NormalisedImage) -> tuple[str, bool]:
    """Write under a key derived from the content hash only (never from a client file name)."""
    key = f"images/{normalised.sha256[:2]}/{normalised.sha256}.{normalised.extension}"
    if default_storage.exists(key):
        return key, False
    saved = default_storage.save(key, ContentFile(normalised.content))
    if saved != key:
        # Another request stored the same content between exists() and save().
        default_storage.delete(saved)
        return key, False
    return key, True


def _enqueue_inference(inspection_id: int) -> None:
    from inspection.tasks import inspection_run_task

    inspection_run_task.delay(inspection_id)


def inspections_stale_pending(
    *, cutoff: datetime, limit: int, requeued_before: datetime | None = None
) -> QuerySet[Inspection, int]:
    """Ids of inspections still pending since before ``cutoff`` and not queued again since
    ``requeued_before``, oldest first (served by the partial index of pending rows, so the
    every-minute search does not scan all parts)."""
    rows = Inspection.objects.filter(status=Inspection.Status.PENDING, received_at__lt=cutoff)
    if requeued_before is not None:
        rows = rows.filter(Q(requeued_at__isnull=True) | Q(requeued_at__lt=requeued_before))
    return rows.order_by("received_at").values_list("pk", flat=True)[:limit]


# A part the reconciler queued again is not queued once more for this long: under a backlog
# (workers busy, not dead) its first message is still waiting, and re-sending every waiting
# part every minute would multiply the queue.
REQUEUE_AGAIN_AFTER = timedelta(minutes=10)


def inspections_requeue_stale(
    *, older_than: timedelta = timedelta(minutes=2), again_after: timedelta = REQUEUE_AGAIN_AFTER, limit: int = 1000
) -> int:
    """Queue again inspections still pending after ``older_than``: their message was lost
    (broker restart or flush, enqueue failure). The task is idempotent, so a duplicate is
    harmless; each part is queued again at most once per ``again_after``."""
    from inspection.services.run_claims import leases_expired

    now = timezone.now()
    stale = list(inspections_stale_pending(cutoff=now - older_than, limit=limit, requeued_before=now - again_after))
    # ... and those whose run died holding their claim (a companion's own task found it taken).
    stale += leases_expired(limit=limit, requeued_before=now - again_after)
    Inspection.objects.filter(pk__in=stale).update(requeued_at=now)
    for inspection_id in stale:
        _enqueue_inference(inspection_id)
    return len(stale)
