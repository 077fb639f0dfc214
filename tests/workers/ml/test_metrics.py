"""Figures the trainers report: calibration and the classifier's report."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from workers.ml.metrics import classification_report, example_errors, fit_temperature


def test_temperature_is_finite_even_on_a_perfectly_separated_validation_split() -> None:
    # Three validation images, all right by a small margin: the NLL falls as T -> 0 and
    # an unguarded LBFGS steps to NaN, which poisoned every later metric.
    # (Logits of a real 4-epoch run on 64 px generated parts.)
    logits = torch.tensor([[0.9488, 0.6758], [1.2671, 1.0158], [0.6271, 1.7005]])
    targets = torch.tensor([0, 0, 1])

    temperature = fit_temperature(logits, targets)

    assert math.isfinite(temperature) and 0.05 <= temperature <= 20.0


def test_temperature_softens_an_overconfident_model() -> None:
    rng = np.random.default_rng(0)
    targets = torch.from_numpy(rng.integers(0, 2, 400))
    # Right only 70 % of the time but always with a 6-logit margin.
    right = torch.from_numpy(rng.random(400) < 0.7)
    predicted = torch.where(right, targets, 1 - targets)
    logits = torch.nn.functional.one_hot(predicted, 2).float() * 6.0

    assert fit_temperature(logits, targets) > 2.0


def test_the_classification_report_has_a_confusion_matrix_of_decided_classes() -> None:
    probabilities = np.array([[0.9, 0.05, 0.05], [0.2, 0.7, 0.1], [0.6, 0.1, 0.3], [0.1, 0.1, 0.8]])
    targets = np.array([0, 1, 2, 2])

    report = classification_report(probabilities, targets, ["good", "crack", "pit"], defect_threshold=0.5)

    # Part 3 (a pit) has P(defect) = 0.4 < 0.5: accepted as good, an escape in row "pit".
    assert report["confusion"] == {"labels": ["good", "crack", "pit"], "matrix": [[1, 0, 0], [0, 1, 0], [1, 0, 1]]}
    assert report["defect_recall"] == 2 / 3


def test_example_errors_are_the_most_confident_mistakes_first() -> None:
    probabilities = np.array(
        [
            [0.95, 0.03, 0.02],  # a crack passed with P(defect) 0.05: a confident escape
            [0.40, 0.50, 0.10],  # a good part failed as crack: a false reject
            [0.10, 0.85, 0.05],  # right
            [0.45, 0.20, 0.35],  # a crack called a pit
        ]
    )
    targets = np.array([1, 0, 1, 1])

    errors = example_errors(probabilities, targets, ["good", "crack", "pit"], defect_threshold=0.5)

    assert [(e["index"], e["truth"], e["predicted"]) for e in errors] == [
        (0, "crack", "good"),
        (1, "good", "crack"),
        (3, "crack", "pit"),
    ]
    assert errors[0]["p_defect"] == pytest.approx(0.05)
