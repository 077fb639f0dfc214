"""Validation of label geometry (boxes and polygons, in image pixels). Bounded in size and
depth before anything is stored: no NaN or infinite coordinates, nothing outside the image."""

from __future__ import annotations

import math
from typing import Any

from inspection.errors import InvalidInput

MAX_SHAPES = 500
MAX_POINTS_PER_POLYGON = 10_000
MAX_POINTS_TOTAL = 100_000


def _coordinate(value: Any, limit: int, what: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise InvalidInput(f"{what} must be a finite number.", code="invalid_shape")
    if not 0 <= value <= limit:
        raise InvalidInput(f"{what}={value} lies outside the image (0..{limit}).", code="invalid_shape")
    return float(value)


def validate_shapes(raw: Any, *, width: int, height: int) -> list[dict[str, Any]]:
    """Normalised copies of ``raw`` shapes, or InvalidInput with the first problem found."""
    if raw is None:
        return []
    if not isinstance(raw, list) or len(raw) > MAX_SHAPES:
        raise InvalidInput(f"shapes must be a list of at most {MAX_SHAPES} shapes.", code="invalid_shape")
    shapes: list[dict[str, Any]] = []
    points_total = 0
    for index, shape in enumerate(raw):
        if not isinstance(shape, dict):
            raise InvalidInput(f"shape {index} is not an object.", code="invalid_shape")
        kind = shape.get("type")
        if kind == "box":
            x = _coordinate(shape.get("x"), width, f"shape {index} x")
            y = _coordinate(shape.get("y"), height, f"shape {index} y")
            w = _coordinate(shape.get("width"), width, f"shape {index} width")
            h = _coordinate(shape.get("height"), height, f"shape {index} height")
            if w <= 0 or h <= 0 or x + w > width or y + h > height:
                raise InvalidInput(
                    f"shape {index}: the box must have a size and lie inside the image.", code="invalid_shape"
                )
            shapes.append({"type": "box", "x": x, "y": y, "width": w, "height": h})
        elif kind == "polygon":
            points = shape.get("points")
            if not isinstance(points, list) or not 3 <= len(points) <= MAX_POINTS_PER_POLYGON:
                raise InvalidInput(
                    f"shape {index}: a polygon needs 3 to {MAX_POINTS_PER_POLYGON} points.", code="invalid_shape"
                )
            points_total += len(points)
            if points_total > MAX_POINTS_TOTAL:
                raise InvalidInput(f"At most {MAX_POINTS_TOTAL} polygon points per label.", code="invalid_shape")
            clean = []
            for point in points:
                if not isinstance(point, list | tuple) or len(point) != 2:
                    raise InvalidInput(f"shape {index}: each point is [x, y].", code="invalid_shape")
                clean.append([_coordinate(point[0], width, "x"), _coordinate(point[1], height, "y")])
            shapes.append({"type": "polygon", "points": clean})
        else:
            raise InvalidInput(f"shape {index}: type must be box or polygon.", code="invalid_shape")
    return shapes
