"""Image I/O and pre-processing shared by training and every inference backend.

Convention: images travel as uint8 RGB HxWx3 arrays; a network input batch is
float32 NCHW with pixel values in [0, 255] (ImageNet normalisation happens inside
the network, so the ONNX graph and the PyTorch module take identical input).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import cv2
import numpy as np

from workers.ml.polygons import rasterize_polygons


def as_rgb(image: np.ndarray) -> np.ndarray:
    """Return ``image`` (HxW, HxWx1, HxWx3 or HxWx4 uint8) as contiguous HxWx3 uint8 RGB."""
    if image.dtype != np.uint8:
        raise ValueError(f"expected a uint8 image, got {image.dtype}")
    if image.ndim == 2:
        return np.ascontiguousarray(np.repeat(image[:, :, None], 3, axis=2))
    if image.ndim == 3 and image.shape[2] == 1:
        return np.ascontiguousarray(np.repeat(image, 3, axis=2))
    if image.ndim == 3 and image.shape[2] == 3:
        return np.ascontiguousarray(image)
    if image.ndim == 3 and image.shape[2] == 4:
        return np.ascontiguousarray(image[:, :, :3])
    raise ValueError(f"expected HxW or HxWx3 image, got shape {image.shape}")


def read_image(path: Path) -> np.ndarray:
    """Read an image file as uint8 RGB HxWx3 (grayscale files are replicated to 3 channels)."""
    bgr = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if bgr is None:
        raise FileNotFoundError(f"cannot read image {path}")
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


def read_mask(
    mask_path: Path | None,
    polygons: Sequence[Sequence[tuple[float, float]]] | None,
    shape: tuple[int, int],
) -> np.ndarray:
    """Defect mask as uint8 HxW {0, 1} for an image of ``shape`` (H, W).

    A mask file wins over polygons; neither means "no defect pixels" (a good part).
    A mask file of another size is resized with nearest neighbour.
    """
    if mask_path is not None:
        raw = cv2.imread(str(mask_path), cv2.IMREAD_GRAYSCALE)
        if raw is None:
            raise FileNotFoundError(f"cannot read mask {mask_path}")
        if raw.shape != shape:
            raw = cv2.resize(raw, (shape[1], shape[0]), interpolation=cv2.INTER_NEAREST)
        return (raw > 127).astype(np.uint8)
    if polygons:
        return (rasterize_polygons(polygons, shape) > 0).astype(np.uint8)
    return np.zeros(shape, dtype=np.uint8)


def resize(image: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Resize an HxW[xC] array to ``size`` = (H, W); area filter when shrinking, linear when growing."""
    height, width = size
    shrinking = image.shape[0] > height or image.shape[1] > width
    interpolation = cv2.INTER_AREA if shrinking else cv2.INTER_LINEAR
    return cv2.resize(image, (width, height), interpolation=interpolation)


def to_batch(images: Sequence[np.ndarray], size: tuple[int, int]) -> np.ndarray:
    """Stack RGB uint8 images into a float32 NCHW batch of ``size`` (H, W), values 0..255."""
    batch = np.empty((len(images), 3, size[0], size[1]), dtype=np.float32)
    for index, image in enumerate(images):
        batch[index] = resize(as_rgb(image), size).transpose(2, 0, 1)
    return batch
