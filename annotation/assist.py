"""Interactive segmentation for the annotation studio: a box (and optional clicks) in, the
defect's mask and outline out. OpenCV GrabCut, initialised from the box, on a bounded
region: the box plus a margin, decoded and shrunk so its longest side is at most
``WORK_SIDE`` pixels whatever the image's size, then mapped back to full resolution.
Free of Django: an image stream in, plain data out."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import IO, Any

import cv2
import numpy as np
from PIL import Image as PILImage

from annotation.masks import rle_encode
from workers.ml.polygons import trace_polygons

WORK_SIDE = 1024  # px: GrabCut's cost grows with the pixels it models; this bounds it
ITERATIONS = 5
SEED_RADIUS = 3  # px at work scale, around each click
MIN_COMPONENT_SHARE = 0.05  # drop regions smaller than this share of the largest one


@dataclass(frozen=True)
class Seed:
    x: float
    y: float
    positive: bool


@dataclass(frozen=True)
class Segment:
    polygons: list[list[list[float]]]  # full-resolution image pixels
    rle: dict[str, Any]  # uncompressed COCO RLE of the full image


def segment_box(
    stream: IO[bytes], *, width: int, height: int, box: Sequence[float], seeds: Sequence[Seed] = ()
) -> Segment:
    """Segment the object inside ``box`` = (x, y, w, h) of a ``width`` x ``height`` image.
    Clicks mark sure foreground (positive) or background. Raises ValueError when GrabCut
    cannot model the region (e.g. a box covering the whole of a flat image)."""
    x, y, w, h = (float(value) for value in box)
    margin = max(16.0, 0.25 * max(w, h))
    rx0, ry0 = max(0, math.floor(x - margin)), max(0, math.floor(y - margin))
    rx1, ry1 = min(width, math.ceil(x + w + margin)), min(height, math.ceil(y + h + margin))
    roi_w, roi_h = rx1 - rx0, ry1 - ry0
    scale = min(1.0, WORK_SIDE / max(roi_w, roi_h))
    work_w, work_h = max(1, round(roi_w * scale)), max(1, round(roi_h * scale))
    with PILImage.open(stream) as image:
        if scale < 1.0:
            # JPEG: decode at 1/2, 1/4 or 1/8 size directly (DCT scaling); others ignore it.
            image.draft("RGB", (math.ceil(width * scale), math.ceil(height * scale)))
        dx, dy = image.size[0] / width, image.size[1] / height
        region = image.crop((rx0 * dx, ry0 * dy, rx1 * dx, ry1 * dy)).convert("RGB")
        pixels = np.ascontiguousarray(np.asarray(region.resize((work_w, work_h), PILImage.Resampling.BILINEAR)))
    sx, sy = work_w / roi_w, work_h / roi_h

    mask = np.full((work_h, work_w), cv2.GC_BGD, dtype=np.uint8)
    bx0, by0 = max(0, math.floor((x - rx0) * sx)), max(0, math.floor((y - ry0) * sy))
    bx1, by1 = min(work_w, math.ceil((x + w - rx0) * sx)), min(work_h, math.ceil((y + h - ry0) * sy))
    mask[by0:by1, bx0:bx1] = cv2.GC_PR_FGD
    if not (mask == cv2.GC_BGD).any():  # the box is the whole image: let the border be background
        mask[[0, -1], :] = cv2.GC_PR_BGD
        mask[:, [0, -1]] = cv2.GC_PR_BGD
    for seed in seeds:
        centre = (round((seed.x - rx0) * sx), round((seed.y - ry0) * sy))
        cv2.circle(mask, centre, SEED_RADIUS, cv2.GC_FGD if seed.positive else cv2.GC_BGD, thickness=-1)
    background, foreground = np.zeros((1, 65), np.float64), np.zeros((1, 65), np.float64)
    try:
        # rect is unused with GC_INIT_WITH_MASK; the stubs want a sequence anyway.
        cv2.grabCut(
            pixels[:, :, ::-1].copy(), mask, (0, 0, 1, 1), background, foreground, ITERATIONS, cv2.GC_INIT_WITH_MASK
        )
    except cv2.error as exc:
        raise ValueError(f"GrabCut could not model this region: {exc.msg if hasattr(exc, 'msg') else exc}") from None
    found = np.isin(mask, (cv2.GC_FGD, cv2.GC_PR_FGD)).astype(np.uint8)
    found = _main_regions(found)

    polygons = [
        [[min(float(width), round(rx0 + px / sx, 2)), min(float(height), round(ry0 + py / sy, 2))]
         for px, py in outline]
        for outline in trace_polygons(found * 255, min_area=4.0, epsilon=1.0)
    ]  # fmt: skip
    full = np.zeros((height, width), dtype=np.uint8)
    full[ry0:ry1, rx0:rx1] = cv2.resize(found, (roi_w, roi_h), interpolation=cv2.INTER_NEAREST)
    return Segment(polygons=polygons, rle=rle_encode(full))


def _main_regions(found: np.ndarray) -> np.ndarray:
    count, labels, stats, _ = cv2.connectedComponentsWithStats(found, connectivity=8)
    if count <= 2:
        return found
    areas = stats[1:, cv2.CC_STAT_AREA]
    keep = np.flatnonzero(areas >= MIN_COMPONENT_SHARE * areas.max()) + 1
    return np.isin(labels, keep).astype(np.uint8)
