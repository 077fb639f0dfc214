"""Suggestions for a label from what the deployed models already said about the image:
its stored scores and segmenter mask. Nothing is rerun."""

from __future__ import annotations

import io
from typing import Any

import cv2
import numpy as np
from django.core.files.storage import default_storage
from PIL import Image as PILImage

from annotation.models import LabelTask
from inspection.models import DefectClass
from workers.ml.polygons import trace_polygons

MAX_POLYGONS = 20  # the largest regions; specks are noise to an annotator
MAX_POINTS = 300  # all polygons together: a few hundred vertices are editable by hand
MIN_AREA_PX = 16.0  # in mask pixels


def prelabels_for(*, task: LabelTask) -> dict[str, Any]:
    """``{model_version, outcome, defect_class, probabilities, shapes}`` for the task's image;
    all null / empty when no model ran. Cost: one PNG decode and contour trace of the mask."""
    inspection = task.inspection
    scores = inspection.scores or {}
    class_ids = dict(DefectClass.objects.filter(project_id=task.project_id).values_list("name", "id"))
    outcome = _outcome(scores)
    predicted = class_ids.get(scores.get("predicted_class") or "")
    defect_class = predicted if outcome == "fail" else None
    shape_class = predicted or next(iter(sorted(class_ids.values())), None)
    shapes: list[dict[str, Any]] = []
    if inspection.mask_file and shape_class is not None and default_storage.exists(inspection.mask_file):
        image = inspection.image
        for points in _mask_polygons(inspection.mask_file, width=image.width, height=image.height):
            shapes.append({"type": "polygon", "points": points, "defect_class": shape_class})
    probabilities = scores.get("probabilities")
    return {
        "model_version": inspection.model_version or None,
        "outcome": outcome,
        "defect_class": defect_class,
        "probabilities": probabilities if isinstance(probabilities, dict) and probabilities else None,
        "shapes": shapes,
    }


def _outcome(scores: dict[str, Any]) -> str | None:
    action = (scores.get("decision") or {}).get("action")
    if action in {"pass", "fail"}:
        return str(action)
    flags = [bool(scores[name]) for name in ("classifier_flag", "anomaly_flag") if name in scores]
    if flags:
        return "fail" if any(flags) else "pass"
    score = scores.get("defect_score")
    if isinstance(score, int | float):
        return "fail" if score >= 0.5 else "pass"
    return None


def _mask_polygons(key: str, *, width: int, height: int) -> list[list[list[float]]]:
    with default_storage.open(key, "rb") as stored:
        mask = np.asarray(PILImage.open(io.BytesIO(stored.read())).convert("L"))
    sx, sy = width / mask.shape[1], height / mask.shape[0]
    epsilon = 1.0
    polygons: list[list[tuple[float, float]]] = []
    for _ in range(8):  # coarser until the vertex budget holds
        polygons = trace_polygons(mask, min_area=MIN_AREA_PX, epsilon=epsilon)
        polygons.sort(key=lambda polygon: -abs(cv2.contourArea(np.asarray(polygon, dtype=np.float32))))
        polygons = polygons[:MAX_POLYGONS]
        if sum(len(polygon) for polygon in polygons) <= MAX_POINTS:
            break
        epsilon *= 2
    kept, total = [], 0
    for polygon in polygons:  # largest first; drop what still does not fit
        if total + len(polygon) > MAX_POINTS:
            continue
        total += len(polygon)
        kept.append([[min(float(width), round(x * sx, 2)), min(float(height), round(y * sy, 2))] for x, y in polygon])
    return kept
