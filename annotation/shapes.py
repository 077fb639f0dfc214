"""Validation of label geometry (boxes, polygons with holes, masks; image pixels). Bounded in
size and depth before anything is stored: no NaN or infinite coordinates, nothing outside
the image (bad-inputs case 22).

Two entry points: ``validate_shapes`` for a reviewer's corrected boxes and polygons (no
classes), ``validate_label`` for an annotation-studio label body, where every shape names a
defect class of the project. The request body itself is bounded first by
``annotation.parsers.LabelJSONParser`` (bytes, nesting depth, arrays, objects).
"""

from __future__ import annotations

import math
from collections.abc import Collection
from dataclasses import dataclass
from typing import Any

import numpy as np

from annotation.masks import rle_pack
from inspection.errors import InvalidInput

MAX_SHAPES = 5_000
MAX_POINTS_PER_POLYGON = 10_000  # per ring: the outline and each hole
MAX_POINTS_TOTAL = 200_000  # all rings of all polygons of one label
MAX_HOLES_PER_POLYGON = 1_000
MAX_RLE_COUNTS = 4_000_000  # all masks of one label; a 20 MP image of 2-pixel stripes needs more: refuse it


def _invalid(message: str) -> InvalidInput:
    return InvalidInput(message, code="invalid_shape")


def coordinate(value: Any, limit: int, what: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise _invalid(f"{what} must be a finite number.")
    if not 0 <= value <= limit:
        raise _invalid(f"{what}={value} lies outside the image (0..{limit}).")
    return float(value)


class _Budget:
    """Running totals over one label, so a huge label fails on the first shape past a cap."""

    def __init__(self) -> None:
        self.points = 0
        self.counts = 0

    def add_points(self, count: int) -> None:
        self.points += count
        if self.points > MAX_POINTS_TOTAL:
            raise _invalid(f"At most {MAX_POINTS_TOTAL} polygon points per label.")

    def add_counts(self, count: int) -> None:
        self.counts += count
        if self.counts > MAX_RLE_COUNTS:
            raise _invalid(f"At most {MAX_RLE_COUNTS} mask run-length counts per label.")


def _ring(raw: Any, *, width: int, height: int, what: str, budget: _Budget) -> list[list[float]]:
    if not isinstance(raw, list) or not 3 <= len(raw) <= MAX_POINTS_PER_POLYGON:
        raise _invalid(f"{what} needs 3 to {MAX_POINTS_PER_POLYGON} points.")
    budget.add_points(len(raw))
    clean = []
    for point in raw:
        if not isinstance(point, list | tuple) or len(point) != 2:
            raise _invalid(f"{what}: each point is [x, y].")
        clean.append([coordinate(point[0], width, "x"), coordinate(point[1], height, "y")])
    return clean


def _box(shape: dict[str, Any], index: int, *, width: int, height: int) -> dict[str, Any]:
    x = coordinate(shape.get("x"), width, f"shape {index} x")
    y = coordinate(shape.get("y"), height, f"shape {index} y")
    w = coordinate(shape.get("width"), width, f"shape {index} width")
    h = coordinate(shape.get("height"), height, f"shape {index} height")
    if w <= 0 or h <= 0 or x + w > width or y + h > height:
        raise _invalid(f"shape {index}: the box must have a size and lie inside the image.")
    return {"type": "box", "x": x, "y": y, "width": w, "height": h}


def _mask(shape: dict[str, Any], index: int, *, width: int, height: int, budget: _Budget) -> dict[str, Any]:
    rle = shape.get("rle")
    if not isinstance(rle, dict) or set(rle) != {"size", "counts"}:
        raise _invalid(f'shape {index}: a mask is {{"rle": {{"size": [height, width], "counts": [...]}}}}.')
    if rle["size"] != [height, width]:
        raise _invalid(f"shape {index}: the mask size must be the image's, [{height}, {width}].")
    counts = rle["counts"]
    if not isinstance(counts, list) or not counts:
        raise _invalid(f"shape {index}: counts must be a non-empty list of run lengths.")
    budget.add_counts(len(counts))
    # type() and not isinstance(): True is an int to Python but not a run length.
    if any(type(count) is not int for count in counts):
        raise _invalid(f"shape {index}: every count must be a whole number.")
    try:
        array = np.asarray(counts, dtype=np.int64)
    except OverflowError:
        raise _invalid(f"shape {index}: a count is larger than the image.") from None
    if int(array.min()) < 0:
        raise _invalid(f"shape {index}: counts cannot be negative.")
    if int(array.sum()) != height * width:
        raise _invalid(f"shape {index}: the counts must add up to height x width = {height * width}.")
    # Stored packed (uint32 fits: the sum, hence every count, is at most the image's pixels).
    return {"type": "mask", "rle": {"size": [height, width], "packed": rle_pack(counts)}}


def validate_shapes(raw: Any, *, width: int, height: int) -> list[dict[str, Any]]:
    """A reviewer's boxes and polygons: normalised copies of ``raw``, or InvalidInput with the
    first problem found."""
    if raw is None:
        return []
    if not isinstance(raw, list) or len(raw) > MAX_SHAPES:
        raise _invalid(f"shapes must be a list of at most {MAX_SHAPES} shapes.")
    shapes: list[dict[str, Any]] = []
    budget = _Budget()
    for index, shape in enumerate(raw):
        if not isinstance(shape, dict):
            raise _invalid(f"shape {index} is not an object.")
        kind = shape.get("type")
        if kind == "box":
            shapes.append(_box(shape, index, width=width, height=height))
        elif kind == "polygon":
            points = _ring(shape.get("points"), width=width, height=height, what=f"shape {index}", budget=budget)
            shapes.append({"type": "polygon", "points": points})
        else:
            raise _invalid(f"shape {index}: type must be box or polygon.")
    return shapes


def validate_label_shapes(raw: Any, *, width: int, height: int, class_ids: Collection[int]) -> list[dict[str, Any]]:
    """Studio shapes in their stored form: each ``{"type": "box" | "polygon" | "mask",
    "defect_class": id, ...}`` with ``defect_class`` one of ``class_ids`` (the project's)."""
    if raw is None:
        return []
    if not isinstance(raw, list) or len(raw) > MAX_SHAPES:
        raise _invalid(f"shapes must be a list of at most {MAX_SHAPES} shapes.")
    shapes: list[dict[str, Any]] = []
    budget = _Budget()
    for index, shape in enumerate(raw):
        if not isinstance(shape, dict):
            raise _invalid(f"shape {index} is not an object.")
        defect_class = shape.get("defect_class")
        if isinstance(defect_class, bool) or not isinstance(defect_class, int) or defect_class not in class_ids:
            raise _invalid(f"shape {index}: defect_class must be the id of a defect class of this project.")
        kind = shape.get("type")
        if kind == "box":
            clean = _box(shape, index, width=width, height=height)
        elif kind == "polygon":
            what = f"shape {index}"
            clean = {"type": "polygon", "points": _ring(shape.get("points"), width=width, height=height,
                                                        what=what, budget=budget)}  # fmt: skip
            holes = shape.get("holes")
            if holes is not None:
                if not isinstance(holes, list) or len(holes) > MAX_HOLES_PER_POLYGON:
                    raise _invalid(f"{what}: holes must be a list of at most {MAX_HOLES_PER_POLYGON} rings.")
                clean["holes"] = [
                    _ring(ring, width=width, height=height, what=f"{what} hole {number}", budget=budget)
                    for number, ring in enumerate(holes)
                ]
        elif kind == "mask":
            clean = _mask(shape, index, width=width, height=height, budget=budget)
        else:
            raise _invalid(f"shape {index}: type must be box, polygon or mask.")
        clean["defect_class"] = defect_class
        shapes.append(clean)
    return shapes


@dataclass(frozen=True)
class LabelBody:
    outcome: str
    defect_class_id: int | None
    shapes: list[dict[str, Any]]  # stored form


def validate_label(
    *, outcome: Any, defect_class: Any, shapes: Any, width: int, height: int, class_ids: Collection[int]
) -> LabelBody:
    """An image-level outcome and class plus shapes. A pass has no class and no shapes."""
    if outcome not in ("pass", "fail"):
        raise InvalidInput("outcome must be pass or fail.", code="invalid_label")
    if defect_class is not None and (
        isinstance(defect_class, bool) or not isinstance(defect_class, int) or defect_class not in class_ids
    ):
        raise InvalidInput("defect_class must be null or the id of a defect class of this project.",
                           code="invalid_label")  # fmt: skip
    clean = validate_label_shapes(shapes, width=width, height=height, class_ids=class_ids)
    if outcome == "pass" and (defect_class is not None or clean):
        raise InvalidInput("A pass label has no defect_class and no shapes.", code="invalid_label")
    return LabelBody(outcome=outcome, defect_class_id=defect_class, shapes=clean)
