"""Warnings that a model was fitted on too little data to be trusted, with the evidence.

Trainers put them in the metrics under ``data_warnings`` (a list of sentences); the CLI
prints them and the training screen shows them above the metrics.
"""

from __future__ import annotations

from collections.abc import Mapping

# Goods a goods-only detector should be fitted on. On MTD (DifferNet split, two seeds,
# benchmarks/anomaly_flow_study.py goods) the flow ranked defects at image AUROC 0.81 / 0.86
# from 25 goods, 0.86 / 0.91 from 100, 0.976 / 0.955 from 400 and 0.985 from 761.
FEW_GOODS_FOR_ANOMALY = 300


def anomaly_data_warnings(*, fit_goods: int) -> list[str]:
    """What a user should know about an anomaly model fitted on ``fit_goods`` good parts."""
    if fit_goods >= FEW_GOODS_FOR_ANOMALY:
        return []
    return [
        f"Fitted on only {fit_goods} good parts. A goods-only detector needs a few hundred: on the "
        "Magnetic Tile Defect data it ranked defects at image AUROC 0.81-0.86 from 25 goods, "
        "0.86-0.91 from 100 and 0.96-0.98 from 400. Add good parts and train again."
    ]


# Labelled defects of one class the classifier should be fitted on. On MTD (the patch head,
# mtd.py's split, two seeds, benchmarks/patch_head_defect_count.py) it found 43 % of the test
# defects at 1 % false reject when fitted on 3 defects per class, 64 % with 10, 79 % with 25
# and 91 % with all of them (7-38 per class); blowholes, small and varied, went from 0.30
# (3) to 0.63 (25) and 0.95 (38).
FEW_DEFECTS_PER_CLASS = 30


def classifier_data_warnings(*, fitted_per_class: Mapping[str, int]) -> list[str]:
    """What a user should know about a classifier fitted on ``fitted_per_class`` labelled
    defects of each class (the part it learned from, not its validation split)."""
    few = {name: count for name, count in sorted(fitted_per_class.items()) if count < FEW_DEFECTS_PER_CLASS}
    if not few:
        return []
    listed = ", ".join(f"{name} ({count})" for name, count in few.items())
    return [
        f"Fitted on few labelled examples of {listed}. On the Magnetic Tile Defect data the classifier "
        "found 43 % of defects at 1 % false reject from 3 labelled per class, 64 % from 10, 79 % from 25 "
        f"and 91 % from all (up to 38); aim for at least {FEW_DEFECTS_PER_CLASS} of each class. Label more "
        "(reviewers' decisions count) and train again."
    ]
