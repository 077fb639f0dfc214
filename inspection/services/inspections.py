"""Writes for inspections: submitting part images, running models on them, final verdicts."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from datetime import datetime
from typing import IO, Any

from django.conf import settings
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from django.db import IntegrityError, transaction
from django.utils import timezone

from inspection.errors import Conflict, InvalidInput
from inspection.imaging import NormalisedImage, normalise_image
from inspection.models import (
    DefectClass,
    Image,
    Inspection,
    Part,
    Station,
    Verdict,
)

logger = logging.getLogger(__name__)


# --- inspections -----------------------------------------------------------------------


@dataclass(frozen=True)
class SubmitResult:
    inspection: Inspection
    created: bool


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

    key, wrote_file = _store_image_bytes(normalised)
    try:
        with transaction.atomic():
            image, _ = Image.objects.get_or_create(
                sha256=normalised.sha256,
                defaults={
                    "file": key,
                    "format": normalised.format,
                    "width": normalised.width,
                    "height": normalised.height,
                    "bytes": len(normalised.content),
                },
            )
            part, _ = Part.objects.get_or_create(
                project_id=station.project_id, serial=part_serial, defaults={"sku": sku, "lot": lot}
            )
            try:
                with transaction.atomic():
                    inspection = Inspection.objects.create(
                        project_id=station.project_id,
                        part=part,
                        station=station,
                        image=image,
                        captured_at=captured_at or timezone.now(),
                        idempotency_key=idempotency_key or None,
                    )
            except IntegrityError:
                # A concurrent or repeated post won the race: same key or same content.
                existing = _find_duplicate(station=station, part=part, image=image, idempotency_key=idempotency_key)
                if existing is None:
                    raise
                return _same_or_conflict(existing, normalised)
            inspection_id = inspection.pk
            transaction.on_commit(lambda: _enqueue_inference(inspection_id))
    except BaseException:
        if wrote_file and not Image.objects.filter(file=key).exists():
            default_storage.delete(key)
        raise
    return SubmitResult(inspection=inspection, created=True)


def _find_duplicate(*, station: Station, part: Part, image: Image, idempotency_key: str | None) -> Inspection | None:
    if idempotency_key:
        found = Inspection.objects.filter(station=station, idempotency_key=idempotency_key).first()
        if found is not None:
            return found
    return Inspection.objects.filter(station=station, part=part, image=image).first()


def _same_or_conflict(existing: Inspection, normalised: NormalisedImage) -> SubmitResult:
    if existing.image.sha256 != normalised.sha256:
        raise Conflict("This Idempotency-Key was already used for a different image.", code="idempotency_key_reused")
    return SubmitResult(inspection=existing, created=False)


def _store_image_bytes(normalised: NormalisedImage) -> tuple[str, bool]:
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


def inspection_run(*, inspection_id: int) -> Inspection | None:
    """Run the deployed models on one inspection and route the part.

    Idempotent and safe to redeliver: a finished inspection is left alone, and the review
    item and verdict it leads to are unique per part. Returns None if the row is gone.
    """
    from review.models import ReviewItem
    from review.services import review_item_open

    started = time.perf_counter()
    with transaction.atomic():
        inspection = (
            Inspection.objects.select_for_update().select_related("part", "project").filter(pk=inspection_id).first()
        )
        if inspection is None or inspection.status in {Inspection.Status.DONE, Inspection.Status.FAILED}:
            return inspection
        inspection.attempts += 1
        # Cold start: no deployed model yet, so every part goes to a person.
        if not Verdict.objects.filter(part=inspection.part, is_final=True).exists():
            review_item_open(part=inspection.part, inspection=inspection, reason=ReviewItem.Reason.COLD_START)
        inspection.status = Inspection.Status.DONE
        inspection.finished_at = timezone.now()
        inspection.latency_ms = {"route": round((time.perf_counter() - started) * 1000, 3)}
        inspection.save(update_fields=["attempts", "status", "finished_at", "latency_ms"])
    return inspection


def verdict_record_final(
    *,
    part: Part,
    outcome: str,
    source: str,
    defect_class: DefectClass | None = None,
    decided_by: Any = None,
    inspection: Inspection | None = None,
    model_version: str = "",
) -> Verdict:
    """The part's one final verdict. A second final verdict for the same part is a Conflict."""
    if outcome == Verdict.Outcome.FAIL and source == Verdict.Source.HUMAN and defect_class is None:
        raise InvalidInput("A failed part needs a defect class.", code="defect_class_required")
    if outcome == Verdict.Outcome.PASS and defect_class is not None:
        raise InvalidInput("A passed part has no defect class.", code="defect_class_not_allowed")
    if defect_class is not None and defect_class.project_id != part.project_id:
        raise InvalidInput("Unknown defect class for this project.", code="unknown_defect_class")
    try:
        with transaction.atomic():
            return Verdict.objects.create(
                project_id=part.project_id,
                part=part,
                outcome=outcome,
                defect_class=defect_class,
                source=source,
                decided_by=decided_by,
                inspection=inspection,
                model_version=model_version,
                is_final=True,
            )
    except IntegrityError:
        raise Conflict("This part already has a final verdict.", code="already_decided") from None
