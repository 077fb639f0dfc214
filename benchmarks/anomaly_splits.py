"""How much the anomaly detector's MTD figure owes to the DifferNet split.

``benchmarks/mtd.py`` follows the published protocol: the good images listed in
``differnet_train_good.txt`` train, every other image tests. A plant does not pick its test
parts; this script trains the same detector (Loupe's defaults, through ``workers.ml``) on as
many good images drawn at random, tests on the remaining goods and every defect, for a few
seeds, and prints both side by side:

    .venv/bin/python benchmarks/anomaly_splits.py --data ../shared/data/mtd [--seeds 0,1,2]

One table, then one JSON line: {"differnet_auroc", "random_auroc_mean", "random_auroc_min",
"random_recall_at_1pct_fr_mean"}.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from workers.ml.imaging import read_image  # noqa: E402
from workers.ml.inference import load_inferencer  # noqa: E402
from workers.ml.metrics import binary_auroc, recall_at_false_reject  # noqa: E402
from workers.ml.training import train  # noqa: E402
from workers.ml.types import Sample  # noqa: E402

GOOD = "Free"


def collect(root: Path) -> list[Sample]:
    samples = []
    for folder in sorted(root.glob("MT_*")):
        label = folder.name.removeprefix("MT_")
        for image in sorted((folder / "Imgs").glob("*.jpg")):
            samples.append(Sample(image_path=image, label=None if label == GOOD else label))
    return samples


def evaluate(fit: list[Sample], test: list[Sample], work: Path, seed: int) -> dict[str, float]:
    started = time.perf_counter()
    result = train(kind="anomaly", samples=fit, good_class=GOOD, out_dir=work, seed=seed)
    inferencer = load_inferencer(work, result.artifacts)
    scores = np.array(
        [inferencer.predict([read_image(s.image_path)])[0].anomaly_score or 0.0 for s in test], dtype=np.float64
    )
    truth = np.array([s.label is not None for s in test], dtype=int)
    return {
        "auroc": binary_auroc(truth, scores),
        "recall_at_1pct_fr": recall_at_false_reject(scores[truth == 0], scores[truth == 1], 0.01),
        "test_goods": int((truth == 0).sum()),
        "test_defects": int(truth.sum()),
        "minutes": (time.perf_counter() - started) / 60,
    }


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--output", type=Path, default=REPO / "benchmarks" / "results" / "anomaly-splits-latest.txt")
    args = parser.parse_args(argv)
    lines: list[str] = []

    def log(line: str = "") -> None:
        print(line, flush=True)
        lines.append(line)

    samples = collect(args.data)
    goods = [s for s in samples if s.label is None]
    listed = {
        line.strip() for line in (args.data / "differnet_train_good.txt").read_text().splitlines() if line.strip()
    }
    work = Path(tempfile.mkdtemp(prefix="loupe-anomaly-splits-"))
    rows: list[tuple[str, dict[str, float]]] = []

    fit = [s for s in goods if s.image_path.name in listed]
    test = [s for s in samples if not (s.label is None and s.image_path.name in listed)]
    rows.append(("DifferNet list", evaluate(fit, test, work / "differnet", 0)))
    log(f"{rows[-1][0]}: {json.dumps(rows[-1][1])}")
    for seed in (int(s) for s in args.seeds.split(",")):
        drawn = list(goods)
        random.Random(seed).shuffle(drawn)
        fit = drawn[: len(fit)]
        chosen = {s.image_path for s in fit}
        test = [s for s in samples if s.image_path not in chosen]
        rows.append((f"random goods, seed {seed}", evaluate(fit, test, work / f"random-{seed}", seed)))
        log(f"{rows[-1][0]}: {json.dumps(rows[-1][1])}")

    log("")
    log(
        f"{'split (same number of training goods)':<38} | {'test goods':>10} | {'defects':>7} | {'image AUROC':>11} | {'recall @1% FR':>13}"
    )
    for name, row in rows:
        log(
            f"{name:<38} | {row['test_goods']:>10} | {row['test_defects']:>7} | {row['auroc']:>11.4f} | {row['recall_at_1pct_fr']:>13.3f}"
        )
    randoms = [row for name, row in rows if name.startswith("random")]
    headline = {
        "differnet_auroc": round(rows[0][1]["auroc"], 4),
        "random_auroc_mean": round(float(np.mean([r["auroc"] for r in randoms])), 4),
        "random_auroc_min": round(float(np.min([r["auroc"] for r in randoms])), 4),
        "random_recall_at_1pct_fr_mean": round(float(np.mean([r["recall_at_1pct_fr"] for r in randoms])), 4),
    }
    log("")
    log(json.dumps(headline))
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text("\n".join(lines) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
