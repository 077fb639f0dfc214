"""Pixel masks of labels: COCO run-length encoding and rasterising of label shapes.

The API speaks UNCOMPRESSED COCO RLE: ``{"size": [height, width], "counts": [int, ...]}``,
runs over the pixels in column-major order (down the first column, then the next), the
first run counting zeros (0 when the first pixel is set). Stored labels keep the counts
packed (``rle_pack``: uint32, zlib, base64) so a mask's JSON stays small in the label and
in every revision. Free of Django: arrays in, arrays out.
"""

from __future__ import annotations

import base64
import zlib
from collections.abc import Iterable, Sequence
from typing import Any

import cv2
import numpy as np

from workers.ml.polygons import rasterize_polygons


def rle_encode(mask: np.ndarray) -> dict[str, Any]:
    """Uncompressed COCO RLE of a HxW mask (non-zero = set). Cost: one pass over the pixels."""
    height, width = mask.shape[:2]
    flat = (np.asarray(mask) > 0).ravel(order="F").astype(np.int8)
    if flat.size == 0:
        return {"size": [height, width], "counts": []}
    changes = np.flatnonzero(np.diff(flat)) + 1
    bounds = np.concatenate([[0], changes, [flat.size]])
    counts = np.diff(bounds).tolist()
    if flat[0] == 1:
        counts = [0, *counts]
    return {"size": [int(height), int(width)], "counts": [int(count) for count in counts]}


def rle_decode(rle: dict[str, Any]) -> np.ndarray:
    """The HxW uint8 mask {0, 1} of a validated uncompressed RLE."""
    height, width = (int(value) for value in rle["size"])
    counts = np.asarray(rle["counts"], dtype=np.int64)
    values = np.zeros(counts.size, dtype=np.uint8)
    values[1::2] = 1
    flat = np.repeat(values, counts)
    if flat.size != height * width:
        raise ValueError("RLE counts do not cover the mask.")
    return flat.reshape((width, height)).T.copy()


def rle_pack(counts: Sequence[int]) -> str:
    """Counts as base64(zlib(uint32 little-endian)): the stored form."""
    array = np.asarray(counts, dtype="<u4")
    return base64.b64encode(zlib.compress(array.tobytes(), 6)).decode("ascii")


def rle_unpack(packed: str) -> list[int]:
    return [int(value) for value in np.frombuffer(zlib.decompress(base64.b64decode(packed)), dtype="<u4")]


def api_shape(stored: dict[str, Any]) -> dict[str, Any]:
    """A stored shape as the API shows it (masks with plain counts)."""
    if stored.get("type") == "mask" and "packed" in stored.get("rle", {}):
        rle = stored["rle"]
        return {**stored, "rle": {"size": rle["size"], "counts": rle_unpack(rle["packed"])}}
    return stored


def api_shapes(stored: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    return [api_shape(shape) for shape in stored]


def rasterize_shapes(
    shapes: Iterable[dict[str, Any]], *, width: int, height: int, scale: float = 1.0, include_boxes: bool = True
) -> np.ndarray:
    """The union of ``shapes`` (stored form) as a uint8 {0, 255} mask of the image scaled by
    ``scale`` (< 1 to compare labels cheaply). Polygon holes are cut out."""
    out_h, out_w = max(1, round(height * scale)), max(1, round(width * scale))
    mask = np.zeros((out_h, out_w), dtype=np.uint8)
    for shape in shapes:
        kind = shape.get("type")
        if kind == "box" and include_boxes:
            x0, y0 = shape["x"] * scale, shape["y"] * scale
            x1, y1 = (shape["x"] + shape["width"]) * scale, (shape["y"] + shape["height"]) * scale
            mask[int(y0) : int(np.ceil(y1)), int(x0) : int(np.ceil(x1))] = 255
        elif kind == "polygon":
            outer = rasterize_polygons([_scaled(shape["points"], scale)], (out_h, out_w))
            holes = shape.get("holes") or []
            if holes:
                cut = rasterize_polygons([_scaled(ring, scale) for ring in holes], (out_h, out_w))
                outer[cut > 0] = 0
            mask |= outer
        elif kind == "mask":
            rle = shape["rle"]
            counts = rle_unpack(rle["packed"]) if "packed" in rle else rle["counts"]
            full = rle_decode({"size": rle["size"], "counts": counts})
            if full.shape != (out_h, out_w):
                full = cv2.resize(full, (out_w, out_h), interpolation=cv2.INTER_NEAREST)
            mask[full > 0] = 255
    return mask


def _scaled(points: Sequence[Sequence[float]], scale: float) -> list[tuple[float, float]]:
    return [(float(x) * scale, float(y) * scale) for x, y in points]
