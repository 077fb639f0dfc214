"""Writes for projects, stations and inspections. Transactions live here."""

from __future__ import annotations

import logging
import os
import secrets
import time
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import IO, Any

from django.conf import settings
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from django.db import IntegrityError, transaction
from django.utils import timezone

from inspection.auth import TOKEN_PREFIX, hash_token
from inspection.errors import Conflict, Forbidden, InvalidInput, PayloadTooLarge
from inspection.imaging import NormalisedImage, normalise_image
from inspection.models import (
    DefectClass,
    Image,
    Inspection,
    Line,
    Membership,
    Part,
    Project,
    Role,
    Station,
    StationToken,
    Upload,
    Verdict,
)

logger = logging.getLogger(__name__)


# --- projects, lines, stations, people ---------------------------------------------------


def project_create(*, name: str, defect_classes: list[str], good_class_name: str = "good") -> Project:
    with transaction.atomic():
        project = Project.objects.create(name=name, good_class_name=good_class_name)
        palette = ["#e4572e", "#17bebb", "#ffc914", "#76b041", "#8e44ad", "#2e86de", "#f78fb3", "#596275"]
        for index, class_name in enumerate(defect_classes):
            DefectClass.objects.create(
                project=project, name=class_name, color=palette[index % len(palette)], hotkey=index + 1
            )
    return project


def station_create(*, project: Project, line_name: str, station_name: str) -> Station:
    with transaction.atomic():
        line, _ = Line.objects.get_or_create(project=project, name=line_name)
        station, _ = Station.objects.get_or_create(project=project, line=line, name=station_name)
    return station


def station_token_issue(*, station: Station, label: str = "", ttl: timedelta | None = None) -> tuple[StationToken, str]:
    """A new token for ``station``. The raw token is returned once and never stored."""
    prefix = secrets.token_hex(6)
    raw = f"{TOKEN_PREFIX}{prefix}_{secrets.token_urlsafe(32).replace('_', '-')}"
    token = StationToken.objects.create(
        station=station,
        prefix=prefix,
        secret_sha256=hash_token(raw),
        label=label,
        expires_at=timezone.now() + ttl if ttl else None,
    )
    return token, raw


def station_token_revoke(*, token: StationToken) -> None:
    StationToken.objects.filter(pk=token.pk, revoked_at__isnull=True).update(revoked_at=timezone.now())


def membership_set(*, project: Project, user: Any, role: str) -> Membership:
    if role not in Role.values:
        raise InvalidInput(f"Unknown role {role!r}.")
    membership, _ = Membership.objects.update_or_create(project=project, user=user, defaults={"role": role})
    return membership


def membership_change_role(*, membership: Membership, actor: Any, role: str) -> Membership:
    """An admin of the project changes someone else's role. Nobody changes their own."""
    if membership.user_id == actor.pk:
        raise Forbidden("You cannot change your own role.")
    actor_role = (
        Membership.objects.filter(project_id=membership.project_id, user=actor).values_list("role", flat=True).first()
    )
    if actor_role != Role.ADMIN:
        raise Forbidden("Only a project admin can change roles.")
    if role not in Role.values:
        raise InvalidInput(f"Unknown role {role!r}.")
    Membership.objects.filter(pk=membership.pk).update(role=role)
    membership.refresh_from_db()
    return membership


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


def project_update(*, project: Project, **changes: Any) -> Project:
    """Managers change the name, description and decision thresholds of their project."""
    allowed = {"name", "description", "auto_pass_threshold", "auto_fail_threshold"}
    unknown = set(changes) - allowed
    if unknown:
        raise InvalidInput(f"Cannot change {', '.join(sorted(unknown))}.")
    pass_at = changes.get("auto_pass_threshold", project.auto_pass_threshold)
    fail_at = changes.get("auto_fail_threshold", project.auto_fail_threshold)
    if pass_at > fail_at:
        raise InvalidInput("auto_pass_threshold must not exceed auto_fail_threshold.")
    for name, value in changes.items():
        setattr(project, name, value)
    try:
        with transaction.atomic():
            project.save(update_fields=list(changes) or None)
    except IntegrityError:
        raise Conflict("Another project already has this name.") from None
    return project


# --- resumable uploads -----------------------------------------------------------------

UPLOAD_TTL = timedelta(hours=24)


def upload_path(upload: Upload) -> Path:
    return Path(settings.VAR_DIR) / "uploads" / f"{upload.pk}.part"


def upload_create(*, station: Station, length: int) -> Upload:
    """Announce an image of ``length`` bytes that will arrive in chunks."""
    if length <= 0:
        raise InvalidInput("Upload-Length must be a positive number of bytes.")
    if length > settings.LOUPE_MAX_UPLOAD_BYTES:
        raise PayloadTooLarge(f"Image is larger than {settings.LOUPE_MAX_UPLOAD_BYTES} bytes.")
    upload = Upload.objects.create(station=station, length=length, expires_at=timezone.now() + UPLOAD_TTL)
    path = upload_path(upload)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.touch()
    return upload


def upload_append(*, upload: Upload, offset: int, chunk: bytes) -> Upload:
    """Append ``chunk`` at ``offset``. Safe to retry: a chunk sent twice is a Conflict,
    and the station asks for the current offset (HEAD) and goes on from there."""
    with transaction.atomic():
        locked = Upload.objects.select_for_update().get(pk=upload.pk)
        if offset != locked.offset:
            raise Conflict(f"Upload-Offset is {locked.offset}, not {offset}.", code="offset_mismatch")
        if locked.offset + len(chunk) > locked.length:
            raise PayloadTooLarge("Chunk goes past the announced Upload-Length.")
        path = upload_path(locked)
        with path.open("r+b") as partial:
            partial.truncate(locked.offset)  # drop bytes of a write that died before commit
            partial.seek(locked.offset)
            partial.write(chunk)
            partial.flush()
            os.fsync(partial.fileno())
        locked.offset += len(chunk)
        locked.save(update_fields=["offset"])
    return locked


def upload_discard(*, upload: Upload) -> None:
    upload_path(upload).unlink(missing_ok=True)
    Upload.objects.filter(pk=upload.pk).delete()


def inspection_submit_upload(*, upload: Upload, **fields: Any) -> SubmitResult:
    """Submit a completed resumable upload as an inspection, then delete the upload."""
    if not upload.is_complete:
        raise Conflict(f"Upload has {upload.offset} of {upload.length} bytes.", code="upload_incomplete")
    with upload_path(upload).open("rb") as image_file:
        result = inspection_submit(station=upload.station, image_file=image_file, **fields)
    upload_discard(upload=upload)
    return result


def uploads_purge_expired() -> int:
    """Delete abandoned partial uploads; run periodically by beat."""
    expired = list(Upload.objects.filter(expires_at__lt=timezone.now()))
    for upload in expired:
        upload_discard(upload=upload)
    return len(expired)
