"""Warnings that a model was fitted on too little data to be trusted, with the evidence.

Trainers put them in the metrics under ``data_warnings`` (a list of sentences); the CLI
prints them and the training screen shows them above the metrics.
"""

from __future__ import annotations

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
