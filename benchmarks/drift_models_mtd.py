"""What a changed camera does to the *models* and to routing, on MTD, next to what the drift
check says about it:

    .venv/bin/python benchmarks/drift_models_mtd.py --data ../shared/data/mtd

``drift_mtd.py`` measures how soon the drift check sees a change in the images; this one asks
whether that change matters. The classifier and the anomaly detector (with its defect bank)
are trained as Loupe trains them on half of MTD (stratified, ``routing_mtd.split``); the other
half is scored as it is and as each changed camera of ``drift_mtd.SCENARIOS`` would deliver
it. One quarter calibrates the routing thresholds on *unchanged* parts (as the deployed model
was calibrated before the lamp failed), the other quarter is measured *changed*, then the two
quarters swap roles; the table shows the mean of the two.

Per scenario:

* how far the defect score moved, part by part (the same part unchanged and changed): the
  mean |change| for goods and for defects, and the goods' mean signed change;
* the routing score's AUROC on the changed parts (does it still separate good from defect);
* at the thresholds calibrated for 2 % and 5 % escape on unchanged parts: share of parts sent
  to people, measured escape (defective AND auto-passed, over all parts) and false rejects;
* at thresholds calibrated *on the changed parts* of the other quarter (what Loupe's drift-time
  calibration does for a held station once people have decided its parts): the same three;
* the drift check's verdict (``workers.routing.drift.compare``, unchanged calibration quarter
  as reference, changed measured quarter as current, ~265 parts each): the worst level over
  the image signals (brightness, contrast, sharpness) and over the model signals (defect
  score, anomaly ratio).

The question it answers: which changes the drift alert should send to people
(``drift_review``), and which it may only report. Ends with one JSON line of the headline
figures. ~5 minutes on 2 cores (training ~3, scoring ~10 x 530 parts).
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "benchmarks"))

from drift_mtd import SCENARIOS, Change  # noqa: E402
from routing_mtd import GOOD, collect, halves, split, train_models  # noqa: E402

from workers.ml.imaging import read_image  # noqa: E402
from workers.ml.metrics import binary_auroc  # noqa: E402
from workers.ml.types import Sample  # noqa: E402
from workers.routing.calibration import calibrate  # noqa: E402
from workers.routing.drift import STABLE, compare, image_stats, worst  # noqa: E402
from workers.routing.scores import defect_score  # noqa: E402

IMAGE_SIGNALS = ("brightness", "contrast", "sharpness")
MODEL_SIGNALS = ("defect_score", "anomaly_ratio")
TARGETS = (0.02, 0.05)


def score(models: dict[str, Any], images: list[np.ndarray]) -> dict[str, np.ndarray]:
    """Per part: P(defect), anomaly ratio, Loupe's defect score, disagreement, image stats."""
    rows: dict[str, list[float]] = {key: [] for key in ("p_defect", "anomaly_ratio", "disagree", *IMAGE_SIGNALS)}
    for pixels in images:
        cls = models["classifier"].predict([pixels])[0]
        ano = models["anomaly"].predict([pixels])[0]
        rows["p_defect"].append(1.0 - float((cls.probabilities or {}).get(GOOD, 0.0)))
        rows["anomaly_ratio"].append(float(ano.anomaly_score or 0.0) / models["anomaly_threshold"])
        rows["disagree"].append(float((cls.label not in (None, GOOD)) != (ano.label not in (None, GOOD))))
        stats = image_stats(pixels)
        for key in IMAGE_SIGNALS:
            rows[key].append(stats[key])
    out = {key: np.asarray(value, dtype=np.float64) for key, value in rows.items()}
    out["defect_score"] = np.array(
        [defect_score(p, r) for p, r in zip(out["p_defect"], out["anomaly_ratio"], strict=True)], dtype=np.float64
    )
    out["disagree"] = out["disagree"].astype(bool)
    return out


def routed(
    scores: np.ndarray, disagree: np.ndarray, truth: np.ndarray, t_pass: float, t_fail: float
) -> dict[str, float]:
    auto_pass = (scores <= t_pass) & ~disagree
    auto_fail = (scores >= t_fail) & ~disagree
    return {
        "review": float(np.mean(~auto_pass & ~auto_fail)),
        "escape": float(np.mean(truth & auto_pass)),
        "false_reject": float(np.mean(~truth & auto_fail)),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--confidence", type=float, default=0.9)
    parser.add_argument("--output", type=Path, default=REPO / "benchmarks" / "results" / "drift-models-mtd-latest.txt")
    args = parser.parse_args(argv)
    lines: list[str] = []

    def log(line: str = "") -> None:
        print(line, flush=True)
        lines.append(line)

    samples = collect(args.data)
    train_set, calibration, evaluation = split(samples, args.seed)
    held_out: list[Sample] = calibration + evaluation
    truth = np.array([s.label is not None for s in held_out])
    first = halves(truth, args.seed)  # one quarter of MTD each, stratified
    started = time.time()
    out = Path(tempfile.mkdtemp(prefix="loupe-drift-models-"))
    models = train_models(train_set, out, args.seed, {})
    trained_min = (time.time() - started) / 60
    originals = [read_image(s.image_path) for s in held_out]
    rng = np.random.default_rng(args.seed)
    scored: dict[str, dict[str, np.ndarray]] = {}
    for name, change in SCENARIOS.items():
        images = originals if change is None else [apply(change, img, rng) for img in originals]
        scored[name] = score(models, images)
        print(f"  scored {name}", flush=True)
    log(
        f"Models under a changed camera on MTD: trained on {len(train_set)} parts in {trained_min:.1f} min; "
        f"{len(held_out)} held-out parts ({int(truth.sum())} defective), each quarter calibrating unchanged and the "
        f"other measured changed, both ways; seed {args.seed}, {time.strftime('%Y-%m-%d %H:%M')}"
    )
    log("")
    header = (
        f"{'scenario':<36} | {'|d score| good/def':>18} | {'good d':>7} | {'AUROC':>6} | "
        + " | ".join(f"{f'@{t:.0%}: review/escape/FR':>25}" for t in TARGETS)
        + " | "
        + " | ".join(f"{f'recal. @{t:.0%}':>25}" for t in TARGETS)
        + f" | {'drift: image / model signals':>30}"
    )
    log(header)
    log("-" * len(header))
    base = scored["unchanged"]
    headline: dict[str, Any] = {}
    for name in SCENARIOS:
        changed = scored[name]
        delta = changed["defect_score"] - base["defect_score"]
        cells = []
        per_target: dict[float, dict[str, float]] = {}
        recalibrated: dict[float, dict[str, float]] = {}
        levels: dict[str, list[str]] = {"image": [], "model": []}
        for cal_mask in (first, ~first):
            ev_mask = ~cal_mask
            for kind, signals in (("image", IMAGE_SIGNALS), ("model", MODEL_SIGNALS)):
                levels[kind].append(worst([compare(s, base[s][cal_mask], changed[s][ev_mask]).level for s in signals]))
            for target in TARGETS:
                chosen = calibrate(
                    base["defect_score"][cal_mask],
                    truth[cal_mask],
                    target_escape=target,
                    target_false_reject=0.01,
                    delta=1 - args.confidence,
                )
                rates = routed(
                    changed["defect_score"][ev_mask],
                    changed["disagree"][ev_mask],
                    truth[ev_mask],
                    chosen.t_pass,
                    chosen.t_fail,
                )
                acc = per_target.setdefault(target, {"review": 0.0, "escape": 0.0, "false_reject": 0.0})
                for key, value in rates.items():
                    acc[key] += value / 2
                # Calibrated on the changed parts themselves (a held station's drift-time fit).
                refit = calibrate(
                    changed["defect_score"][cal_mask],
                    truth[cal_mask],
                    target_escape=target,
                    target_false_reject=0.01,
                    delta=1 - args.confidence,
                )
                rates = routed(
                    changed["defect_score"][ev_mask],
                    changed["disagree"][ev_mask],
                    truth[ev_mask],
                    refit.t_pass,
                    refit.t_fail,
                )
                acc = recalibrated.setdefault(target, {"review": 0.0, "escape": 0.0, "false_reject": 0.0})
                for key, value in rates.items():
                    acc[key] += value / 2
        for table in (per_target, recalibrated):
            for target in TARGETS:
                r = table[target]
                cells.append(f"{r['review']:>9.3f}/{r['escape']:.4f}/{r['false_reject']:.4f}")
        auroc = binary_auroc(truth.astype(int), changed["defect_score"])
        log(
            f"{name:<36} | {np.abs(delta[~truth]).mean():>8.4f}/{np.abs(delta[truth]).mean():<9.4f} | "
            f"{delta[~truth].mean():>+7.4f} | {auroc:>6.4f} | "
            + " | ".join(f"{c:>25}" for c in cells)
            + f" | {'/'.join(levels['image']):>14} / {'/'.join(levels['model']):<13}"
        )
        key = re.sub(r"[^a-z0-9]+", "_", name.replace(" % ", "pct ").replace("=", "")).strip("_")
        headline[key] = {
            "auroc": round(auroc, 4),
            "escape_at_2pct": round(per_target[0.02]["escape"], 4),
            "review_at_2pct": round(per_target[0.02]["review"], 4),
            "recalibrated_review_at_2pct": round(recalibrated[0.02]["review"], 4),
            "recalibrated_escape_at_2pct": round(recalibrated[0.02]["escape"], 4),
            "image_drift": levels["image"],
            "model_drift": levels["model"],
        }
    log("")
    log(
        "Escape and false reject are over all measured parts; the thresholds come from unchanged parts, so "
        "a rise in escape is what the change costs until someone reacts."
    )
    log(f"drift levels: one per calibration/measure assignment; '{STABLE}' means the check would not have flagged it.")
    summary = {
        "auroc_unchanged": headline["unchanged"]["auroc"],
        "escape_at_2pct_unchanged": headline["unchanged"]["escape_at_2pct"],
        **{f"escape_at_2pct_{key}": value["escape_at_2pct"] for key, value in headline.items() if key != "unchanged"},
        "blur_r2_recalibrated_review_at_2pct": headline["out_of_focus_blur_r2"]["recalibrated_review_at_2pct"],
        "blur_r2_recalibrated_escape_at_2pct": headline["out_of_focus_blur_r2"]["recalibrated_escape_at_2pct"],
    }
    log(json.dumps(summary))
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text("\n".join(lines) + "\n")
    return 0


def apply(change: Change, image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    return np.ascontiguousarray(change(image, rng))


if __name__ == "__main__":
    raise SystemExit(main())
