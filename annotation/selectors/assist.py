"""The studio's segmentation assistant, as a read: nothing is stored."""

from __future__ import annotations

import io
from typing import Any

from django.core.files.storage import default_storage

from annotation.assist import Seed, segment_box
from annotation.models import LabelTask
from annotation.shapes import coordinate
from inspection.errors import InvalidInput
from inspection.models import DefectClass

MAX_SEEDS = 50


def assist_for(*, task: LabelTask, box: Any, points: Any, defect_class: Any) -> dict[str, Any]:
    """``{"shapes": [polygon shapes], "mask": uncompressed RLE}`` for the object in ``box``.
    Input is checked before any pixel is read (finite numbers, inside the image, bounded)."""
    image = task.inspection.image
    if not isinstance(box, list) or len(box) != 4:
        raise InvalidInput("box is [x, y, width, height].", code="invalid_assist")
    x = coordinate(box[0], image.width, "box x")
    y = coordinate(box[1], image.height, "box y")
    w = coordinate(box[2], image.width, "box width")
    h = coordinate(box[3], image.height, "box height")
    if w < 2 or h < 2 or x + w > image.width or y + h > image.height:
        raise InvalidInput("The box must be at least 2 px wide and high and lie inside the image.",
                           code="invalid_assist")  # fmt: skip
    class_ids = set(DefectClass.objects.filter(project_id=task.project_id).values_list("id", flat=True))
    if isinstance(defect_class, bool) or not isinstance(defect_class, int) or defect_class not in class_ids:
        raise InvalidInput("defect_class must be the id of a defect class of this project.", code="invalid_assist")
    points = [] if points is None else points
    if not isinstance(points, list) or len(points) > MAX_SEEDS:
        raise InvalidInput(f"points is a list of at most {MAX_SEEDS} clicks.", code="invalid_assist")
    seeds = []
    for point in points:
        if not isinstance(point, dict) or not isinstance(point.get("positive"), bool):
            raise InvalidInput('Each point is {"x": .., "y": .., "positive": true | false}.', code="invalid_assist")
        seeds.append(Seed(coordinate(point.get("x"), image.width, "point x"),
                          coordinate(point.get("y"), image.height, "point y"), point["positive"]))  # fmt: skip
    with default_storage.open(image.file, "rb") as stored:
        stream = io.BytesIO(stored.read())
    try:
        segment = segment_box(stream, width=image.width, height=image.height, box=(x, y, w, h), seeds=seeds)
    except ValueError as exc:
        raise InvalidInput(str(exc), code="assist_failed") from None
    shapes = [{"type": "polygon", "points": points, "defect_class": defect_class}
              for points in segment.polygons if len(points) >= 3]  # fmt: skip
    return {"shapes": shapes, "mask": segment.rle}
