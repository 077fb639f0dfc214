"""How soon Loupe's drift check sees a camera change, and how often it cries wolf, on MTD:

    .venv/bin/python benchmarks/drift_mtd.py --data ../shared/data/mtd [--draws 200]

Every MTD image (good and defective, as a line sees them) is read once per scenario: as it is,
and as a changed camera would deliver it (darker by 5, 10 and 20 %, brighter by 10 %, 20 %
less contrast, out of focus, more sensor noise). For each draw, a reference window and a
disjoint current window of ``W`` parts are taken at random (W = 200 and 500 side by side); the
current window's parts are the changed ones. The drift check is Loupe's
(``workers.routing.drift.compare`` on ``image_stats``: brightness, contrast and sharpness of
what the models see). Per scenario and window: share of draws flagged "drift" on either signal (for
"unchanged" that is the false-alarm rate), share flagged at least "watch", and the median PSI
of the more-moved signal. Only the image signals: the model signals (defect score, anomaly
ratio) depend on the models deployed and are not measured here. Prints one table and a JSON
line of the headline figures.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
from PIL import Image, ImageFilter

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from workers.routing.drift import DRIFT, STABLE, compare, image_stats

Change = Callable[[np.ndarray, np.random.Generator], np.ndarray]


def scale(factor: float) -> Change:
    return lambda img, rng: np.clip(img.astype(np.float32) * factor, 0, 255).astype(np.uint8)


def contrast(factor: float) -> Change:
    def change(img: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        mean = float(img.mean())
        out: np.ndarray = np.clip((img.astype(np.float32) - mean) * factor + mean, 0, 255).astype(np.uint8)
        return out

    return change


def blur(radius: float) -> Change:
    return lambda img, rng: np.asarray(Image.fromarray(img).filter(ImageFilter.GaussianBlur(radius)))


def noise(sigma: float) -> Change:
    return lambda img, rng: np.clip(img + rng.normal(0, sigma, img.shape), 0, 255).astype(np.uint8)


SCENARIOS: dict[str, Change | None] = {
    "unchanged": None,
    "5 % darker": scale(0.95),
    "10 % darker": scale(0.90),
    "20 % darker": scale(0.80),
    "10 % brighter": scale(1.10),
    "20 % less contrast": contrast(0.80),
    "slightly out of focus (blur r=0.7)": blur(0.7),
    "out of focus (blur r=2)": blur(2.0),
    "sensor noise (sigma 3)": noise(3.0),
    "sensor noise (sigma 8)": noise(8.0),
}
WINDOWS = (200, 500)
SIGNALS_USED = ("brightness", "contrast", "sharpness")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("--draws", type=int, default=200)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--output", type=Path, default=Path(__file__).parent / "results" / "drift-mtd-latest.txt")
    args = parser.parse_args()

    paths = sorted(args.data.glob("MT_*/Imgs/*.jpg"))
    if not paths:
        print(f"no MTD images under {args.data}", file=sys.stderr)
        return 2
    images = [np.asarray(Image.open(path).convert("L")) for path in paths]
    started = time.perf_counter()
    rng = np.random.default_rng(args.seed)
    stats: dict[str, dict[str, np.ndarray]] = {}
    for name, change in SCENARIOS.items():
        rows = [image_stats(img if change is None else change(img, rng)) for img in images]
        stats[name] = {key: np.array([row[key] for row in rows]) for key in SIGNALS_USED}
    stats_s = time.perf_counter() - started
    base = stats["unchanged"]

    lines = [
        f"Drift check on MTD: {len(images)} images, {args.draws} draws per cell, seed {args.seed}; "
        f"image stats of every image under every scenario in {stats_s:.1f} s",
        "",
        f"{'scenario':<36} {'window':>6} {'drift':>7} {'>= watch':>9} {'median PSI':>11} {'mean change: brightness, contrast, sharpness':>46}",
    ]
    headline: dict[str, float] = {}
    for name in SCENARIOS:
        changed = stats[name]
        for window in WINDOWS:
            flagged = watched = 0
            psis = []
            for _ in range(args.draws):
                order = rng.permutation(len(images))
                ref, cur = order[:window], order[window : 2 * window]
                results = [compare(key, base[key][ref], changed[key][cur]) for key in SIGNALS_USED]
                levels = [r.level for r in results]
                flagged += DRIFT in levels
                watched += any(level != STABLE for level in levels)
                psis.append(max(r.psi for r in results))
            shift = tuple(float(changed[k].mean() / base[k].mean() - 1) for k in SIGNALS_USED)
            lines.append(
                f"{name:<36} {window:>6} {flagged / args.draws:>7.3f} {watched / args.draws:>9.3f} "
                f"{float(np.median(psis)):>11.3f} {shift[0]:>24.1%}, {shift[1]:>7.1%}, {shift[2]:>7.1%}"
            )
            key = re.sub(r"[^a-z0-9]+", "_", name.replace(" % ", "pct ").replace("=", "")).strip("_")
            headline[f"drift_rate_{key}_{window}"] = round(flagged / args.draws, 3)
    lines += [
        "",
        "drift: PSI >= 0.25 with KS p < 0.01 on any of the three; watch: PSI >= 0.1 with p < 0.01.",
        "For 'unchanged' the drift column is the false-alarm rate of one check.",
    ]
    text = "\n".join(lines)
    print(text)
    summary = {
        "false_alarm_500": headline["drift_rate_unchanged_500"],
        "false_alarm_200": headline["drift_rate_unchanged_200"],
        "detect_5pct_darker_500": headline["drift_rate_5pct_darker_500"],
        "detect_10pct_darker_500": headline["drift_rate_10pct_darker_500"],
        "detect_10pct_darker_200": headline["drift_rate_10pct_darker_200"],
        "detect_blur_r2_500": headline["drift_rate_out_of_focus_blur_r2_500"],
        "detect_blur_r07_500": headline["drift_rate_slightly_out_of_focus_blur_r0_7_500"],
        "detect_noise_sigma3_500": headline["drift_rate_sensor_noise_sigma_3_500"],
    }
    print(json.dumps(summary))
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(text + "\n" + json.dumps(summary) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
