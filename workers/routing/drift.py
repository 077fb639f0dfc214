"""Drift: whether what a station's camera and the models see now differs from what they saw
when the deployed models went live.

A model is validated (and its routing thresholds calibrated) on parts as they looked then. A
dimming lamp, a dirty lens, a new supplier's material or a moved fixture shifts what the
camera delivers, and the models' scores shift with it, slowly enough that no single part
looks out of place. Comparing the distribution of a few per-part signals (the image's
brightness, contrast and sharpness as the models saw it, the defect score, the anomaly ratio) between a
reference window (the first parts a deployed set scored at a station) and the latest parts
shows it, per station and per signal:

* the population stability index (PSI) over the reference's deciles, the usual measure in
  production model monitoring, less what two windows of these sizes show with no change at
  all (see ``psi``): under 0.1 stable, 0.1 to 0.25 a moderate shift ("watch"), 0.25 and over a
  major one ("drift");
* a two-sample Kolmogorov-Smirnov test (scipy), so that a PSI made large by a few hundred
  parts' sampling noise is not called drift: a level above "stable" also needs p < 0.01.

Framework-free; the Django side picks the windows and keeps the alerts.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from scipy.stats import ks_2samp

STABLE, WATCH, DRIFT = "stable", "watch", "drift"
LEVELS = (STABLE, WATCH, DRIFT)
PSI_WATCH = 0.1
PSI_DRIFT = 0.25
P_VALUE = 0.01
PSI_BINS = 10  # deciles of the reference
DRAWN_BINS = 20  # equal-width bins over both windows, for people
STATS_GRID = 96  # pixels each way that image_stats reads
SHARPNESS_PATCH = 48  # pixels each way of each patch the focus measure reads
SHARPNESS_PATCHES = 5
# An empty bin would make the PSI infinite: each share is at least this.
_FLOOR = 1e-4

# The per-part signals watched, with what people call them; each is a key of an inspection's
# scores (``image_stats`` adds the first two at inference).
SIGNALS: dict[str, str] = {
    "brightness": "image brightness",
    "contrast": "image contrast",
    "sharpness": "image sharpness",
    "defect_score": "defect score",
    "anomaly_ratio": "anomaly ratio",
}
# What the camera delivers, and what the models made of it. Only a drift of the second kind is
# known to matter for routing: on MTD, 20 % darker or 20 % less contrast images move the defect
# score by ~0.01 and escape not at all (both models standardise intensity), while the image
# signals call them drift; blur and sensor noise that do raise escape move the model signals
# (``benchmarks/drift_models_mtd.py``).
IMAGE_SIGNALS = ("brightness", "contrast", "sharpness")
MODEL_SIGNALS = ("defect_score", "anomaly_ratio")


def signal_source(signal: str) -> str:
    """ "models" for a signal the models output, "camera" for one of the image itself."""
    return "models" if signal in MODEL_SIGNALS else "camera"


def image_stats(pixels: np.ndarray) -> dict[str, float]:
    """What the camera delivers, in three numbers, for the drift check (this runs on every part,
    ~0.1 ms at any image size):

    * ``brightness`` and ``contrast``: mean and standard deviation of the grey level (0-255),
      read from a grid of about ``STATS_GRID`` x ``STATS_GRID`` pixels;
    * ``sharpness``: the variance of the Laplacian (the usual focus measure) at full resolution
      in ``SHARPNESS_PATCHES`` patches of ``SHARPNESS_PATCH`` pixels around the image's centre
      and quadrant centres: a lens out of focus lowers it, sensor noise raises it."""
    image = np.asarray(pixels)
    step = max(1, round(max(image.shape[0], image.shape[1]) / STATS_GRID))
    sample = np.ascontiguousarray(image[::step, ::step]).astype(np.float32)
    if sample.ndim == 3:  # the mean over channels as a matrix product: numpy's mean over a short axis is slow
        sample = sample.reshape(-1, sample.shape[2]) @ np.full(sample.shape[2], 1 / sample.shape[2], np.float32)
    return {
        "brightness": round(float(sample.mean()), 2),
        "contrast": round(float(sample.std()), 2),
        "sharpness": round(_sharpness(image), 2),
    }


def _sharpness(image: np.ndarray) -> float:
    import cv2

    height, width = image.shape[:2]
    half = SHARPNESS_PATCH // 2
    values = []
    for fy, fx in ((0.5, 0.5), (0.25, 0.25), (0.25, 0.75), (0.75, 0.25), (0.75, 0.75)):
        cy, cx = int(fy * height), int(fx * width)
        patch = image[max(0, cy - half) : cy + half, max(0, cx - half) : cx + half]
        if patch.ndim == 3:
            patch = cv2.cvtColor(np.ascontiguousarray(patch), cv2.COLOR_RGB2GRAY)
        if min(patch.shape[:2]) >= 3:
            values.append(float(cv2.Laplacian(np.ascontiguousarray(patch), cv2.CV_32F).var()))
    return float(np.mean(values)) if values else 0.0


@dataclass(frozen=True)
class SignalDrift:
    signal: str
    level: str  # STABLE, WATCH or DRIFT
    psi: float
    ks: float  # the KS statistic: the largest gap between the two cumulative distributions
    p_value: float
    reference_parts: int
    current_parts: int
    reference_mean: float
    current_mean: float
    edges: list[float] = field(default_factory=list)  # DRAWN_BINS + 1 edges
    reference: list[float] = field(default_factory=list)  # share of parts per drawn bin
    current: list[float] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {
            "signal": self.signal,
            "label": SIGNALS.get(self.signal, self.signal),
            "source": signal_source(self.signal),
            "level": self.level,
            "psi": round(self.psi, 4),
            "ks": round(self.ks, 4),
            "p_value": float(f"{self.p_value:.3g}"),
            "reference_parts": self.reference_parts,
            "current_parts": self.current_parts,
            "reference_mean": round(self.reference_mean, 4),
            "current_mean": round(self.current_mean, 4),
            "histogram": {"edges": self.edges, "reference": self.reference, "current": self.current},
        }


def psi(reference: np.ndarray, current: np.ndarray, bins: int = PSI_BINS, *, debiased: bool = False) -> float:
    """Population stability index of ``current`` against ``reference`` over the reference's
    quantile bins (fewer where many values tie): sum of (c - r) * ln(c / r) over the bins'
    shares. Bins are closed on the right, so values tied at an edge share its bin.

    Two finite samples of one distribution do not have a PSI of 0: about (B - 1) * (1/n_r +
    1/n_c) for B bins (the chi-square approximation of this divergence), 0.09 for two windows
    of 200 parts, 0.036 for 500. ``debiased`` subtracts it (floored at 0), so that one
    threshold means the same shift whatever the windows' sizes; without it small windows
    cross 0.25 on noise alone far more often (``benchmarks/drift_mtd.py``)."""
    inner = np.unique(np.quantile(reference, np.linspace(0, 1, bins + 1)[1:-1]))
    ref_share = np.bincount(np.searchsorted(inner, reference, side="left"), minlength=inner.size + 1)
    cur_share = np.bincount(np.searchsorted(inner, current, side="left"), minlength=inner.size + 1)
    r = np.maximum(ref_share / reference.size, _FLOOR)
    c = np.maximum(cur_share / current.size, _FLOOR)
    value = float(np.sum((c - r) * np.log(c / r)))
    if debiased:
        value = max(0.0, value - inner.size * (1 / reference.size + 1 / current.size))
    return value


def compare(signal: str, reference: Sequence[float] | np.ndarray, current: Sequence[float] | np.ndarray) -> SignalDrift:
    """How far ``current`` values of one signal drifted from ``reference`` (both non-empty)."""
    ref = np.asarray(reference, dtype=np.float64)
    cur = np.asarray(current, dtype=np.float64)
    if ref.size == 0 or cur.size == 0:
        raise ValueError("both windows need at least one part")
    index = psi(ref, cur, debiased=True)
    test = ks_2samp(ref, cur)
    ks, p_value = float(test.statistic), float(test.pvalue)
    level = STABLE
    if p_value < P_VALUE:
        level = DRIFT if index >= PSI_DRIFT else WATCH if index >= PSI_WATCH else STABLE
    low, high = float(min(ref.min(), cur.min())), float(max(ref.max(), cur.max()))
    if high <= low:
        high = low + 1e-6
    edges = np.linspace(low, high, DRAWN_BINS + 1)
    ref_hist = np.histogram(ref, bins=edges)[0] / ref.size
    cur_hist = np.histogram(cur, bins=edges)[0] / cur.size
    return SignalDrift(
        signal=signal,
        level=level,
        psi=index,
        ks=ks,
        p_value=p_value,
        reference_parts=int(ref.size),
        current_parts=int(cur.size),
        reference_mean=float(ref.mean()),
        current_mean=float(cur.mean()),
        edges=[round(float(e), 4) for e in edges],
        reference=[round(float(s), 4) for s in ref_hist],
        current=[round(float(s), 4) for s in cur_hist],
    )


def compare_windows(
    reference: Sequence[Mapping[str, Any]],
    current: Sequence[Mapping[str, Any]],
    signals: Sequence[str] = tuple(SIGNALS),
) -> list[SignalDrift]:
    """Each signal that both windows of per-part scores carry, compared."""
    out = []
    for signal in signals:
        ref = [float(s[signal]) for s in reference if _number(s.get(signal))]
        cur = [float(s[signal]) for s in current if _number(s.get(signal))]
        if ref and cur:
            out.append(compare(signal, ref, cur))
    return out


def worst(levels: Sequence[str]) -> str:
    return max(levels, key=LEVELS.index, default=STABLE)


def _number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and np.isfinite(value)
