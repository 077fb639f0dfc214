"""The one defect score routing thresholds: 0 = surely good, 1 = surely defective.

From the classifier's P(defect) and the anomaly detector's score over its 1 %-false-reject
threshold (``ratio``, mapped to ``ratio / 2`` so that the threshold sits at 0.5 and twice it at
1): their mean when both models ran, whichever ran otherwise.

Why the mean: escape-bounded routing is decided by the defects a model scores as low as the
goods, and the two models' stragglers are not the same parts. On MTD, cross-fitted scores of
the patch-head classifier and the anomaly detector with its defect bank, averaged over 200
random calibration halvings (``benchmarks/routing_rules.py``, two cross-fitted runs), the mean
sent 46 / 12 / 7.1 / 6.3 % and 37 / 11 / 4.2 / 3.5 % of parts to people at the 0.5 / 1 / 2 / 5 %
escape targets, the classifier alone 59 / 25 / 8.7 / 6.9 % and 42 / 29 / 8.4 / 4.5 %, at measured
escapes under the targets.
"""

from __future__ import annotations


def anomaly_defect_score(ratio: float) -> float:
    """The anomaly ratio on the defect-score scale: 0.5 at the detector's threshold."""
    return min(1.0, max(0.0, ratio / 2.0))


def defect_score(defect_probability: float | None, anomaly_ratio: float | None) -> float | None:
    """Routing's defect score from what the deployed models produced (None: neither ran)."""
    parts = []
    if defect_probability is not None:
        parts.append(min(1.0, max(0.0, float(defect_probability))))
    if anomaly_ratio is not None:
        parts.append(anomaly_defect_score(float(anomaly_ratio)))
    return sum(parts) / len(parts) if parts else None
