"""Synthetic defects painted onto good parts, for learning from goods alone.

An anomaly detector trained on good parts only knows what normal looks like but not what
a defect looks like. Painting plausible defects onto good images (CutPaste, DRAEM) gives
it negatives with exact masks, so that a small head on frozen patch features can learn
"patch unlike a good surface" instead of a nearest-neighbour distance alone.

Four families, drawn uniformly, each with its mask:

- ``spot``: one to three soft ellipses, darker or lighter (pores, blowholes, inclusions);
- ``scratch``: a thin random polyline, darker or lighter (cracks, scratches);
- ``patch``: a rectangle cut from another good part (or elsewhere on this one), turned,
  brightness-jittered and pasted (CutPaste);
- ``blend``: a blob of smooth random noise (Perlin-like) where the surface takes another
  part's texture or its own, shifted and re-lit (DRAEM; chips, uneven grinding, stains).

Everything runs on uint8 HxWx3 images at the model's input size; ``rng`` makes it exact.

``transplant_defect`` is the other way round: a real labelled defect (its masked region and
a feathered rim) cut from one part and blended into a good one, so that a supervised head
sees each real defect in several surroundings.
"""

from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np

FAMILIES = ("spot", "scratch", "patch", "blend")


def _smooth_noise(rng: np.random.Generator, shape: tuple[int, int], cells: int) -> np.ndarray:
    """Smooth random field in [0, 1]: a ``cells`` x ``cells`` random grid upsampled bicubically."""
    grid = rng.random((cells + 1, cells + 1)).astype(np.float32)
    field = cv2.resize(grid, (shape[1], shape[0]), interpolation=cv2.INTER_CUBIC)
    field -= field.min()
    return field / max(float(field.max()), 1e-6)


def _apply_gain(image: np.ndarray, soft: np.ndarray, gain: float) -> np.ndarray:
    """Multiply the image by ``1 + gain * soft`` (soft in [0, 1]); ``gain`` < 0 darkens."""
    out = image.astype(np.float32) * (1.0 + gain * soft[..., None])
    return np.clip(out, 0, 255).astype(np.uint8)


def _spot(image: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    height, width = image.shape[:2]
    side = min(height, width)
    soft: np.ndarray = np.zeros((height, width), dtype=np.float32)
    for _ in range(int(rng.integers(1, 4))):
        axes = (max(1, int(side * rng.uniform(0.01, 0.06))), max(1, int(side * rng.uniform(0.01, 0.06))))
        centre = (int(rng.integers(0, width)), int(rng.integers(0, height)))
        cv2.ellipse(soft, centre, axes, float(rng.uniform(0, 180)), 0, 360, 1.0, -1)
    soft = cv2.GaussianBlur(soft, (0, 0), sigmaX=float(rng.uniform(0.5, 2.0)))
    gain = -rng.uniform(0.3, 0.8) if rng.random() < 0.75 else rng.uniform(0.3, 0.8)
    return _apply_gain(image, soft, gain), soft


def _scratch(image: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    height, width = image.shape[:2]
    side = min(height, width)
    soft = np.zeros((height, width), dtype=np.float32)
    point = np.array([rng.uniform(0, width), rng.uniform(0, height)])
    angle = rng.uniform(0, 2 * np.pi)
    points = [point.copy()]
    for _ in range(int(rng.integers(3, 9))):
        angle += rng.normal(0, 0.5)
        point = point + side * rng.uniform(0.02, 0.06) * np.array([np.cos(angle), np.sin(angle)])
        points.append(point.copy())
    polyline = np.round(np.array(points)).astype(np.int32)
    cv2.polylines(soft, [polyline], False, (1.0,), thickness=int(rng.integers(1, 4)), lineType=cv2.LINE_AA)
    gain = -rng.uniform(0.3, 0.7) if rng.random() < 0.8 else rng.uniform(0.3, 0.7)
    return _apply_gain(image, soft, gain), soft


def _patch(image: np.ndarray, rng: np.random.Generator, donor: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    height, width = image.shape[:2]
    ph = max(2, int(height * rng.uniform(0.05, 0.2)))
    pw = max(2, int(width * rng.uniform(0.05, 0.2)))
    if rng.random() < 0.3:  # a scar: long and thin
        ph, pw = max(2, ph // 4), min(width - 1, pw * 2)
    sy, sx = int(rng.integers(0, donor.shape[0] - ph + 1)), int(rng.integers(0, donor.shape[1] - pw + 1))
    piece = donor[sy : sy + ph, sx : sx + pw].astype(np.float32)
    piece = np.rot90(piece, int(rng.integers(0, 4)))
    piece = np.clip(piece * rng.uniform(0.8, 1.2) + rng.uniform(-20, 20), 0, 255)
    ph, pw = piece.shape[:2]
    ph, pw = min(ph, height), min(width, pw)
    ty, tx = int(rng.integers(0, height - ph + 1)), int(rng.integers(0, width - pw + 1))
    out = image.copy()
    out[ty : ty + ph, tx : tx + pw] = piece[:ph, :pw].astype(np.uint8)
    soft = np.zeros((height, width), dtype=np.float32)
    soft[ty : ty + ph, tx : tx + pw] = 1.0
    return out, soft


def _blend(image: np.ndarray, rng: np.random.Generator, donor: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    height, width = image.shape[:2]
    field = _smooth_noise(rng, (height, width), int(rng.integers(3, 9)))
    # Keep 1-12 % of the image: the top of the field, with a soft rim.
    level = float(np.quantile(field, 1.0 - rng.uniform(0.01, 0.12)))
    soft = np.clip((field - level) / 0.05, 0.0, 1.0)
    if rng.random() < 0.5:
        texture = donor.astype(np.float32)
    else:
        shift = (int(rng.integers(-height // 4, height // 4)), int(rng.integers(-width // 4, width // 4)))
        texture = np.roll(image, shift, axis=(0, 1)).astype(np.float32)
    texture = texture * rng.uniform(0.6, 1.4)
    opacity = rng.uniform(0.5, 1.0)
    weight = (opacity * soft)[..., None]
    out = image.astype(np.float32) * (1.0 - weight) + texture * weight
    return np.clip(out, 0, 255).astype(np.uint8), soft


def synthesize_defect(
    image: np.ndarray,
    rng: np.random.Generator,
    donors: Sequence[np.ndarray] = (),
    families: Sequence[str] = FAMILIES,
) -> tuple[np.ndarray, np.ndarray]:
    """A copy of ``image`` (uint8 HxWx3) with one synthetic defect, and its mask (uint8
    HxW {0, 1}: the pixels the defect changed noticeably). ``donors`` are other good images
    of the same size (for ``patch`` and ``blend``); without them the image is its own donor.
    """
    family = families[int(rng.integers(0, len(families)))]
    if family not in FAMILIES:
        raise ValueError(f"unknown synthetic defect family {family!r}")
    donor = donors[int(rng.integers(0, len(donors)))] if len(donors) else image
    if family == "spot":
        out, soft = _spot(image, rng)
    elif family == "scratch":
        out, soft = _scratch(image, rng)
    elif family == "patch":
        out, soft = _patch(image, rng, donor)
    else:
        out, soft = _blend(image, rng, donor)
    changed = np.abs(out.astype(np.int16) - image.astype(np.int16)).max(axis=2) >= 8
    mask = ((soft > 0.25) & changed).astype(np.uint8)
    if not mask.any():  # nothing visible changed (e.g. a patch cut from an identical area)
        mask = (soft > 0.25).astype(np.uint8)
    return out, mask


def transplant_defect(
    image: np.ndarray,
    donor: np.ndarray,
    donor_mask: np.ndarray,
    rng: np.random.Generator,
    *,
    keep_place: float = 0.5,
) -> tuple[np.ndarray, np.ndarray]:
    """A copy of the good ``image`` with the marked defect of ``donor`` (same size, uint8
    HxWx3; ``donor_mask`` HxW, nonzero on the defect) blended in, and the defect's new mask
    (uint8 HxW {0, 1}).

    The cut is the mask's bounding box plus a rim of 2 % of the image side; it may be
    flipped either way (never turned: a ground surface's streaks keep their direction),
    its brightness is matched to the target's on the rim, and it is blended through the
    mask dilated and feathered by the rim. With probability ``keep_place`` it lands where it
    was on the donor (edge defects stay on the edge), otherwise anywhere it fits.
    """
    if image.shape != donor.shape or donor.shape[:2] != donor_mask.shape:
        raise ValueError("image, donor and donor_mask must share their size")
    ys, xs = np.nonzero(donor_mask)
    if not len(ys):
        raise ValueError("the donor mask marks nothing")
    height, width = image.shape[:2]
    rim = max(2, round(0.02 * min(height, width)))
    y0, y1 = max(0, int(ys.min()) - rim), min(height, int(ys.max()) + 1 + rim)
    x0, x1 = max(0, int(xs.min()) - rim), min(width, int(xs.max()) + 1 + rim)
    piece = donor[y0:y1, x0:x1].astype(np.float32)
    marked = (donor_mask[y0:y1, x0:x1] > 0).astype(np.uint8)
    flip_x, flip_y = rng.random() < 0.5, rng.random() < 0.5
    if flip_x:
        piece, marked = piece[:, ::-1], marked[:, ::-1]
    if flip_y:
        piece, marked = piece[::-1], marked[::-1]
    piece, marked = np.ascontiguousarray(piece), np.ascontiguousarray(marked)
    ph, pw = marked.shape
    if rng.random() < keep_place:
        ty, tx = y0, x0
    else:
        ty, tx = int(rng.integers(0, height - ph + 1)), int(rng.integers(0, width - pw + 1))
    region = image[ty : ty + ph, tx : tx + pw].astype(np.float32)
    grown = cv2.dilate(marked, np.ones((2 * rim + 1, 2 * rim + 1), np.uint8))
    ring = (grown > 0) & (marked == 0)
    if not ring.any():
        ring = marked == 0
    if ring.any():
        gain = float(region[ring].mean()) / max(float(piece[ring].mean()), 1.0)
        piece = piece * float(np.clip(gain, 0.5, 2.0))
    alpha = cv2.GaussianBlur(grown.astype(np.float32), (0, 0), sigmaX=rim / 2)
    alpha = np.maximum(alpha, marked.astype(np.float32))[..., None]
    out = image.copy()
    blended = region * (1.0 - alpha) + piece * alpha
    out[ty : ty + ph, tx : tx + pw] = np.clip(blended, 0, 255).astype(np.uint8)
    mask = np.zeros((height, width), dtype=np.uint8)
    mask[ty : ty + ph, tx : tx + pw] = marked
    return out, mask
