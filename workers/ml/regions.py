"""Inspection regions: the part of a camera's frame the models look at.

A station's camera sees more than the part: fixtures, conveyor, background, a neighbouring
part. Anything there that varies is a false alarm for an anomaly detector and noise for a
classifier. A region is a rectangle in fractions of the frame, ``(x, y, width, height)``,
so one region fits every resolution the camera is run at. Training and inference crop to
it the same way (``crop``); what the models draw (heatmaps, masks) is put back into the
whole frame (``paste``) so overlays and labels stay in the image's own coordinates.

Ignore zones are rectangles inside the frame that vary from part to part without being
defects (a printed date code, a label, a serial mark). Training and inference fill each
with the mean colour around it (``blank_zones``) before cropping, so every model learns and
sees the same plain patch there, and whatever the models draw is zeroed inside them
(``zero_zones``); label masks are zeroed there too, so no defect is learnt from a zone.

Framework-free: the Django side validates and stores regions, this module does the pixels.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

Region = tuple[float, float, float, float]  # x, y, width, height as fractions of the frame
Box = tuple[int, int, int, int]  # top, left, bottom, right in pixels (bottom/right exclusive)

# A region narrower or shorter than this share of the frame is almost surely a slip of the
# mouse, and would be blown up many times to the models' input size.
MIN_REGION_FRACTION = 0.02
REGION_KEYS = ("x", "y", "width", "height")
# Ignore zones per station: enough for date codes, labels and holes; a bound on the work.
MAX_ZONES = 16


def parse_region(value: Any) -> Region:
    """A region from ``{"x", "y", "width", "height"}`` (fractions) or a 4-sequence in that
    order; ``ValueError`` with the reason when it is not a rectangle inside the frame."""
    if isinstance(value, Mapping):
        unknown = sorted(set(value) - set(REGION_KEYS))
        missing = [key for key in REGION_KEYS if key not in value]
        if unknown or missing:
            raise ValueError(
                "a region needs exactly x, y, width and height"
                + (f"; unknown: {', '.join(map(str, unknown))}" if unknown else "")
                + (f"; missing: {', '.join(missing)}" if missing else "")
            )
        raw: Sequence[Any] = [value[key] for key in REGION_KEYS]
    elif isinstance(value, list | tuple) and len(value) == 4:
        raw = value
    else:
        raise ValueError("a region is {x, y, width, height} as fractions of the image")
    numbers: list[float] = []
    for key, item in zip(REGION_KEYS, raw, strict=True):
        if isinstance(item, bool) or not isinstance(item, int | float) or not math.isfinite(item):
            raise ValueError(f"{key} must be a finite number between 0 and 1")
        numbers.append(float(item))
    x, y, width, height = numbers
    if not (0.0 <= x < 1.0 and 0.0 <= y < 1.0):
        raise ValueError("x and y must be at least 0 and below 1 (fractions of the image)")
    if width < MIN_REGION_FRACTION or height < MIN_REGION_FRACTION:
        raise ValueError(f"width and height must each be at least {MIN_REGION_FRACTION} of the image")
    # A little slack for rounding in the browser: 0.3 + 0.7 may be 1.0000000000000002.
    if x + width > 1.0 + 1e-9 or y + height > 1.0 + 1e-9:
        raise ValueError("the region must lie inside the image (x + width and y + height at most 1)")
    return (x, y, min(width, 1.0 - x), min(height, 1.0 - y))


def region_dict(region: Region) -> dict[str, float]:
    return dict(zip(REGION_KEYS, (round(v, 6) for v in region), strict=True))


def region_box(shape: tuple[int, int], region: Region | None) -> Box:
    """The pixel rectangle of ``region`` in an image of ``shape`` (H, W): edges rounded
    outwards, at least one pixel each way, never outside the image."""
    height, width = shape
    if region is None:
        return (0, 0, height, width)
    x, y, w, h = region
    left = min(max(0, math.floor(x * width + 1e-6)), width - 1)
    top = min(max(0, math.floor(y * height + 1e-6)), height - 1)
    right = max(left + 1, min(width, math.ceil((x + w) * width - 1e-6)))
    bottom = max(top + 1, min(height, math.ceil((y + h) * height - 1e-6)))
    return (top, left, bottom, right)


def crop(image: np.ndarray, region: Region | None) -> np.ndarray:
    """``image`` (HxW or HxWxC) cut to ``region``; the image itself when there is none."""
    if region is None:
        return image
    top, left, bottom, right = region_box((int(image.shape[0]), int(image.shape[1])), region)
    return np.ascontiguousarray(image[top:bottom, left:right])


def paste(part: np.ndarray, box: Box, shape: tuple[int, int], fill: float = 0) -> np.ndarray:
    """A map computed on a crop (``part``, the crop's size) put back into a frame of ``shape``,
    ``fill`` outside ``box``: outside the region nothing was looked at, so nothing was found."""
    top, left, bottom, right = box
    if part.shape[:2] != (bottom - top, right - left):
        raise ValueError(f"a map of shape {part.shape[:2]} does not fit the box {box}")
    if (top, left, bottom, right) == (0, 0, *shape):
        return part
    whole = np.full((*shape, *part.shape[2:]), fill, dtype=part.dtype)
    whole[top:bottom, left:right] = part
    return whole


def parse_zones(value: Any) -> tuple[Region, ...]:
    """Ignore zones from a list of regions (``parse_region`` each); ``ValueError`` with the
    reason, naming the zone, when one is not a rectangle inside the frame."""
    if not isinstance(value, list | tuple):
        raise ValueError("ignore zones are a list of {x, y, width, height}")
    if len(value) > MAX_ZONES:
        raise ValueError(f"at most {MAX_ZONES} ignore zones")
    zones = []
    for index, item in enumerate(value):
        try:
            zones.append(parse_region(item))
        except ValueError as exc:
            raise ValueError(f"zone {index + 1}: {exc}") from None
    return tuple(zones)


def blank_zones(image: np.ndarray, zones: Sequence[Region]) -> np.ndarray:
    """``image`` (HxWxC) with each zone filled by the mean colour of a ring around it (a tenth
    of the zone's size, at least 2 px, read from the original image): a plain patch the models
    see alike on every part. The image itself when there are no zones."""
    if not zones:
        return image
    height, width = int(image.shape[0]), int(image.shape[1])
    out = image.copy()
    for zone in zones:
        top, left, bottom, right = region_box((height, width), zone)
        pad = max(2, round(0.1 * max(bottom - top, right - left)))
        t, lf, b, r = max(0, top - pad), max(0, left - pad), min(height, bottom + pad), min(width, right + pad)
        ring = np.ones((b - t, r - lf), dtype=bool)
        ring[top - t : bottom - t, left - lf : right - lf] = False
        around = image[t:b, lf:r][ring]
        fill = around.mean(axis=0) if len(around) else image.reshape(height * width, -1).mean(axis=0)
        out[top:bottom, left:right] = np.round(fill).astype(image.dtype)
    return out


def zero_zones(values: np.ndarray, zones: Sequence[Region]) -> np.ndarray:
    """A map or mask (HxW[xC]) with zeros inside each zone; the array itself when there are none."""
    if not zones:
        return values
    out = values.copy()
    for zone in zones:
        top, left, bottom, right = region_box((int(values.shape[0]), int(values.shape[1])), zone)
        out[top:bottom, left:right] = 0
    return out


def view_key(view: Mapping[str, Any] | None) -> str:
    """A short stable name for a station's view (``{"region", "ignore_zones"}``; None: the
    whole frame untouched), the same for equal views however their numbers were written, so
    scores and calibrations can be filed by the view they were made under."""
    region = None
    zones: list[dict[str, float]] = []
    if view:
        if view.get("region") is not None:
            region = region_dict(parse_region(view["region"]))
        zones = [region_dict(zone) for zone in parse_zones(view.get("ignore_zones") or [])]
    if region == dict(zip(REGION_KEYS, (0.0, 0.0, 1.0, 1.0), strict=True)):
        region = None
    text = json.dumps({"region": region, "ignore_zones": zones}, sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def scored_view(scores: Mapping[str, Any]) -> dict[str, Any]:
    """The view an inference run looked through, from the scores it recorded (``region``,
    ``ignore_zones``)."""
    return {"region": scores.get("region"), "ignore_zones": list(scores.get("ignore_zones") or [])}
