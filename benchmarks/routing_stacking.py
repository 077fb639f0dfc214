"""Stacked routing score against the single-model scores, offline, on the scores
``routing_mtd.py --dump FILE.npz`` saved:

    .venv/bin/python benchmarks/routing_stacking.py FILE.npz

The stacked score is a logistic regression on logit P(defect) and log anomaly ratio. It is
cross-fitted: the calibration half's scores come from 5-fold models that never saw the part, the
measured half's from a model fitted on the whole calibration half. Each held-out quarter
calibrates in turn and the other is measured (review share / measured escape), with and without
the disagreement rule.
"""

import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import StratifiedKFold

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from workers.routing.calibration import calibrate

d = np.load(sys.argv[1])
halves = [{k[len(prefix) :]: d[k] for k in d.files if k.startswith(prefix)} for prefix in ("cal_", "eval_")]


Half = dict[str, np.ndarray]


def features(h: Half) -> np.ndarray:
    p = np.clip(h["p_defect"], 1e-6, 1 - 1e-6)
    r = np.clip(h["anomaly_ratio"], 1e-6, None)
    return np.column_stack([np.log(p / (1 - p)), np.log(r)])


def stacked(cal: Half, ev: Half) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    x, y = features(cal), cal["truth"].astype(int)
    cal_scores = np.zeros(len(y))
    for train_idx, test_idx in StratifiedKFold(5, shuffle=True, random_state=0).split(x, y):
        model = LogisticRegression(C=1.0).fit(x[train_idx], y[train_idx])
        cal_scores[test_idx] = model.predict_proba(x[test_idx])[:, 1]
    model = LogisticRegression(C=1.0).fit(x, y)
    return cal_scores, model.predict_proba(features(ev))[:, 1], model.coef_[0]


rules: dict[str, Callable[[Half, Half], tuple[np.ndarray, np.ndarray, Any]]] = {
    "classifier": lambda cal, ev: (cal["p_defect"], ev["p_defect"], None),
    "anomaly ratio/2": lambda cal, ev: (
        np.clip(cal["anomaly_ratio"] / 2, 0, 1),
        np.clip(ev["anomaly_ratio"] / 2, 0, 1),
        None,
    ),
    "stacked (cross-fitted)": stacked,
}
for disagreement in (True, False):
    print(f"\nreview share / measured escape, disagreement rule {'on' if disagreement else 'off'}")
    for name, rule in rules.items():
        cells = []
        for target in (0.005, 0.01, 0.02, 0.05):
            pairs = []
            for cal, ev in ((halves[0], halves[1]), (halves[1], halves[0])):
                cal_scores, ev_scores, coef = rule(cal, ev)
                chosen = calibrate(cal_scores, cal["truth"], target_escape=target, target_false_reject=0.01, delta=0.1)
                decided = ~ev["disagree"] if disagreement else np.ones(len(ev_scores), bool)
                auto_pass = (ev_scores <= chosen.t_pass) & decided
                auto_fail = (ev_scores >= chosen.t_fail) & decided
                pairs.append(f"{np.mean(~auto_pass & ~auto_fail):.3f}/{np.mean(ev['truth'] & auto_pass):.4f}")
            cells.append(" ".join(pairs))
        print(
            f"{name:>24} | "
            + " | ".join(f"{t:.1%}: {c}" for t, c in zip((0.005, 0.01, 0.02, 0.05), cells, strict=True))
        )
