"""Plain data exchanged between the Django side and the ML engine.

Nothing here imports Django or torch: the web process can import these types
without paying for the ML stack.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np

ModelKind = Literal["classifier", "anomaly", "segmenter"]
MODEL_KINDS: tuple[ModelKind, ...] = ("classifier", "anomaly", "segmenter")


@dataclass(frozen=True)
class Sample:
    """One training image.

    ``label`` is a class name; ``None`` or the good-class name means a good part.
    ``polygons`` are in pixel coordinates of the image (x, y) and are rasterised
    when ``mask_path`` is absent. A mask is any 8-bit image, non-zero = defect.
    ``region`` (x, y, width, height as fractions; ``workers.ml.regions``) is the part of the
    image the models learn from, the inspection region of the station that took it; the
    mask and polygons stay in the whole image's coordinates and are cut the same way.
    ``ignore_zones`` (same form, whole-image fractions) are blanked in the image and
    zeroed in the mask before the cut.
    """

    image_path: Path
    label: str | None
    mask_path: Path | None = None
    polygons: list[list[tuple[float, float]]] | None = None
    region: tuple[float, float, float, float] | None = None
    ignore_zones: tuple[tuple[float, float, float, float], ...] = ()


@dataclass(frozen=True)
class Prediction:
    """What a model says about one image.

    ``heatmap`` is float32 HxW in [0, 1] and ``mask`` uint8 HxW with values {0, 255},
    both at the resolution of the image given to ``predict``. Fields a kind does not
    produce are ``None`` (an anomaly model has no probabilities; a classifier has a heatmap
    only with the patch head, where it is the per-patch P(defect)).
    """

    label: str | None
    probabilities: dict[str, float] | None
    anomaly_score: float | None
    heatmap: np.ndarray | None
    mask: np.ndarray | None


@dataclass(frozen=True)
class Progress:
    """Reported once per epoch (anomaly: once per feature-extraction chunk)."""

    epoch: int
    epochs: int
    loss: float
    metric: float | None
    metric_name: str


@dataclass(frozen=True)
class TrainResult:
    """Outcome of a finished training run.

    ``artifacts`` maps every file name written to ``out_dir`` (manifest.json included)
    to its sha256 hex digest; the caller stores it and passes it back to ``load``.
    ``metrics`` is JSON: figures, per-class tables, ``example_errors`` and ``data_warnings``
    (lists), as each kind reports them.
    """

    kind: str
    metrics: dict[str, Any]
    hyperparameters: dict[str, object]
    artifacts: dict[str, str]
