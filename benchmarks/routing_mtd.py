"""The manager's trade-off on real data: share of parts sent to people against escape rate,
for the models of the ML engine on the Magnetic Tile Defect dataset.

    .venv/bin/python benchmarks/routing_mtd.py --data ../shared/data/mtd

Stratified split of all images (seed 0): half trains the classifier and the anomaly detector
(the classifier on every image, masks included; the anomaly detector on the goods, with the
defects' masks filling its defect bank), a quarter calibrates the routing thresholds (as
human-labelled parts would), a quarter measures what routing then does.

With ``--folds K`` the parts are cross-fitted instead: K pairs of models, each trained on
all folds but one and scoring that one, so every part gets scores from models that never
saw it; the scored parts are halved (stratified), one half calibrates, the other is
measured. More calibration parts (~530 against 263) is what a 0.5 % escape target needs:
with none escaping, a 90 %-confidence bound reaches 0.5 % only from 460 parts. The price:
the scores come from K models, each trained on (K-1)/K of the data, not from one.

Routing is Loupe's: a part is passed when its defect score (the mean of the classifier's
P(defect) and the anomaly ratio / 2, ``workers/routing/scores.py``) is at or under the
calibrated t_pass, failed at or over t_fail, and sent to a person otherwise or when
classifier and anomaly detector disagree. Prints one table, then one
JSON line: {"review_share_at_0.5pct_escape", "measured_escape", "calibration_parts", "eval_parts", "folds"}.
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
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "benchmarks"))

from workers.ml.imaging import read_image  # noqa: E402
from workers.ml.inference import load_inferencer  # noqa: E402
from workers.ml.training import train  # noqa: E402
from workers.ml.types import Sample  # noqa: E402
from workers.routing.calibration import calibrate  # noqa: E402
from workers.routing.scores import defect_score  # noqa: E402

GOOD = "Free"


def collect(root: Path) -> list[Sample]:
    """Every image, with its defect mask as annotators would have drawn it (mtd.py's loader):
    the classifier's patch head learns where defects are from masks, and the anomaly
    detector's defect bank is filled from them."""
    from mtd import collect as collect_with_masks

    return collect_with_masks(root)


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


def split_folds(samples: list[Sample], folds: int, seed: int) -> list[list[Sample]]:
    """``folds`` stratified folds (by class), seeded."""
    by_class: dict[str | None, list[Sample]] = defaultdict(list)
    for sample in samples:
        by_class[sample.label].append(sample)
    rng = random.Random(seed)
    out: list[list[Sample]] = [[] for _ in range(folds)]
    for members in by_class.values():
        rng.shuffle(members)
        for index, sample in enumerate(members):
            out[index % folds].append(sample)
    return out


def halves(truth: np.ndarray, seed: int) -> np.ndarray:
    """A seeded half of the parts, stratified by truth (boolean mask)."""
    rng = np.random.default_rng(seed)
    first = np.zeros(truth.size, dtype=bool)
    for value in (False, True):
        members = np.flatnonzero(truth == value)
        rng.shuffle(members)
        first[members[: len(members) // 2]] = True
    return first


Models = dict[str, Any]


def train_models(train_set: list[Sample], out: Path, seed: int, classifier_hyperparameters: dict[str, Any]) -> Models:
    """The classifier and the anomaly detector as Loupe trains them (the anomaly detector on
    the goods, with the defects' masks filling its defect bank), loaded for serving."""
    classifier = train(
        kind="classifier",
        samples=train_set,
        good_class=GOOD,
        out_dir=out / "classifier",
        seed=seed,
        hyperparameters=classifier_hyperparameters,
    )
    anomaly = train(kind="anomaly", samples=train_set, good_class=GOOD, out_dir=out / "anomaly", seed=seed)
    threshold = float(json.loads((out / "anomaly" / "manifest.json").read_text())["thresholds"]["image_score"])
    return {
        "classifier": load_inferencer(out / "classifier", classifier.artifacts),
        "anomaly": load_inferencer(out / "anomaly", anomaly.artifacts),
        "anomaly_threshold": threshold,
    }


def score_parts(models: Models, samples: list[Sample]) -> dict[str, np.ndarray]:
    """Per part: P(defect), anomaly score over its threshold, whether the two models' own
    decisions disagree, and the truth."""
    raw: dict[str, list[Any]] = {"p_defect": [], "anomaly_ratio": [], "disagree": [], "truth": []}
    for sample in samples:
        pixels = read_image(sample.image_path)
        cls = models["classifier"].predict([pixels])[0]
        ano = models["anomaly"].predict([pixels])[0]
        cls_flag = cls.label not in (None, GOOD)  # the classifier's own calibrated threshold
        ano_flag = ano.label not in (None, GOOD)
        raw["p_defect"].append(1.0 - float((cls.probabilities or {}).get(GOOD, 0.0)))
        raw["anomaly_ratio"].append(float(ano.anomaly_score or 0.0) / models["anomaly_threshold"])
        raw["disagree"].append(cls_flag != ano_flag)
        raw["truth"].append(sample.label is not None)
    return {key: np.array(value) for key, value in raw.items()}


def loupe_scores(parts: dict[str, np.ndarray]) -> np.ndarray:
    return np.array(
        [defect_score(p, ratio) for p, ratio in zip(parts["p_defect"], parts["anomaly_ratio"], strict=True)]
    )


SCORE_RULES: dict[str, Callable[[np.ndarray, np.ndarray], np.ndarray]] = {
    # The classifier's P(defect) alone (what Loupe routed on until the mean was measured).
    "classifier": lambda p, ratio: p,
    # Candidates: the anomaly ratio mapped like Loupe maps it when it is the only model
    # (0.5 at its 1 %-false-reject threshold), combined with P(defect).
    # What Loupe routes on when the anomaly detector is the only model deployed.
    "anomaly ratio/2": lambda p, ratio: np.clip(ratio / 2, 0, 1),
    "max(p, ratio/2)": lambda p, ratio: np.maximum(p, np.clip(ratio / 2, 0, 1)),
    "max(p, ratio/4)": lambda p, ratio: np.maximum(p, np.clip(ratio / 4, 0, 1)),
    "mean(p, ratio/2)": lambda p, ratio: (p + np.clip(ratio / 2, 0, 1)) / 2,  # Loupe's score
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
    parser.add_argument(
        "--folds",
        type=int,
        default=0,
        help="cross-fit K models so that every part is scored out of fold (0: one train/calibrate/evaluate split)",
    )
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

    samples = collect(args.data)
    out = Path(tempfile.mkdtemp(prefix="loupe-routing-"))
    started = time.time()
    if args.folds:
        # Cross-fitted: every part scored by models that never saw it (trained on the other
        # folds); the scored parts are then halved, one half calibrating, the other measured.
        folds = split_folds(samples, args.folds, args.seed)
        scored = []
        for index, fold in enumerate(folds):
            rest = [s for other, members in enumerate(folds) if other != index for s in members]
            models = train_models(rest, out / f"fold{index}", args.seed, args.classifier_hyperparameters)
            scored.append((fold, score_parts(models, fold)))
            log(f"fold {index + 1}/{args.folds}: trained on {len(rest)}, scored {len(fold)}")
        pooled = {key: np.concatenate([part[key] for _, part in scored]) for key in scored[0][1]}
        first_half = halves(pooled["truth"], args.seed)
        cal = {key: value[first_half] for key, value in pooled.items()}
        ev = {key: value[~first_half] for key, value in pooled.items()}
        log(
            f"routing on MTD, {args.folds}-fold cross-fitted: models trained on {len(samples) - len(folds[0])} parts "
            f"each; calibrate {int(first_half.sum())}, evaluate {int((~first_half).sum())}; classifier "
            f"hyperparameters {args.classifier_hyperparameters or 'default'}; {time.strftime('%Y-%m-%d %H:%M')}"
        )
    else:
        train_set, calibration, evaluation = split(samples, args.seed)
        log(
            f"routing on MTD: train {len(train_set)}, calibrate {len(calibration)}, evaluate {len(evaluation)}; "
            f"classifier hyperparameters {args.classifier_hyperparameters or 'default'}; "
            f"{time.strftime('%Y-%m-%d %H:%M')}"
        )
        models = train_models(train_set, out, args.seed, args.classifier_hyperparameters)
        cal = score_parts(models, calibration)  # thresholds see every human-decided part
        ev = score_parts(models, evaluation)
    log(f"trained and scored in {(time.time() - started) / 60:.1f} min")
    dumped = [cal, ev]
    # Loupe's routing score: the mean of the two models' (workers/routing/scores.py).
    cal_scores, cal_truth = loupe_scores(cal), cal["truth"]
    eval_scores, eval_disagree, eval_truth = loupe_scores(ev), ev["disagree"], ev["truth"]
    if args.dump:
        arrays = {f"cal_{k}": v for k, v in dumped[0].items()} | {f"eval_{k}": v for k, v in dumped[1].items()}
        np.savez(args.dump, **arrays)
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
    headline.update({"calibration_parts": len(cal_truth), "eval_parts": len(eval_truth), "folds": args.folds})
    compare_score_rules(dumped[0], dumped[1], delta=1 - args.confidence, log=log)
    log("")
    log(json.dumps(headline))
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text("\n".join(lines) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
