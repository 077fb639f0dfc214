"""Writes for imported datasets: labelled images brought in from folders."""

from __future__ import annotations

import hashlib
import io
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from django.conf import settings
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from django.db import transaction
from PIL import Image as PILImage

from annotation.models import Annotation
from inspection.errors import InvalidImage
from inspection.imaging import normalise_image
from inspection.models import DefectClass, Part, Project, Verdict
from inspection.services.inspections import image_record, store_image_bytes


@dataclass(frozen=True)
class DatasetItem:
    serial: str
    image_path: Path
    label: str | None  # None: good
    mask_path: Path | None = None


def dataset_import_item(*, project: Project, item: DatasetItem, author: Any = None) -> bool:
    """Store one labelled image (and its mask) as training data. Returns False when this
    image already carries an imported label in the project (re-running an import is safe)."""
    with item.image_path.open("rb") as stream:
        normalised = normalise_image(
            stream, max_bytes=settings.LOUPE_MAX_UPLOAD_BYTES, max_pixels=settings.LOUPE_MAX_IMAGE_PIXELS
        )
    defect_class = None
    if item.label is not None:
        defect_class = DefectClass.objects.filter(project=project, name=item.label).first()
        if defect_class is None:
            raise InvalidImage(f"Unknown defect class {item.label!r} for this project.", code="unknown_defect_class")
    shapes: list[dict[str, Any]] = []
    if item.mask_path is not None:
        shapes.append({"type": "mask", "file": _store_mask(item.mask_path, (normalised.width, normalised.height))})
    key, _ = store_image_bytes(normalised)
    with transaction.atomic():
        image = image_record(normalised, key)
        if Annotation.objects.filter(project=project, image=image, source=Annotation.Source.IMPORT).exists():
            return False
        part, _ = Part.objects.get_or_create(project=project, serial=item.serial[:128])
        Annotation.objects.create(
            project=project,
            part=part,
            image=image,
            author=author,
            source=Annotation.Source.IMPORT,
            outcome=Verdict.Outcome.FAIL if defect_class else Verdict.Outcome.PASS,
            defect_class=defect_class,
            shapes=shapes,
        )
    return True


def _store_mask(path: Path, size: tuple[int, int]) -> str:
    """A mask as a binary 8-bit PNG at the image's size, stored once per content hash."""
    with PILImage.open(path) as picture:
        mask = picture.convert("L")
        if mask.size != size:
            mask = mask.resize(size, PILImage.Resampling.NEAREST)
    binary = PILImage.fromarray(((np.asarray(mask) > 127) * 255).astype(np.uint8))
    buffer = io.BytesIO()
    binary.save(buffer, format="PNG")
    content = buffer.getvalue()
    digest = hashlib.sha256(content).hexdigest()
    key = f"masks/{digest[:2]}/{digest}.png"
    if not default_storage.exists(key):
        default_storage.save(key, ContentFile(content))
    return key
