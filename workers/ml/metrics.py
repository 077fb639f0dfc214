"""Evaluation and calibration helpers shared by training, tests and benchmarks."""

from __future__ import annotations

from collections.abc import Sequence
from itertools import pairwise
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from sklearn.metrics import confusion_matrix, f1_score, roc_auc_score


def binary_auroc(truth: np.ndarray, scores: np.ndarray) -> float:
    """Area under the ROC curve (1 = positive = defect); NaN when one class is absent."""
    truth = np.asarray(truth)
    if truth.min(initial=1) == truth.max(initial=0):
        return float("nan")
    return float(roc_auc_score(truth, np.asarray(scores)))


def threshold_for_false_reject(good_scores: np.ndarray, target: float) -> float:
    """Lowest score threshold (reject if score >= threshold) rejecting at most ``target``
    of ``good_scores``.

    With n good scores the achievable rates are multiples of 1/n; the threshold sits
    just above the k-th largest good score, k = floor(target * n). The step above is a
    float32 step, so the threshold compares the same against float32 model outputs and
    their float64 copies.
    """
    scores = np.sort(np.asarray(good_scores, dtype=np.float32))[::-1]
    if len(scores) == 0:
        return 0.5
    allowed = int(np.floor(target * len(scores)))
    anchor = scores[min(allowed, len(scores) - 1)]
    return float(np.nextafter(anchor, np.float32(np.inf)))


def recall_at_false_reject(good_scores: np.ndarray, defect_scores: np.ndarray, target: float) -> float:
    """Fraction of defects scoring at or above the ``target``-false-reject threshold of goods."""
    threshold = threshold_for_false_reject(good_scores, target)
    return float((np.asarray(defect_scores) >= threshold).mean())


def fit_temperature(logits: torch.Tensor, targets: torch.Tensor) -> float:
    """Temperature T > 0 minimising the NLL of softmax(logits / T) (Guo et al., 2017).

    Fitted in log space with LBFGS; clamped to [0.05, 20] so a degenerate validation
    split cannot produce an absurd scale.
    """
    log_t = torch.zeros(1, requires_grad=True)
    optimizer = torch.optim.LBFGS([log_t], lr=0.1, max_iter=100)
    logits = logits.detach().float()

    def closure() -> torch.Tensor:
        optimizer.zero_grad()
        loss = F.cross_entropy(logits / log_t.exp(), targets)
        loss.backward()  # type: ignore[no-untyped-call]  # torch stubs leave backward untyped
        return loss

    optimizer.step(closure)  # type: ignore[no-untyped-call]  # LBFGS.step is untyped in torch
    temperature = float(log_t.detach().exp())
    # A perfectly separated validation split drives T towards 0 and LBFGS can step to NaN:
    # then the logits keep their own scale.
    if not np.isfinite(temperature):
        return 1.0
    return float(np.clip(temperature, 0.05, 20.0))


def expected_calibration_error(probabilities: np.ndarray, targets: np.ndarray, bins: int = 10) -> float:
    """ECE of the arg-max confidence over equal-width bins."""
    confidence = probabilities.max(axis=1)
    correct = probabilities.argmax(axis=1) == targets
    edges = np.linspace(0.0, 1.0, bins + 1)
    error = 0.0
    for low, high in pairwise(edges):
        inside = (confidence > low) & (confidence <= high)
        if inside.any():
            error += inside.mean() * abs(confidence[inside].mean() - correct[inside].mean())
    return float(error)


def classification_report(
    probabilities: np.ndarray, targets: np.ndarray, class_names: Sequence[str], *, defect_threshold: float
) -> dict[str, Any]:
    """Accuracy, per-class F1, defect recall / false reject at ``defect_threshold``,
    defect AUROC and ECE. Class 0 is the good class; P(defect) = 1 - P(good)."""
    predicted = probabilities.argmax(axis=1)
    defect_probability = (1.0 - probabilities[:, 0]).astype(np.float64)
    rejected = defect_probability >= defect_threshold
    # Rejected parts take their most likely defect class; accepted parts are good.
    decided = np.where(rejected, 1 + probabilities[:, 1:].argmax(axis=1), 0)
    good = targets == 0
    labels = list(range(len(class_names)))
    per_class = f1_score(targets, decided, labels=labels, average=None, zero_division=0)
    confusion = confusion_matrix(targets, decided, labels=labels)
    return {
        "accuracy": float((decided == targets).mean()),
        "argmax_accuracy": float((predicted == targets).mean()),
        "defect_recall": float(rejected[~good].mean()) if (~good).any() else float("nan"),
        "false_reject": float(rejected[good].mean()) if good.any() else float("nan"),
        "defect_auroc": binary_auroc((~good).astype(int), defect_probability),
        "ece": expected_calibration_error(probabilities, targets),
        "f1": {name: float(score) for name, score in zip(class_names, per_class, strict=True)},
        # Rows: true class, columns: the decided class (after the defect threshold).
        "confusion": {"labels": list(class_names), "matrix": confusion.astype(int).tolist()},
    }


def mask_iou_dice(predicted: np.ndarray, truth: np.ndarray) -> tuple[float, float]:
    """Mean per-image IoU and Dice of boolean masks (N, H, W); an image where both are
    empty counts as 1."""
    predicted = predicted.reshape(len(predicted), -1).astype(bool)
    truth = truth.reshape(len(truth), -1).astype(bool)
    intersection = (predicted & truth).sum(axis=1)
    union = (predicted | truth).sum(axis=1)
    total = predicted.sum(axis=1) + truth.sum(axis=1)
    iou = np.where(union > 0, intersection / np.maximum(union, 1), 1.0)
    dice = np.where(total > 0, 2 * intersection / np.maximum(total, 1), 1.0)
    return float(iou.mean()), float(dice.mean())


def pixel_auroc(heatmaps: Sequence[np.ndarray], masks: Sequence[np.ndarray], max_pixels: int = 2_000_000) -> float:
    """Pixel-level AUROC over all images, each heatmap at its mask's resolution.

    Pixels are subsampled with a fixed stride to at most ``max_pixels`` to bound memory.
    """
    scores = np.concatenate([h.ravel() for h in heatmaps])
    truth = np.concatenate([(m > 0).ravel() for m in masks]).astype(np.int8)
    step = max(1, len(scores) // max_pixels)
    return binary_auroc(truth[::step], scores[::step])


def example_errors(
    probabilities: np.ndarray,
    targets: np.ndarray,
    class_names: Sequence[str],
    *,
    defect_threshold: float,
    limit: int = 12,
) -> list[dict[str, Any]]:
    """The validation images the classifier got wrong at ``defect_threshold``, most confidently
    wrong first: ``{"index", "truth", "predicted", "p_defect"}`` with ``index`` the row of
    ``probabilities`` (the caller maps it back to its image)."""
    defect_probability = 1.0 - probabilities[:, 0]
    decided = np.where(defect_probability >= defect_threshold, 1 + probabilities[:, 1:].argmax(axis=1), 0)
    wrong = np.flatnonzero(decided != targets)
    # Most confident mistakes first: escapes with the lowest P(defect), false rejects and
    # wrong classes with the highest.
    confidence = np.where(targets[wrong] == 0, defect_probability[wrong], 1.0 - defect_probability[wrong])
    confidence = np.where(
        (targets[wrong] != 0) & (decided[wrong] != 0), probabilities[wrong, decided[wrong]], confidence
    )
    order = wrong[np.argsort(-confidence, kind="stable")][:limit]
    return [
        {
            "index": int(i),
            "truth": class_names[int(targets[i])],
            "predicted": class_names[int(decided[i])],
            "p_defect": round(float(defect_probability[i]), 4),
        }
        for i in order
    ]
