"""Writes for annotations (the training data)."""

from __future__ import annotations

import io
import logging
import uuid
from datetime import datetime, timedelta
from typing import Any

from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from django.db.models import TextField
from django.db.models.functions import Cast
from django.utils import timezone
from PIL import Image as PILImage

from annotation.masks import rasterize_shapes
from annotation.models import Annotation, Label, LabelTask
from inspection.models import DefectClass, Inspection, Part, TrainingLabels

logger = logging.getLogger(__name__)

MASK_FOLDER = "annotation-masks"
# A mask file younger than this is never swept: its annotation's transaction may still be open.
MASK_SWEEP_GRACE = timedelta(hours=6)


def annotation_record_review_decision(
    *,
    part: Part,
    review_item: Any,
    author: Any,
    outcome: str,
    defect_class: DefectClass | None,
    comment: str,
    model_version: str,
    shapes_on: tuple[int, list[dict[str, Any]]] | None = None,
) -> list[Annotation]:
    """One image-level label per image of the part, with the review as provenance.

    Must run inside the caller's transaction (the review decision), so that a decision and
    its training labels are committed together or not at all.
    """
    image_ids = Inspection.objects.filter(part=part).order_by("image_id").values_list("image_id", flat=True).distinct()
    return Annotation.objects.bulk_create(
        [
            Annotation(
                project_id=part.project_id,
                part=part,
                image_id=image_id,
                author=author,
                source=Annotation.Source.REVIEW,
                review_item=review_item,
                outcome=outcome,
                defect_class=defect_class,
                comment=comment,
                model_version=model_version,
                # The reviewer's corrected boxes / polygons belong to the image they were drawn on.
                shapes=shapes_on[1] if shapes_on and shapes_on[0] == image_id else [],
            )
            for image_id in image_ids
        ]
    )


def training_annotation_sync(*, task: LabelTask, submitted: list[Label] | None = None) -> Annotation | None:
    """Make the task's training label (one Annotation, source ``annotator``) what the project's
    ``training_labels`` says it should be now, creating, updating or deleting it.

    - adjudicated task: the adjudicated result, authored by the adjudicator;
    - ``single`` and a ``labelled`` task (enough submitted labels, all agreeing): the earliest
      submitted label (with k = 1, simply the submitted label);
    - otherwise (still open, in dispute, or ``adjudicated`` mode before a decision): none.

    Call inside the transaction that changed the task, holding its row lock. Idempotent.
    """
    project = task.project
    inspection = task.inspection
    chosen: dict[str, Any] | None = None
    if task.status == LabelTask.Status.ADJUDICATED:
        chosen = {
            "author_id": task.adjudicated_by_id,
            "outcome": task.adjudicated_outcome,
            "defect_class_id": task.adjudicated_defect_class_id,
            "shapes": task.adjudicated_shapes,
            "comment": "adjudicated",
        }
    elif project.training_labels == TrainingLabels.SINGLE and task.status == LabelTask.Status.LABELLED:
        if submitted is None:
            submitted = list(task.labels.filter(submitted=True).order_by("submitted_at", "id"))
        if submitted:
            first = submitted[0]
            chosen = {
                "author_id": first.author_id,
                "outcome": first.outcome,
                "defect_class_id": first.defect_class_id,
                "shapes": first.shapes,
                "comment": f"agreed by {len(submitted)}" if len(submitted) > 1 else "",
            }
    if chosen is None:
        Annotation.objects.filter(label_task=task).delete()
        return None
    image = inspection.image
    annotation, _ = Annotation.objects.update_or_create(
        label_task=task,
        defaults={
            "project_id": task.project_id,
            "part_id": inspection.part_id,
            "image_id": inspection.image_id,
            "author_id": chosen["author_id"],
            "source": Annotation.Source.ANNOTATOR,
            "outcome": chosen["outcome"],
            "defect_class_id": chosen["defect_class_id"],
            "shapes": training_shapes(chosen["shapes"], width=image.width, height=image.height),
            "comment": chosen["comment"],
            "model_version": inspection.model_version,
        },
    )
    return annotation


def training_shapes(shapes: list[dict[str, Any]], *, width: int, height: int) -> list[dict[str, Any]]:
    """Label shapes in the form training reads (``labelled_images``): boxes and polygons as they
    are; when there are masks or holes, which polygons alone cannot carry, the union of every
    region (polygons minus holes, masks; not boxes) is stored once as a PNG mask file under a
    name of its own, and added as ``{"type": "mask", "file": key}`` (a mask file wins over
    polygons in training). A file whose transaction rolls back, or whose annotation is later
    changed or removed, is left to ``annotation_masks_sweep``; as no two saves share a file, a
    sweep never removes one that a save is about to reference. Cost: one full-resolution
    raster when masks or holes are present."""
    regions = [shape for shape in shapes if shape.get("type") in {"polygon", "mask"}]
    kept = [shape for shape in shapes if shape.get("type") in {"box", "polygon"}]
    if not any(shape.get("type") == "mask" or shape.get("holes") for shape in regions):
        return kept
    pixels = rasterize_shapes(regions, width=width, height=height, include_boxes=False)
    buffer = io.BytesIO()
    PILImage.fromarray(pixels).save(buffer, format="PNG")
    key = default_storage.save(f"{MASK_FOLDER}/{uuid.uuid4().hex}.png", ContentFile(buffer.getvalue()))
    classes = sorted({shape["defect_class"] for shape in regions})
    return [*kept, {"type": "mask", "file": key, "defect_class": classes[0] if len(classes) == 1 else None}]


def annotation_masks_sweep(*, now: datetime | None = None, grace: timedelta = MASK_SWEEP_GRACE) -> int:
    """Delete the stored label masks no annotation refers to (rolled-back saves, changed or
    removed annotations) once they are older than ``grace``; returns how many. Idempotent."""
    now = now or timezone.now()
    try:
        _, names = default_storage.listdir(MASK_FOLDER)
    except FileNotFoundError:
        return 0
    old = [
        f"{MASK_FOLDER}/{name}"
        for name in names
        if name.endswith(".png") and default_storage.get_modified_time(f"{MASK_FOLDER}/{name}") < now - grace
    ]
    if not old:
        return 0
    referenced: set[str] = set()
    rows = (
        Annotation.objects.annotate(text=Cast("shapes", output_field=TextField()))
        .filter(text__contains=f"{MASK_FOLDER}/")
        .values_list("shapes", flat=True)
    )
    for shapes in rows.iterator(chunk_size=2000):
        referenced.update(
            shape["file"]
            for shape in shapes or []
            if shape.get("type") == "mask" and isinstance(shape.get("file"), str)
        )
    removed = 0
    for key in old:
        if key not in referenced:
            default_storage.delete(key)
            removed += 1
    if removed:
        logger.info("removed %d unreferenced label mask files", removed)
    return removed
