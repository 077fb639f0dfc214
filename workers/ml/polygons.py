"""Conversions between defect polygons (annotation tool) and pixel masks (training).

Polygons are lists of (x, y) vertices in pixel coordinates of the image, x to the
right and y down, the same convention as the front end's PolygonTool.
"""

from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np

# cv2.fillPoly wants integer vertices; 4 fractional bits (1/16 px) keeps sub-pixel
# annotations from drifting by up to half a pixel on every vertex.
_SHIFT_BITS = 4


def rasterize_polygons(polygons: Sequence[Sequence[tuple[float, float]]], shape: tuple[int, int]) -> np.ndarray:
    """Fill ``polygons`` into a uint8 mask of ``shape`` (H, W) with values {0, 255}.

    Polygons with fewer than 3 vertices are ignored. Overlapping polygons union.
    """
    mask = np.zeros(shape, dtype=np.uint8)
    scale = float(1 << _SHIFT_BITS)
    contours = [
        np.round(np.asarray(polygon, dtype=np.float64) * scale).astype(np.int32).reshape(-1, 1, 2)
        for polygon in polygons
        if len(polygon) >= 3
    ]
    if contours:
        cv2.fillPoly(mask, contours, color=255, lineType=cv2.LINE_8, shift=_SHIFT_BITS)
    return mask


def trace_polygons(mask: np.ndarray, *, min_area: float = 4.0, epsilon: float = 0.0) -> list[list[tuple[float, float]]]:
    """Trace the outer contours of the non-zero regions of ``mask`` (HxW) as polygons.

    ``min_area`` (px²) drops specks; ``epsilon`` > 0 simplifies with Douglas-Peucker
    (max deviation in px). Holes are not represented: filling the result gives the
    regions without their holes.
    """
    binary = (mask > 0).astype(np.uint8)
    contours, _ = cv2.findContours(binary, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
    polygons: list[list[tuple[float, float]]] = []
    for contour in contours:
        if cv2.contourArea(contour) < min_area:
            continue
        if epsilon > 0:
            contour = cv2.approxPolyDP(contour, epsilon, True)
        if len(contour) < 3:
            continue
        polygons.append([(float(x), float(y)) for x, y in contour.reshape(-1, 2)])
    return polygons
