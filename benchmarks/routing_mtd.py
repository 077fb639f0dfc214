"""The manager's trade-off on real data: share of parts sent to people against escape rate,
for the models of the ML engine on the Magnetic Tile Defect dataset.

    .venv/bin/python benchmarks/routing_mtd.py --data ../shared/data/mtd

Stratified split of all images (seed 0): half trains the classifier and the anomaly detector
(its good images, and its defects' masks for the defect bank), a quarter calibrates the routing thresholds (as human-labelled parts
would), a quarter measures what routing then does. Routing is Loupe's: a part is passed when
its defect score is at or under the calibrated t_pass, failed at or over t_fail, and sent to a
person otherwise or when classifier and anomaly detector disagree. Prints one table, then one
JSON line: {"review_share_at_0.5pct_escape", "measured_escape", "calibration_parts", "eval_parts"}.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import tempfile
import time
from collections import defaultdict
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from workers.ml.imaging import read_image  # noqa: E402
from workers.ml.inference import load_inferencer  # noqa: E402
from workers.ml.training import train  # noqa: E402
from workers.ml.types import Sample  # noqa: E402
from workers.routing.calibration import calibrate  # noqa: E402

GOOD = "Free"


def collect(root: Path) -> list[Sample]:
    samples = []
    for folder in sorted(root.glob("MT_*")):
        label = folder.name.removeprefix("MT_")
        for image in sorted((folder / "Imgs").glob("*.jpg")):
            samples.append(Sample(image_path=image, label=None if label == GOOD else label))
    return samples


def split(samples: list[Sample], seed: int) -> tuple[list[Sample], list[Sample], list[Sample]]:
    by_class: dict[str | None, list[Sample]] = defaultdict(list)
    for sample in samples:
        by_class[sample.label].append(sample)
    rng = random.Random(seed)
    train_set, calibration, evaluation = [], [], []
    for members in by_class.values():
        rng.shuffle(members)
        half, three_quarters = len(members) // 2, (3 * len(members)) // 4
        train_set += members[:half]
        calibration += members[half:three_quarters]
        evaluation += members[three_quarters:]
    return train_set, calibration, evaluation


SCORE_RULES: dict[str, Callable[[np.ndarray, np.ndarray], np.ndarray]] = {
    # What Loupe routes on: the classifier's P(defect).
    "classifier": lambda p, ratio: p,
    # Candidates: the anomaly ratio mapped like Loupe maps it when it is the only model
    # (0.5 at its 1 %-false-reject threshold), combined with P(defect).
    # What Loupe routes on when the anomaly detector is the only model deployed.
    "anomaly ratio/2": lambda p, ratio: np.clip(ratio / 2, 0, 1),
    "max(p, ratio/2)": lambda p, ratio: np.maximum(p, np.clip(ratio / 2, 0, 1)),
    "max(p, ratio/4)": lambda p, ratio: np.maximum(p, np.clip(ratio / 4, 0, 1)),
    "mean(p, ratio/2)": lambda p, ratio: (p + np.clip(ratio / 2, 0, 1)) / 2,
}


def compare_score_rules(
    first: dict[str, np.ndarray], second: dict[str, np.ndarray], *, delta: float, log: Callable[[str], None]
) -> None:
    """Review share / measured escape for other defect scores, each half of the held-out
    parts calibrating in turn and the other half measured (disagreement rule on)."""
    log("")
    log("score rules compared (review share / measured escape; calibrate on one half, measure the other, both ways):")
    targets = (0.01, 0.02, 0.05)
    log(f"{'rule':>18} | " + " | ".join(f"{f'target {t:.0%}':>27}" for t in targets))
    for name, rule in SCORE_RULES.items():
        cells = []
        for target in targets:
            pairs = []
            for cal, ev in ((first, second), (second, first)):
                cal_scores, ev_scores = (rule(h["p_defect"], h["anomaly_ratio"]) for h in (cal, ev))
                chosen = calibrate(
                    cal_scores, cal["truth"], target_escape=target, target_false_reject=0.01, delta=delta
                )
                decided = ~ev["disagree"]
                auto_pass = (ev_scores <= chosen.t_pass) & decided
                auto_fail = (ev_scores >= chosen.t_fail) & decided
                pairs.append(f"{np.mean(~auto_pass & ~auto_fail):.3f}/{np.mean(ev['truth'] & auto_pass):.4f}")
            cells.append(f"{' '.join(pairs):>27}")
        log(f"{name:>18} | " + " | ".join(cells))


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--confidence", type=float, default=0.9)
    parser.add_argument("--dump", type=Path, help="save every part's model scores (npz) for offline study")
    parser.add_argument("--output", type=Path, default=REPO / "benchmarks" / "results" / "routing-mtd-latest.txt")
    parser.add_argument(
        "--classifier-hyperparameters",
        type=json.loads,
        default={},
        help='JSON overrides for the classifier, e.g. \'{"head": "global"}\'',
    )
    args = parser.parse_args(argv)
    lines: list[str] = []

    def log(line: str = "") -> None:
        print(line, flush=True)
        lines.append(line)

    train_set, calibration, evaluation = split(collect(args.data), args.seed)
    log(
        f"routing on MTD: train {len(train_set)}, calibrate {len(calibration)}, evaluate {len(evaluation)}; "
        f"classifier hyperparameters {args.classifier_hyperparameters or 'default'}; {time.strftime('%Y-%m-%d %H:%M')}"
    )
    out = Path(tempfile.mkdtemp(prefix="loupe-routing-"))
    started = time.time()
    classifier = train(
        kind="classifier",
        samples=train_set,
        good_class=GOOD,
        out_dir=out / "classifier",
        seed=args.seed,
        hyperparameters=args.classifier_hyperparameters,
    )
    # As Loupe trains it: the goods, and the defects with masks for its defect bank.
    anomaly = train(kind="anomaly", samples=train_set, good_class=GOOD, out_dir=out / "anomaly", seed=args.seed)
    log(f"trained both models in {(time.time() - started) / 60:.1f} min")
    models = {
        "classifier": (load_inferencer(out / "classifier", classifier.artifacts), classifier),
        "anomaly": (load_inferencer(out / "anomaly", anomaly.artifacts), anomaly),
    }

    def scores(samples: list[Sample]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        defect, disagree, truth = [], [], []
        raw: dict[str, list[float]] = {"p_defect": [], "anomaly_ratio": []}
        for sample in samples:
            pixels = read_image(sample.image_path)
            cls = models["classifier"][0].predict([pixels])[0]
            ano = models["anomaly"][0].predict([pixels])[0]
            p_defect = 1.0 - float((cls.probabilities or {}).get(GOOD, 0.0))
            cls_flag = cls.label not in (None, GOOD)  # the classifier's own calibrated threshold
            ano_flag = ano.label not in (None, GOOD)
            defect.append(p_defect)
            disagree.append(cls_flag != ano_flag)
            truth.append(sample.label is not None)
            raw["p_defect"].append(p_defect)
            raw["anomaly_ratio"].append(float(ano.anomaly_score or 0.0) / anomaly_threshold)
        dumped.append(
            {k: np.array(v) for k, v in raw.items()} | {"truth": np.array(truth), "disagree": np.array(disagree)}
        )
        return np.array(defect), np.array(disagree), np.array(truth)

    anomaly_threshold = float(json.loads((out / "anomaly" / "manifest.json").read_text())["thresholds"]["image_score"])
    dumped: list[dict[str, np.ndarray]] = []

    cal_scores, _, cal_truth = scores(calibration)  # thresholds see every human-decided part
    eval_scores, eval_disagree, eval_truth = scores(evaluation)
    if args.dump:
        arrays = {f"cal_{k}": v for k, v in dumped[0].items()} | {f"eval_{k}": v for k, v in dumped[1].items()}
        np.savez(args.dump, **arrays)  # type: ignore[arg-type]  # numpy's stub types **kwds as bool
    log("")
    log(
        f"{'target escape':>14} | {'t_pass':>7} | {'t_fail':>7} | {'review share':>12} | {'measured escape':>15} | {'false reject':>12}"
    )
    headline: dict[str, float | int | None] = {}
    for target in (0.001, 0.005, 0.01, 0.02, 0.05):
        chosen = calibrate(
            cal_scores, cal_truth, target_escape=target, target_false_reject=0.01, delta=1 - args.confidence
        )
        auto_pass = (eval_scores <= chosen.t_pass) & ~eval_disagree
        auto_fail = (eval_scores >= chosen.t_fail) & ~eval_disagree
        review = ~auto_pass & ~auto_fail
        escape = float(np.mean(eval_truth & auto_pass))
        false_reject = float(np.mean(~eval_truth & auto_fail))
        log(
            f"{target:>14.3f} | {chosen.t_pass:>7.4f} | {chosen.t_fail:>7.4f} | {review.mean():>12.3f} | {escape:>15.4f} | {false_reject:>12.4f}"
        )
        if target == 0.005:
            headline = {
                "review_share_at_0.5pct_escape": round(float(review.mean()), 4),
                "measured_escape": round(escape, 4),
            }
    headline.update({"calibration_parts": len(calibration), "eval_parts": len(evaluation)})
    compare_score_rules(dumped[0], dumped[1], delta=1 - args.confidence, log=log)
    log("")
    log(json.dumps(headline))
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text("\n".join(lines) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
