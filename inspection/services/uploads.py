"""Writes for resumable uploads."""

from __future__ import annotations

import logging
import os
from datetime import timedelta
from pathlib import Path
from typing import Any

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from inspection.errors import Conflict, InvalidInput, PayloadTooLarge
from inspection.models import (
    Station,
    Upload,
)
from inspection.services.inspections import SubmitResult, inspection_submit

logger = logging.getLogger(__name__)


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
