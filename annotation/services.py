"""Writes for annotations (the training data)."""

from __future__ import annotations

from typing import Any

from annotation.models import Annotation
from inspection.models import DefectClass, Inspection, Part


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
