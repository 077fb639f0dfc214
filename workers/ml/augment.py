"""Training-time augmentation (albumentations) for surface-inspection images.

Geometric transforms are those a part can plausibly show on the line (any flip or
90° turn, small rotation/scale/shift); photometric ones model lighting drift, focus
and sensor noise. Elastic warping is rare and mild: strong warps turn straight
scratches into cracks and would teach the wrong class.
"""

from __future__ import annotations

import albumentations as A
import cv2


def build_augmentation(*, seed: int, strength: float = 1.0) -> A.Compose:
    """Augmentation pipeline for RGB uint8 images (and an optional ``mask``), size preserved.

    ``seed`` makes the sequence of random draws reproducible across runs.
    ``strength`` in [0, 1] scales the probabilities (0 = identity).
    """
    return A.Compose(
        [
            A.HorizontalFlip(p=0.5 * strength),
            A.VerticalFlip(p=0.5 * strength),
            A.RandomRotate90(p=0.5 * strength),
            A.Affine(
                rotate=(-15, 15),
                scale=(0.9, 1.1),
                translate_percent=(-0.05, 0.05),
                border_mode=cv2.BORDER_REFLECT_101,
                p=0.5 * strength,
            ),
            A.RandomBrightnessContrast(brightness_limit=0.2, contrast_limit=0.2, p=0.5 * strength),
            A.OneOf([A.GaussianBlur(blur_limit=(3, 5)), A.GaussNoise(std_range=(0.02, 0.06))], p=0.3 * strength),
            A.ElasticTransform(alpha=20, sigma=5, border_mode=cv2.BORDER_REFLECT_101, p=0.1 * strength),
        ],
        seed=seed,
    )


def build_photometric(*, seed: int, strength: float = 1.0) -> A.Compose:
    """The photometric part of ``build_augmentation`` alone (lighting, focus, sensor noise):
    for views whose geometry is set elsewhere. Same arguments."""
    return A.Compose(
        [
            A.RandomBrightnessContrast(brightness_limit=0.2, contrast_limit=0.2, p=0.5 * strength),
            A.OneOf([A.GaussianBlur(blur_limit=(3, 5)), A.GaussNoise(std_range=(0.02, 0.06))], p=0.3 * strength),
        ],
        seed=seed,
    )
