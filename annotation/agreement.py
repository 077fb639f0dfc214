"""Inter-annotator agreement: chance-corrected agreement on the image-level class, and the
overlap of drawn shapes. Pure functions over plain data."""

from __future__ import annotations

from collections import Counter
from collections.abc import Hashable, Sequence
from itertools import combinations

import numpy as np


def cohen_kappa(pairs: Sequence[tuple[Hashable, Hashable]]) -> float | None:
    """Cohen's kappa of two raters over items ``[(rating_a, rating_b), ...]``.
    None when undefined (no items, or chance agreement is 1: one category only)."""
    if not pairs:
        return None
    n = len(pairs)
    observed = sum(1 for a, b in pairs if a == b) / n
    first, second = Counter(a for a, _ in pairs), Counter(b for _, b in pairs)
    expected = sum(first[c] * second[c] for c in set(first) | set(second)) / (n * n)
    if expected >= 1.0:
        return None
    return (observed - expected) / (1.0 - expected)


def fleiss_kappa(items: Sequence[Sequence[Hashable]]) -> float | None:
    """Fleiss' kappa over items rated by two or more raters each (the count may vary per item:
    P_i = sum_j n_ij (n_ij - 1) / (n_i (n_i - 1)), p_j over all ratings). None when undefined."""
    rated = [list(ratings) for ratings in items if len(ratings) >= 2]
    if not rated:
        return None
    totals: Counter[Hashable] = Counter()
    agreement = []
    for ratings in rated:
        counts = Counter(ratings)
        totals.update(counts)
        n = len(ratings)
        agreement.append(sum(c * (c - 1) for c in counts.values()) / (n * (n - 1)))
    all_ratings = sum(totals.values())
    expected = sum((count / all_ratings) ** 2 for count in totals.values())
    if expected >= 1.0:
        return None
    return (float(np.mean(agreement)) - expected) / (1.0 - expected)


def mask_iou(a: np.ndarray, b: np.ndarray) -> float | None:
    """Intersection over union of two same-size masks; None when both are empty."""
    first, second = a > 0, b > 0
    union = int(np.logical_or(first, second).sum())
    if union == 0:
        return None
    return int(np.logical_and(first, second).sum()) / union


def mean_pairwise_iou(masks: Sequence[np.ndarray]) -> float | None:
    values = [iou for a, b in combinations(masks, 2) if (iou := mask_iou(a, b)) is not None]
    return float(np.mean(values)) if values else None
