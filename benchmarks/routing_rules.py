"""Routing scores compared over many calibration draws, offline, on the scores that
``routing_mtd.py --folds K --dump FILE.npz`` saved (every part scored out of fold):

    .venv/bin/python benchmarks/routing_rules.py FILE.npz [--draws 200]

One split says little at these sizes (a handful of defects decide the auto-pass threshold),
so the parts are halved at random ``--draws`` times (stratified by truth): one half
calibrates (Loupe's Clopper-Pearson thresholds, 90 % confidence), the other is routed with the
disagreement rule on. For each score rule and escape target: mean share of parts sent to
people, mean measured escape, and how often the measured escape exceeded the target (the
guarantee allows about 10 % of draws, more on a finite routed half). Prints one table and one
JSON line of the classifier's figures and the best rule at the 0.5 % target.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from workers.routing.calibration import calibrate

Rule = Callable[[np.ndarray, np.ndarray], np.ndarray]

RULES: dict[str, Rule] = {
    # What Loupe routes on: the classifier's P(defect).
    "classifier": lambda p, ratio: p,
    # The anomaly ratio as Loupe maps it when the anomaly detector is the only model.
    "anomaly ratio/2": lambda p, ratio: np.clip(ratio / 2, 0, 1),
    "max(p, ratio/2)": lambda p, ratio: np.maximum(p, np.clip(ratio / 2, 0, 1)),
    "mean(p, ratio/2)": lambda p, ratio: (p + np.clip(ratio / 2, 0, 1)) / 2,
    "mean(p, ratio/4)": lambda p, ratio: (p + np.clip(ratio / 4, 0, 1)) / 2,
}
TARGETS = (0.005, 0.01, 0.02, 0.05)


def halve(truth: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    first = np.zeros(truth.size, dtype=bool)
    for value in (False, True):
        members = np.flatnonzero(truth == value)
        rng.shuffle(members)
        first[members[: len(members) // 2]] = True
    return first


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("scores", type=Path)
    parser.add_argument("--draws", type=int, default=200)
    parser.add_argument("--confidence", type=float, default=0.9)
    parser.add_argument("--output", type=Path, default=Path(__file__).parent / "results" / "routing-rules-latest.txt")
    args = parser.parse_args()
    saved = np.load(args.scores)
    parts = {
        key: np.concatenate([saved[f"cal_{key}"], saved[f"eval_{key}"]])
        for key in ("p_defect", "anomaly_ratio", "disagree", "truth")
    }
    truth, disagree = parts["truth"].astype(bool), parts["disagree"].astype(bool)
    lines: list[str] = []

    def log(line: str = "") -> None:
        print(line, flush=True)
        lines.append(line)

    log(
        f"routing rules over {args.draws} random halvings of {truth.size} cross-fitted parts "
        f"({int(truth.sum())} defective), {args.confidence:.0%} confidence, disagreement rule on; "
        f"cells: mean review share / mean measured escape / share of draws over the target"
    )
    rng = np.random.default_rng(0)
    draws = [halve(truth, rng) for _ in range(args.draws)]
    results: dict[str, dict[float, tuple[float, float, float]]] = {}
    for name, rule in RULES.items():
        score = rule(parts["p_defect"], parts["anomaly_ratio"])
        results[name] = {}
        for target in TARGETS:
            shares, escapes = [], []
            for first in draws:
                chosen = calibrate(
                    score[first],
                    truth[first],
                    target_escape=target,
                    target_false_reject=0.01,
                    delta=1 - args.confidence,
                )
                routed, routed_truth, routed_disagree = score[~first], truth[~first], disagree[~first]
                auto_pass = (routed <= chosen.t_pass) & ~routed_disagree
                auto_fail = (routed >= chosen.t_fail) & ~routed_disagree
                shares.append(float(np.mean(~auto_pass & ~auto_fail)))
                escapes.append(float(np.mean(routed_truth & auto_pass)))
            over = float(np.mean(np.array(escapes) > target))
            results[name][target] = (float(np.mean(shares)), float(np.mean(escapes)), over)
    log(f"{'rule':>18} | " + " | ".join(f"{f'target {t:.1%}':>22}" for t in TARGETS))
    for name, row in results.items():
        log(f"{name:>18} | " + " | ".join(f"{s:.3f} / {e:.4f} / {o:.2f}".rjust(22) for s, e, o in row.values()))
    best = min(results, key=lambda name: results[name][0.005][0])
    log("")
    log(
        json.dumps(
            {
                "classifier_review_share_at_0.5pct": round(results["classifier"][0.005][0], 4),
                "classifier_escape_at_0.5pct": round(results["classifier"][0.005][1], 4),
                "best_rule_at_0.5pct": best,
                "best_review_share_at_0.5pct": round(results[best][0.005][0], 4),
                "best_escape_at_0.5pct": round(results[best][0.005][1], 4),
                "draws": args.draws,
            }
        )
    )
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text("\n".join(lines) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
